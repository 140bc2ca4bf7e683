"""``sub_pixels_to_image``: the fast upscaling's planes put in image order, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.model.sub_pixels import sub_pixels_to_image


def _planes_from_image(image: torch.Tensor) -> torch.Tensor:
    """``B x M x 4h x 4w`` -> ``B x M x 16hw`` indexed ``(i, j, di, dj, ei, ej)`` (the inverse move)."""
    b, m, hh, ww = image.shape
    h, w = hh // 4, ww // 4
    # Pixel row 4i + 2di + ei, column 4j + 2dj + ej.
    split = image.reshape(b, m, h, 2, 2, w, 2, 2)  # (i, di, ei, j, dj, ej)
    return split.permute(0, 1, 2, 5, 3, 6, 4, 7).reshape(b, m, 16 * h * w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("batch,masks,h,w", [(1, 3, 4, 4), (2, 1, 3, 5), (3, 4, 1, 2)])
def test_the_pixels_land_where_the_two_transposed_convolutions_put_them(dtype, batch, masks, h, w):
    image = torch.randn(batch, masks, 4 * h, 4 * w).to(dtype)
    out = sub_pixels_to_image(_planes_from_image(image), (h, w))
    assert out.dtype == dtype and out.shape == image.shape and out.is_contiguous()
    assert torch.equal(out, image)


def test_a_strided_input_is_read_by_its_values():
    image = torch.randn(1, 3, 8, 12)
    planes = _planes_from_image(image)[0].T.contiguous().T.unsqueeze(0)  # M x 16hw, column-major
    assert not planes.is_contiguous()
    assert torch.equal(sub_pixels_to_image(planes, (2, 3)), image)


def test_it_matches_the_layout_of_two_stride_2_transposed_convolutions():
    """The index convention, checked against PyTorch's own transposed convolutions."""
    torch.manual_seed(0)
    h, w, c0, c1 = 3, 4, 5, 2
    x = torch.randn(1, c0, h, w)
    k1, k2 = torch.randn(c0, c1, 2, 2), torch.randn(c1, 1, 2, 2)
    expected = F.conv_transpose2d(F.conv_transpose2d(x, k1, stride=2), k2, stride=2)  # 1 x 1 x 4h x 4w
    # Token (i, j), offsets (di, dj) of the first, then (ei, ej) of the second.
    tokens = x[0].permute(1, 2, 0)  # h x w x c0
    y = torch.einsum("ijc,cedf->ijdfe", tokens, k1)  # h x w x di x dj x c1
    z = torch.einsum("ijdfe,egh->ijdfgh", y, k2[:, 0])  # h x w x di x dj x ei x ej
    out = sub_pixels_to_image(z.reshape(1, 1, 16 * h * w), (h, w))
    torch.testing.assert_close(out, expected)
