"""The bad-image corpus through the one decoder every client uses."""

from __future__ import annotations

import numpy as np
import pytest

from backend.api.errors import SamError
from backend.formats.images import decode_image
from tests.support.bad_images import bad_image_corpus, corpus_by_name

CORPUS = bad_image_corpus()


@pytest.mark.parametrize("item", CORPUS, ids=[c.name for c in CORPUS])
def test_decode_image_accepts_or_refuses_each_corpus_file_as_expected(item):
    if item.accept:
        pixels = decode_image(item.data)
        assert pixels.dtype == np.uint8
        assert pixels.shape == (item.height, item.width, 3)
        assert pixels.flags.c_contiguous
    else:
        with pytest.raises(SamError) as info:
            decode_image(item.data)
        assert (info.value.status, info.value.code) == (item.status, item.code)
        assert len(info.value.detail) > 10  # a message a person can act on


def test_a_lower_pixel_limit_refuses_an_otherwise_valid_image():
    item = corpus_by_name("tall_thin_png")  # 1 x 300 = 300 pixels
    assert decode_image(item.data, max_pixels=300).shape == (300, 1, 3)
    with pytest.raises(SamError) as info:
        decode_image(item.data, max_pixels=299)
    assert info.value.status == 413


def test_exif_orientation_6_turns_the_stored_pixels_clockwise():
    # the stored image has a vertical red gradient (rows); after a clockwise turn it runs along columns
    pixels = decode_image(corpus_by_name("exif_rotated_jpeg_6").data).astype(int)
    red_along_x = np.diff(pixels[:, :, 0].mean(axis=0))
    red_along_y = np.diff(pixels[:, :, 0].mean(axis=1))
    assert np.abs(red_along_x).mean() > 5 * np.abs(red_along_y).mean()
    assert red_along_x.mean() < 0  # top of the stored image ends up on the right


def test_transparent_pixels_are_composited_on_white():
    pixels = decode_image(corpus_by_name("rgba_png").data)
    assert pixels.shape == (10, 20, 3)
    assert (pixels.astype(int) >= 127).all()  # alpha 128 over white lifts every channel to >= ~127
