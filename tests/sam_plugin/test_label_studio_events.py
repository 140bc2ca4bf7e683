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


def test_tasks_deleted_take_their_annotations_and_an_empty_deletion_is_skipped(
    runtime: PluginRuntime, http: Any
) -> None:
    mask = np.zeros((H, W), dtype=bool)
    mask[2:9, 3:12] = True
    _model(runtime).fit("ANNOTATION_CREATED", webhook([brush(mask)], annotation_id=80))
    project = {"id": 2, "label_config": EXAMPLE_CONFIG}
    draft = http.post("/ls/webhook", json={"action": "ANNOTATIONS_DELETED", "project": project})
    assert draft.status_code == 201 and "skipped" in draft.get_json()["result"]
    gone = http.post(
        "/ls/webhook", json={"action": "TASKS_DELETED", "tasks": [{"id": 5}], "project": project}
    )
    assert gone.status_code == 201 and gone.get_json()["result"] == {"deleted": 1}
    assert _stored(runtime) == []


def test_deletion_by_id_matches_ids_whole(runtime: PluginRuntime) -> None:
    from sam_plugin.dataset_writer import DatasetWriter

    folder = runtime.settings.dataset_dir / "annotations"
    folder.mkdir(parents=True)
    names = [
        "project2-task5-annotation55",
        "project2-task5-annotation155",
        "project22-task5-annotation55",
        "project2-taskx-annotation7-annotation55",
    ]  # the last: an id holding '-annotation55'
    for name in names:
        (folder / f"{name}.json").write_text("{}")
    assert DatasetWriter(runtime.settings.dataset_dir).delete_annotation(2, 55) == 1
    assert _stored(runtime) == sorted(f"{n}.json" for n in names[1:])


def test_one_bad_annotation_among_those_created_together_costs_only_itself(runtime: PluginRuntime) -> None:
    mask = np.zeros((H, W), dtype=bool)
    mask[4:10, 4:10] = True
    bad = brush(mask)
    bad["value"] = {**bad["value"], "rle": [0, 0, 0, 1, 255]}
    annotations = [{"id": 90, "result": [bad], "task": 5}, {"id": 91, "result": [brush(mask)], "task": 5}]
    stored = _model(runtime).fit("ANNOTATIONS_CREATED", {"annotation": annotations, "task": [TASK, TASK]})[
        "stored"
    ]
    assert stored[0]["error"].startswith("annotation 90: ") and stored[1]["masks"] == 1
    assert _stored(runtime) == ["project2-task5-annotation91.json"]


def test_tasks_not_started_within_the_batch_time_get_an_answer_to_retry_later(
    runtime: PluginRuntime, http: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Label Studio waits 100 s and then stores nothing: what is done by then is answered."""
    import sam_plugin.model as model_module

    clock = iter([0.0, 0.0, 1000.0])  # the deadline, task 5 starts, task 6 would start too late
    monkeypatch.setattr(model_module.time, "monotonic", lambda: next(clock, 1000.0))
    other = {"id": 6, "data": {"image": "/data/upload/2/y.png"}}
    body = {"tasks": [TASK, other], "project": "2.1", "label_config": EXAMPLE_CONFIG, "params": {}}
    first, late = http.post("/ls/predict", json=body).get_json()["results"]
    assert "result" in first
    assert (
        "result" not in late
        and late["code"] == "batch_deadline"
        and "Retrieve Predictions again" in late["error"]
    )


def test_label_studio_refusing_the_key_fails_the_batch_not_each_task(
    runtime: PluginRuntime, http: Any, fake_session: FakeSession
) -> None:
    fake_session.add(f"{LS_URL}/data/upload/2/x.png", b"", status=401)
    body = {"tasks": [TASK], "project": "2.1", "label_config": EXAMPLE_CONFIG, "params": {}}
    answer = http.post("/ls/predict", json=body)
    assert answer.status_code == 502 and answer.get_json()["error"] == "label_studio_refused"
    assert "LABEL_STUDIO_API_KEY" in answer.get_json()["detail"]
