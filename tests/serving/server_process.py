"""Start and stop a real ``sam-server`` process on 127.0.0.1 for tests (bounded waits)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``sam-server`` in a subprocess; ``url`` once :meth:`start` returned."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        executable = shutil.which("sam-server", path=os.path.dirname(sys.executable))
        command = [executable] if executable else [sys.executable, "-m", "backend.serving.cli"]
        self.command = [*command, "--host", "127.0.0.1", "--port", str(self.port), "--threads", "8", *args]
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.process: subprocess.Popen[bytes] | None = None
        self.cwd: Path = REPO
        """Working folder of the process (set before :meth:`start`)."""

    def start(self, timeout: float = 90.0) -> ServerProcess:
        """Launch and wait until ``/ready`` answers 200 (raises after ``timeout`` s)."""
        self.process = subprocess.Popen(
            self.command, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sam-server exited early:\n{self.output()}")
            try:
                if requests.get(f"{self.url}/ready", headers=self.headers, timeout=2).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or the worker is still importing
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"sam-server not ready within {timeout} s:\n{self.output()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def output(self) -> str:
        """Everything the process printed (only after it stopped)."""
        if self.process is None or self.process.stdout is None or self.process.poll() is None:
            return ""
        return self.process.stdout.read().decode("utf-8", "replace")[-5000:]
