"""Accepted Label Studio masks -> the training folder (``fit()``'s output).

Writes exactly the format ``backend.train.datasets.LabelStudioFolder`` reads::

    <dir>/images/<image_id>.png            decoded pixels (EXIF applied), written once
    <dir>/annotations/<annotation_key>.json
        {"image": "images/<image_id>.png", "width": W, "height": H,
         "masks": [{"rle": COCO RLE, "label": str, "prompts": {...}}, ...]}

Every write is atomic (temporary file + ``os.replace``). One annotation has
one file, named after its project, task and annotation ids, so an update
replaces it instead of adding a duplicate; an image shared by several
annotations is stored once (its name is the SHA-256 of its pixels).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.api.errors import ServiceUnavailable
from backend.atomic_files import atomic_write_bytes
from backend.formats.images import encode_png
from backend.formats.mask_codecs import to_coco_rle


@dataclass
class AcceptedMask:
    """One mask the annotator accepted.

    Attributes:
        mask: ``HxW`` bool, original-image pixels.
        label: Its label (informative for training).
        prompts: The clicks / boxes / text that produced it, pixels (may be empty).
    """

    mask: np.ndarray
    label: str | None
    prompts: dict[str, Any] = field(default_factory=dict)


def annotation_key(project_id: Any, task_id: Any, annotation_id: Any) -> str:
    """File-name-safe key of one Label Studio annotation."""
    return f"project{_safe(project_id)}-task{_safe(task_id)}-annotation{_safe(annotation_id)}"


def _safe(value: Any) -> str:
    """``value`` in file-name-safe characters (which are also none of glob's)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(value))


def _atomic_write(path: Path, data: bytes) -> None:
    """Temporary file + ``os.replace``; a failed write (disk full) leaves ``path`` as it was.

    Raises:
        ServiceUnavailable: The folder cannot be written (full disk, permissions).
    """
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise _write_failed(path, exc) from exc


def _write_failed(path: Path, exc: OSError) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"cannot store {path.name} in the dataset folder {path.parent.parent} ({exc.strerror or exc}); "
        "free disk space or fix SAM_DATASET_DIR, then save the annotation again"
    )


class DatasetWriter:
    """Writes accepted annotations into one dataset folder.

    Args:
        root: The dataset folder (``SAM_DATASET_DIR``); created on first write.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def annotation_path(self, key: str) -> Path:
        """Where the annotation ``key`` is stored."""
        return self.root / "annotations" / f"{key}.json"

    def write(self, key: str, *, pixels: np.ndarray, image_id: str, masks: list[AcceptedMask]) -> Path | None:
        """Store (or replace) one annotation; remove it when it has no mask left.

        Args:
            key: From :func:`annotation_key`.
            pixels: ``HxWx3`` uint8 RGB, the decoded image.
            image_id: SHA-256 of ``pixels`` (``backend.formats.images.compute_image_id``).
            masks: The accepted masks, each ``HxW`` like ``pixels``.

        Returns:
            The annotation file, or ``None`` when there was nothing to store.
        """
        path = self.annotation_path(key)
        if not masks:
            path.unlink(missing_ok=True)
            return None
        height, width = pixels.shape[:2]
        image_rel = f"images/{image_id}.png"
        image_path = self.root / image_rel
        if not image_path.exists():
            _atomic_write(image_path, encode_png(pixels))
        record = {
            "image": image_rel,
            "width": int(width),
            "height": int(height),
            "masks": [{"rle": to_coco_rle(m.mask), "label": m.label, "prompts": m.prompts} for m in masks],
        }
        data = json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
        if not (path.exists() and path.read_bytes() == data):
            _atomic_write(path, data)
        return path

    def delete(self, key: str) -> bool:
        """Remove an annotation (its image stays: other annotations may use it)."""
        path = self.annotation_path(key)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def delete_annotation(self, project_id: Any, annotation_id: Any) -> int:
        """Remove a project's annotation known by its id alone (Label Studio's deletion webhook
        names no task); returns how many files went (0 or 1)."""
        return self._delete_matching(project_id, task_id=None, annotation_id=annotation_id)

    def delete_task(self, project_id: Any, task_id: Any) -> int:
        """Remove every annotation of a deleted task; returns how many files went."""
        return self._delete_matching(project_id, task_id=task_id, annotation_id=None)

    def _delete_matching(self, project_id: Any, *, task_id: Any, annotation_id: Any) -> int:
        """Remove the annotation files of ``project_id`` whose task or annotation id is the one
        given (None: any); ids are matched whole (``annotation5`` is not ``annotation55``)."""
        folder = self.root / "annotations"
        if not folder.is_dir():
            return 0
        any_id = r"[^-]+"  # _safe keeps '-', so an id with one could pose as another: such never match
        task = any_id if task_id is None else re.escape(_safe(task_id))
        annotation = any_id if annotation_id is None else re.escape(_safe(annotation_id))
        wanted = re.compile(rf"project{re.escape(_safe(project_id))}-task{task}-annotation{annotation}\.json")
        gone = 0
        for path in folder.glob(f"project{_safe(project_id)}-task*-annotation*.json"):
            if wanted.fullmatch(path.name):
                path.unlink(missing_ok=True)
                gone += 1
        return gone
