"""Fixtures of the reliability suite: in-process apps, real processes, a local image host.

Everything binds 127.0.0.1; every process and thread started here is stopped
in the fixture's teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from backend.serving.app import create_app
from backend.serving.config import ServerConfig
from backend.serving.service import SamService
from tests.reliability.local_http import LocalImageHost
from tests.serving.tiny_model import build_tiny_sam, save_tiny_checkpoint


class FakeTextRanker:
    """Stands in for CLIP (no download): ranks records by area, score 0.5."""

    def __init__(self, device: str) -> None:
        self.device = device

    def rank(
        self,
        image: Any,
        records: list[dict[str, Any]],
        text: str,
        *,
        box: Any = None,
        points: Any = None,
        labels: Any = None,
        top_k: int = 3,
    ) -> list[tuple[dict[str, Any], float]]:
        ordered = sorted(records, key=lambda r: -int(r.get("area", 0)))
        return [(record, 0.5) for record in ordered[:top_k]]


@pytest.fixture(scope="session")
def tiny_sam():
    """One tiny random SAM (128-pixel input) shared read-only by the suite."""
    return build_tiny_sam()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a checkpoint file, for ``sam-server --model PATH``."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pt")


AppFactory = Callable[..., Flask]


@pytest.fixture(scope="module")
def make_app(tiny_sam) -> Iterator[AppFactory]:
    """``make_app(token=..., plugin_settings=..., **config)``: an app over the tiny model.

    The Label Studio plugin is mounted under ``/ls`` explicitly (the entry
    point only exists once the project is pip-installed), with
    ``plugin_settings`` (default: no Label Studio URL, no basic auth).
    """
    services: list[SamService] = []

    def factory(*, plugin_settings: Any = None, mount_plugin: bool = True, **overrides: Any) -> Flask:
        from backend.serving.local_client import LocalSamClient
        from sam_plugin.blueprint import create_blueprint
        from sam_plugin.settings import PluginSettings

        overrides.setdefault("max_body_mb", 2)
        config = ServerConfig(model=tiny_sam, cache_dtype="float32", plugins=False, device="cpu", **overrides)
        service = SamService(config, text_prompter_factory=FakeTextRanker).start()
        services.append(service)
        assert service.wait_ready(60), "tiny model did not load"
        app = create_app(config, service=service)
        if mount_plugin:
            settings = plugin_settings or PluginSettings(preannotate="automask")
            app.register_blueprint(create_blueprint(LocalSamClient.from_service(service), settings))
        return app

    yield factory
    for service in services:
        service.close()


@pytest.fixture
def image_host() -> Iterator[LocalImageHost]:
    """A local HTTP server on 127.0.0.1 serving images and redirects."""
    host = LocalImageHost().start()
    yield host
    host.stop()
