"""What Label Studio 1.23 really sends: its plural webhook events, edges a float hair outside
the image, one unusable task among several, and empty answers."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from backend.api.errors import InvalidInput
from backend.formats.coordinates import ls_percent_to_pixels, ls_rect_to_box
from backend.formats.mask_codecs import from_brush_rle
from sam_plugin.label_config import EXAMPLE_CONFIG
from sam_plugin.model import SamLabelStudioModel
from sam_plugin.runtime import PluginRuntime
from tests.sam_plugin.fakes import LS_URL, FakeSession, ScriptedSamClient, png_bytes
from tests.sam_plugin.test_plugin_model import TASK, H, W, brush, webhook


@pytest.fixture(autouse=True)
def _images(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/upload/2/x.png", png_bytes(W, H, seed=3))
    fake_session.add(f"{LS_URL}/data/upload/2/y.png", png_bytes(W, H, seed=4))


def _model(runtime: PluginRuntime) -> SamLabelStudioModel:
    return SamLabelStudioModel("2", EXAMPLE_CONFIG, runtime=runtime)


def _stored(runtime: PluginRuntime) -> list[str]:
    folder = runtime.settings.dataset_dir / "annotations"
    return sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []


def test_annotations_deleted_by_id_alone_remove_their_files(runtime: PluginRuntime, http: Any) -> None:
    """Label Studio's deletion webhook is ANNOTATIONS_DELETED with ids and no task."""
    mask = np.zeros((H, W), dtype=bool)
    mask[2:9, 3:12] = True
    _model(runtime).fit("ANNOTATION_CREATED", webhook([brush(mask)], annotation_id=55))
    _model(runtime).fit("ANNOTATION_CREATED", webhook([brush(mask)], annotation_id=56))
    body = {
        "action": "ANNOTATIONS_DELETED",
        "annotations": [{"id": 55}],
        "project": {"id": 2, "label_config": EXAMPLE_CONFIG},
    }
    answer = http.post("/ls/webhook", json=body)
    assert answer.status_code == 201 and answer.get_json()["result"] == {"deleted": 1}
    assert _stored(runtime) == ["project2-task5-annotation56.json"]


def test_annotations_created_together_are_each_stored(runtime: PluginRuntime, http: Any) -> None:
    """ "Create Annotations From Predictions" sends ANNOTATIONS_CREATED with lists."""
    mask = np.zeros((H, W), dtype=bool)
    mask[4:10, 4:10] = True
    other = {"id": 6, "data": {"image": "/data/upload/2/y.png"}}
    annotations = [
        {"id": 70, "result": [brush(mask)], "task": 5},
        {"id": 71, "result": [brush(mask)], "task": 6},
    ]
    body = {
        "action": "ANNOTATIONS_CREATED",
        "annotation": annotations,
        "task": [TASK, other],
        "project": {"id": 2, "label_config": EXAMPLE_CONFIG},
    }
    answer = http.post("/ls/webhook", json=body)
    assert answer.status_code == 201, answer.get_json()
    assert [s["masks"] for s in answer.get_json()["result"]["stored"]] == [1, 1]
    assert _stored(runtime) == ["project2-task5-annotation70.json", "project2-task6-annotation71.json"]
    record = json.loads(
        (runtime.settings.dataset_dir / "annotations" / "project2-task6-annotation71.json").read_text()
    )
    assert (record["width"], record["height"]) == (W, H)


def test_a_corrupt_brush_rle_is_a_400_not_a_500() -> None:
    header = (W * H * 4).to_bytes(4, "big")
    with pytest.raises(InvalidInput, match="invalid brush RLE"):
        from_brush_rle([*header, *([255] * 8)], H, W)


@pytest.mark.parametrize("width", [641, 1000, 1920, 4032])
def test_an_edge_a_float_hair_past_100_percent_is_the_image_edge(width: int) -> None:
    """Label Studio's x + width of a box reaching the right edge can be 100.00000000000001%."""
    edges = [x for x in range(width) if (x / width * 100) + ((width - x) / width * 100) > 100.0]
    assert edges, "this width has such edges"
    x = edges[0]
    box = ls_rect_to_box(x / width * 100, 0.0, (width - x) / width * 100, 50.0, width, 300)
    assert box[2] == width and box[0] == pytest.approx(x)
    assert ls_percent_to_pixels(100.0000000001, -1e-9, width, 300) == (width, 0.0)
    assert ls_percent_to_pixels(101.0, 50.0, width, 300)[0] > width, "a real overshoot stays, to be refused"


def test_an_empty_mask_is_refused_as_for_polygons_not_suggested(
    runtime: PluginRuntime, sam_client: ScriptedSamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sam_client, "_mask", lambda h, w, *args: np.zeros((h, w), dtype=bool))
    click = {
        "type": "keypointlabels",
        "from_name": "click",
        "value": {"x": 99, "y": 99, "keypointlabels": ["Object"]},
    }
    with pytest.raises(InvalidInput, match="found no mask"):
        _model(runtime).predict([TASK], context={"result": [click]})


def test_one_task_whose_image_fails_costs_only_its_own_prediction(runtime: PluginRuntime, http: Any) -> None:
    """Label Studio stores no prediction at all when the batch answer is an error."""
    missing = {"id": 7, "data": {"image": "/data/upload/2/gone.png"}}
    no_url = {"id": 8, "data": {}}
    body = {"tasks": [TASK, missing, no_url], "project": "2.1", "label_config": EXAMPLE_CONFIG, "params": {}}
    answer = http.post("/ls/predict", json=body)
    assert answer.status_code == 200, answer.get_json()
    first, gone, empty = answer.get_json()["results"]
    assert "result" in first
    assert "result" not in gone and gone["error"].startswith("task 7: cannot download the task image")
    assert gone["code"] == "image_fetch_failed"
    assert "result" not in empty and "no image URL" in empty["error"]
