"""Weights resolution against a local HTTP server: download, verify, resume, offline."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend.api.errors import InvalidInput, WeightsUnavailable
from backend.hub import MODELS, ModelRecord, default_cache_dir, records, resolve_weights
from backend.hub.downloads import pinned_sha256

PAYLOAD = bytes(range(256)) * 12_000  # 3 MB: several download chunks


class _WeightsServer(ThreadingHTTPServer):
    """Serves ``payload`` at any path; can ignore ``Range`` or cut the body short once."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.payload = PAYLOAD
        self.honour_range = True
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/weights/fake.pt"


class _Handler(BaseHTTPRequestHandler):
    server: _WeightsServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        srv, data = self.server, self.server.payload
        requested = self.headers.get("Range")
        srv.ranges.append(requested)
        start = int(requested.removeprefix("bytes=").split("-")[0]) if requested and srv.honour_range else 0
        if start >= len(data) > 0 and requested:
            self.send_response(416)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None:  # announce the whole body, send part of it, hang up
            body, srv.cut_after = body[: srv.cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_WeightsServer]:
    srv = _WeightsServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _record(url: str, payload: bytes = PAYLOAD, **changes: object) -> ModelRecord:
    fields: dict = dict(
        name="fake",
        config=None,
        filename="fake.pt",
        url=url,
        sha256=hashlib.sha256(payload).hexdigest(),
        size_bytes=len(payload),
    )
    fields.update(changes)
    return ModelRecord(**fields)


@pytest.fixture
def fake(monkeypatch, server) -> ModelRecord:
    record = _record(server.url)
    monkeypatch.setitem(MODELS, "fake", record)
    return record


def test_download_is_verified_and_moved_into_place(fake, server, tmp_path, capsys):
    path = resolve_weights("fake", cache_dir=tmp_path)
    assert path == tmp_path / "fake.pt"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.pt"]  # no lock file left behind
    assert "fake.pt" in capsys.readouterr().err  # the progress bar names the file
    assert resolve_weights("fake", cache_dir=tmp_path) == path
    assert server.ranges == [None]  # the second call used the cache


def test_sha_mismatch_deletes_the_download(monkeypatch, server, tmp_path):
    monkeypatch.setitem(MODELS, "fake", _record(server.url, sha256="0" * 64))
    with pytest.raises(WeightsUnavailable, match="SHA-256") as info:
        resolve_weights("fake", cache_dir=tmp_path, progress=False)
    assert server.url in str(info.value)
    assert not (tmp_path / "fake.pt").exists() and not (tmp_path / "fake.pt.part").exists()


def test_interrupted_download_leaves_no_file_and_resumes_with_range(fake, server, tmp_path):
    server.cut_after = 1_500_000
    with pytest.raises(WeightsUnavailable, match="resumes") as info:
        resolve_weights("fake", cache_dir=tmp_path, progress=False)
    assert str(tmp_path / "fake.pt") in str(info.value)
    assert not (tmp_path / "fake.pt").exists()
    kept = (tmp_path / "fake.pt.part").stat().st_size
    assert 0 < kept <= 1_500_000
    path = resolve_weights("fake", cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [None, f"bytes={kept}-"]
    assert not (tmp_path / "fake.pt.part").exists()


def test_a_server_ignoring_range_restarts_from_zero(fake, server, tmp_path):
    (tmp_path / "fake.pt.part").write_bytes(b"\xff" * 1000)
    server.honour_range = False
    assert resolve_weights("fake", cache_dir=tmp_path, progress=False).read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=1000-"]


def test_a_corrupt_partial_file_is_dropped_and_the_next_call_succeeds(fake, server, tmp_path):
    (tmp_path / "fake.pt.part").write_bytes(b"\xff" * 1000)
    with pytest.raises(WeightsUnavailable, match="SHA-256"):
        resolve_weights("fake", cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "fake.pt.part").exists()
    assert resolve_weights("fake", cache_dir=tmp_path, progress=False).read_bytes() == PAYLOAD


def test_offline_error_names_the_file_the_url_and_the_path(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/sam_fake.pth"
    monkeypatch.setitem(MODELS, "fake", _record(url))
    with pytest.raises(WeightsUnavailable) as info:
        resolve_weights("fake", cache_dir=tmp_path, progress=False)
    message = str(info.value)
    assert "'fake'" in message and url in message and str(tmp_path / "fake.pt") in message
    assert "SAM_CACHE_DIR" in message and "cannot connect to 127.0.0.1" in message
    assert "Pool" not in message and " at 0x" not in message, "one sentence, not the network library's chain"
    assert list(tmp_path.iterdir()) == [], "no file and no lock left behind"


def test_a_failed_download_leaves_no_lock_but_keeps_its_part(fake, server, tmp_path):
    server.cut_after = 1_000_000
    with pytest.raises(WeightsUnavailable):
        resolve_weights("fake", cache_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.pt.part"]


def test_download_off_says_where_to_put_the_file(fake, server, tmp_path):
    with pytest.raises(WeightsUnavailable, match="turned off") as info:
        resolve_weights("fake", cache_dir=tmp_path, download=False)
    assert str(tmp_path / "fake.pt") in str(info.value) and server.url in str(info.value)
    assert server.ranges == []


def test_cache_dir_comes_from_the_environment(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("SAM_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    assert resolve_weights("fake", progress=False) == tmp_path / "env-cache" / "fake.pt"
    monkeypatch.delenv("SAM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sam-server"


def test_concurrent_callers_download_once(fake, server, tmp_path):
    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(resolve_weights("fake", cache_dir=tmp_path, progress=False))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [tmp_path / "fake.pt"] * 4
    assert (tmp_path / "fake.pt").read_bytes() == PAYLOAD
    assert server.ranges == [None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.pt"]


def test_a_local_path_wins(fake, server, tmp_path, monkeypatch):
    own = tmp_path / "own.pt"
    own.write_bytes(b"mine")
    assert resolve_weights(own) == own
    assert resolve_weights(str(own)) == own
    monkeypatch.chdir(tmp_path)
    Path("fake").write_bytes(b"a file named like the model")
    assert resolve_weights("fake", cache_dir=tmp_path / "cache") == Path("fake")
    assert server.ranges == []


def test_a_cached_file_of_the_wrong_size_is_reported(fake, tmp_path):
    (tmp_path / "fake.pt").write_bytes(b"short")
    with pytest.raises(WeightsUnavailable, match="Delete it"):
        resolve_weights("fake", cache_dir=tmp_path)


def test_unknown_names_and_missing_paths_are_invalid_input(tmp_path):
    with pytest.raises(InvalidInput) as info:
        resolve_weights("vit_x", cache_dir=tmp_path)
    assert all(name in str(info.value) for name in ("vit_h", "vit_b", "vit_t", "demo")) and "path" in str(
        info.value
    )
    with pytest.raises(InvalidInput, match="no weights file"):
        resolve_weights(tmp_path / "missing.pth")


def test_packaged_models_resolve_inside_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(records, "PACKAGED_WEIGHTS", tmp_path)
    with pytest.raises(WeightsUnavailable, match="Reinstall"):
        resolve_weights("demo")
    (tmp_path / "sam_demo.pt").write_bytes(b"demo")
    assert resolve_weights("demo") == tmp_path / "sam_demo.pt"


def test_an_unusable_cache_folder_is_reported_with_the_way_out(fake, tmp_path):
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(WeightsUnavailable, match="SAM_CACHE_DIR"):
        resolve_weights("fake", cache_dir=tmp_path / "a-file" / "cache", progress=False)


def test_a_record_without_a_published_sha_is_pinned_on_first_download(monkeypatch, server, tmp_path):
    monkeypatch.setitem(MODELS, "fake", _record(server.url, sha256=None))
    path = resolve_weights("fake", cache_dir=tmp_path, progress=False)
    assert pinned_sha256(path) == hashlib.sha256(PAYLOAD).hexdigest()
    path.unlink()
    (tmp_path / "fake.pt.sha256").write_text("1" * 64)  # the file at the URL no longer matches its pin
    with pytest.raises(WeightsUnavailable, match="expected 1111"):
        resolve_weights("fake", cache_dir=tmp_path, progress=False)
    assert not path.exists()
