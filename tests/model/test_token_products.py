"""The decoder's token products give the plain matrix products' values, whichever form runs."""

from __future__ import annotations

import pytest
import torch

from backend.model import token_products as tp

# (tokens N, width K, rows R): one below the convolution threshold, two above it.
SHAPES = [(256, 128, 56), (4096, 256, 56), (1024, 128, 128)]


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=2e-5 * float(b.abs().max()))


@pytest.mark.parametrize(("n", "k", "r"), SHAPES)
def test_tokens_times_weights_is_the_linear_map(n: int, k: int, r: int) -> None:
    g = torch.Generator().manual_seed(n + k + r)
    tokens, weight, bias = (
        torch.randn(n, k, generator=g),
        torch.randn(r, k, generator=g),
        torch.randn(r, generator=g),
    )
    with torch.inference_mode():
        _close(tp.tokens_times_weights(tokens, weight, bias), tokens @ weight.T + bias)
        # Strided tokens (a transposed view) are accepted too.
        _close(tp.tokens_times_weights(tokens.T.contiguous().T, weight), tokens @ weight.T)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
def test_batched_products_match_bmm(shared: bool, batch: int) -> None:
    g = torch.Generator().manual_seed(batch + 10 * shared)
    n, k, r = 4096, 256, 56
    tokens = torch.randn(1 if shared else batch, n, k, generator=g)
    rows = torch.randn(batch, r, k, generator=g)
    bias = torch.randn(batch, r, 1, generator=g)
    weights = torch.softmax(torch.randn(batch, r, n, generator=g), dim=-1)
    values = torch.randn(batch, r, k, generator=g)
    full = tokens.expand(batch, -1, -1)
    with torch.inference_mode():
        _close(tp.scores_against_tokens(rows, tokens, bias), torch.baddbmm(bias, rows, full.transpose(1, 2)))
        _close(tp.scores_against_tokens(rows, tokens), rows @ full.transpose(1, 2))
        _close(tp.pool_tokens(weights, tokens), weights @ full)
        _close(tp.add_to_tokens(tokens, weights, values), full + weights.transpose(1, 2) @ values)


def test_large_products_take_the_convolution_and_small_ones_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    real = torch.nn.functional.conv2d

    def counting_conv2d(x: torch.Tensor, w: torch.Tensor, *args: object) -> torch.Tensor:
        calls.append(tuple(w.shape))
        return real(x, w, *args)

    monkeypatch.setattr(tp.F, "conv2d", counting_conv2d)
    with torch.inference_mode():
        tp.tokens_times_weights(torch.randn(4096, 256), torch.randn(56, 256))
        assert calls == [(56, 256, 1, 1)]
        tp.tokens_times_weights(torch.randn(256, 128), torch.randn(56, 128))  # 1.8 M multiply-adds
        tp.tokens_times_weights(torch.randn(0, 256), torch.randn(56, 256))  # no tokens at all
        assert len(calls) == 1


def test_autograd_flows_through_the_matrix_product_form() -> None:
    tokens = torch.randn(4096, 256, requires_grad=True)
    weight = torch.randn(56, 256, requires_grad=True)
    tp.tokens_times_weights(tokens, weight).sum().backward()
    assert tokens.grad is not None and weight.grad is not None
    _close(tokens.grad, weight.sum(0).expand(4096, -1))
