"""Finding weights files: a local path, the packaged folder, the cache, or a verified download.

:func:`resolve_weights` looks, in order, for

1. an existing file at ``name_or_path`` (a path always wins);
2. a packaged model's file inside ``backend/hub/packaged_weights`` (``demo``);
3. ``<cache>/<filename>``, the cache being ``$SAM_CACHE_DIR``, else
   ``$XDG_CACHE_HOME/sam-server``, else ``~/.cache/sam-server``;
4. a download into the cache.

Downloads stream into ``<cache>/<filename>.part`` with a progress bar. An
interrupted download keeps its ``.part`` and the next call resumes it with
an HTTP ``Range`` request. The finished file is checked against the
record's SHA-256 and only then renamed (``os.replace``) to its final name,
so ``<cache>/<filename>`` only ever holds a complete, verified file; a
mismatch deletes the ``.part``. A ``<filename>.lock`` file (POSIX ``flock``)
keeps several processes, such as gunicorn workers, from downloading the same
file at once; its holder deletes it when done, whether the download worked or
not, so no lock file outlives a download. A record without a published SHA-256
(SAM 2.1's files) is pinned on first download: the digest is written to
``<filename>.sha256`` beside the file, and a later download of the same name
must match it. A failed download's message is one
sentence (why, the URL, where to put the file, ``$SAM_CACHE_DIR``); the
network library's own chain of errors stays on the exception's ``__cause__``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tqdm.auto import tqdm

from backend.api.errors import InvalidInput, WeightsUnavailable
from backend.atomic_files import atomic_write_bytes
from backend.hub.records import MODELS, ModelRecord, get_record

CACHE_ENV = "SAM_CACHE_DIR"
_CHUNK = 1 << 20
_TIMEOUT_S = (10, 60)  # connect, read


def default_cache_dir() -> Path:
    """``$SAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/sam-server``, else ``~/.cache/sam-server``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "sam-server"


def resolve_weights(
    name_or_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """Path of the weights file for a model name or a path.

    Args:
        name_or_path: A file path, or a registry name (``vit_b``, ``demo``...).
        cache_dir: Cache folder; default :func:`default_cache_dir`.
        download: Download a missing file; if false, raise instead.
        progress: Show a progress bar while downloading.

    Returns:
        An existing file.

    Raises:
        InvalidInput: Unknown name (the message lists the valid ones), or a
            path that does not exist.
        WeightsUnavailable: The file is neither here nor downloadable; the
            message names the URL and the exact path to put the file at.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    if name not in MODELS and (path.suffix in (".pt", ".pth") or os.sep in name or "/" in name):
        raise InvalidInput(f"no weights file at {path}; valid model names: {', '.join(MODELS)}")
    record = get_record(name)
    if record.hub_repo is not None:
        raise InvalidInput(
            f"model {name!r} is read from the Hugging Face Hub repository {record.hub_repo!r}, not from one "
            f"weights file: serve it with sam-server --model {name}, or load it with "
            "backend.inference.families.load_network"
        )
    if record.packaged_path is not None:
        if not record.packaged_path.is_file():
            raise WeightsUnavailable(
                f"the packaged weights of model {name!r} are missing: expected {record.packaged_path}. "
                "Reinstall sam-server, or give another model name or a checkpoint path"
            )
        return record.packaged_path
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = target / record.filename
    if target.is_file():
        _check_size(target, record)
        return target
    if not download:
        raise WeightsUnavailable(_manual_hint(record, target, "downloading is turned off"))
    return download_weights(record, target, progress=progress)


def download_weights(record: ModelRecord, target: Path, *, progress: bool = True) -> Path:
    """Download ``record.url`` to ``target``: resumable, verified, atomic.

    Args:
        record: The model's record (URL, SHA-256, size).
        target: Final path of the file.
        progress: Show a tqdm progress bar (on stderr).

    Returns:
        ``target``, holding the verified file.

    Raises:
        WeightsUnavailable: Network or disk failure (the ``.part`` stays for a
            resume), or a SHA-256 mismatch (the ``.part`` is deleted).
    """
    if record.url is None:
        raise WeightsUnavailable(_manual_hint(record, target, "it has no download URL"))
    part = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(target.with_name(target.name + ".lock")):
            if target.is_file():  # another process finished it while we waited
                return target
            digest = _fetch(
                record.url, part, size=record.size_bytes, progress=progress, label=record.filename
            )
            expected = record.sha256 or pinned_sha256(target)
            if expected is not None and digest != expected:
                part.unlink(missing_ok=True)
                raise WeightsUnavailable(
                    f"the file downloaded for model {record.name!r} from {record.url} has SHA-256 {digest}, "
                    f"expected {expected}; it was deleted. Try again; if this persists the file at that "
                    "URL has changed: download it yourself, check it, and pass its path instead of the name"
                )
            if record.sha256 is None:
                atomic_write_bytes(_pin_path(target), f"{digest}\n".encode())
            os.replace(part, target)
    except (requests.RequestException, OSError) as exc:
        kept = part.stat().st_size if part.is_file() else 0
        raise WeightsUnavailable(
            _manual_hint(record, target, f"the download failed: {_download_failure(exc, record.url)}")
            + (f" {kept} bytes are kept in {part}; the next attempt resumes from there." if kept else "")
        ) from exc
    return target


def pinned_sha256(target: Path) -> str | None:
    """The SHA-256 pinned when ``target`` was first downloaded (records without a published one), or None."""
    pin = _pin_path(target)
    return pin.read_text().strip() if pin.is_file() else None


def _pin_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _fetch(url: str, part: Path, *, size: int | None, progress: bool, label: str) -> str:
    """Append ``url``'s missing bytes to ``part``; return the SHA-256 hex of the whole file."""
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    digest = hashlib.sha256()
    if offset:
        with part.open("rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
    if size is not None and offset == size:  # complete from an earlier run
        return digest.hexdigest()
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with requests.get(url, headers=headers, stream=True, timeout=_TIMEOUT_S) as response:
        if response.status_code == 416 and offset:  # nothing left to fetch; the hash check decides
            return digest.hexdigest()
        response.raise_for_status()
        if offset and response.status_code != 206:  # the server ignored the range: start over
            offset, digest = 0, hashlib.sha256()
        length = int(response.headers.get("Content-Length") or 0)
        total = offset + length if length else size
        with (
            part.open("ab" if offset else "wb") as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=not progress,
            ) as bar,
        ):
            for chunk in response.iter_content(chunk_size=_CHUNK):
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    return digest.hexdigest()


def _check_size(path: Path, record: ModelRecord) -> None:
    actual = path.stat().st_size
    if record.size_bytes is not None and actual != record.size_bytes:
        raise WeightsUnavailable(
            f"{path} has {actual} bytes but the weights of model {record.name!r} have {record.size_bytes}: "
            "it is incomplete or another file. Delete it to download it again"
        )


def _download_failure(exc: BaseException, url: str) -> str:
    """Why a download failed, in a few words (no repr of the network library's objects)."""
    host = urlsplit(url).hostname or url
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"the proxy (HTTPS_PROXY / HTTP_PROXY) does not let it through to {host}"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot connect to {host} (is this machine offline?)"
    if isinstance(exc, requests.Timeout):
        return f"{host} did not answer within {_TIMEOUT_S[0]} s"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"{host} answered HTTP {exc.response.status_code}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return type(exc).__name__


def _manual_hint(record: ModelRecord, target: Path, reason: str) -> str:
    source = f"Download {record.url} yourself and save it" if record.url else f"Put {record.filename}"
    return (
        f"weights of model {record.name!r} are not available: {reason}. {source} as {target} "
        f"(or set {CACHE_ENV} to a folder holding {record.filename}, or pass the file's path instead of the name)."
    )


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path``, deleting the file when done.

    A waiter may lock the file just as its holder deletes it; it then holds a
    lock on a file no longer in the folder, so it checks, once locked, that
    the path still names the file it locked, and starts over otherwise (the
    usual pattern for lock files that are removed). No locking where
    ``fcntl`` is missing (Windows).
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    while True:
        with lock_path.open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            if not _same_file(f.fileno(), lock_path):
                continue  # deleted by the previous holder while we waited: lock the new one
            try:
                yield
            finally:
                lock_path.unlink(missing_ok=True)
                fcntl.flock(f, fcntl.LOCK_UN)
            return


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the open file ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), path.stat())
    except FileNotFoundError:
        return False
