"""load_sam3: a local folder round trip, the shared backbone, strict keys, and the offline message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.api.errors import InvalidInput, WeightsUnavailable
from backend.api.prompt_kinds import CLICK_PROMPT_KINDS, CONCEPT_PROMPT_KINDS
from backend.inference.sam3 import SAM3, load_sam3
from tests.inference.sam3.tiny_sam3 import save_tiny_sam3

ROOT = Path(__file__).resolve().parents[3]


def test_hub_layout_folder_loads_both_heads_with_the_saved_weights(sam3_folder, sam3_models):
    source = save_tiny_sam3(sam3_folder.parent / "again", seed=0)  # same seed: same weights
    detector = sam3_models.detector.state_dict()
    for key, value in source.detector_model.state_dict().items():
        assert torch.equal(detector[key], value), key
    tracker = sam3_models.tracker.state_dict()
    for key, value in source.tracker_neck.state_dict().items():
        assert torch.equal(tracker[f"vision_encoder.neck.{key}"], value), key
    for key, value in source.tracker_model.state_dict().items():
        if key in tracker:  # the video model's memory modules are not the image tracker's
            assert torch.equal(tracker[key], value), key
    assert not sam3_models.detector.training and not sam3_models.tracker.training
    assert sam3_models.source == str(sam3_folder)


def test_the_two_heads_share_one_backbone(sam3_models):
    assert sam3_models.tracker.vision_encoder.backbone is sam3_models.detector.vision_encoder.backbone


def test_accepted_prompts_follow_the_loaded_heads(sam3_models):
    assert sam3_models.accepted_prompts == CONCEPT_PROMPT_KINDS + CLICK_PROMPT_KINDS
    assert set(sam3_models.accepted_prompts) == set(SAM3.prompt_kinds)


def test_detector_only_folder_takes_concepts_only(sam3_models, tmp_path):
    sam3_models.detector.save_pretrained(tmp_path)
    sam3_models.processor.save_pretrained(tmp_path)
    models = load_sam3(tmp_path)
    assert models.tracker is None and models.tracker_processor is None
    assert models.accepted_prompts == CONCEPT_PROMPT_KINDS
    for key, value in sam3_models.detector.state_dict().items():
        assert torch.equal(models.detector.state_dict()[key], value), key


def test_interactive_false_skips_the_tracker(sam3_folder):
    assert load_sam3(sam3_folder, interactive=False).tracker is None


def test_dtype_is_applied(sam3_folder):
    models = load_sam3(sam3_folder, dtype="bfloat16", interactive=False)
    assert models.dtype == torch.bfloat16


def test_weights_that_do_not_fit_are_listed(sam3_models, tmp_path):
    sam3_models.detector.config.save_pretrained(tmp_path)
    sam3_models.processor.save_pretrained(tmp_path)
    from safetensors.torch import save_file

    state = {
        k: v.contiguous() for k, v in sam3_models.detector.state_dict().items() if "mask_decoder" not in k
    }
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(InvalidInput, match="missing keys .*mask_decoder"):
        load_sam3(tmp_path)


@pytest.mark.parametrize("source", ["/no/such/folder", "./missing", "not a repo id"])
def test_missing_folder_or_malformed_id_says_what_to_give(source):
    with pytest.raises(InvalidInput, match="save_pretrained layout"):
        load_sam3(source)


def test_folder_without_a_model_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="not a SAM 3 folder"):
        load_sam3(tmp_path)


def test_bad_dtype():
    with pytest.raises(InvalidInput, match="dtype"):
        load_sam3(SAM3.hub_repo, dtype="int8")


@pytest.mark.slow
def test_offline_without_cache_says_how_to_get_the_weights(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_TOKEN", None)
    code = (
        "from backend.api.errors import WeightsUnavailable\n"
        "from backend.inference.sam3 import load_sam3\n"
        "try:\n    load_sam3('facebook/sam3')\n"
        "except WeightsUnavailable as error:\n    print(error.code, error.status, error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    message = out.stdout
    assert message.startswith(f"{WeightsUnavailable.code} 503 ")
    for needed in ("huggingface.co/facebook/sam3", "HF_TOKEN", "save_pretrained", "HF_HUB_OFFLINE is set"):
        assert needed in message, message
    assert str(tmp_path / "hf") in message  # the cache it looked in
