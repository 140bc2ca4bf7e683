"""A model that cannot be loaded stops ``sam-server`` within seconds, with one clear message (real processes)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from backend.hub import MODELS
from tests.serving.server_process import ServerProcess, free_port

pytestmark = pytest.mark.slow
LIMIT_S = 120  # the test never hangs: the process is killed after this
FAST_S = 60  # "within seconds" on a busy two-core CI machine (importing torch included)


def _offline_env(cache: Path) -> dict[str, str]:
    """An empty weights cache and no way out: every HTTP(S) request goes to a closed local port."""
    closed = f"http://127.0.0.1:{free_port()}"
    env = {"SAM_CACHE_DIR": str(cache), "HTTPS_PROXY": closed, "HTTP_PROXY": closed, "https_proxy": closed}
    return {**env, "http_proxy": closed, "NO_PROXY": "", "no_proxy": "", "SAM_LOG_LEVEL": "INFO"}


def _run(*args: str, env: dict[str, str]) -> tuple[int, str, float]:
    server = ServerProcess(*args, env=env)
    started = time.monotonic()
    done = subprocess.run(
        server.command,
        env=server.env,
        cwd=server.env["PYTHONPATH"],
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def test_offline_vit_b_exits_at_once_saying_where_to_put_the_file(tmp_path):
    record = MODELS["vit_b"]
    code, output, seconds = _run("--model", "vit_b", env=_offline_env(tmp_path))
    assert code == 2 and seconds < FAST_S, output
    assert record.filename in output and str(record.url) in output, output
    assert str(tmp_path / record.filename) in output and "SAM_CACHE_DIR" in output, output
    assert "Traceback" not in output and len(output.strip().splitlines()) <= 3, output
    assert not list(tmp_path.glob("*.lock")), "no stale lock file"
    assert not list(tmp_path.glob("*.part")), "nothing was downloaded"


def test_debug_log_level_adds_the_traceback(tmp_path):
    code, output, _ = _run("--model", "vit_b", "--log-level", "DEBUG", env=_offline_env(tmp_path))
    assert code == 2 and "Traceback" in output and "SAM_CACHE_DIR" in output, output


def test_a_wrong_path_exits_at_once(tmp_path):
    missing = tmp_path / "nope" / "model.pt"
    code, output, seconds = _run("--model", str(missing), env=_offline_env(tmp_path))
    assert code == 2 and seconds < FAST_S and f"no weights file at {missing}" in output, output
    assert "Traceback" not in output


def test_a_corrupt_file_stops_the_server_instead_of_serving_503(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(4096))
    code, output, seconds = _run(
        "--model", str(corrupt), "--device", "cpu", "--no-plugins", env=_offline_env(tmp_path / "cache")
    )
    assert code == 2 and seconds < FAST_S, output
    assert f"cannot read checkpoint {corrupt}" in output and "corrupt" in output, output
    assert "Traceback" not in output, output
