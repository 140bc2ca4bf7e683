"""Findings 10 and 12: no control socket shared between instances, nothing left after ``kill -9``.

``sam-server`` is one process: no master, no worker, no control socket. Two
instances started with the same home folder share nothing, and killing one
with SIGKILL in the middle of a segment-everything request leaves no
process behind and frees its port.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import psutil
import pytest
import requests

from tests.serving.server_process import ServerProcess
from tests.serving.tiny_model import picture, png_bytes

pytestmark = pytest.mark.slow


def _server(checkpoint, home) -> ServerProcess:
    return ServerProcess(
        "--model", str(checkpoint), "--device", "cpu", "--no-plugins", env={"HOME": str(home)}
    )


def test_two_instances_share_no_control_socket_and_each_listens_on_its_port_only(tiny_checkpoint, tmp_path):
    first, second = _server(tiny_checkpoint, tmp_path), _server(tiny_checkpoint, tmp_path)
    first.start(timeout=120)
    try:
        second.start(timeout=120)
        try:
            for server in (first, second):
                assert server.process is not None
                process = psutil.Process(server.process.pid)
                assert process.children(recursive=True) == []
                assert process.net_connections(kind="unix") == []
                listening = [
                    c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
                ]
                assert [(c.laddr.ip, c.laddr.port) for c in listening] == [("127.0.0.1", server.port)]
            assert not (tmp_path / ".gunicorn").exists()
            assert not list(tmp_path.rglob("*.ctl")) and not list(tmp_path.rglob("*.sock"))
            info = requests.post(f"{first.url}/v1/images", data=png_bytes(picture()), timeout=60).json()
            assert requests.get(f"{second.url}/v1/images/{info['image_id']}", timeout=10).status_code == 404
        finally:
            second.stop()
    finally:
        first.stop()


def test_kill_9_during_segment_everything_leaves_no_process_and_frees_the_port(tiny_checkpoint, tmp_path):
    server = _server(tiny_checkpoint, tmp_path)
    server.start(timeout=120)
    assert server.process is not None
    tree = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
    image_id = requests.post(f"{server.url}/v1/images", data=png_bytes(picture()), timeout=60).json()[
        "image_id"
    ]
    body = {"image_id": image_id, "points_per_side": 64, "crop_n_layers": 1}

    def automask() -> None:
        try:
            requests.post(f"{server.url}/v1/automask", json=body, timeout=30)
        except requests.RequestException:
            pass  # the server dies under it

    client = threading.Thread(target=automask, daemon=True)
    client.start()
    time.sleep(1.0)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert alive == [], f"left running after kill -9: {alive}"
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", server.port), timeout=2),
    ):
        pass
    client.join(35)
