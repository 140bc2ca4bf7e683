"""MemoOnWeights: a memo that follows its input weights' values, however they change."""

from __future__ import annotations

import torch

from backend.model.memo import MemoOnWeights, module_reads


class Counting:
    """``compute`` for the memo: twice the weight, counting the calls."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight
        self.calls = 0

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return self.weight * 2


def test_the_value_is_reused_while_key_and_weights_stay_the_same():
    memo, compute = MemoOnWeights(), Counting(torch.arange(4.0))
    first = memo.get("a", (compute.weight,), compute)
    second = memo.get("a", (compute.weight,), compute)
    assert compute.calls == 1 and second is first


def test_a_new_key_is_computed_afresh():
    memo, compute = MemoOnWeights(), Counting(torch.arange(4.0))
    memo.get("a", (compute.weight,), compute)
    memo.get("b", (compute.weight,), compute)
    assert compute.calls == 2


def test_an_in_place_change_is_seen_in_and_out_of_inference_mode():
    with torch.inference_mode():
        weight = torch.arange(4.0)  # an inference tensor: no version counter
        memo, compute = MemoOnWeights(), Counting(weight)
        memo.get("a", (weight,), compute)
        weight.add_(1.0)
        assert torch.equal(memo.get("a", (weight,), compute), torch.tensor([2.0, 4.0, 6.0, 8.0]))
    normal = torch.arange(4.0)
    compute = Counting(normal)
    memo.get("a", (normal,), compute)
    normal[0] = 10.0
    assert memo.get("a", (normal,), compute)[0] == 20.0
    assert compute.calls == 2


def test_a_dtype_change_with_equal_values_is_computed_afresh():
    memo = MemoOnWeights()
    as_float = Counting(torch.arange(4.0))
    as_double = Counting(torch.arange(4.0, dtype=torch.float64))
    memo.get("a", (as_float.weight,), as_float)
    assert memo.get("a", (as_double.weight,), as_double).dtype == torch.float64


def test_a_value_made_in_inference_mode_still_serves_autograd_later():
    weight = torch.arange(4.0)
    memo = MemoOnWeights()
    with torch.inference_mode():
        value = memo.get("a", (weight,), Counting(weight))
    assert not value.is_inference()
    trained = torch.ones(4, requires_grad=True)
    (value * trained).sum().backward()
    assert torch.equal(trained.grad, weight * 2)


def test_a_value_computed_under_autocast_has_full_precision():
    weight = torch.randn(64, 64)
    memo = MemoOnWeights()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = memo.get("a", (weight,), lambda: weight @ weight)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, weight @ weight, rtol=0, atol=0)


def test_module_reads_sees_an_adapter_put_in_and_a_hook_added():
    block = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    structure, weights = module_reads(block)
    assert len(weights) == 2
    block[0].register_forward_hook(lambda module, args, out: out * 2)
    assert module_reads(block)[0] != structure
    block[0] = torch.nn.Sequential(block[0], torch.nn.Linear(4, 4))  # an adapter around the layer
    assert len(module_reads(block)[1]) == 4


def test_autocast_is_only_touched_on_device_types_that_have_it():
    from backend.model.memo import _autocast_device_types

    assert _autocast_device_types([torch.zeros(1, device="meta"), torch.zeros(1)]) == ["cpu"]
    memo = MemoOnWeights()
    weight = torch.zeros(2, device="meta")
    assert memo.get("a", (weight,), lambda: torch.ones(2)).sum() == 2
