"""Resumable job storage: one finished result file per image, written atomically.

A work folder holds ``job.json`` (the settings fingerprint) and
``parts/<key>.json`` per finished image. A part file either exists complete
or not at all (temporary file + ``os.replace``), so an interrupted job
resumes with the images that have no part yet, and never does one twice.
Once the job's output is written, :meth:`WorkDir.remove` deletes what the
job put there (the folder too, when nothing else is in it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backend.api.errors import InvalidInput
from backend.atomic_files import atomic_open

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def list_images(folder: str | Path) -> list[str]:
    """Image files under ``folder`` (recursive), as sorted POSIX paths relative to it."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a folder: give the folder that holds the images")
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder and ``os.replace``."""
    with atomic_open(path, "w", encoding="utf-8") as stream:
        json.dump(data, stream)


class WorkDir:
    """The work folder of one job.

    Args:
        path: Folder (created if missing).
        fingerprint: The job settings' fingerprint; a folder made for other
            settings is refused while it holds results (one that holds none,
            left by a run that failed before its first image, is taken over).
    """

    def __init__(self, path: str | Path, *, fingerprint: str) -> None:
        self.path = Path(path)
        self.parts = self.path / "parts"
        job_file = self.path / "job.json"
        stored = (
            json.loads(job_file.read_text(encoding="utf-8")).get("fingerprint")
            if job_file.is_file()
            else None
        )
        if stored is not None and stored != fingerprint and any(self.parts.glob("*.json")):
            raise InvalidInput(
                f"the work folder {self.path} belongs to a job with other settings; "
                "use the same settings to resume, or another --work-dir (or delete it) to start over"
            )
        if stored != fingerprint:
            write_json_atomic(job_file, {"fingerprint": fingerprint})
        self.parts.mkdir(parents=True, exist_ok=True)

    def part_path(self, file_name: str) -> Path:
        """Where the result of the image ``file_name`` (relative path) is stored."""
        digest = hashlib.sha256(file_name.encode("utf-8")).hexdigest()[:20]
        return self.parts / f"{digest}.json"

    def is_done(self, file_name: str) -> bool:
        """Whether the image already has a finished result."""
        return self.part_path(file_name).is_file()

    def save(self, file_name: str, result: dict[str, Any]) -> None:
        """Store an image's result (atomically)."""
        write_json_atomic(self.part_path(file_name), result)

    def load(self, file_name: str) -> dict[str, Any]:
        """An image's stored result."""
        return json.loads(self.part_path(file_name).read_text(encoding="utf-8"))

    def pending(self, file_names: Iterable[str]) -> list[str]:
        """The images without a finished result, in the given order."""
        return [name for name in file_names if not self.is_done(name)]

    def remove(self) -> None:
        """Delete the job's files, then the folder itself if nothing else is left in it."""
        for part in self.parts.glob("*.json"):
            part.unlink(missing_ok=True)
        (self.path / "job.json").unlink(missing_ok=True)
        for folder in (self.parts, self.path):
            try:
                folder.rmdir()
            except OSError:  # holds files that are not ours (a --work-dir given by hand)
                return
