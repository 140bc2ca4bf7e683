"""SamLabelStudioModel.fit(): accepted brush masks and their prompts reach the dataset folder."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from backend.formats.mask_codecs import from_coco_rle, to_brush_rle
from sam_plugin.label_config import EXAMPLE_CONFIG
from sam_plugin.model import SamLabelStudioModel
from sam_plugin.runtime import PluginRuntime
from tests.sam_plugin.fakes import LS_URL, FakeSession, png_bytes

W, H = 48, 32
TASK = {"id": 5, "data": {"image": "/data/upload/2/x.png"}}


@pytest.fixture(autouse=True)
def _image(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/upload/2/x.png", png_bytes(W, H, seed=3))


def brush(mask: np.ndarray, label: str = "Object") -> dict[str, Any]:
    return {
        "id": "r1",
        "type": "brushlabels",
        "from_name": "mask",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": {"format": "rle", "rle": to_brush_rle(mask), "brushlabels": [label]},
    }


def webhook(result: list[dict[str, Any]], annotation_id: int = 9) -> dict[str, Any]:
    return {
        "annotation": {"id": annotation_id, "result": result, "task": TASK["id"]},
        "task": TASK,
        "project": {"id": 2, "label_config": EXAMPLE_CONFIG},
    }


def test_fit_stores_the_mask_returned_interactively_with_its_prompt(runtime: PluginRuntime) -> None:
    model = SamLabelStudioModel("2", EXAMPLE_CONFIG, runtime=runtime)
    click = {
        "type": "keypointlabels",
        "from_name": "click",
        "value": {"x": 50, "y": 50, "keypointlabels": ["Object"]},
    }
    returned = model.predict([TASK], context={"result": [click]})[0]["result"][0]
    out = model.fit("ANNOTATION_CREATED", webhook([returned]))
    assert out["masks"] == 1
    record = json.loads(
        (runtime.settings.dataset_dir / "annotations" / "project2-task5-annotation9.json").read_text()
    )
    assert record["masks"][0]["prompts"]["points"] == [[24.0, 16.0]]
    assert record["masks"][0]["label"] == "Object"
    mask = from_coco_rle(record["masks"][0]["rle"])
    assert mask[16, 24] and mask.shape == (H, W)


def test_fit_on_update_keeps_one_file_and_reads_prompts_kept_in_the_annotation(
    runtime: PluginRuntime,
) -> None:
    model = SamLabelStudioModel("2", EXAMPLE_CONFIG, runtime=runtime)
    mask = np.zeros((H, W), dtype=bool)
    mask[4:10, 4:10] = True
    box = {
        "type": "rectanglelabels",
        "from_name": "box",
        "value": {"x": 0, "y": 0, "width": 50, "height": 50, "rectanglelabels": ["Object"]},
    }
    model.fit("ANNOTATION_CREATED", webhook([brush(mask)]))
    model.fit("ANNOTATION_UPDATED", webhook([brush(mask), box]))
    files = list((runtime.settings.dataset_dir / "annotations").glob("*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["masks"][0]["prompts"]["boxes"] == [[0.0, 0.0, 24.0, 16.0]]


def test_fit_ignores_other_events_and_deletes_on_annotation_deleted(runtime: PluginRuntime) -> None:
    model = SamLabelStudioModel("2", EXAMPLE_CONFIG, runtime=runtime)
    assert "skipped" in model.fit("PROJECT_UPDATED", {})
    mask = np.ones((H, W), dtype=bool)
    model.fit("ANNOTATION_CREATED", webhook([brush(mask)]))
    assert model.fit("ANNOTATION_DELETED", webhook([]))["deleted"] is True


def test_webhook_route_runs_fit(http: Any, runtime: PluginRuntime) -> None:
    mask = np.zeros((H, W), dtype=bool)
    mask[1:5, 1:5] = True
    response = http.post("/ls/webhook", json={"action": "ANNOTATION_CREATED", **webhook([brush(mask)])})
    assert response.status_code == 201 and response.get_json()["result"]["masks"] == 1
    assert (runtime.settings.dataset_dir / "annotations" / "project2-task5-annotation9.json").exists()


def test_webhook_route_acknowledges_other_events(http: Any) -> None:
    response = http.post("/ls/webhook", json={"action": "TASKS_CREATED", "tasks": [{"id": 1}]})
    assert response.status_code == 200 and response.get_json() == {"status": "Unknown event"}
