"""Plugins mount through the sam_server.blueprints entry points; a broken one is skipped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, jsonify

from backend.serving import plugins
from backend.serving.answer_budget import BudgetedClient
from backend.serving.app import create_app
from backend.serving.config import ServerConfig
from tests.serving.tiny_model import make_config, picture, png_bytes

BOX = [0, 0, 40, 30]
"""The plugin's prompt: the picture's bright rectangle and the noise around it."""


def good_factory(client: Any) -> Blueprint:
    bp = Blueprint("fake_ls", __name__, url_prefix="/ls")

    @bp.get("/health")
    def health():
        return jsonify(status="UP", model_class="fake")

    @bp.post("/segment")
    def segment():
        info = client.add_image(picture())
        [obj] = client.predict(info.image_id, box=BOX)
        return jsonify(
            area=int(obj.best.sum()),
            shape=list(obj.best.shape),
            score=float(obj.scores[0]),
            client=type(client).__name__,
        )

    return bp


def broken_factory(client: Any) -> Blueprint:
    raise ImportError("label_studio_sdk is not installed")


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    target: Any

    def load(self) -> Any:
        return self.target


def _fake_entry_points(monkeypatch) -> None:
    points = [
        FakeEntryPoint("broken", "x:broken", broken_factory),
        FakeEntryPoint("fake", "x:good", good_factory),
    ]
    monkeypatch.setattr(
        plugins, "entry_points", lambda group: points if group == plugins.ENTRY_POINT_GROUP else []
    )


def test_plugin_blueprints_are_mounted_with_a_local_client_and_broken_ones_skipped(
    monkeypatch, tiny_sam, caplog
):
    _fake_entry_points(monkeypatch)
    app = create_app(ServerConfig(model=tiny_sam, cache_dtype="float32", plugins=True, token="t"))
    try:
        app.extensions["sam_service"].wait_ready(30)
        client = app.test_client()
        token = {"Authorization": "Bearer t"}
        assert client.get("/ls/health").status_code == 401  # only /health itself is open
        assert client.get("/ls/health", headers=token).json["model_class"] == "fake"
        assert client.post("/ls/segment").status_code == 401
        answer = client.post("/ls/segment", headers=token).json
        assert answer["client"] == BudgetedClient.__name__
        # the plugin's client reaches the served model: the very mask /v1/predict gives for the prompt
        image_id = client.post("/v1/images", data=png_bytes(picture()), headers=token).json["image_id"]
        [direct] = client.post("/v1/predict", json={"image_id": image_id, "box": BOX}, headers=token).json[
            "objects"
        ]
        best = direct["masks"][0]
        assert answer["shape"] == list(picture().shape[:2])
        assert best["area"] > 0 and (answer["area"], answer["score"]) == (best["area"], best["score"])
        assert "broken" in caplog.text and "failed to load" in caplog.text
        assert client.get("/health").status_code == 200
    finally:
        app.extensions["sam_service"].close()


def test_no_plugins_flag_mounts_nothing(monkeypatch, tiny_sam):
    _fake_entry_points(monkeypatch)
    app = create_app(make_config(tiny_sam))
    try:
        assert app.test_client().get("/ls/health").status_code == 404
    finally:
        app.extensions["sam_service"].close()
