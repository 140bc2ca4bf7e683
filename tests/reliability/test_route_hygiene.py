"""Findings 5, 6, 7, 9, 11: metrics labels, no static route, exact public paths, body cap, JSON errors.

Every attack runs against a real ``sam-server`` on 127.0.0.1 with a token,
started from a folder holding a file that a static route would serve.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.serving.server_process import ServerProcess
from tests.serving.tiny_model import picture, png_bytes

pytestmark = pytest.mark.slow
TOKEN = "hygiene-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory) -> Iterator[ServerProcess]:
    """sam-server with a token and a 1 MiB body cap, its working folder holding ``static/secret.txt``."""
    workdir = tmp_path_factory.mktemp("cwd")
    (workdir / "static").mkdir()
    (workdir / "static" / "secret.txt").write_text("do not serve me")
    process = ServerProcess(
        *("--model", str(tiny_checkpoint), "--device", "cpu", "--no-plugins", "--max-body-mb", "1"),
        env={"SAM_TOKEN": TOKEN},
        token=TOKEN,
    )
    process.cwd = workdir
    process.start(timeout=120)
    yield process
    process.stop()


def _raw(port: int, request: bytes, read_s: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_s) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
            head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
            lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if sep and lengths and len(body) >= int(lengths[0].split(b":")[1]):
                break
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _is_json_error(body: bytes, code: str | None = None) -> dict[str, str]:
    answer = json.loads(body)
    assert set(answer) == {"error", "detail"}, answer
    assert code is None or answer["error"] == code, answer
    return answer


def test_no_static_route_serves_the_working_folder(server):
    assert Path(server.cwd, "static", "secret.txt").is_file()
    for path in ("/static/secret.txt", "/static/../static/secret.txt"):
        response = requests.get(server.url + path, headers=AUTH, timeout=10)
        assert response.status_code == 404 and b"do not serve me" not in response.content
        _is_json_error(response.content, "not_found")


@pytest.mark.parametrize(
    "path", ["/v1/health", "/ready/health", "/x/health", "/health/", "/ls/health", "/metrics?x=/health"]
)
def test_only_the_exact_public_path_skips_the_token(server, path):
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    response = requests.get(server.url + path, timeout=10)
    assert response.status_code == 401, (path, response.status_code)
    _is_json_error(response.content, "unauthorized")


def _series(text: str) -> set[str]:
    """The metric series in Prometheus text (name and labels, no values)."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_made_up_methods_and_paths_do_not_grow_metrics(server):
    session = requests.Session()

    def attack(i: int) -> None:
        session.request(f"M{i:03d}X", f"{server.url}/v1/models", timeout=10)  # no token: 401
        session.request(f"M{i:03d}Y", f"{server.url}/v1/models/{i}", headers=AUTH, timeout=10)
        session.request(f"M{i:03d}Z", f"{server.url}/v1/models", headers=AUTH, timeout=10)
        session.get(f"{server.url}/made/up/{i}", headers=AUTH, timeout=10)

    def scrape() -> str:
        return session.get(f"{server.url}/metrics", headers=AUTH, timeout=10).text

    attack(0)
    scrape()
    before = scrape()
    for i in range(1, 201):
        attack(i)
    after = scrape()
    assert _series(after) == _series(before), _series(after) ^ _series(before)
    assert len(after) <= len(before) + 200  # counter values grow by a few digits, nothing else
    assert 'status="401"' not in after
    assert "M001X" not in after and "/made/up" not in after
    assert 'method="other"' in after and 'route="unmatched"' in after


def test_chunked_bodies_over_the_cap_get_413_json(server):
    head = (
        "POST /v1/images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n" % 65536 + b"\x00" * 65536 + b"\r\n"
    status, headers, body = _raw(server.port, head + chunk * 17 + b"0\r\n\r\n")  # 1 MiB + 64 KiB
    assert status == 413 and headers["content-type"] == "application/json"
    assert "1 MiB" in _is_json_error(body, "payload_too_large")["detail"]
    small = head + b"%x\r\n" % 10 + b"0123456789\r\n0\r\n\r\n"
    status, _, body = _raw(server.port, small)
    assert status == 400 and _is_json_error(body, "invalid_image")  # under the cap: reaches the app
    exact = requests.post(f"{server.url}/v1/images", data=png_bytes(picture()), headers=AUTH, timeout=30)
    assert exact.status_code == 200


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", 400, "bad_request"),
        (b"POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n", 413, "payload_too_large"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented"),
    ],
    ids=["long-url", "big-headers", "bad-header", "content-length-over-cap", "transfer-encoding"],
)
def test_front_end_errors_are_json(server, request_bytes, status, code):
    got, headers, body = _raw(server.port, request_bytes)
    assert got == status and headers["content-type"] == "application/json", (got, body[:200])
    assert b"waitress" not in body and b"Traceback" not in body
    _is_json_error(body, code)


def test_error_messages_carry_no_object_reprs_or_server_paths(server):
    home = os.path.expanduser("~").encode()
    bodies = [
        requests.post(f"{server.url}/v1/images", data=b"\x00garbage", headers=AUTH, timeout=10).content,
        requests.post(
            f"{server.url}/v1/images", data=b"GIF89a" + b"\x00" * 40, headers=AUTH, timeout=10
        ).content,
        requests.post(f"{server.url}/v1/predict", data=b"{", headers=AUTH, timeout=10).content,
        requests.get(f"{server.url}/v1/models", timeout=10).content,
        requests.get(f"{server.url}/ready", headers=AUTH, timeout=10).content,
        requests.post(
            f"{server.url}/v1/automask", json={"image_id": "0" * 64}, headers=AUTH, timeout=10
        ).content,
    ]
    for body in bodies:
        assert b" object at 0x" not in body and b"<_io" not in body, body
        assert home not in body and str(server.cwd).encode() not in body, body
