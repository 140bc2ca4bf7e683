"""A windowed Hiera block without autograd runs its attention half a slab of window rows at a time."""

from __future__ import annotations

import pytest
import torch

from backend.model.sam2 import hiera_block
from backend.model.sam2.hiera_block import MultiScaleBlock


@pytest.mark.parametrize(
    ("dim", "dim_out", "q_stride", "window", "size"),
    [
        (8, 8, None, 4, (13, 10)),  # padding at the bottom and right
        (8, 16, (2, 2), 4, (13, 11)),  # a stage transition: pooled (floor) and widened, odd sizes
        (8, 16, (2, 2), 4, (16, 16)),
    ],
)
def test_slabs_equal_the_whole_grid(monkeypatch, dim, dim_out, q_stride, window, size):
    """Many slabs (one window row each) give the block's output on the whole grid, computed
    with autograd recording (the path that calls every module once, on everything)."""
    torch.manual_seed(0)
    block = MultiScaleBlock(dim, dim_out, num_heads=2, q_stride=q_stride, window_size=window).eval()
    x = torch.randn(2, *size, dim)
    before = x.clone()
    expected = block(x)  # autograd on: no slabs
    monkeypatch.setattr(hiera_block, "ATTENTION_GROUP_BYTES", 1)  # one window row per slab
    calls = {"norm1": 0}
    block.norm1.forward = _counting(block.norm1.forward, calls)  # an instance attribute, not a hook
    with torch.inference_mode():
        got = block(x)
    rows = -(-size[0] // window)
    assert calls["norm1"] == rows, "one norm1 per slab of window rows"
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-5)
    assert torch.equal(x, before), "the input is left as it was"


def test_a_hook_on_the_attention_sees_the_whole_grid(monkeypatch):
    """A forward hook on the attention turns the slabs off: it fires once, with the whole grid."""
    monkeypatch.setattr(hiera_block, "ATTENTION_GROUP_BYTES", 1)
    block = MultiScaleBlock(8, 8, num_heads=2, window_size=4).eval()
    seen = []
    block.attn.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    with torch.inference_mode():
        block(torch.randn(1, 64, 64, 8))
    assert seen == [(1, 64, 64, 8)]


def _counting(fn, calls):
    def counted(*args, **kwargs):
        calls["norm1"] += 1
        return fn(*args, **kwargs)

    return counted


def test_no_slabs_for_an_empty_batch_or_under_autocast(monkeypatch):
    """An empty batch gives an empty output (no division by a zero-sized window row), and
    under autocast the output has the dtype the whole-grid block gives it."""
    monkeypatch.setattr(hiera_block, "ATTENTION_GROUP_BYTES", 1)
    block = MultiScaleBlock(8, 16, num_heads=2, q_stride=(2, 2), window_size=4).eval()
    x = torch.randn(1, 16, 16, 8)
    with torch.inference_mode():
        assert block(torch.randn(0, 8, 8, 8)).shape == (0, 4, 4, 16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = block(x)  # autograd on: no slabs
    assert got.dtype == expected.dtype
