"""Security: token on every route, plugin basic auth, image-fetch allowlist, caps, bind address."""

from __future__ import annotations

import base64
import re

import pytest

from backend.formats.images import encode_png
from sam_plugin.image_fetcher import ImageUrlRefused, TaskImageFetcher
from sam_plugin.label_config import EXAMPLE_CONFIG
from sam_plugin.settings import PluginSettings
from tests.serving.tiny_model import picture, png_bytes
from tests.support.bad_images import corpus_by_name

TOKEN = "s3cret-token"


def _concrete(rule: str) -> str:
    """``/v1/images/<image_id>`` -> ``/v1/images/x``."""
    return re.sub(r"<[^>]+>", "x", rule)


def _routes(app) -> list[tuple[str, str]]:
    """Every (method, path) the app serves."""
    routes = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, _concrete(rule.rule)))
    return routes


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_with_a_token_every_route_but_health_refuses_requests_without_it(make_app):
    from backend.serving.auth import PUBLIC_PATHS

    assert PUBLIC_PATHS == {"/health"}
    app = make_app(token=TOKEN)
    http = app.test_client()
    routes = _routes(app)
    assert len(routes) >= 12 and any(path.startswith("/ls/") for _, path in routes)
    open_routes = []
    for method, path in routes:
        for headers in (
            {},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": TOKEN},
            {"Authorization": f"Token {TOKEN}"},
            _basic("user", "wrong"),
        ):
            response = http.open(
                path, method=method, headers=headers, data=b"{}", content_type="application/json"
            )
            if path in PUBLIC_PATHS:
                assert response.status_code == 200, (method, path)
            elif response.status_code != 401:
                open_routes.append((method, path, headers, response.status_code))
            else:
                assert response.get_json()["error"] == "unauthorized"
        with_token = http.open(
            path,
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}"},
            data=b"{}",
            content_type="application/json",
        )
        assert with_token.status_code != 401, (method, path)
    assert not open_routes, f"routes answering without the token: {open_routes}"


def test_label_studio_reaches_the_mounted_plugin_with_basic_auth_when_a_token_is_set(make_app):
    settings = PluginSettings(preannotate="off", basic_auth_user="ls", basic_auth_pass=TOKEN)
    http = make_app(token=TOKEN, plugin_settings=settings).test_client()
    body = {"project": "1.1", "schema": EXAMPLE_CONFIG}
    assert http.post("/ls/setup", json=body).status_code == 401
    assert http.post("/ls/setup", json=body, headers=_basic("ls", "nope")).status_code == 401
    response = http.post("/ls/setup", json=body, headers=_basic("ls", TOKEN))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert http.get("/ls/health", headers=_basic("ls", TOKEN)).status_code == 200


@pytest.mark.parametrize("route", ["/setup", "/predict", "/webhook", "/metrics"])
def test_plugin_routes_require_basic_auth_when_configured(route):
    from flask import Flask

    from sam_plugin.blueprint import create_blueprint
    from tests.sam_plugin.conftest import ScriptedSamClient

    settings = PluginSettings(preannotate="off", basic_auth_user="alice", basic_auth_pass="pw")
    app = Flask("plugin")
    app.register_blueprint(create_blueprint(ScriptedSamClient(), settings, url_prefix=""))
    http = app.test_client()
    method = http.get if route == "/metrics" else http.post
    kwargs = {} if route == "/metrics" else {"json": {"project": "1.1", "schema": EXAMPLE_CONFIG}}
    for headers in ({}, _basic("alice", "wrong"), _basic("bob", "pw"), {"Authorization": "Bearer pw"}):
        response = method(route, headers=headers, **kwargs)
        assert response.status_code == 401, (route, headers)
    assert method(route, headers=_basic("alice", "pw"), **kwargs).status_code != 401


# ------------------------------------------------------------ image fetching
def _fetcher(ls_url: str, allowed: tuple[str, ...] = ()) -> TaskImageFetcher:
    return TaskImageFetcher(label_studio_url=ls_url, api_key="ls-token", allowed_hosts=allowed, timeout_s=5)


def test_images_on_the_label_studio_host_are_fetched_with_its_token(image_host):
    image_host.files["/data/upload/1/a.png"] = b"PNGDATA"
    assert _fetcher(image_host.base_url).fetch("/data/upload/1/a.png") == b"PNGDATA"
    assert image_host.seen[-1].authorization == "Token ls-token"


@pytest.mark.parametrize(
    "reference",
    [
        "http://127.1:{port}/data/upload/1/a.png",
        "http://0x7f000001:{port}/data/upload/1/a.png",
        "http://2130706433:{port}/data/upload/1/a.png",
        "http://0177.0.0.1:{port}/data/upload/1/a.png",
        "http://[::1]:{port}/data/upload/1/a.png",
        "http://[::ffff:127.0.0.1]:{port}/data/upload/1/a.png",
        "http://localhost:{port}/data/upload/1/a.png",
        "http://localhost.:{port}/data/upload/1/a.png",
        "http://127.0.0.2:{port}/data/upload/1/a.png",
        "http://0.0.0.0:{port}/data/upload/1/a.png",
        "http://127.0.0.1:{other}/data/upload/1/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://user:pw@127.0.0.1:{port}/data/upload/1/a.png",
        "file:///etc/passwd",
        "file://127.0.0.1/etc/passwd",
        "gopher://127.0.0.1:{port}/_GET",
        "ftp://127.0.0.1/a.png",
        "javascript:alert(1)",
    ],
)
def test_urls_outside_the_label_studio_host_and_allowlist_are_refused_unfetched(image_host, reference):
    image_host.files["/data/upload/1/a.png"] = b"PNGDATA"
    url = reference.format(port=image_host.port, other=image_host.port + 1)
    fetcher = _fetcher(image_host.base_url, allowed=("images.example.com",))
    with pytest.raises(ImageUrlRefused):
        fetcher.fetch(url)
    assert image_host.seen == []


@pytest.mark.parametrize("allowed", ["localhost", "127.1", "0x7f000001", "*.localhost"])
def test_allowlisted_names_that_resolve_to_loopback_are_still_refused(image_host, allowed):
    image_host.files["/a.png"] = b"PNGDATA"
    host = "a.localhost" if allowed.startswith("*.") else allowed
    fetcher = TaskImageFetcher(
        label_studio_url="http://ls.example.com:8080", allowed_hosts=(allowed,), timeout_s=5
    )
    try:
        fetcher.fetch(f"http://{host}:{image_host.port}/a.png")
    except ImageUrlRefused:
        pass
    except Exception as exc:  # a name that does not resolve is refused differently, but never fetched
        assert getattr(exc, "status", 0) in (403, 502), exc
    else:
        pytest.fail(f"fetched from loopback through allowlist entry {allowed!r}")
    assert image_host.seen == []


def test_redirects_to_hosts_outside_the_allowlist_are_refused(image_host):
    from tests.reliability.local_http import LocalImageHost

    other = LocalImageHost().start()
    try:
        other.files["/secret"] = b"internal"
        image_host.redirects["/data/upload/1/a.png"] = other.url("/secret")
        image_host.redirects["/data/upload/1/b.png"] = "http://169.254.169.254/latest/meta-data/"
        image_host.redirects["/data/upload/1/c.png"] = "file:///etc/passwd"
        image_host.redirects["/data/upload/1/ok.png"] = "/data/upload/1/real.png"
        image_host.files["/data/upload/1/real.png"] = b"REAL"
        fetcher = _fetcher(image_host.base_url)
        for name in ("a", "b", "c"):
            with pytest.raises(ImageUrlRefused):
                fetcher.fetch(f"/data/upload/1/{name}.png")
        assert other.seen == []
        assert fetcher.fetch("/data/upload/1/ok.png") == b"REAL"  # a redirect within Label Studio is fine
    finally:
        other.stop()


@pytest.mark.parametrize(
    "reference",
    [
        "/data/local-files/?d=../../etc/passwd",
        "/data/local-files/?d=images/../../../etc/passwd",
        "/data/local-files/?d=%2e%2e/%2e%2e/etc/passwd",
        "/data/local-files/?d=%252e%252e/%252e%252e/etc/passwd",
        "/data/local-files/?d=..%5c..%5cwindows%5cwin.ini",
        "/data/local-files/?d=images/..%2F..%2Fetc/passwd",
        "/data/upload/../../etc/passwd",
        "/data/upload/1/%2e%2e/%2e%2e/secret",
        "/storage-data/uploaded/?filepath=../../etc/passwd",
        "http://127.0.0.1:{port}/data/local-files/?d=../../etc/passwd",
        "http://127.0.0.1:{port}/data/upload/1/../../../etc/passwd",
    ],
)
def test_path_traversal_in_task_urls_is_refused_unfetched(image_host, reference):
    fetcher = _fetcher(image_host.base_url)
    with pytest.raises(ImageUrlRefused):
        fetcher.fetch(reference.format(port=image_host.port))
    assert image_host.seen == []


def test_the_plugin_route_refuses_an_image_it_may_not_fetch_and_fetches_nothing(make_app, image_host):
    settings = PluginSettings(preannotate="automask", label_studio_url=image_host.base_url)
    http = make_app(plugin_settings=settings).test_client()
    body = {
        "tasks": [{"id": 1, "data": {"image": "http://169.254.169.254/latest/meta-data/iam"}}],
        "project": "1.1",
        "label_config": EXAMPLE_CONFIG,
    }
    for image in ("http://169.254.169.254/latest/meta-data/iam", "/data/local-files/?d=../../etc/passwd"):
        body["tasks"][0]["data"]["image"] = image
        response = http.post("/ls/predict", json=body)  # a batch: the task alone is refused
        assert response.status_code == 200, response.get_data(as_text=True)
        [answer] = response.get_json()["results"]
        assert "result" not in answer and answer["code"] == "image_url_refused", answer
    assert image_host.seen == []


# ------------------------------------------------------------------ caps
def test_bodies_over_the_limit_are_refused_with_413(make_app):
    http = make_app(max_body_mb=1).test_client()
    big = b"\x89PNG" + b"\x00" * (1024 * 1024 + 10)
    for path in ("/v1/images", "/v1/predict", "/ls/predict", "/ls/webhook"):
        kind = "application/json" if path.startswith("/ls/") else "application/octet-stream"
        response = http.post(path, data=big, content_type=kind)
        assert response.status_code == 413, (path, response.status_code)
        assert response.get_json()["error"] == "payload_too_large"
    assert http.post("/v1/images", data=png_bytes(picture())).status_code == 200


def test_images_over_the_pixel_limit_are_refused_with_413(make_app):
    http = make_app(max_pixels=80 * 60).test_client()
    assert http.post("/v1/images", data=png_bytes(picture(height=60, width=80))).status_code == 200
    too_big = http.post("/v1/images", data=encode_png(picture(height=61, width=80)))
    assert too_big.status_code == 413 and too_big.get_json()["error"] == "payload_too_large"
    bomb = http.post("/v1/images", data=corpus_by_name("png_header_bomb_30000").data)
    assert bomb.status_code == 413


# --------------------------------------------------------------- bind address
def test_the_server_and_the_plugin_listen_on_loopback_by_default(monkeypatch):
    from backend.serving.cli import bind_address, config_from_args
    from sam_plugin.cli import build_parser as plugin_parser

    for name in ("SAM_HOST", "SAM_PORT", "SAM_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    config = config_from_args([])
    assert config.host == "127.0.0.1" and config.token is None
    assert bind_address(config.host, config.port) == "127.0.0.1:9090"
    assert plugin_parser().parse_args([]).host == "127.0.0.1"
