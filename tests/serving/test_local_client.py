"""LocalSamClient: same answers and same errors as the HTTP client, no server."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from backend.api.errors import InvalidInput, SamServerError
from backend.client.http_client import ImageFileNotFound
from backend.inference.predictor import SamPredictor
from backend.serving.local_client import LocalSamClient
from tests.serving.tiny_model import build_tiny_sam, picture, png_bytes


@pytest.fixture(scope="module")
def local() -> Iterator[LocalSamClient]:
    client = LocalSamClient(build_tiny_sam(), device="cpu")
    yield client
    client.close()


def test_predict_equals_predictor(local):
    info = local.add_image(picture())
    assert local.add_image(png_bytes(picture())) == info
    [obj] = local.predict(info.image_id, points=[[30, 22]], labels=[1])
    predictor = SamPredictor(build_tiny_sam())
    predictor.set_image(picture())
    expected = predictor.predict(point_coords=[[30, 22]], point_labels=[1])
    np.testing.assert_array_equal(obj.masks, expected.masks[0])
    np.testing.assert_allclose(obj.scores, expected.scores[0], atol=1e-6)
    assert obj.logits_id and local.ready() and local.models()[0]["name"] == "custom"


def test_bulk_priority_registers_the_same_image_and_unknown_lanes_are_refused(local):
    info = local.add_image(picture(seed=5), priority="bulk")
    assert local.add_image(picture(seed=5)) == info
    with pytest.raises(InvalidInput, match="priority must be"):
        local.add_image(picture(seed=5), priority="soon")


def test_errors_are_the_servers_errors(local):
    info = local.add_image(picture())
    with pytest.raises(SamServerError) as bad:
        local.predict(info.image_id, box=[50, 50, 10, 10])
    assert bad.value.status == 400 and bad.value.code == "invalid_input" and "inverted" in bad.value.detail
    with pytest.raises(SamServerError) as missing:
        local.predict("nope", box=[0, 0, 1, 1])
    assert missing.value.status == 404 and missing.value.code == "not_found"
    with pytest.raises(SamServerError) as corrupt:
        local.add_image(b"not an image")
    assert corrupt.value.code == "invalid_image"


def test_a_missing_file_is_a_file_not_found_error(local, tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        local.add_image(str(tmp_path / "missing.jpg"))
    assert isinstance(error.value, ImageFileNotFound) and str(tmp_path / "missing.jpg") in str(error.value)


def test_model_that_cannot_load_raises_unavailable(tmp_path):
    with pytest.raises(SamServerError) as error:
        LocalSamClient(str(tmp_path / "missing.pt"), device="cpu", load_timeout=60)
    assert error.value.status == 400 and "missing.pt" in error.value.detail
