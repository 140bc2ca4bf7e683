"""The model server is killed and restarted during a Label Studio batch pre-annotation.

Real processes on 127.0.0.1, no Label Studio needed: ``sam-server`` with the
tiny model, the standalone plugin (``sam-plugin --model-server URL``) and a
local HTTP server playing Label Studio's file host. The test speaks Label
Studio's protocol to the plugin (``POST /predict`` with tasks, no context).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
import requests

from backend.formats.images import encode_png
from sam_plugin.label_config import EXAMPLE_CONFIG
from tests.reliability.load_driver import process_tree
from tests.serving.server_process import REPO, ServerProcess, free_port

N_TASKS = 6
AUTOMASK_PARAMS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and any children it started (sam-server has none; the check stays cheap)."""
    for member in reversed(process_tree(pid)):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _restart(server: ServerProcess) -> ServerProcess:
    """Kill ``server`` if it still runs and start the same command on the same port."""
    if server.process is not None and server.process.poll() is None:
        _kill_tree(server.process.pid)
        server.process.wait(10)
    server.start(timeout=120)
    return server


class PluginProcess:
    """``sam-plugin`` (standalone) in a subprocess on 127.0.0.1."""

    def __init__(self, model_server: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable,
            "-m",
            "sam_plugin.cli",
            "--model-server",
            model_server,
            "--timeout",
            "20",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "WARNING",
        ]
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> PluginProcess:
        self.process = subprocess.Popen(
            self.command, cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("sam-plugin exited early")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError(f"sam-plugin not up within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _tasks(image_host) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    tasks = []
    for k in range(N_TASKS):
        height, width = 36 + 4 * k, 48 + 6 * k  # distinct sizes: a mix-up cannot go unnoticed
        pixels = (rng.random((height, width, 3)) * 80).astype(np.uint8)
        pixels[height // 4 : height // 2, width // 4 : width // 2] = 220
        path = f"/data/upload/1/task{k}.png"
        image_host.files[path] = encode_png(pixels)
        tasks.append({"id": 100 + k, "data": {"image": path}, "size": (width, height)})
    return tasks


def _predict(plugin_url: str, tasks: list[dict[str, Any]], timeout: float = 120) -> requests.Response:
    body = {
        "tasks": [{"id": t["id"], "data": t["data"]} for t in tasks],
        "project": "1.1700000000",
        "label_config": EXAMPLE_CONFIG,
        "params": {"login": None, "password": None, "context": None},
    }
    return requests.post(f"{plugin_url}/predict", json=body, timeout=timeout)


def _without_ids(prediction: dict[str, Any]) -> dict[str, Any]:
    """A prediction with its random region ids removed (everything else must match)."""
    return {**prediction, "result": [{k: v for k, v in r.items() if k != "id"} for r in prediction["result"]]}


def _check_sizes(prediction: dict[str, Any], task: dict[str, Any]) -> None:
    for region in prediction["result"]:
        assert (region["original_width"], region["original_height"]) == task["size"], (task["id"], region)


def _assert_clear_model_server_error(response: requests.Response) -> None:
    assert response.status_code in (502, 503, 504), response.text
    body = response.json()
    assert body["error"] in ("unavailable", "unreachable", "timeout"), body
    assert "model server" in body["detail"], body
    assert "model server" in response.reason  # Label Studio shows the reason phrase


@pytest.mark.slow
def test_a_killed_model_server_fails_clearly_then_the_batch_completes_after_restart(
    tiny_checkpoint, image_host
):
    tasks = _tasks(image_host)
    args = ("--model", str(tiny_checkpoint), "--device", "cpu", "--no-plugins", "--log-level", "WARNING")
    server = ServerProcess(*args).start(timeout=120)
    plugin = PluginProcess(
        server.url,
        {
            "LABEL_STUDIO_URL": image_host.base_url,
            "SAM_PREANNOTATE": "automask",
            "SAM_AUTOMASK_PARAMS": json.dumps(AUTOMASK_PARAMS),
        },
    )
    try:
        plugin.start()
        baseline = {}
        start = time.monotonic()
        for task in tasks:
            response = _predict(plugin.url, [task])
            assert response.status_code == 200, response.text
            [prediction] = response.json()["results"]
            assert prediction["result"], "the tiny model should find some region"
            _check_sizes(prediction, task)
            baseline[task["id"]] = _without_ids(prediction)

        per_task_s = (time.monotonic() - start) / len(tasks)

        # a fresh server (nothing cached), killed while a batch is in flight, about two tasks in
        _restart(server)
        outcome: dict[str, requests.Response] = {}
        batch = threading.Thread(target=lambda: outcome.update(batch=_predict(plugin.url, tasks)))
        batch.start()
        time.sleep(1.5 * per_task_s)
        assert server.process is not None
        _kill_tree(server.process.pid)
        server.process.wait(10)
        batch.join(120)
        in_flight = outcome["batch"]
        print(f"batch in flight when the server was killed: HTTP {in_flight.status_code}")
        if in_flight.status_code == 200:  # it finished before the kill: then it must be complete and right
            assert all(
                _without_ids(p) == baseline[t["id"]]
                for p, t in zip(in_flight.json()["results"], tasks, strict=True)
            )
        else:
            _assert_clear_model_server_error(in_flight)

        # while it is down: a clear error per request, quickly
        start = time.monotonic()
        down = _predict(plugin.url, tasks[:1])
        _assert_clear_model_server_error(down)
        assert time.monotonic() - start < 30

        # restart on the same port: the plugin carries on without a restart of its own
        _restart(server)
        after = _predict(plugin.url, tasks)
        assert after.status_code == 200, after.text
        results = after.json()["results"]
        assert len(results) == len(tasks)  # one prediction per task: none lost, none duplicated
        for prediction, task in zip(results, tasks, strict=True):
            _check_sizes(prediction, task)
            assert _without_ids(prediction) == baseline[task["id"]], (
                f"task {task['id']} got a different prediction"
            )
    finally:
        plugin.stop()
        if server.process is not None and server.process.poll() is None:
            _kill_tree(server.process.pid)
            server.process.wait(10)
