"""``sub_pixels_to_image``: the fast upscaling's planes put in image order, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.model.sub_pixels import masks_from_sub_pixels, sub_pixels_to_image


def _planes_from_image(image: torch.Tensor) -> torch.Tensor:
    """``B x M x 4h x 4w`` -> ``B x M x 16hw`` indexed ``(i, j, di, dj, ei, ej)`` (the inverse move)."""
    b, m, hh, ww = image.shape
    h, w = hh // 4, ww // 4
    # Pixel row 4i + 2di + ei, column 4j + 2dj + ej.
    split = image.reshape(b, m, h, 2, 2, w, 2, 2)  # (i, di, ei, j, dj, ej)
    return split.permute(0, 1, 2, 5, 3, 6, 4, 7).reshape(b, m, 16 * h * w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("batch,masks,h,w", [(1, 3, 4, 4), (2, 1, 3, 5), (3, 4, 1, 2)])
def test_it_undoes_the_sub_pixel_order_bit_for_bit(dtype, batch, masks, h, w):
    image = torch.randn(batch, masks, 4 * h, 4 * w).to(dtype)
    out = sub_pixels_to_image(_planes_from_image(image), (h, w))
    assert out.dtype == dtype and out.shape == image.shape and out.is_contiguous()
    assert torch.equal(out, image)


@pytest.mark.parametrize("masks", [3, 1])
def test_one_prompts_transposed_planes_are_read_by_their_values(masks):
    """As one prompt's product leaves them: ``16hw x M`` transposed (with one mask, strides of 1)."""
    image = torch.randn(1, masks, 8, 12)
    product = torch.empty(16 * 2 * 3, masks)  # a fresh 16hw x M result, as F.linear returns it
    product.copy_(_planes_from_image(image)[0].T)
    planes = product.T.unsqueeze(0)
    assert planes.stride()[1:] == (1, masks)
    assert torch.equal(sub_pixels_to_image(planes, (2, 3)), image)


def test_planes_starting_at_an_odd_offset_are_read_by_their_values():
    image = torch.randn(2, 3, 8, 8)
    storage = torch.cat([torch.zeros(1), _planes_from_image(image).flatten()])
    planes = storage[1:].view(2, 3, -1)
    assert planes.storage_offset() == 1
    assert torch.equal(sub_pixels_to_image(planes, (2, 2)), image)


def test_gradients_flow_back_through_the_move():
    planes = torch.randn(2, 3, 16 * 2 * 3, requires_grad=True)
    weights = torch.randn(2, 3, 8, 12)
    (sub_pixels_to_image(planes, (2, 3)) * weights).sum().backward()
    assert planes.grad is not None
    assert torch.equal(planes.grad, _planes_from_image(weights))


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


@pytest.mark.parametrize("batch,masks", [(1, 3), (1, 1), (2, 4)])
def test_masks_are_the_hypernetwork_product_in_image_order(batch, masks):
    h, w, c = 16, 8, 32  # products large enough for the oneDNN path on a CPU
    features = torch.randn(batch * 16 * h * w, c)
    hyper_in = torch.randn(batch, masks, c)
    expected = torch.einsum("bmc,brc->bmr", hyper_in, features.view(batch, -1, c))
    out = masks_from_sub_pixels(features, hyper_in, (h, w))
    assert out.shape == (batch, masks, 4 * h, 4 * w)
    torch.testing.assert_close(out, sub_pixels_to_image(expected, (h, w)))
