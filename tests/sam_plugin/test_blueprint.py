"""The ML backend protocol routes, against a scripted model server."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from flask import Flask

from backend.api.priority import Priority
from backend.formats.mask_codecs import from_brush_rle
from sam_plugin.blueprint import create_blueprint
from sam_plugin.label_config import EXAMPLE_CONFIG
from sam_plugin.settings import PluginSettings
from tests.sam_plugin.conftest import BASIC_AUTH
from tests.sam_plugin.fakes import LS_URL, FakeSession, ScriptedSamClient, png_bytes

W, H = 64, 40  # a non-square image
TASK = {"id": 11, "data": {"image": "/data/upload/1/pic.png"}}


@pytest.fixture(autouse=True)
def _image(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/upload/1/pic.png", png_bytes(W, H))


def keypoint(x_pct: float, y_pct: float, label: str = "Object", positive: bool = True) -> dict[str, Any]:
    return {
        "type": "keypointlabels",
        "from_name": "click",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "is_positive": positive,
        "value": {"x": x_pct, "y": y_pct, "keypointlabels": [label]},
    }


def rectangle(x: float, y: float, w: float, h: float) -> dict[str, Any]:
    return {
        "type": "rectanglelabels",
        "from_name": "box",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": ["Object"]},
    }


def predict(http: Any, context: dict | None, tasks: list | None = None) -> Any:
    body = {
        "tasks": tasks or [TASK],
        "project": "1.1700000000",
        "label_config": EXAMPLE_CONFIG,
        "params": {"login": None, "password": None, "context": context},
    }
    return http.post("/ls/predict", json=body)


def decoded(region: dict[str, Any]) -> np.ndarray:
    return from_brush_rle(region["value"]["rle"], region["original_height"], region["original_width"])


def test_setup_returns_the_model_version_quickly(http: Any) -> None:
    response = http.post(
        "/ls/setup",
        json={
            "project": "1.1700000000",
            "schema": EXAMPLE_CONFIG,
            "hostname": "http://localhost:8080",
            "access_token": "abc",
        },
    )
    assert response.status_code == 200
    assert response.get_json() == {"model_version": "sam-scripted"}


def test_setup_reports_a_config_without_the_needed_tags(http: Any) -> None:
    response = http.post(
        "/ls/setup", json={"project": "1.1", "schema": '<View><Image name="i" value="$i"/></View>'}
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_input" and "BrushLabels" in body["detail"]
    assert "BrushLabels" in response.status  # the reason phrase, which Label Studio shows


def test_setup_answers_within_3_s_when_the_model_server_hangs(
    sam_client: ScriptedSamClient, monkeypatch: pytest.MonkeyPatch, http: Any
) -> None:
    monkeypatch.setattr(sam_client, "models", lambda: time.sleep(5) or [])
    start = time.perf_counter()
    response = http.post("/ls/setup", json={"project": "1.1", "schema": EXAMPLE_CONFIG})
    assert time.perf_counter() - start < 3.0
    assert response.status_code == 503 and "did not answer" in response.get_json()["detail"]


def test_keypoint_gives_a_brush_mask_equal_to_the_model_servers(
    http: Any, sam_client: ScriptedSamClient
) -> None:
    response = predict(http, {"result": [keypoint(25.0, 50.0)]})
    assert response.status_code == 200
    [result] = response.get_json()["results"]
    [region] = result["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Object"]
    assert region["score"] == pytest.approx(0.9) and result["model_version"] == "sam-scripted"
    call = sam_client.calls[-1]
    assert sam_client.priorities == [Priority.INTERACTIVE]
    assert call["points"] == [[16.0, 20.0]] and call["labels"] == [1] and call["multimask"] is True
    [expected] = sam_client.predict(call["image_id"], points=[[16.0, 20.0]], labels=[1])
    np.testing.assert_array_equal(decoded(region), expected.best)


def test_two_boxes_give_two_regions(http: Any, sam_client: ScriptedSamClient) -> None:
    response = predict(http, {"result": [rectangle(0, 0, 25, 50), rectangle(50, 50, 50, 50)]})
    regions = response.get_json()["results"][0]["result"]
    assert len(regions) == 2
    assert sam_client.calls[-1]["boxes"] == [[0.0, 0.0, 16.0, 20.0], [32.0, 20.0, 64.0, 40.0]]
    for region, box in zip(regions, sam_client.calls[-1]["boxes"], strict=True):
        x1, y1, x2, y2 = (int(v) for v in box)
        expected = np.zeros((H, W), dtype=bool)
        expected[y1:y2, x1:x2] = True
        np.testing.assert_array_equal(decoded(region), expected)


def test_negative_point_is_sent_as_background(http: Any, sam_client: ScriptedSamClient) -> None:
    context = {"result": [keypoint(50, 50), keypoint(53, 50, label="Background", positive=True)]}
    region = predict(http, context).get_json()["results"][0]["result"][0]
    call = sam_client.calls[-1]
    assert call["labels"] == [1, 0] and call["multimask"] is False
    assert region["value"]["brushlabels"] == ["Object"]
    assert not decoded(region)[20, 33]  # carved out around the negative click at (33.9, 20)


def test_text_prompt_from_textarea(runtime: Any, sam_client: ScriptedSamClient) -> None:
    config = EXAMPLE_CONFIG.replace("</View>", '<TextArea name="prompt" toName="image"/></View>')
    app = Flask("t")
    app.register_blueprint(create_blueprint(sam_client, runtime=runtime))
    body = {
        "tasks": [TASK],
        "project": "1.1",
        "label_config": config,
        "params": {
            "context": {"result": [{"type": "textarea", "from_name": "prompt", "value": {"text": ["a dog"]}}]}
        },
    }
    response = app.test_client().post("/ls/predict", json=body, auth=BASIC_AUTH)
    assert response.status_code == 200
    assert sam_client.calls[-1]["text"] == "a dog"


def test_rotated_image_gives_a_clear_400(http: Any) -> None:
    item = keypoint(10, 10) | {"image_rotation": 90}
    response = predict(http, {"result": [item]})
    assert response.status_code == 400 and "rotate back to 0" in response.get_json()["detail"]


def test_batch_predictions_are_segment_everything_with_scores_and_version(
    http: Any, sam_client: ScriptedSamClient
) -> None:
    tasks = [TASK, {"id": 12, "data": {"image": "/data/upload/1/pic.png"}}]
    response = predict(http, None, tasks=tasks)
    assert sam_client.priorities == [Priority.BULK], "batch images wait behind the annotators' clicks"
    results = response.get_json()["results"]
    assert len(results) == 2
    for result in results:
        assert result["model_version"] == "sam-scripted"
        assert [r["score"] for r in result["result"]] == pytest.approx([0.95, 0.85])
        assert result["score"] == pytest.approx(0.9)
        left = decoded(result["result"][0])
        assert left[:, : W // 2].all() and not left[:, W // 2 :].any()


def test_text_preannotation_uses_one_prompt_per_label(runtime: Any, sam_client: ScriptedSamClient) -> None:
    runtime.settings = PluginSettings(**{**runtime.settings.__dict__, "preannotate": "text"})
    app = Flask("t")
    app.register_blueprint(create_blueprint(sam_client, runtime=runtime))
    body = {"tasks": [TASK], "project": "1.1", "label_config": EXAMPLE_CONFIG, "params": {}}
    result = app.test_client().post("/ls/predict", json=body, auth=BASIC_AUTH).get_json()["results"][0]
    assert [c["text"] for c in sam_client.calls] == ["Object"]
    assert result["result"][0]["meta"] == {"text": ["Object"]} and result["result"][0][
        "score"
    ] == pytest.approx(0.9)


def test_model_server_down_gives_503_then_recovers(http: Any, sam_client: ScriptedSamClient) -> None:
    sam_client.down = True
    response = predict(http, {"result": [keypoint(50, 50)]})
    assert response.status_code == 503
    assert "cannot reach the model server" in response.get_json()["detail"]
    assert "cannot reach the model server" in response.status
    sam_client.down = False
    assert predict(http, {"result": [keypoint(50, 50)]}).status_code == 200


@pytest.mark.parametrize("interactive", [True, False])
def test_model_server_that_forgot_the_image_gets_it_again(
    http: Any, sam_client: ScriptedSamClient, interactive: bool
) -> None:
    assert predict(http, {"result": [keypoint(50, 50)]}).status_code == 200  # image registered
    sam_client.forget_images = True
    # a background click: it refines the first click's object, whose logits the restarted server lost
    response = predict(http, {"result": [keypoint(55, 50, "Background")]} if interactive else None)
    assert response.status_code == 200 and response.get_json()["results"][0]["result"]
    assert len(sam_client.added) == 2  # registered once, then again after the 404
    if interactive:
        assert sam_client.calls[-1]["mask_input"] is None  # the lost logits are not sent again


def test_basic_auth_protects_every_route(runtime: Any, sam_client: ScriptedSamClient) -> None:
    runtime.settings = PluginSettings(basic_auth_user="ls", basic_auth_pass="pw")
    app = Flask("t")
    app.register_blueprint(create_blueprint(sam_client, runtime=runtime))
    client = app.test_client()
    assert client.get("/ls/health").status_code == 401
    assert client.post("/ls/setup", json={}).status_code == 401
    assert client.get("/ls/health", auth=("ls", "wrong")).status_code == 401
    assert client.get("/ls/health", auth=("ls", "pw")).status_code == 200


def test_health_root_versions_and_metrics(http: Any) -> None:
    assert http.get("/ls/health").get_json()["status"] == "UP"
    assert http.get("/ls/versions").get_json() == {"versions": ["sam-scripted"]}
    assert http.get("/ls/").get_json()["status"] == "UP"
    http.post("/ls/setup", json={"project": "1.1", "schema": EXAMPLE_CONFIG})
    text = http.get("/ls/metrics").get_data(as_text=True)
    assert 'sam_plugin_requests_total{route="setup",status="200"} 1.0' in text


def test_bad_json_is_a_400(http: Any) -> None:
    response = http.post("/ls/predict", data="nope", content_type="text/plain")
    assert response.status_code == 400 and "JSON object" in response.get_json()["detail"]


def test_reason_phrase_is_one_printable_ascii_line() -> None:
    from backend.api.errors import InvalidInput
    from sam_plugin.blueprint import error_response

    app = Flask("t")
    with app.app_context():
        response = error_response(InvalidInput("bad\nlabel «Katze»\x00 here"))
    assert response.status == "400 bad label ?Katze?? here"
    assert response.get_json()["detail"] == "bad\nlabel «Katze»\x00 here"
