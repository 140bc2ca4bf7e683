"""Hiera's bfloat16 attention on a CPU: chunks of queries, two products around a softmax."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.model.sam2 import hiera_block
from backend.model.sam2.hiera_block import attention


def _packed_qkv(heads: int, tokens: int, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Strided ``1 x heads x tokens x dim`` views of one packed projection, as Hiera passes them."""
    qkv = torch.randn(1, tokens, 3, heads, dim, generator=torch.Generator().manual_seed(0))
    q, k, v = qkv.unbind(2)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


@pytest.mark.parametrize("chunk_elements", [1 << 22, 3 * 400])
def test_bfloat16_attention_in_query_chunks_equals_the_fused_kernel(monkeypatch, chunk_elements):
    """With strided inputs, one chunk or many (200 queries in chunks of 3, the last one short),
    the products path gives the fused kernel's float32 output, up to bfloat16 rounding."""
    monkeypatch.setattr(hiera_block, "ATTENTION_CHUNK_ELEMENTS", chunk_elements)
    q, k, v = _packed_qkv(heads=2, tokens=200, dim=16)
    expected = F.scaled_dot_product_attention(q, k, v)
    monkeypatch.setattr(F, "scaled_dot_product_attention", _must_not_run)
    with torch.inference_mode():
        got = attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert got.shape == expected.shape and got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected, atol=3e-2, rtol=3e-2)
    assert float((got.float() - expected).abs().mean()) < 5e-3


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("the fused kernel ran instead of the bfloat16 products")


def test_bfloat16_attention_of_pooled_queries_in_small_windows_equals_the_fused_kernel(monkeypatch):
    """A pooling block's windows (4 queries against 16 keys each, many windows in the batch)
    take the products path too, with the fused kernel's float32 output up to bfloat16 rounding."""
    qkv = torch.randn(64, 16, 3, 2, 24, generator=torch.Generator().manual_seed(1))
    q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
    q = q[:, :, ::4]  # 64 windows x 2 heads x 4 pooled queries x 24
    expected = F.scaled_dot_product_attention(q, k, v)
    monkeypatch.setattr(F, "scaled_dot_product_attention", _must_not_run)
    with torch.inference_mode():
        got = attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert got.shape == (64, 2, 4, 24) and got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected, atol=3e-2, rtol=3e-2)
    assert float((got.float() - expected).abs().mean()) < 5e-3


def test_bfloat16_attention_reads_one_head_windows_as_strided_views(monkeypatch):
    """One head over many 8x8 windows (hiera's first stage): the keys and values reach the
    products as strided views of the packed projection, with the fused kernel's output."""
    qkv = torch.randn(32, 64, 3, 1, 24, generator=torch.Generator().manual_seed(2)).bfloat16()
    q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
    assert not k.is_contiguous() and k.reshape(32, 64, 24)._base is not None  # a strided view
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    monkeypatch.setattr(F, "scaled_dot_product_attention", _must_not_run)
    with torch.inference_mode():
        got = attention(q, k, v)
    assert got.shape == (32, 1, 64, 24) and got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected, atol=3e-2, rtol=3e-2)
    assert float((got.float() - expected).abs().mean()) < 5e-3


def test_float16_on_a_cpu_keeps_the_fused_kernel(monkeypatch):
    """This CPU has no native float16 products (1.4-9x slower than the fused kernel there)."""
    calls: list[torch.dtype] = []
    fused = F.scaled_dot_product_attention

    def recording(q, k, v, *args, **kwargs):
        calls.append(q.dtype)
        return fused(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    q, k, v = _packed_qkv(heads=2, tokens=200, dim=16)
    with torch.inference_mode():
        got = attention(q.half(), k.half(), v.half())
    assert calls == [torch.float16] and got.dtype == torch.float16
