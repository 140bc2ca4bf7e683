"""Download task images from Label Studio, and only from hosts we trust.

Task data holds an image *reference*; this module turns it into bytes:

* ``/data/upload/<project>/<file>`` (or ``upload/...``): Label Studio uploads.
* ``/data/local-files/?d=<path>``: Label Studio Local Storage.
* ``/storage-data/uploaded/?filepath=...``: Label Studio's storage proxy.
* ``s3://``, ``gs://``, ``azure-blob://``: cloud storage, resolved through
  ``/tasks/<id>/presign/?fileuri=<base64>`` which redirects to a presigned URL.
* ``http(s)://...``: only when the host is Label Studio's or in the allowlist.
* ``data:image/...;base64,...``: decoded locally.

Rules (no server-side request to arbitrary addresses): ``http``/``https``
only; every hop (redirects are followed by hand) must go to the Label
Studio host or an allowlisted host; hosts other than Label Studio's must not
resolve to loopback, link-local, unspecified, multicast or reserved
addresses; ``..`` path segments are refused; the Label Studio token is sent
to the Label Studio host only; downloads stop at ``max_bytes``.

``label_studio_sdk``'s ``get_local_path`` resolves the same references but
downloads any http(s) URL it is given and follows redirects anywhere, so it
cannot enforce the allowlist: the fetching is done here with ``requests``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import SplitResult, parse_qs, quote, unquote, urljoin, urlsplit

import requests
import urllib3

from backend.api.errors import InvalidInput, PayloadTooLarge, SamError

_CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
_MAX_REDIRECTS = 5
_CHUNK = 1 << 16

Resolver = Callable[[str], Sequence[str]]
"""Host name -> its IP addresses (injected in tests)."""

LABEL_STUDIO_IMAGE_PATHS = (
    re.compile(r"/data/upload/.+"),
    re.compile(r"/data/local-files/?"),
    re.compile(r"/storage-data/uploaded/?"),
    re.compile(r"/(tasks|projects)/\d+/(presign|resolve)/?"),
)
"""Paths on the Label Studio host (after its own base path) that serve task images."""


class ImageUrlRefused(InvalidInput):
    """The task's image reference points somewhere the plugin may not fetch from."""

    code = "image_url_refused"
    status = 403


class ImageFetchFailed(SamError):
    """The image host answered with an error or could not be reached."""

    code = "image_fetch_failed"
    status = 502


class LabelStudioRefused(ImageFetchFailed):
    """Label Studio refused the plugin's token for an image (every task's problem, not one's)."""

    code = "label_studio_refused"


class ImageFetchTimeout(ImageFetchFailed):
    """The whole download did not finish within its deadline."""

    code = "image_fetch_timeout"
    status = 504


def split_url(url: str) -> tuple[SplitResult, int | None]:
    """``urlsplit(url)`` and its port; a malformed URL is the client's error.

    Raises:
        InvalidInput: A broken IPv6 address, a port that is not a number or
            out of range (400, never a 500).
    """
    try:
        parts = urlsplit(url)
        return parts, parts.port
    except ValueError as exc:
        raise InvalidInput(f"the task's image URL {url!r} is malformed ({exc}); fix the task data") from None


class Deadline:
    """One deadline for a whole download, redirects and body included."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self, what: str) -> float:
        """Seconds left; raises :class:`ImageFetchTimeout` naming ``what`` once none are."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise ImageFetchTimeout(f"{what} did not finish within {self.seconds:g} s")
        return left


def _system_resolver(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ImageFetchFailed(f"cannot resolve image host {host!r}: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


def _has_dot_segment(path: str) -> bool:
    """True when a path (decoded once or twice) contains a ``..`` segment."""
    for candidate in (path, unquote(path)):
        parts = candidate.replace("\\", "/").split("/")
        if any(part == ".." for part in parts):
            return True
    return False


def _is_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and all(parts)


def _host_key(host: str | None, port: int | None, scheme: str) -> str:
    default = 443 if scheme == "https" else 80
    return f"{(host or '').lower()}:{port or default}"


class TaskImageFetcher:
    """Fetches task images for the plugin.

    Args:
        label_studio_url: Base URL of Label Studio, e.g. ``http://localhost:8080``.
        api_key: Label Studio token (legacy token or personal access token).
        allowed_hosts: Extra hosts (``host``, ``host:port`` or ``*.domain``).
        timeout_s: Timeout of each HTTP request.
        max_bytes: Largest accepted image.
        resolver: Host -> IP addresses, for the loopback check.
        session: HTTP session (tests inject one).
    """

    def __init__(
        self,
        *,
        label_studio_url: str | None,
        api_key: str | None = None,
        allowed_hosts: Sequence[str] = (),
        timeout_s: float = 30.0,
        max_bytes: int = 100 * 1024 * 1024,
        resolver: Resolver = _system_resolver,
        session: requests.Session | None = None,
    ) -> None:
        self._ls_url = label_studio_url.rstrip("/") if label_studio_url else None
        self._api_key = api_key
        self._allowed = tuple(h.strip().lower() for h in allowed_hosts if h.strip())
        self._timeout = timeout_s
        self._max_bytes = max_bytes
        self._resolver = resolver
        self._session = session or requests.Session()
        self._access_token: str | None = None
        self._lock = threading.Lock()
        self._ls_host: str | None = None
        self._ls_path = ""
        if self._ls_url:
            parts, port = split_url(self._ls_url)
            self._ls_host = _host_key(parts.hostname, port, parts.scheme)
            self._ls_path = parts.path.rstrip("/")

    # ------------------------------------------------------------------ resolve
    def resolve(self, reference: str, *, task_id: int | None = None) -> str:
        """Turn a task's image reference into an absolute URL (nothing fetched).

        Raises:
            ImageUrlRefused: Unsupported scheme, ``..`` segments, or a Label
                Studio path while ``LABEL_STUDIO_URL`` is not set.
        """
        ref = reference.strip()
        if not ref:
            raise InvalidInput("the task has an empty image reference")
        scheme = split_url(ref)[0].scheme.lower()
        if scheme in _CLOUD_SCHEMES:
            if task_id is None:
                raise InvalidInput(f"cloud storage image {ref!r} needs the task id to be presigned")
            fileuri = base64.urlsafe_b64encode(ref.encode()).decode()
            return self._on_label_studio(f"/tasks/{int(task_id)}/presign/?fileuri={fileuri}", ref)
        if scheme in ("http", "https"):
            parts = split_url(ref)[0]
            self._check_path(parts.path, ref)
            self._check_file_query(parse_qs(parts.query, keep_blank_values=True), ref)
            return ref
        if scheme:
            raise ImageUrlRefused(
                f"image reference {ref!r} uses the {scheme}:// scheme; only http(s), Label Studio "
                "uploads / local files and s3 / gs / azure-blob storage are supported"
            )
        if ref.startswith("upload/"):
            ref = "/data/" + ref
        elif ref.startswith("/upload/"):
            ref = "/data" + ref
        if not ref.startswith("/"):
            raise ImageUrlRefused(f"image reference {ref!r} is neither a URL nor a Label Studio path")
        parts = split_url(ref)[0]
        self._check_path(parts.path, ref)
        query = parse_qs(parts.query, keep_blank_values=True)
        self._check_file_query(query, ref)
        if parts.path.rstrip("/") == "/data/local-files" and "d" in query:
            # rebuild the query so what Label Studio reads is exactly what we checked
            ref = "/data/local-files/?d=" + quote(query["d"][-1], safe="/")
        return self._on_label_studio(ref, reference)

    def _check_file_query(self, query: dict[str, list[str]], ref: str) -> None:
        """Refuse ``..``, empty or absolute file paths in Label Studio's ``?d=`` / ``?filepath=`` parameters.

        Local files are named relative to Label Studio's document root
        (``LOCAL_FILES_DOCUMENT_ROOT``); an absolute path would point anywhere.
        """
        for key in ("d", "filepath"):
            for value in query.get(key, []):
                absolute = value.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", value) is not None
                if _has_dot_segment(value) or not value.strip("/") or absolute:
                    raise ImageUrlRefused(
                        f"image reference {ref!r}: the file path {value!r} is not allowed "
                        "(local files are named relative to Label Studio's document root)"
                    )

    def _check_path(self, path: str, ref: str) -> None:
        if _has_dot_segment(path):
            raise ImageUrlRefused(f"image reference {ref!r} contains '..' path segments")

    def _on_label_studio(self, path: str, ref: str) -> str:
        if not self._ls_url:
            raise InvalidInput(
                f"image {ref!r} is stored in Label Studio: set LABEL_STUDIO_URL (and LABEL_STUDIO_API_KEY) "
                "where the plugin runs so it can download it"
            )
        return self._ls_url + path

    # ------------------------------------------------------------------- checks
    def _is_label_studio(self, url: str) -> bool:
        parts, port = split_url(url)
        return self._ls_host is not None and _host_key(parts.hostname, port, parts.scheme) == self._ls_host

    def _check_label_studio_path(self, parts: SplitResult, url: str) -> None:
        """Refuse paths on the Label Studio host other than its image paths (its API, for one)."""
        path = parts.path
        if self._ls_path and path.startswith(self._ls_path + "/"):
            path = path[len(self._ls_path) :]
        if not any(pattern.fullmatch(path) for pattern in LABEL_STUDIO_IMAGE_PATHS):
            raise ImageUrlRefused(
                f"refusing to fetch {url!r}: on the Label Studio host only task images are fetched "
                "(/data/upload/..., /data/local-files/?d=..., /storage-data/uploaded/?filepath=..., "
                "/tasks/<id>/presign/ or /resolve/)"
            )
        self._check_file_query(parse_qs(parts.query, keep_blank_values=True), url)

    def _host_allowed(self, host: str, port: int | None, scheme: str) -> bool:
        with_port = _host_key(host, port, scheme)
        for entry in self._allowed:
            if entry.startswith("*."):
                if host.endswith(entry[1:]) and host != entry[2:]:
                    return True
            elif ":" in entry and not entry.startswith("["):
                if with_port == entry:
                    return True
            elif host == entry.strip("[]"):
                return True
        return False

    def check_url(self, url: str) -> bool:
        """Raise unless ``url`` may be fetched; return whether it is Label Studio's.

        Raises:
            ImageUrlRefused: Not http(s), credentials in the URL, a host that is
                neither Label Studio's nor allowlisted, a Label Studio path that
                serves no images, or an allowlisted host that resolves to a
                loopback / link-local / reserved address.
            InvalidInput: A malformed URL.
        """
        parts, port = split_url(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ImageUrlRefused(f"refusing to fetch {url!r}: only http and https are allowed")
        if parts.username or parts.password:
            raise ImageUrlRefused(f"refusing to fetch {url!r}: credentials in URLs are not allowed")
        host = (parts.hostname or "").lower()
        if not host:
            raise ImageUrlRefused(f"refusing to fetch {url!r}: no host")
        if self._is_label_studio(url):
            self._check_label_studio_path(parts, url)
            return True
        if not self._host_allowed(host, port, scheme):
            raise ImageUrlRefused(
                f"refusing to fetch an image from {host!r}: only the Label Studio host "
                f"({self._ls_url or 'LABEL_STUDIO_URL not set'}) and SAM_ALLOWED_HOSTS may serve task images; "
                f"add {host} to SAM_ALLOWED_HOSTS if you trust it"
            )
        for address in self._resolver(host):
            ip = ipaddress.ip_address(address.split("%")[0])
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved:
                raise ImageUrlRefused(
                    f"refusing to fetch from {host!r}: it resolves to {ip}, a loopback/link-local/reserved "
                    "address (only the Label Studio host itself may be local)"
                )
        return False

    # -------------------------------------------------------------------- fetch
    def fetch(
        self, reference: str, *, task_id: int | None = None, fallback_token: str | None = None
    ) -> bytes:
        """Download the image a task refers to.

        Args:
            reference: The task data value (URL, Label Studio path, cloud URI, data URI).
            task_id: The task id (needed for cloud storage presigning).
            fallback_token: Label Studio token used when no ``api_key`` was
                configured (the one Label Studio sends in ``/setup``).

        Returns:
            The encoded image bytes (EXIF is applied later, when decoding).

        Raises:
            ImageUrlRefused: See :meth:`resolve` and :meth:`check_url`.
            ImageFetchFailed: Network error, HTTP error or too many redirects.
            PayloadTooLarge: The image exceeds ``max_bytes``.
        """
        if reference.strip().lower().startswith("data:"):
            return self._decode_data_uri(reference.strip())
        url = self.resolve(reference, task_id=task_id)
        deadline = Deadline(self._timeout)
        for _ in range(_MAX_REDIRECTS + 1):
            is_ls = self.check_url(url)
            response = self._get(url, is_ls, self._api_key or fallback_token, deadline)
            if response.is_redirect or response.status_code in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                response.close()
                if not location:
                    raise ImageFetchFailed(f"{url} redirected without a Location header")
                url = urljoin(url, location)
                continue
            return self._read_body(response, url, deadline)
        raise ImageFetchFailed(f"too many redirects while fetching {reference!r}")

    def _get(self, url: str, is_ls: bool, token: str | None, deadline: Deadline) -> requests.Response:
        headers = {"Authorization": self._auth_header(token)} if is_ls and token else {}
        what = f"downloading the task image {url}"
        try:
            response = self._session.get(
                url, headers=headers, timeout=deadline.left(what), allow_redirects=False, stream=True
            )
            if is_ls and response.status_code == 401 and token and _is_jwt(token):
                response.close()
                self._access_token = None  # expired access token: exchange the PAT again
                headers = {"Authorization": self._auth_header(token)}
                response = self._session.get(
                    url, headers=headers, timeout=deadline.left(what), allow_redirects=False, stream=True
                )
        except requests.Timeout as exc:
            raise ImageFetchTimeout(f"{what} did not finish within {deadline.seconds:g} s") from exc
        except requests.RequestException as exc:
            raise ImageFetchFailed(f"cannot download the task image from {url}: {exc}") from exc
        if response.status_code >= 400:
            response.close()
            if is_ls and response.status_code in (401, 403):
                raise LabelStudioRefused(
                    f"downloading the task image {url} failed: HTTP {response.status_code} "
                    "(check LABEL_STUDIO_API_KEY)"
                )
            raise ImageFetchFailed(f"downloading the task image {url} failed: HTTP {response.status_code}")
        return response

    def _auth_header(self, token: str) -> str:
        if not _is_jwt(token):
            return f"Token {token}"
        with self._lock:
            if self._access_token is None:
                self._access_token = self._exchange_pat(token)
            return f"Bearer {self._access_token}"

    def _exchange_pat(self, refresh: str) -> str:
        url = f"{self._ls_url}/api/token/refresh"
        try:
            response = self._session.post(url, json={"refresh": refresh}, timeout=self._timeout)
            response.raise_for_status()
            return str(response.json()["access"])
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise LabelStudioRefused(
                f"Label Studio refused the personal access token in LABEL_STUDIO_API_KEY ({exc}); "
                "create a new token under Account & Settings"
            ) from exc

    def _read_body(self, response: requests.Response, url: str, deadline: Deadline) -> bytes:
        """The body, read as it arrives: each read waits at most until the download's deadline."""
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self._max_bytes:
            response.close()
            raise PayloadTooLarge(
                f"the task image {url} is {length} bytes, above the {self._max_bytes} byte limit"
            )
        chunks, total = [], 0
        what = f"downloading the task image {url}"
        try:
            while True:
                _limit_next_read(response, deadline.left(what))
                chunk = _read_some(response.raw)
                if not chunk:
                    break
                total += len(chunk)
                if total > self._max_bytes:
                    raise PayloadTooLarge(f"the task image {url} is above the {self._max_bytes} byte limit")
                chunks.append(chunk)
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
            raise ImageFetchTimeout(f"{what} did not finish within {deadline.seconds:g} s") from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise ImageFetchFailed(f"downloading the task image {url} was interrupted: {exc}") from exc
        finally:
            response.close()
        return b"".join(chunks)

    def _decode_data_uri(self, uri: str) -> bytes:
        header, _, payload = uri.partition(",")
        if ";base64" not in header.lower():
            raise InvalidInput("data: image URIs must be base64 encoded (data:image/png;base64,...)")
        if len(payload) * 3 // 4 > self._max_bytes:
            raise PayloadTooLarge(f"the data: image is above the {self._max_bytes} byte limit")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"the data: image URI is not valid base64: {exc}") from exc


def _limit_next_read(response: requests.Response, seconds: float) -> None:
    """Make the next read on ``response``'s socket wait at most ``seconds``."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _read_some(raw: Any) -> bytes:
    """What one receive gives (at most :data:`_CHUNK` bytes; empty at the end), content-decoded."""
    if isinstance(raw, urllib3.response.BaseHTTPResponse):
        return raw.read1(_CHUNK, decode_content=True)
    read1 = getattr(raw, "read1", None) or raw.read  # test doubles: a file object
    return bytes(read1(_CHUNK))
