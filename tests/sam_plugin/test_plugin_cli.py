"""sam-plugin command line."""

from __future__ import annotations

import pytest

from sam_plugin.cli import build_parser, build_precompute_parser, main


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
