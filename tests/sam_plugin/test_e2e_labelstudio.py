"""End to end through Label Studio's API: a real Label Studio 1.23 talks to the model server's /ls plugin.

Label Studio and the model server are started once per session
(``tests/sam_plugin/labelstudio_env.py``). The tests drive Label Studio's API:
interactive requests (a click, two boxes, a negative click) whose brush masks
must equal, pixel for pixel, what the model server answers for the same
prompt in pixels; batch predictions stored with scores and the model version
(with the model's default segment-everything settings); an annotation whose
webhook makes ``fit()`` store it. A second model server with
``SAM_PREANNOTATE=concepts`` and a tiny random SAM 3 (chosen by the project's
Extra params) gives batch predictions with one region per instance of each
label, and a clear refusal on a project served by another model. What a person does on the labeling page is
tested in ``test_e2e_labelstudio_ui.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.client.http_client import SamClient
from backend.formats.mask_codecs import from_brush_rle
from backend.formats.scores import as_probability
from sam_plugin.label_config import EXAMPLE_CONFIG
from tests.sam_plugin.labelstudio_env import (
    CONCEPTS,
    CONCEPTS_CONFIG,
    REPO,
    SAM3_E2E,
    TOKEN,
    H,
    LabelStudio,
    W,
    shapes_png,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def project(label_studio: LabelStudio, model_server: str) -> dict[str, Any]:
    return label_studio.new_project("SAM e2e", EXAMPLE_CONFIG, shapes_png(), f"{model_server}/ls")


def _interactive(
    label_studio: LabelStudio, project: dict[str, Any], results: list[dict[str, Any]]
) -> list[dict]:
    answer = label_studio.call(
        "POST",
        f"/api/ml/{project['ml']}/interactive-annotating",
        json={"task": project["task"], "context": {"result": results}},
    )
    assert "errors" not in answer, answer
    return answer["data"]["result"]


def _keypoint(x_pct: float, y_pct: float, label: str = "Object", positive: bool = True) -> dict[str, Any]:
    return {
        "id": f"k{x_pct}",
        "type": "keypointlabels",
        "from_name": "click",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "is_positive": positive,
        "origin": "manual",
        "value": {"x": x_pct, "y": y_pct, "width": 0.5, "keypointlabels": [label]},
    }


def _rectangle(x: float, y: float, w: float, h: float) -> dict[str, Any]:
    return {
        "id": f"r{x}",
        "type": "rectanglelabels",
        "from_name": "box",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "origin": "manual",
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": ["Object"]},
    }


def _decode(region: dict[str, Any]) -> np.ndarray:
    assert region["type"] == "brushlabels" and region["value"]["format"] == "rle"
    return from_brush_rle(region["value"]["rle"], region["original_height"], region["original_width"])


def _server_masks(model_server: str, **prompt: Any) -> list[tuple[np.ndarray, float]]:
    """The model server's best mask and its score per object, for a prompt in pixels."""
    client = SamClient(model_server)
    image_id = client.add_image(shapes_png()).image_id
    return [(obj.best, float(obj.scores[0])) for obj in client.predict(image_id, **prompt)]


def test_click_gives_the_model_servers_mask(
    label_studio: LabelStudio, project: dict, model_server: str
) -> None:
    # 21.875 % of 320 = 70 px, 50 % of 200 = 100 px: exact in binary floating point
    [region] = _interactive(label_studio, project, [_keypoint(21.875, 50.0)])
    [(expected, score)] = _server_masks(model_server, points=[[70.0, 100.0]], labels=[1], multimask=True)
    np.testing.assert_array_equal(_decode(region), expected)
    assert region["value"]["brushlabels"] == ["Object"]
    assert region["score"] == pytest.approx(as_probability(score))


def test_two_boxes_give_the_model_servers_masks(
    label_studio: LabelStudio, project: dict, model_server: str
) -> None:
    boxes = [_rectangle(6.25, 12.5, 31.25, 50.0), _rectangle(43.75, 12.5, 31.25, 37.5)]
    regions = _interactive(label_studio, project, boxes)
    expected = _server_masks(
        model_server, boxes=[[20.0, 25.0, 120.0, 125.0], [140.0, 25.0, 240.0, 100.0]], multimask=False
    )
    assert len(regions) == 2
    for region, (mask, score) in zip(regions, expected, strict=True):
        np.testing.assert_array_equal(_decode(region), mask)
        assert region["score"] == pytest.approx(as_probability(score))


def test_negative_click_gives_the_model_servers_mask(
    label_studio: LabelStudio, project: dict, model_server: str
) -> None:
    clicks = [_keypoint(21.875, 50.0), _keypoint(62.5, 40.0, label="Background")]
    [region] = _interactive(label_studio, project, clicks)
    [(expected, score)] = _server_masks(
        model_server, points=[[70.0, 100.0], [200.0, 80.0]], labels=[1, 0], multimask=False
    )
    np.testing.assert_array_equal(_decode(region), expected)
    assert region["score"] == pytest.approx(as_probability(score))


def test_batch_predictions_are_stored_with_scores_and_model_version(
    label_studio: LabelStudio, project: dict
) -> None:
    label_studio.call(
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project["id"]},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    predictions = label_studio.call("GET", "/api/predictions", params={"task": project["task"]})
    assert predictions, "no prediction was stored"
    [prediction] = predictions
    assert prediction["model_version"] == project["model_version"] and prediction["model_version"].startswith(
        "sam-"
    )
    assert prediction["result"], "segment-everything returned no region"
    assert prediction["score"] is not None
    assert all(0.0 <= region["score"] <= 1.0 for region in prediction["result"])
    assert 0.0 <= prediction["score"] <= 1.0


def test_annotation_webhook_stores_it_for_training(
    label_studio: LabelStudio, e2e_workdir: Path, model_server: str
) -> None:
    # a project of its own: on the shared one, this click would refine the object of an earlier test
    project = label_studio.new_project("SAM e2e webhook", EXAMPLE_CONFIG, shapes_png(), f"{model_server}/ls")
    [region] = _interactive(label_studio, project, [_keypoint(21.875, 50.0)])
    annotation = label_studio.call(
        "POST", f"/api/tasks/{project['task']}/annotations", json={"result": [region]}
    )
    path = (
        e2e_workdir
        / "dataset"
        / "annotations"
        / f"project{project['id']}-task{project['task']}-annotation{annotation['id']}.json"
    )
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    record = json.loads(path.read_text())
    assert len(record["masks"]) == 1 and (record["width"], record["height"]) == (W, H)
    assert record["masks"][0]["prompts"]["points"] == [[70.0, 100.0]]
    assert (e2e_workdir / "dataset" / record["image"]).exists()


def test_precompute_command_registers_every_task_image(
    label_studio: LabelStudio, project: dict, model_server: str
) -> None:
    command = [
        sys.executable,
        "-m",
        "sam_plugin.cli",
        "precompute",
        "--project",
        str(project["id"]),
        "--model-server",
        model_server,
        "--label-studio-url",
        label_studio.url,
        "--api-key",
        TOKEN,
        "--no-progress",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 embeddings computed, 0 tasks failed" in done.stdout


def _retrieve_predictions(label_studio: LabelStudio, project: dict[str, Any]) -> list[dict[str, Any]]:
    """Data Manager -> all tasks -> Retrieve Predictions; the task's stored predictions."""
    label_studio.call(
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project["id"]},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    return label_studio.call("GET", "/api/predictions", params={"task": project["task"]})


def test_concepts_mode_stores_one_region_per_sam3_instance_with_its_label_and_score(
    label_studio: LabelStudio, concepts_server: str
) -> None:
    project = label_studio.new_project(
        "SAM 3 concepts",
        CONCEPTS_CONFIG,
        shapes_png(),
        f"{concepts_server}/ls",
        extra_params={"model": SAM3_E2E},
    )
    assert project["model_version"] == f"sam-{SAM3_E2E}"
    [prediction] = _retrieve_predictions(label_studio, project)
    assert prediction["model_version"] == project["model_version"]
    regions = prediction["result"]
    scores = [region["score"] for region in regions]
    assert scores == sorted(scores, reverse=True)
    assert prediction["score"] == pytest.approx(float(np.mean(scores)))
    client = SamClient(concepts_server)
    image_id = client.add_image(shapes_png(), model=SAM3_E2E).image_id
    for label, setting in CONCEPTS.items():
        text = str(setting.get("prompt", label))
        objects = client.predict(image_id, text=text, threshold=setting["threshold"], model=SAM3_E2E)
        instances = [(o.best, as_probability(float(o.scores[0]))) for o in objects if o.best.any()]
        stored = [r for r in regions if r["value"]["brushlabels"] == [label]]
        assert len(stored) == len(instances) > 0, label
        for region, (mask, score) in zip(stored, instances, strict=True):
            np.testing.assert_array_equal(_decode(region), mask)
            assert region["score"] == pytest.approx(score) and region["meta"] == {"text": [text]}


def test_concepts_mode_on_a_project_without_sam3_stores_nothing_and_says_to_pick_sam3(
    label_studio: LabelStudio, concepts_server: str, e2e_workdir: Path
) -> None:
    project = label_studio.new_project(
        "SAM concepts, no SAM 3", CONCEPTS_CONFIG, shapes_png(), f"{concepts_server}/ls"
    )
    assert project["model_version"] != f"sam-{SAM3_E2E}"  # the server's default model
    assert _retrieve_predictions(label_studio, project) == []
    # Label Studio logs the status line of the refused call: the plugin's message
    log = (e2e_workdir / "label-studio.log").read_text()
    assert "400 Client Error: SAM_PREANNOTATE=concepts needs a SAM 3 model" in log
    assert "pick a SAM 3 model for the project" in log
