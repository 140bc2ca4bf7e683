"""A model built or loaded under ``torch.inference_mode()`` (its parameters then inference
tensors, which have no version counter) predicts as the same model made normally does."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.hub import load_model
from backend.inference.families import predictor_for
from backend.model import build_sam
from backend.model.sam2 import build_sam2, sam2_config
from tests.model.test_equivalence import tiny_tinyvit_config
from tests.support.reference import tiny_vit_config
from tests.support.tiny_sam2 import save_tiny_sam2

BUILDERS: dict[str, Callable[[], torch.nn.Module]] = {
    "SAM (ViT)": lambda: build_sam(tiny_vit_config()),
    "MobileSAM (TinyViT)": lambda: build_sam(tiny_tinyvit_config()),
    "SAM 2.1": lambda: build_sam2(sam2_config("sam2.1_hiera_t", image_size=256)),
}

IMAGE = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)


def masks_and_scores(model: torch.nn.Module, *, in_inference_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """One click's candidates on :data:`IMAGE`, the predictor called inside inference mode or not."""
    predictor = predictor_for(model)
    with torch.inference_mode() if in_inference_mode else contextlib.nullcontext():
        predictor.set_image(IMAGE)
        out = predictor.predict(point_coords=[[40, 30]], point_labels=[1])
    return out.masks, out.scores


@pytest.mark.parametrize("family", list(BUILDERS))
@pytest.mark.parametrize(
    "in_inference_mode", [False, True], ids=["called normally", "called in inference mode"]
)
def test_a_model_built_in_inference_mode_gives_the_normal_models_masks(family: str, in_inference_mode: bool):
    torch.manual_seed(0)
    normal = BUILDERS[family]().eval()
    with torch.inference_mode():
        made_there = BUILDERS[family]().eval()
        made_there.load_state_dict(normal.state_dict())
    assert next(made_there.parameters()).is_inference()

    masks, scores = masks_and_scores(made_there, in_inference_mode=in_inference_mode)
    expected_masks, expected_scores = masks_and_scores(normal, in_inference_mode=in_inference_mode)
    np.testing.assert_array_equal(masks, expected_masks)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)


def test_a_sam2_checkpoint_loaded_in_inference_mode_serves_clicks(tmp_path: Path):
    checkpoint = save_tiny_sam2(tmp_path / "tiny_sam2.pt")
    with torch.inference_mode():
        made_there = load_model(checkpoint, dtype="bfloat16")
    normal = load_model(checkpoint, dtype="bfloat16")

    masks, scores = masks_and_scores(made_there, in_inference_mode=False)
    expected_masks, expected_scores = masks_and_scores(normal, in_inference_mode=False)
    np.testing.assert_array_equal(masks, expected_masks)
    np.testing.assert_array_equal(scores, expected_scores)


def test_new_weights_loaded_in_inference_mode_are_used_by_the_next_encoding():
    """The position embedding is memoised; weights copied in place under inference mode
    (no version counter to see it) still replace it."""
    torch.manual_seed(0)
    first, second = BUILDERS["SAM 2.1"]().eval(), BUILDERS["SAM 2.1"]().eval()
    with torch.no_grad():  # built as zeros: make the two models' embeddings differ
        for model in (first, second):
            model.image_encoder.trunk.pos_embed.normal_()
            model.image_encoder.trunk.pos_embed_window.normal_()
    x = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        model = BUILDERS["SAM 2.1"]().eval()
        model.load_state_dict(first.state_dict())
        model.encode_image(x)
        model.load_state_dict(second.state_dict())
        got = model.encode_image(x).image_embed
        expected = second.encode_image(x).image_embed
        assert not torch.equal(expected, first.encode_image(x).image_embed)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
