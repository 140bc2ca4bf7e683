"""Fixtures of the Label Studio plugin tests: a scripted model server and a plugin app; real servers for e2e."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from sam_plugin.blueprint import create_blueprint
from sam_plugin.image_fetcher import TaskImageFetcher
from sam_plugin.label_config import EXAMPLE_CONFIG
from sam_plugin.runtime import PluginRuntime
from sam_plugin.settings import PluginSettings
from tests.sam_plugin.fakes import LS_URL, FakeSession, ScriptedSamClient, public_resolver
from tests.sam_plugin.labelstudio_env import (
    SAM2_E2E,
    LabelStudio,
    model_name,
    start_concepts_server,
    start_label_studio,
    start_model_server,
)
from tests.support.tiny_sam2 import save_tiny_sam2


@pytest.fixture
def sam_client() -> ScriptedSamClient:
    return ScriptedSamClient()


BASIC_AUTH = ("label-studio", "ml-backend-password")


@pytest.fixture
def fake_session() -> FakeSession:
    return FakeSession()


@pytest.fixture
def settings(tmp_path: Any) -> PluginSettings:
    return PluginSettings(
        label_studio_url=LS_URL,
        label_studio_api_key="secret-token",
        allowed_hosts=("images.example.com",),
        dataset_dir=tmp_path / "dataset",
        basic_auth_user=BASIC_AUTH[0],  # a plugin holding a Label Studio key requires auth
        basic_auth_pass=BASIC_AUTH[1],
    )


@pytest.fixture
def runtime(
    sam_client: ScriptedSamClient, settings: PluginSettings, fake_session: FakeSession
) -> PluginRuntime:
    fetcher = TaskImageFetcher(
        label_studio_url=settings.label_studio_url,
        api_key=settings.label_studio_api_key,
        allowed_hosts=settings.allowed_hosts,
        resolver=public_resolver,
        session=fake_session,  # type: ignore[arg-type]
    )
    return PluginRuntime(sam_client, settings, fetcher)


@pytest.fixture
def app(runtime: PluginRuntime) -> Flask:
    app = Flask("test_plugin")
    app.register_blueprint(create_blueprint(runtime.client, runtime=runtime))
    return app


@pytest.fixture
def http(app: Flask) -> Any:
    """Flask's test client, sending the basic auth Label Studio's model settings would send."""
    client = app.test_client()
    token = base64.b64encode(":".join(BASIC_AUTH).encode()).decode()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Basic {token}"
    return client


@pytest.fixture
def label_config() -> str:
    return EXAMPLE_CONFIG


# ---- end-to-end: one real Label Studio and one model server for the whole test session


@pytest.fixture(scope="session")
def e2e_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ls-e2e")


@pytest.fixture(scope="session")
def label_studio(e2e_workdir: Path) -> Iterator[LabelStudio]:
    yield from start_label_studio(e2e_workdir)


@pytest.fixture(scope="session")
def model_server(e2e_workdir: Path, label_studio: LabelStudio) -> Iterator[str]:
    """The e2e model (the default) and a tiny random SAM 2.1 (:data:`SAM2_E2E`), for projects that name it."""
    sam2 = save_tiny_sam2(e2e_workdir / "tiny-sam2.pt")
    yield from start_model_server(e2e_workdir, label_studio, models=[model_name(), f"{SAM2_E2E}={sam2}"])


@pytest.fixture(scope="session")
def concepts_server(e2e_workdir: Path, label_studio: LabelStudio) -> Iterator[str]:
    """A second model server, with ``SAM_PREANNOTATE=concepts`` and a tiny SAM 3 besides the e2e model."""
    yield from start_concepts_server(e2e_workdir, label_studio)
