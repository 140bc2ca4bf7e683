"""Each Label Studio project is served by its own model: Extra params, then the per-project setting, then the default."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from backend.api.errors import InvalidInput
from sam_plugin.label_config import EXAMPLE_CONFIG
from sam_plugin.settings import PluginSettings
from tests.sam_plugin.fakes import LS_URL, FakeSession, ScriptedSamClient, png_bytes
from tests.sam_plugin.test_blueprint import TASK, keypoint

SAM2 = "sam2.1_hiera_t"


@pytest.fixture(autouse=True)
def _served(sam_client: ScriptedSamClient, fake_session: FakeSession) -> None:
    sam_client.served = ["scripted", SAM2, "vit_h"]
    fake_session.add(f"{LS_URL}/data/upload/1/pic.png", png_bytes(64, 40))


def _setup(http: Any, project: str, extra_params: Any = None) -> Any:
    body = {"project": project, "schema": EXAMPLE_CONFIG, "hostname": LS_URL, "access_token": "t"}
    if extra_params is not None:
        body["extra_params"] = extra_params
    return http.post("/ls/setup", json=body)


def _click(http: Any, project: str) -> Any:
    body = {
        "tasks": [TASK],
        "project": project,
        "label_config": EXAMPLE_CONFIG,
        "params": {"context": {"result": [keypoint(25.0, 50.0)]}},
    }
    return http.post("/ls/predict", json=body)


def test_extra_params_choose_the_projects_model_for_its_version_and_its_clicks(http, sam_client):
    setup = _setup(http, "4.1700000000", {"model": SAM2})
    assert setup.status_code == 200 and setup.get_json()["model_version"] == f"sam-{SAM2}"
    answer = _click(http, "4.1700000000")
    assert answer.status_code == 200 and answer.get_json()["results"][0]["model_version"] == f"sam-{SAM2}"
    assert sam_client.calls[-1]["model"] == SAM2
    other = _click(http, "5.1700000000")  # a project without its own model: the server's default
    assert other.get_json()["results"][0]["model_version"] == "sam-scripted"
    assert sam_client.calls[-1]["model"] is None


def test_extra_params_sent_as_json_text_are_read_too(http):
    setup = _setup(http, "6.1700000000", '{"model": "vit_h"}')
    assert setup.get_json()["model_version"] == "sam-vit_h"


def test_the_per_project_setting_and_the_default_apply_without_extra_params(app, runtime, http, sam_client):
    runtime.settings = replace(runtime.settings, model="vit_h", project_models={"7": SAM2})
    assert _setup(http, "7.1700000000").get_json()["model_version"] == f"sam-{SAM2}"
    assert _setup(http, "8.1700000000").get_json()["model_version"] == "sam-vit_h"
    _click(http, "8.1700000000")
    assert sam_client.calls[-1]["model"] == "vit_h"


def test_a_model_the_server_does_not_serve_is_a_clear_error_at_setup(http):
    answer = _setup(http, "9.1700000000", {"model": "sam2.1_hiera_l"})
    assert answer.status_code == 400
    detail = answer.get_json()["detail"]
    assert "'sam2.1_hiera_l'" in detail and SAM2 in detail and "--model sam2.1_hiera_l" in detail


def test_batch_preannotation_runs_segment_everything_with_the_projects_model(http, sam_client):
    _setup(http, "4.1700000000", {"model": SAM2})
    body = {"tasks": [TASK], "project": "4.1700000000", "label_config": EXAMPLE_CONFIG, "params": {}}
    assert http.post("/ls/predict", json=body).status_code == 200
    assert sam_client.automask_models == [SAM2]


def test_project_models_setting_is_read_from_the_environment_and_checked():
    settings = PluginSettings.from_env({"SAM_PLUGIN_PROJECT_MODELS": "3=sam2.1_hiera_t, 7 = vit_h"})
    assert settings.project_models == {"3": SAM2, "7": "vit_h"}
    assert PluginSettings.from_env({"SAM_PLUGIN_MODEL": "vit_b"}).model == "vit_b"
    with pytest.raises(InvalidInput, match="project=model"):
        PluginSettings.from_env({"SAM_PLUGIN_PROJECT_MODELS": "3:sam2.1_hiera_t"})


def test_clearing_extra_params_returns_the_project_to_the_default_model(http, sam_client):
    assert _setup(http, "10.1700000000", {"model": SAM2}).get_json()["model_version"] == f"sam-{SAM2}"
    for cleared in ({}, None, "", {"model": ""}):
        _setup(http, "10.1700000000", {"model": SAM2})
        answer = _setup(http, "10.1700000000", cleared)
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["model_version"] == "sam-scripted", cleared
    _click(http, "10.1700000000")
    assert sam_client.calls[-1]["model"] is None


def _background_click(http: Any, project: str, x_pct: float = 60.0) -> Any:
    body = {
        "tasks": [TASK],
        "project": project,
        "label_config": EXAMPLE_CONFIG,
        "params": {"context": {"result": [keypoint(x_pct, 50.0, label="Background")]}},
    }
    return http.post("/ls/predict", json=body)


def test_an_object_refined_after_the_projects_model_changed_sends_no_mask_of_the_old_model(http, sam_client):
    project = "11.1700000000"
    _setup(http, project, {"model": SAM2})
    _click(http, project)
    assert _background_click(http, project).status_code == 200
    assert sam_client.calls[-1]["model"] == SAM2 and sam_client.calls[-1]["mask_input"] is not None

    _setup(http, project, {"model": "vit_h"})
    answer = _background_click(http, project, x_pct=70.0)
    assert answer.status_code == 200, answer.get_json()
    refined = sam_client.calls[-1]
    assert refined["model"] == "vit_h" and refined["mask_input"] is None
    assert refined["labels"] == [1, 0, 0], "the object's clicks carry over to the new model"


def test_versions_lists_every_served_model_the_default_first(http):
    assert http.get("/ls/versions").get_json() == {"versions": ["sam-scripted", f"sam-{SAM2}", "sam-vit_h"]}


def test_a_project_on_a_model_that_failed_to_load_is_refused_at_setup_with_the_reason(http, sam_client):
    real_models = sam_client.models

    def one_failed() -> list[dict[str, Any]]:
        entries = real_models()
        for entry in entries:
            if entry["name"] == SAM2:
                entry.update(ready=False, error="unsupported checkpoint layout", prompts=None)
        return entries

    sam_client.models = one_failed  # type: ignore[method-assign]
    answer = _setup(http, "12.1700000000", {"model": SAM2})
    assert answer.status_code == 503
    assert (
        "failed to load" in answer.get_json()["detail"]
        and "unsupported checkpoint layout" in answer.get_json()["detail"]
    )


def test_error_messages_name_models_served_from_files_by_their_whole_paths(http, sam_client, tmp_path):
    served_file = str(tmp_path / "checkpoints" / "tuned sam2.pt")  # under the temporary folder: a local path
    sam_client.served = ["scripted", served_file]
    answer = _setup(http, "13.1700000000", {"model": "sam2.1_hiera_l"})
    assert answer.status_code == 400
    assert served_file in answer.get_json()["detail"], "the name must be one the project can be set to"


@pytest.mark.parametrize(
    ("extra_params", "says"),
    [
        ({"modle": SAM2}, "unknown \"Extra params\" 'modle'"),
        ({"model": 5}, "must be a model name"),
        ([1], "must be a JSON object"),
    ],
)
def test_extra_params_that_would_be_ignored_are_refused_at_setup(http, extra_params, says):
    answer = _setup(http, "14.1700000000", extra_params)
    assert answer.status_code == 400 and says in answer.get_json()["detail"]


def test_versions_lists_the_served_models_when_the_plugins_default_is_not_served(runtime, http):
    runtime.settings = replace(runtime.settings, model="not-served")
    assert http.get("/ls/versions").get_json() == {"versions": ["sam-scripted", f"sam-{SAM2}", "sam-vit_h"]}
    runtime.settings = replace(runtime.settings, model="vit_h")
    assert http.get("/ls/versions").get_json()["versions"][0] == "sam-vit_h"


def test_a_refused_setup_leaves_the_project_on_its_model(http, sam_client):
    """Label Studio keeps the old Extra params when the connection check fails; so does the
    plugin (a refused 'vit_x' used to become the project's model, and every click a 400)."""
    assert _setup(http, "10.1700000000", {"model": SAM2}).status_code == 200
    assert _setup(http, "10.1700000000", {"model": "vit_x"}).status_code == 400
    answer = _click(http, "10.1700000000")
    assert answer.status_code == 200 and sam_client.calls[-1]["model"] == SAM2
