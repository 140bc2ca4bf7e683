"""Replaced or hooked submodules take effect: the fast paths call them instead of reading their weights.

A LoRA adapter in place of a ``Linear`` of the decoder's cross-attention, the
encoder's attention or MLP changes the output (and the same adapter with a
zero update does not); gradients reach the adapter; forward hooks on the
layers the fast paths would otherwise bypass run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from backend.inference.predictor import SamPredictor
from backend.model.plain_modules import calls_are_plain
from tests.serving.tiny_model import build_tiny_sam, picture


class LoRALinear(nn.Module):
    """``base(x) + B(A(x))``: a rank-``r`` update of a frozen ``Linear``."""

    def __init__(self, base: nn.Linear, rank: int = 2, scale: float = 0.5) -> None:
        super().__init__()
        self.base = base
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.normal_(self.up.weight, std=scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.up(self.down(x))


def predict_logits(sam: nn.Module) -> np.ndarray:
    """Low-res logits of a one-click prediction on the test picture (no autograd)."""
    predictor = SamPredictor(sam)
    with torch.inference_mode():
        predictor.set_image(picture())
        out = predictor.predict(point_coords=np.array([[30.0, 25.0]]), point_labels=np.array([1]))
    return np.asarray(out.low_res_logits)


SITES: dict[str, Callable[[nn.Module], tuple[nn.Module, str]]] = {
    "decoder token-to-image q_proj": lambda s: (
        s.mask_decoder.transformer.layers[0].cross_attn_token_to_image,
        "q_proj",
    ),
    "decoder image-to-token v_proj": lambda s: (
        s.mask_decoder.transformer.layers[0].cross_attn_image_to_token,
        "v_proj",
    ),
    "encoder attention qkv": lambda s: (s.image_encoder.blocks[0].attn, "qkv"),
    "encoder attention proj": lambda s: (s.image_encoder.blocks[1].attn, "proj"),
    "encoder MLP lin1": lambda s: (s.image_encoder.blocks[0].mlp, "lin1"),
}


@pytest.mark.parametrize("site", list(SITES))
def test_a_lora_adapter_changes_the_output_and_a_zero_update_does_not(site: str) -> None:
    base = predict_logits(build_tiny_sam())
    sam = build_tiny_sam()
    parent, name = SITES[site](sam)
    adapter = LoRALinear(getattr(parent, name))
    setattr(parent, name, adapter)
    assert not np.allclose(predict_logits(sam), base, atol=1e-4), "the adapter was bypassed"
    nn.init.zeros_(adapter.up.weight)
    np.testing.assert_allclose(predict_logits(sam), base, atol=1e-4, rtol=0)


def test_gradients_reach_an_adapter_in_the_decoder_and_the_encoder() -> None:
    sam = build_tiny_sam()
    attn = sam.mask_decoder.transformer.layers[0].cross_attn_token_to_image
    attn.q_proj = LoRALinear(attn.q_proj)
    block = sam.image_encoder.blocks[0].attn
    block.qkv = LoRALinear(block.qkv)
    image = torch.randn(1, 3, 128, 128)
    embedding = sam.image_encoder(image)
    sparse, dense = sam.prompt_encoder(
        points=(torch.tensor([[[30.0, 25.0]]]), torch.tensor([[1]])), boxes=None, masks=None
    )
    masks, iou = sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )
    (masks.square().mean() + iou.sum()).backward()
    for adapter in (attn.q_proj, block.qkv):
        assert adapter.down.weight.grad is not None and adapter.down.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "layer",
    [
        lambda s: s.mask_decoder.transformer.layers[0].cross_attn_token_to_image.k_proj,
        lambda s: s.mask_decoder.transformer.layers[0].cross_attn_image_to_token.out_proj,
        lambda s: s.mask_decoder.output_upscaling[0],
        lambda s: s.image_encoder.blocks[0].attn.qkv,
        lambda s: s.image_encoder.neck[0],
    ],
    ids=["t2i k_proj", "i2t out_proj", "upscaling conv", "encoder qkv", "neck conv"],
)
def test_a_forward_hook_runs_under_inference(layer: Callable[[nn.Module], nn.Module]) -> None:
    sam = build_tiny_sam()
    calls: list[int] = []
    handle = layer(sam).register_forward_hook(lambda *_: calls.append(1))
    base = predict_logits(build_tiny_sam())
    np.testing.assert_allclose(predict_logits(sam), base, atol=1e-4, rtol=0)  # same function, other path
    handle.remove()
    assert calls, "the hooked layer was bypassed"


def test_plain_layers_keep_the_fast_path() -> None:
    sam = build_tiny_sam()
    layer = sam.mask_decoder.transformer.layers[0]
    assert calls_are_plain(layer.cross_attn_token_to_image.q_proj, *sam.mask_decoder.output_upscaling)
    assert not calls_are_plain(LoRALinear(nn.Linear(4, 4)))
    handle = layer.cross_attn_token_to_image.q_proj.register_forward_pre_hook(lambda *_: None)
    assert not calls_are_plain(layer.cross_attn_token_to_image.q_proj)
    handle.remove()
