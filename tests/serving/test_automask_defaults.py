"""Segment-everything thresholds come from the model's record when a request leaves them out."""

from __future__ import annotations

import pytest
import torch

from backend.api.answers import empty_automask_note
from backend.hub import META_AUTOMASK_DEFAULTS, MODELS, automask_defaults_for
from backend.serving.special_prompts import check_automask_params


def test_meta_models_keep_metas_thresholds() -> None:
    for name in ("vit_h", "vit_l", "vit_b", "vit_t"):
        assert MODELS[name].automask_defaults == {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}


def test_the_demo_model_has_its_own_calibrated_thresholds() -> None:
    assert MODELS["demo"].automask_defaults != META_AUTOMASK_DEFAULTS
    assert automask_defaults_for("demo") == MODELS["demo"].automask_defaults


def test_unreadable_paths_and_modules_get_metas_thresholds(tmp_path) -> None:
    assert automask_defaults_for("/models/my_sam.pth") == META_AUTOMASK_DEFAULTS
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    assert automask_defaults_for(tmp_path / "garbage.pt") == META_AUTOMASK_DEFAULTS
    assert automask_defaults_for(object()) == META_AUTOMASK_DEFAULTS


def test_a_checkpoint_path_gets_its_familys_thresholds_before_it_is_loaded(tmp_path) -> None:
    """A SAM 2.1 file given by path has SAM 2's generator thresholds (read from its keys,
    memory-mapped), a SAM file Meta's, a SAM 3 folder none (it has no segment-everything)."""
    from backend.hub.records import SAM2_1_AUTOMASK_DEFAULTS
    from backend.model import VIT_T, build_sam
    from backend.model.sam2 import build_sam2, sam2_config

    torch.save({"model": build_sam2(sam2_config("sam2.1_hiera_t")).state_dict()}, tmp_path / "sam2.pt")
    torch.save(build_sam(VIT_T).state_dict(), tmp_path / "mobile_sam.pt")
    assert automask_defaults_for(str(tmp_path / "sam2.pt")) == SAM2_1_AUTOMASK_DEFAULTS
    assert automask_defaults_for(tmp_path / "mobile_sam.pt") == META_AUTOMASK_DEFAULTS
    (tmp_path / "sam3").mkdir()
    assert automask_defaults_for(tmp_path / "sam3") == {}


def test_a_model_still_loading_lists_its_files_thresholds(tmp_path) -> None:
    """``GET /v1/models`` while a SAM 2.1 path loads: SAM 2's thresholds, not Meta's SAM 1 ones."""
    from backend.hub.records import SAM2_1_AUTOMASK_DEFAULTS
    from backend.model.sam2 import build_sam2, sam2_config
    from backend.serving.config import ServerConfig
    from backend.serving.model_host import ModelHost

    path = tmp_path / "fine_tuned_sam2.pt"
    torch.save({"model": build_sam2(sam2_config("sam2.1_hiera_t")).state_dict()}, path)
    host = ModelHost(str(path), ServerConfig(model=str(path), device="cpu", plugins=False))
    info = host.info()  # never loaded
    assert info["ready"] is False
    assert info["automask_defaults"] == SAM2_1_AUTOMASK_DEFAULTS


def test_absent_thresholds_take_the_models_and_given_ones_win() -> None:
    defaults = {"pred_iou_thresh": 0.6, "stability_score_thresh": 0.8}
    assert check_automask_params({}, defaults)["pred_iou_thresh"] == 0.6
    given = check_automask_params({"stability_score_thresh": 0.0}, defaults)
    assert given["stability_score_thresh"] == 0.0 and given["pred_iou_thresh"] == 0.6


@pytest.mark.parametrize(
    ("thresholds", "needles"),
    [
        (
            {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95},
            ["pred_iou_thresh 0.88", "pred_iou_thresh=0.68"],
        ),
        ({}, ["the model's default", "pred_iou_thresh=0.6"]),
    ],
)
def test_the_empty_answer_note_says_which_filters_and_how_to_lower_them(
    thresholds: dict, needles: list[str]
) -> None:
    note = empty_automask_note(thresholds)
    for needle in needles:
        assert needle in note


def test_an_automask_answer_with_no_mask_says_why(client, image_id) -> None:
    answer = client.post(
        "/v1/automask", json={"image_id": image_id, "points_per_side": 2, "pred_iou_thresh": 1.0}
    )
    assert answer.status_code == 200 and answer.json["records"] == []
    assert "pred_iou_thresh 1" in answer.json["note"] and "lower them" in answer.json["note"]


def test_the_models_route_lists_the_thresholds_in_force(client) -> None:
    [model] = client.get("/v1/models").json["models"]
    assert model["automask_defaults"] == META_AUTOMASK_DEFAULTS


@pytest.mark.slow
def test_default_automask_on_the_demo_model_finds_the_objects_of_generated_scenes() -> None:
    from backend.formats.mask_codecs import from_coco_rle
    from backend.serving.app import create_app
    from backend.serving.config import ServerConfig
    from backend.train.demo import heldout_scenes
    from tests.serving.tiny_model import png_bytes

    app = create_app(ServerConfig(model="demo", device="cpu"))
    service = app.extensions["sam_service"]
    assert service.wait_ready(120)
    client = app.test_client()
    found = total = 0
    scenes = heldout_scenes(4, first_seed=40_000_000)
    for index in range(len(scenes)):
        scene = scenes[index]
        image_id = client.post("/v1/images", data=png_bytes(scene.image)).json["image_id"]
        records = client.post("/v1/automask", json={"image_id": image_id}).json["records"]
        masks = [from_coco_rle(r["segmentation"]) for r in records]
        for target in scene.masks:
            ious = [(m & target).sum() / (m | target).sum() for m in masks]
            found += int(max(ious, default=0.0) >= 0.5)
            total += 1
    service.close()
    assert found >= 0.6 * total, f"default segment-everything found {found} of {total} objects"


def test_a_file_in_the_old_torch_format_and_an_unusable_name_are_handled(tmp_path) -> None:
    """A pre-1.6 (non-zip) file cannot be memory-mapped and is read whole; a name the file
    system refuses gets Meta's thresholds instead of an error."""
    from backend.hub.records import SAM2_1_AUTOMASK_DEFAULTS
    from backend.model.sam2 import build_sam2, sam2_config

    old = tmp_path / "old_format.pt"
    state = build_sam2(sam2_config("sam2.1_hiera_t")).state_dict()
    torch.save({"model": state}, old, _use_new_zipfile_serialization=False)
    assert automask_defaults_for(old) == SAM2_1_AUTOMASK_DEFAULTS
    assert automask_defaults_for("x" * 300 + ".pt") == META_AUTOMASK_DEFAULTS
