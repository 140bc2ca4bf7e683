"""Fixtures: a tiny random model, its service, the Flask app and its test client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.serving.app import create_app
from backend.serving.service import SamService
from tests.serving.tiny_model import build_tiny_sam, make_config, picture, png_bytes


@pytest.fixture(scope="session")
def tiny_sam():
    """One tiny random SAM for the whole session (read-only in tests)."""
    return build_tiny_sam()


@pytest.fixture
def service(tiny_sam) -> Iterator[SamService]:
    """A started service over the tiny model."""
    svc = SamService(make_config(tiny_sam)).start()
    assert svc.wait_ready(30)
    yield svc
    svc.close()


@pytest.fixture
def app(tiny_sam) -> Iterator[Flask]:
    """The Flask app over the tiny model."""
    application = create_app(make_config(tiny_sam, max_body_mb=2))
    assert application.extensions["sam_service"].wait_ready(30)
    yield application
    application.extensions["sam_service"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask's test client."""
    return app.test_client()


@pytest.fixture
def image_png() -> bytes:
    """A 80x60 test picture as PNG bytes."""
    return png_bytes(picture())


@pytest.fixture
def image_id(client: FlaskClient, image_png: bytes) -> str:
    """The test picture, uploaded."""
    response = client.post("/v1/images", data=image_png)
    assert response.status_code == 200, response.json
    return response.json["image_id"]
