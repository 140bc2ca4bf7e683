"""The predictors keep prompt-independent decoder work per image (computed from the prompt
encoder's and the decoder's weights); a change to those weights after ``set_image`` takes
effect at the next prompt, as with Meta's predictors, which keep only the image features."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from backend.api.errors import InvalidInput
from backend.inference.families import predictor_for
from backend.model import build_sam
from backend.model.sam2 import build_sam2, sam2_config
from tests.support.reference import tiny_vit_config

IMAGE = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
CLICK = {"point_coords": [[40, 30]], "point_labels": [1]}

FAMILIES: dict[str, tuple[Callable[[], torch.nn.Module], str, str]] = {
    # builder, the prompt encoder's and the decoder's attribute names
    "SAM": (lambda: build_sam(tiny_vit_config()), "prompt_encoder", "mask_decoder"),
    "SAM 2.1": (
        lambda: build_sam2(sam2_config("sam2.1_hiera_t", image_size=256)),
        "sam_prompt_encoder",
        "sam_mask_decoder",
    ),
}


def models(family: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two random models of ``family`` (seeds 0 and 1)."""
    build = FAMILIES[family][0]
    torch.manual_seed(0)
    first = build().eval()
    torch.manual_seed(1)
    return first, build().eval()


def prompt_side(model: torch.nn.Module, family: str) -> dict[str, torch.Tensor]:
    """The weights of the prompt encoder and of the decoder's transformer (which the
    kept decoder work comes from), by state-dict key."""
    _, encoder, decoder = FAMILIES[family]
    prefixes = (f"{encoder}.", f"{decoder}.transformer.")
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}


def clicked_once(model: torch.nn.Module):
    """A predictor of ``model`` on :data:`IMAGE` that has answered :data:`CLICK`, and that answer's logits."""
    predictor = predictor_for(model)
    predictor.set_image(IMAGE)
    return predictor, predictor.predict(**CLICK).low_res_logits


def answer_on_the_same_features(predictor, model) -> np.ndarray:
    """What a fresh predictor of ``model`` answers on ``predictor``'s current image features."""
    fresh = predictor_for(model)
    fresh.set_embedding(predictor.embedding, original_size=predictor.original_size)
    return fresh.predict(**CLICK).low_res_logits


@pytest.mark.parametrize("family", list(FAMILIES))
def test_weights_loaded_after_set_image_answer_the_next_click(family: str):
    model, other = models(family)
    predictor, before = clicked_once(model)

    model.load_state_dict(prompt_side(other, family), strict=False)
    after = predictor.predict(**CLICK).low_res_logits

    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, answer_on_the_same_features(predictor, model))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_an_in_place_step_through_data_is_seen_too(family: str):
    """``param.data`` changes bump no version counter: the values themselves are compared."""
    model, _ = models(family)
    predictor, _ = clicked_once(model)
    encoder = getattr(model, FAMILIES[family][1])
    encoder.no_mask_embed.weight.data.add_(0.5)

    np.testing.assert_array_equal(
        predictor.predict(**CLICK).low_res_logits, answer_on_the_same_features(predictor, model)
    )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_hook_added_after_set_image_takes_effect(family: str):
    model, _ = models(family)
    predictor, before = clicked_once(model)
    first_block = getattr(model, FAMILIES[family][2]).transformer.layers[0]
    first_block.cross_attn_token_to_image.v_proj.register_forward_hook(lambda module, args, out: out * 3)

    after = predictor.predict(**CLICK).low_res_logits
    assert not np.array_equal(after, before)
    np.testing.assert_allclose(after, answer_on_the_same_features(predictor, model), rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_unchanged_weights_reuse_the_kept_work(family: str, monkeypatch: pytest.MonkeyPatch):
    model, _ = models(family)
    calls = []
    prepare = model.prepare_decoder
    monkeypatch.setattr(model, "prepare_decoder", lambda features: calls.append(1) or prepare(features))
    predictor = predictor_for(model)
    predictor.set_image(IMAGE)
    for _ in range(3):
        predictor.predict(**CLICK)
    assert len(calls) == 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_model_converted_after_set_image_asks_for_the_image_again(family: str):
    model, _ = models(family)
    predictor = predictor_for(model)
    predictor.set_image(IMAGE)
    model.to(torch.bfloat16)
    with pytest.raises(InvalidInput, match=r"now torch.bfloat16 .* call set_image\(\)"):
        predictor.predict(**CLICK)
    predictor.set_image(IMAGE)
    assert predictor.predict(**CLICK).masks.shape == (1, 3, *IMAGE.shape[:2])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_an_empty_image_is_refused_clearly(family: str):
    model, _ = models(family)
    with pytest.raises(InvalidInput, match="image size must be positive, got 10x0"):
        predictor_for(model).set_image(np.zeros((0, 10, 3), np.uint8))
