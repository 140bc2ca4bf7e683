"""sam-plugin command line."""

from __future__ import annotations

import time

import pytest

from backend.client.http_client import SamClient
from sam_plugin.cli import build_parser, build_precompute_parser, create_standalone_app, main
from sam_plugin.label_config import EXAMPLE_CONFIG
from sam_plugin.settings import PluginSettings


def test_serve_arguments() -> None:
    args = build_parser().parse_args(["--model-server", "http://gpu:9090", "--token", "t", "--port", "9999"])
    assert (args.model_server, args.token, args.host, args.port) == (
        "http://gpu:9090",
        "t",
        "127.0.0.1",
        9999,
    )


def test_precompute_needs_a_project() -> None:
    with pytest.raises(SystemExit):
        build_precompute_parser().parse_args([])
    assert build_precompute_parser().parse_args(["--project", "3"]).project == 3


def test_serve_without_model_server_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAM_SERVER_URL", raising=False)
    with pytest.raises(SystemExit, match="--model-server"):
        main(["--port", "0"])


def test_precompute_without_label_studio_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(SystemExit, match="--label-studio-url"):
        main(["precompute", "--project", "1", "--model-server", "http://x"])


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_standalone_app_serves_at_root_and_reports_a_down_model_server_quickly() -> None:
    client = SamClient(f"http://127.0.0.1:{_closed_port()}", timeout=5.0)
    http = create_standalone_app(client, PluginSettings()).test_client()
    assert http.get("/health").get_json()["status"] == "UP"
    start = time.perf_counter()
    response = http.post("/setup", json={"project": "1.1", "schema": EXAMPLE_CONFIG})
    assert time.perf_counter() - start < 3.0
    assert response.status_code in (503, 504)
    assert "model server" in response.get_json()["detail"]


def test_standalone_app_refuses_oversized_bodies():
    from unittest.mock import MagicMock

    from sam_plugin.cli import MAX_BODY_BYTES, create_standalone_app

    app = create_standalone_app(MagicMock())
    response = app.test_client().post(
        "/predict", data=b"x" * (MAX_BODY_BYTES + 1), content_type="application/json"
    )
    assert response.status_code == 413
