"""Matrix products of the many image tokens with a few rows of weights, in the fastest form.

The mask decoder's heavy work is products of the ``N`` image tokens (4096 at
SAM's sizes) with small matrices: folded attention scores, the two transposed
convolutions of the upscaling; the encoders' linear layers are the same kind
of product. On a CPU, ``tokens @ weights^T`` runs as a 1x1 convolution:
PyTorch sends a convolution to oneDNN, which on the x86 machine we measure on
is 1.0-1.14x as fast for these shapes as the matrix-multiply library behind
``torch.matmul`` (`docs/models.md`, "Why convolutions"), with the same float32
values up to rounding. Small products (below :data:`MIN_CONVOLUTION_MACS`,
e.g. most of the demo model's), other devices (CUDA, MPS: cuDNN may round
fp32 convolutions to TF32, matrix products are not) and recorded autograd use
the plain matrix products. Sums over the tokens (``weights @ tokens``, the
attention's pooling) stay matrix products everywhere: as a convolution over
``N`` input channels they are slower (0.77 against 0.52 ms for 40 rows in
float32, 36 against 21 ms for 4096 rows in bfloat16)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_CONVOLUTION_MACS = 6_000_000
"""Multiply-adds below which oneDNN's per-call set-up (about 40 us) costs more than it saves."""


def _use_convolution(macs: int, *tensors: Tensor) -> bool:
    if tensors[0].device.type != "cpu" or tensors[0].dtype not in (torch.float32, torch.bfloat16):
        return False
    if macs < MIN_CONVOLUTION_MACS:
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def tokens_times_weights(tokens: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``tokens @ weight.T + bias`` for many token rows: ``N x K`` -> ``N x R``.

    Args:
        tokens: ``N x K``.
        weight: ``R x K``.
        bias: ``R`` or None.
    """
    n, k = tokens.shape
    if not _use_convolution(n * k * weight.shape[0], tokens, weight):
        return F.linear(tokens, weight, bias)
    # A channels-last 1 x K x N x 1 view: one pixel per token.
    image = tokens.contiguous().view(1, n, 1, k).permute(0, 3, 1, 2)
    out = F.conv2d(image, weight.reshape(weight.shape[0], k, 1, 1), bias)
    return out.permute(0, 2, 3, 1).reshape(n, weight.shape[0])


def linear_on_tokens(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` for ``... x K`` tokens (e.g. an encoder's ``BxHxWxC``
    grid), by :func:`tokens_times_weights`. Returns ``... x R``."""
    *lead, k = x.shape
    return tokens_times_weights(x.reshape(-1, k), weight, bias).view(*lead, weight.shape[0])


def scores_against_tokens(rows: Tensor, tokens: Tensor, bias: Tensor | None = None) -> Tensor:
    """``rows @ tokens^T + bias``: the scores of a few rows against every image token.

    Args:
        rows: ``B x R x K``.
        tokens: ``(1|B) x N x K``; a batch of 1 is shared by all B.
        bias: ``B x R x 1`` or None.

    Returns:
        ``B x R x N``; with shared tokens a strided view of an ``N x (B R)``
        product (``N`` outermost).
    """
    b, r, k = rows.shape
    if tokens.shape[0] == 1:
        flat_bias = bias.reshape(b * r) if bias is not None else None
        out = tokens_times_weights(tokens[0], rows.reshape(b * r, k), flat_bias)
        return out.view(-1, b, r).permute(1, 2, 0)
    if bias is not None:
        return torch.baddbmm(bias, rows, tokens.transpose(1, 2))
    return rows @ tokens.transpose(1, 2)


def pool_tokens(weights: Tensor, tokens: Tensor) -> Tensor:
    """``weights @ tokens``: weighted sums of the image tokens.

    Args:
        weights: ``B x R x N`` (e.g. attention probabilities).
        tokens: ``(1|B) x N x C``; a batch of 1 is shared by all B.

    Returns:
        ``B x R x C``.
    """
    b, r, n = weights.shape
    if tokens.shape[0] == 1:
        # One product over all B R rows instead of B batched ones over the same tokens.
        return (weights.reshape(b * r, n) @ tokens[0]).view(b, r, -1)
    return weights @ tokens


def add_to_tokens(tokens: Tensor, weights_t: Tensor, values: Tensor) -> Tensor:
    """``tokens + weights_t^T @ values``: every image token receives a mix of a few values.

    Args:
        tokens: ``(1|B) x N x C``; a batch of 1 is shared by all B.
        weights_t: ``B x R x N`` mixing weights (transposed).
        values: ``B x R x C``.

    Returns:
        ``B x N x C``.
    """
    if weights_t.shape[0] == 1:
        # One product that reads the weights transposed in place and adds the tokens
        # (no transposed copy of the N x R weights, no separate pass for the sum).
        return torch.addmm(tokens[0], weights_t[0].transpose(0, 1), values[0]).unsqueeze(0)
    if tokens.shape[0] == weights_t.shape[0]:
        return torch.baddbmm(tokens, weights_t.transpose(1, 2), values)
    return tokens + weights_t.transpose(1, 2) @ values


ROW_CHUNK_BYTES = 16 << 20
"""Bytes of the widest temporary of one chunk in :func:`add_in_row_chunks`."""


def add_in_row_chunks(x: Tensor, fn: Callable[[Tensor], Tensor], widest: int) -> Tensor:
    """``x += fn(x)`` for a tensor the caller owns, a few thousand tokens at a time (no autograd).

    For a token-wise ``fn`` (a block's normalised MLP): each token's row is
    computed alone, so the values are those of ``fn`` on the whole tensor, up to
    the rounding of differently blocked products. Its widest temporary
    (``widest`` channels: 4x the width inside an MLP, 100 MB of float32 on
    hiera's stride-4 grid) then never exists whole. Allocations that large are
    memory-mapped afresh on every call, and filling them costs page faults,
    while the chunks are reused from the heap and stay in the cache.

    Args:
        x: ``... x C`` contiguous tokens, overwritten.
        fn: ``R x C`` -> ``R x C``, row by row.
        widest: Channels of ``fn``'s widest intermediate.

    Returns:
        ``x``.
    """
    flat = x.view(-1, x.shape[-1])
    rows = max(1, ROW_CHUNK_BYTES // (widest * x.element_size()))
    for start in range(0, flat.shape[0], rows):
        part = flat[start : start + rows]
        part.add_(fn(part))
    return x
