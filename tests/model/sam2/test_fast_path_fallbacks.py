"""The fast paths honour replaced and hooked submodules, and autograd still works.

An adapter (a LoRA-style wrapper adding a low-rank update) on a layer the fast
path would otherwise read directly must give the same result as the same
update merged into the layer's weights; a forward hook must fire; with
autograd recording, the functional path gives the fast path's values and
gradients reach the weights.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.model.sam2.conftest import SMALL_IMAGE
from tests.model.sam2.reference import assert_close


class LowRankLinear(nn.Module):
    """``base(x) + x A^T B^T``: what a LoRA adapter looks like to the network."""

    def __init__(self, base: nn.Linear, rank: int = 2, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.base = base
        self.a = nn.Parameter(0.1 * torch.randn(rank, base.in_features, generator=gen))
        self.b = nn.Parameter(0.1 * torch.randn(base.out_features, rank, generator=gen))

    def delta(self) -> torch.Tensor:
        return self.b @ self.a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.a.T) @ self.b.T


class ShiftedConv(nn.Module):
    """A 1x1 or transposed convolution plus a learned per-channel shift (another adapter shape)."""

    def __init__(self, base: nn.Module, channels: int, seed: int = 0) -> None:
        super().__init__()
        self.base = base
        self.shift = nn.Parameter(0.5 * torch.randn(channels, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.shift.view(1, -1, 1, 1)


def _image() -> torch.Tensor:
    return torch.randn(1, 3, SMALL_IMAGE, SMALL_IMAGE, generator=torch.Generator().manual_seed(9))


def _points() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[[90.0, 120.0], [30.0, 40.0]]]), torch.tensor([[1, 0]])


def _run(model) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        features = model.encode_image(_image())
        out = model.decode(model.prepare_decoder(features), _points(), None, True)
    return (*features, out.masks, out.iou_pred)


def _replace(model: nn.Module, path: str, make) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    setattr(parent, name, make(getattr(parent, name)))


LINEARS = [
    "image_encoder.trunk.blocks.1.attn.qkv",  # a pooling block's qkv
    "image_encoder.trunk.blocks.5.attn.qkv",  # a global block's qkv
    "image_encoder.trunk.blocks.4.mlp.layers.0",
    "sam_mask_decoder.transformer.layers.1.cross_attn_token_to_image.k_proj",  # folded into the tokens
    "sam_mask_decoder.transformer.layers.0.cross_attn_image_to_token.out_proj",
    "sam_mask_decoder.transformer.final_attn_token_to_image.v_proj",
]


@pytest.mark.parametrize("path", LINEARS)
def test_adapter_on_a_linear_layer_takes_effect(tiny_pair, path):
    ours, _ = tiny_pair
    adapted, merged = copy.deepcopy(ours), copy.deepcopy(ours)
    _replace(adapted, path, lambda base: LowRankLinear(base))
    with torch.no_grad():
        merged.get_submodule(path).weight += adapted.get_submodule(path).delta()
    with_adapter = _run(adapted)
    for a, b in zip(with_adapter, _run(merged), strict=True):
        assert_close(a, b)
    assert any(float((a - p).abs().max()) > 1e-3 for a, p in zip(with_adapter, _run(ours), strict=True))


CONVS = [
    ("image_encoder.neck.convs.3.conv", 256),  # stride-4 lateral, folded with conv_s0
    ("sam_mask_decoder.conv_s1", 64),  # folded into the stride-8 lateral
    ("sam_mask_decoder.output_upscaling.0", 64),  # first transposed convolution
]


@pytest.mark.parametrize(("path", "channels"), CONVS)
def test_adapter_on_a_convolution_takes_effect(tiny_pair, path, channels):
    ours, _ = tiny_pair
    adapted, merged = copy.deepcopy(ours), copy.deepcopy(ours)
    _replace(adapted, path, lambda base: ShiftedConv(base, channels))
    with torch.no_grad():
        merged.get_submodule(path).bias += adapted.get_submodule(path).shift
    for a, b in zip(_run(adapted), _run(merged), strict=True):
        assert_close(a, b)


@pytest.mark.parametrize(
    "path",
    [
        "image_encoder.trunk.blocks.0.mlp.layers.0",
        "image_encoder.trunk.blocks.3.attn.proj",
        "sam_mask_decoder.conv_s0",
        "sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.v_proj",
        "sam_mask_decoder.output_upscaling.3",
    ],
)
def test_forward_hooks_fire_and_change_nothing(tiny_pair, path):
    ours, _ = tiny_pair
    plain = _run(ours)
    calls = []
    handle = ours.get_submodule(path).register_forward_hook(lambda *args: calls.append(1))
    try:
        hooked = _run(ours)
    finally:
        handle.remove()
    assert calls, f"the hook on {path} did not fire"
    for a, b in zip(hooked, plain, strict=True):
        assert_close(a, b)


def test_one_mask_without_the_dynamic_fallback_matches_the_module_path(tiny_pair):
    """One prompt, one mask (``multimask_output=False`` with the dynamic fallback off):
    the fast upscaling's single transposed plane gives what the layers called one by one give."""
    ours, _ = tiny_pair
    model = copy.deepcopy(ours)
    model.sam_mask_decoder.dynamic_multimask_via_stability = False

    def one_mask() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            out = model.decode(model.prepare_decoder(model.encode_image(_image())), _points(), None, False)
        return out.masks, out.iou_pred

    fast = one_mask()
    handle = model.get_submodule("sam_mask_decoder.output_upscaling.3").register_forward_hook(
        lambda *args: None
    )
    try:
        by_modules = one_mask()  # a hook makes the upscaling call its layers
    finally:
        handle.remove()
    assert fast[0].shape[:2] == (1, 1)
    for a, b in zip(fast, by_modules, strict=True):
        assert_close(a, b)


def test_only_the_upscaling_trains_and_its_gradients_match_the_module_path(tiny_pair):
    """With every weight frozen but ``output_upscaling``'s, the fast upscaling runs while
    autograd records; its gradients are those of the layers called one by one."""
    ours, _ = tiny_pair
    model = copy.deepcopy(ours)
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("sam_mask_decoder.output_upscaling"))
    with torch.no_grad():
        cache = model.prepare_decoder(model.encode_image(_image()))

    def upscaling_gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        model.decode(cache, _points(), None, True).masks.square().mean().backward()
        upscaling = model.get_submodule("sam_mask_decoder.output_upscaling")
        return {
            name: param.grad.clone() for name, param in upscaling.named_parameters() if param.grad is not None
        }

    fast = upscaling_gradients()
    handle = model.get_submodule("sam_mask_decoder.output_upscaling.3").register_forward_hook(
        lambda *args: None
    )
    try:
        by_modules = upscaling_gradients()
    finally:
        handle.remove()
    assert (
        sorted(fast)
        == sorted(by_modules)
        == ["0.bias", "0.weight", "1.bias", "1.weight", "3.bias", "3.weight"]
    )
    for name in fast:
        assert_close(fast[name], by_modules[name])


def test_gradients_flow_and_match_the_fast_path(tiny_pair):
    ours, _ = tiny_pair
    model = copy.deepcopy(ours)
    features = model.encode_image(_image())
    out = model.decode(model.prepare_decoder(features), _points(), None, True)
    (out.masks.mean() + out.iou_pred.sum()).backward()
    for name in (
        "image_encoder.trunk.blocks.1.attn.qkv.weight",
        "image_encoder.neck.convs.3.conv.weight",
        "sam_mask_decoder.conv_s0.weight",
        "sam_mask_decoder.output_upscaling.0.weight",
        "sam_mask_decoder.transformer.layers.1.cross_attn_image_to_token.q_proj.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    fast = _run(ours)
    assert_close(out.masks.detach(), fast[3])
    assert_close(out.iou_pred.detach(), fast[4])


@pytest.mark.parametrize("stride", [(2, 2), (1, 2), (3, 2)])
@pytest.mark.parametrize("size", [(8, 8), (7, 9)])
def test_query_pooling_equals_max_pool2d_with_and_without_autograd(stride, size):
    """Hiera's pooling (strided maxima without autograd) gives ``max_pool2d``'s values in
    floor mode, NaN included, and ``max_pool2d``'s gradient with autograd."""
    from backend.model.sam2.hiera_block import max_pool

    x = torch.randn(2, *size, 5, generator=torch.Generator().manual_seed(0))
    x[0, 1, 1, 2] = float("nan")
    expected = nn.functional.max_pool2d(x.permute(0, 3, 1, 2), stride, stride).permute(0, 2, 3, 1)
    with torch.inference_mode():
        got = max_pool(x, stride)
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)

    # Ties (small integers): max_pool2d sends each cell's gradient to one element of a tie.
    ties = torch.randint(0, 3, x.shape, generator=torch.Generator().manual_seed(1)).float()
    leaf = ties.clone().requires_grad_()
    max_pool(leaf, stride).sum().backward()
    reference = ties.clone().requires_grad_()
    nn.functional.max_pool2d(reference.permute(0, 3, 1, 2), stride, stride).sum().backward()
    assert leaf.grad is not None and reference.grad is not None
    assert torch.equal(leaf.grad, reference.grad)


@pytest.mark.parametrize("path", ["image_encoder.trunk.patch_embed", "image_encoder.trunk.patch_embed.proj"])
def test_a_hook_keeps_the_patch_embedding_it_saw(tiny_pair, path):
    """Without autograd the position embedding is added in place, but not into an output a
    forward hook has seen (it may keep it, e.g. to collect features)."""
    ours, _ = tiny_pair
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = ours.get_submodule(path).register_forward_hook(
        lambda module, args, output: seen.append((output, output.clone()))
    )
    try:
        _run(ours)
    finally:
        handle.remove()
    [(kept, as_it_was)] = seen
    assert torch.equal(kept, as_it_was)
