"""Task image fetching: Label Studio paths, the host allowlist, traversal, redirects, tokens."""

from __future__ import annotations

import base64

import pytest

from backend.api.errors import InvalidInput, PayloadTooLarge
from sam_plugin.image_fetcher import ImageFetchFailed, ImageUrlRefused, TaskImageFetcher
from tests.sam_plugin.fakes import LS_URL, FakeSession, public_resolver


def make_fetcher(session: FakeSession, **kwargs: object) -> TaskImageFetcher:
    options = {
        "label_studio_url": LS_URL,
        "api_key": "tok",
        "allowed_hosts": ("images.example.com", "*.cdn.net"),
        "resolver": public_resolver,
        "session": session,
    }
    options.update(kwargs)
    return TaskImageFetcher(**options)  # type: ignore[arg-type]


def test_upload_is_fetched_from_label_studio_with_the_token(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/upload/3/cat.png", b"PNG")
    assert make_fetcher(fake_session).fetch("/data/upload/3/cat.png") == b"PNG"
    assert fake_session.requests[0][1]["Authorization"] == "Token tok"


def test_bare_upload_path_is_completed(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/upload/3/cat.png", b"x")
    assert make_fetcher(fake_session).fetch("upload/3/cat.png") == b"x"


def test_token_from_setup_is_used_when_none_is_configured(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/upload/1/a.png", b"x")
    make_fetcher(fake_session, api_key=None).fetch("/data/upload/1/a.png", fallback_token="from-setup")
    assert fake_session.requests[0][1]["Authorization"] == "Token from-setup"


def test_local_files_path_is_fetched(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/local-files/?d=photos/a%20b.jpg", b"jpg")
    assert make_fetcher(fake_session).fetch("/data/local-files/?d=photos/a b.jpg") == b"jpg"


@pytest.mark.parametrize(
    "reference",
    [
        "/data/local-files/?d=../../etc/passwd",
        "/data/local-files/?d=photos/%2e%2e/%2e%2e/secret",
        "/data/local-files/?d=/",
        "/data/upload/../../etc/passwd",
        "/data/upload/%2e%2e/x",
        "/storage-data/uploaded/?filepath=upload/../../x",
        "http://images.example.com/a/../../b.png",
    ],
)
def test_path_traversal_is_refused(fake_session: FakeSession, reference: str) -> None:
    with pytest.raises(ImageUrlRefused):
        make_fetcher(fake_session).fetch(reference)
    assert fake_session.requests == []


@pytest.mark.parametrize(
    "reference",
    ["file:///etc/passwd", "ftp://images.example.com/a.png", "gopher://x", "relative/path.png"],
)
def test_unsupported_schemes_are_refused(fake_session: FakeSession, reference: str) -> None:
    with pytest.raises(ImageUrlRefused):
        make_fetcher(fake_session).fetch(reference)


def test_unlisted_host_is_refused_and_allowlisted_hosts_fetched_without_token(
    fake_session: FakeSession,
) -> None:
    fetcher = make_fetcher(fake_session)
    with pytest.raises(ImageUrlRefused, match="SAM_ALLOWED_HOSTS"):
        fetcher.fetch("https://evil.example.org/a.png")
    fake_session.add("https://images.example.com/a.png", b"a")
    fake_session.add("https://eu.cdn.net/b.png", b"b")
    assert fetcher.fetch("https://images.example.com/a.png") == b"a"
    assert fetcher.fetch("https://eu.cdn.net/b.png") == b"b"
    assert all("Authorization" not in headers for _, headers in fake_session.requests)
    with pytest.raises(ImageUrlRefused):
        fetcher.fetch("https://cdn.net.evil.org/b.png")


def test_loopback_tricks_are_refused_but_a_local_label_studio_works(fake_session: FakeSession) -> None:
    fetcher = make_fetcher(
        fake_session, label_studio_url="http://127.0.0.1:8080", allowed_hosts=("loopback.example.com",)
    )
    with pytest.raises(ImageUrlRefused, match="loopback"):
        fetcher.fetch("http://loopback.example.com/a.png")
    for other in (
        "http://127.0.0.1:9090/v1/models",
        "http://localhost:8080/data/upload/1/a.png",
        "http://[::1]:8080/a.png",
        "http://2130706433:8080/a.png",
    ):
        with pytest.raises(ImageUrlRefused):
            fetcher.fetch(other)
    fake_session.add("http://127.0.0.1:8080/data/upload/1/a.png", b"ok")
    assert fetcher.fetch("http://127.0.0.1:8080/data/upload/1/a.png") == b"ok"


def test_credentials_in_url_are_refused(fake_session: FakeSession) -> None:
    with pytest.raises(ImageUrlRefused, match="credentials"):
        make_fetcher(fake_session).fetch("http://user:pw@images.example.com/a.png")


def test_redirect_to_an_unlisted_host_is_refused(fake_session: FakeSession) -> None:
    fake_session.add(
        f"{LS_URL}/data/upload/1/a.png", status=302, headers={"Location": "http://169.254.169.254/meta"}
    )
    with pytest.raises(ImageUrlRefused):
        make_fetcher(fake_session).fetch("/data/upload/1/a.png")
    assert len(fake_session.requests) == 1


def test_cloud_storage_goes_through_presign_and_redirect_without_leaking_the_token(
    fake_session: FakeSession,
) -> None:
    encoded = base64.urlsafe_b64encode(b"s3://bucket/cat.jpg").decode()
    presign = f"{LS_URL}/tasks/7/presign/?fileuri={encoded}"
    target = "https://images.example.com/bucket/cat.jpg?X-Amz-Signature=abc"
    fake_session.add(presign, status=303, headers={"Location": target})
    fake_session.add(target, b"jpeg")
    assert make_fetcher(fake_session).fetch("s3://bucket/cat.jpg", task_id=7) == b"jpeg"
    assert fake_session.requests[0][1].get("Authorization") == "Token tok"
    assert "Authorization" not in fake_session.requests[1][1]


def test_cloud_storage_needs_the_task_id(fake_session: FakeSession) -> None:
    with pytest.raises(InvalidInput, match="task id"):
        make_fetcher(fake_session).fetch("gs://bucket/a.png")


def test_label_studio_path_without_label_studio_url_says_what_to_set(fake_session: FakeSession) -> None:
    with pytest.raises(InvalidInput, match="LABEL_STUDIO_URL"):
        make_fetcher(fake_session, label_studio_url=None).fetch("/data/upload/1/a.png")


def test_http_errors_and_size_limit(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/upload/1/missing.png", status=401)
    fake_session.add(f"{LS_URL}/data/upload/1/big.png", b"x" * 2000)
    fetcher = make_fetcher(fake_session, max_bytes=1000)
    with pytest.raises(ImageFetchFailed, match="LABEL_STUDIO_API_KEY"):
        fetcher.fetch("/data/upload/1/missing.png")
    with pytest.raises(PayloadTooLarge):
        fetcher.fetch("/data/upload/1/big.png")


def test_data_uri_is_decoded_locally(fake_session: FakeSession) -> None:
    uri = "data:image/png;base64," + base64.b64encode(b"\x89PNG-bytes").decode()
    assert make_fetcher(fake_session).fetch(uri) == b"\x89PNG-bytes"
    assert fake_session.requests == []


def test_personal_access_token_is_exchanged_once_for_a_bearer_token(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/upload/1/a.png", b"a")
    fetcher = make_fetcher(fake_session, api_key=fake_session.valid_refresh)
    fetcher.fetch("/data/upload/1/a.png")
    fetcher.fetch("/data/upload/1/a.png")
    gets = [headers for url, headers in fake_session.requests if url.endswith("a.png")]
    assert [h["Authorization"] for h in gets] == ["Bearer access-1", "Bearer access-1"]
    assert fake_session.refreshes == 1


def test_rejected_personal_access_token_says_what_to_do(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/upload/1/a.png", b"a")
    with pytest.raises(ImageFetchFailed, match="personal access token"):
        make_fetcher(fake_session, api_key="eyJh.eyJi.wrong").fetch("/data/upload/1/a.png")
