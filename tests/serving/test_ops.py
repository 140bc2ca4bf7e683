"""/health and /ready: /ready says why the model cannot answer yet (loading, or why loading failed)."""

from __future__ import annotations

import logging

from backend.serving.app import create_app
from backend.serving.config import ServerConfig
from backend.serving.service import SamService
from tests.serving.tiny_model import make_config


def test_ready_gives_the_reason_while_loading(tiny_sam):
    config = make_config(tiny_sam)
    loading = SamService(config)  # not started: its model is still to be loaded
    client = create_app(config, service=loading).test_client()
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json["ready"] is False
    assert response.json["reason"].startswith("loading model custom")
    assert client.get("/health").json == {"status": "UP"}


def test_ready_gives_the_load_error_and_the_log_has_one_line_without_traceback(tmp_path, caplog):
    missing = tmp_path / "missing.pt"
    config = ServerConfig(model=str(missing), device="cpu", plugins=False)
    with caplog.at_level(logging.INFO, logger="backend.serving.service"):
        service = SamService(config).start()
        try:
            assert not service.wait_ready(60)
            response = create_app(config, service=service).test_client().get("/ready")
        finally:
            service.close()
    assert response.status_code == 503
    reason = response.json["reason"]  # names the model as GET /v1/models does: a file's model by its path
    assert "failed to load" in reason and str(missing) in reason
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(missing) in record.getMessage() and not record.exc_info
