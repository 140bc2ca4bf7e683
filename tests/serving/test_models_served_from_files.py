"""Models served from checkpoint files are named by their paths: every message that names a
served model gives the name as ``GET /v1/models`` does, so that it can be sent back; a file
that failed to load says why in ``GET /v1/models``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from backend.serving.app import create_app
from tests.serving.tiny_model import make_config, picture, png_bytes
from tests.support.tiny_sam2 import save_tiny_sam2


@pytest.fixture(scope="module")
def served_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str, str, str]]:
    """A server of the tiny SAM 2.1 from a plain path, from a long path with spaces (over 256
    characters), and from a file that is not a checkpoint."""
    root = tmp_path_factory.mktemp("served")  # under the system's temporary folder
    plain = save_tiny_sam2(root / "tiny_sam2.pt")
    deep = root / ("folder with spaces " + "d" * 100) / ("e" * 100)
    deep.mkdir(parents=True)
    long_name = deep / "tiny sam2 copy.pt"
    long_name.write_bytes(plain.read_bytes())
    broken = root / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    names = (str(plain), str(long_name), str(broken))
    app = create_app(make_config(names[0], extra_models=names[1:], cache_mb=64))
    assert app.extensions["sam_service"].wait_ready(120)
    yield app, *names
    app.extensions["sam_service"].close()


def _predict(app: Flask, model: str) -> tuple[int, dict]:
    client = app.test_client()
    upload = client.post("/v1/images", data=png_bytes(picture()), query_string={"model": model})
    assert upload.status_code == 200, upload.json
    body = {"image_id": upload.json["image_id"], "points": [[10, 12]], "labels": [1], "model": model}
    answer = client.post("/v1/predict", json=body)
    return answer.status_code, answer.json


def test_the_404_for_an_unknown_model_lists_names_that_are_accepted_back(served_files):
    app, plain, long_name, _ = served_files
    assert len(long_name) > 256
    body = {"image_id": "x", "points": [[1, 1]], "labels": [1], "model": "nope"}
    unknown = app.test_client().post("/v1/predict", json=body)
    assert unknown.status_code == 404
    assert repr(plain) in unknown.json["detail"] and repr(long_name) in unknown.json["detail"]

    for name in (plain, long_name):
        status, answer = _predict(app, name)
        assert status == 200, answer
        assert answer["model"] == name


def test_a_model_that_failed_to_load_says_why_in_the_models_list(served_files):
    app, _, _, broken = served_files
    entries = {m["name"]: m for m in app.test_client().get("/v1/models").json["models"]}
    assert entries[broken]["ready"] is False and entries[broken]["error"]
    assert all("error" not in entry for name, entry in entries.items() if name != broken)
    answer = app.test_client().post("/v1/images", data=png_bytes(picture()), query_string={"model": broken})
    assert answer.status_code == 503 and repr(broken) in answer.json["detail"]


def test_metrics_say_which_served_model_is_down(served_files):
    """``sam_model_ready`` has one sample per served model (it showed only the default's 1)."""
    from prometheus_client.parser import text_string_to_metric_families

    app, plain, long_name, broken = served_files
    text = app.test_client().get("/metrics").get_data(as_text=True)
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "sam_model_ready"]
    ready = {sample.labels["model"]: sample.value for sample in family.samples}
    assert ready == {plain: 1.0, long_name: 1.0, broken: 0.0}
