"""benchmarks/profile_sam2.py: its operator kinds and multiply-add counts, read from a real
profile of known products, so that a change in the profiler's records cannot go unnoticed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backend.model.token_products import tokens_times_weights
from benchmarks.profile_sam2 import profile_by_kind


def test_known_products_are_counted_and_each_operator_lands_in_its_kind():
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    bias = torch.randn(16)
    tokens, weight = (
        torch.randn(4096, 64),
        torch.randn(32, 64),
    )  # a oneDNN convolution, as the models' products
    q, k = torch.randn(3, 5, 7), torch.randn(3, 7, 11)
    query = torch.randn(1, 2, 6, 4)

    def call() -> None:
        torch.mm(a, b)
        torch.addmm(bias, a, b)
        tokens_times_weights(tokens, weight)
        torch.softmax(torch.bmm(q, k), dim=-1)
        F.scaled_dot_product_attention(query, query, query)
        F.layer_norm(a, (32,))

    with torch.inference_mode():
        seconds, macs = profile_by_kind(call, calls=2)

    assert macs["linear layers and convolutions"] == 2 * 64 * 32 * 16 + 4096 * 64 * 32
    assert macs["attention products"] == 3 * 5 * 7 * 11 + 2 * (2 * 6 * 6 * 4)
    for kind in ("linear layers and convolutions", "attention products", "softmax", "layer norms"):
        assert seconds[kind] > 0, kind
