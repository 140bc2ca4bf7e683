"""Accepted masks -> COCO annotations or an instance PNG, and back.

COCO segmentations are pycocotools RLE (through ``backend.formats.mask_codecs``),
bounding boxes ``[x, y, width, height]`` in original-image pixels, categories
numbered from 1 in the order of the widget's labels. Each annotation's
``score`` is a probability in ``[0, 1]``; the model's raw number rides along
under its own name (``predicted_iou``; ``text_similarity`` for a CLIP text
prompt; ``concept_score`` for an instance of a SAM 3 concept, one annotation
per instance kept).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backend.api.errors import InvalidInput
from backend.atomic_files import atomic_write_bytes
from backend.formats.images import encode_png
from widget.state import RAW_SCORE_NAMES, AcceptedMask

MAX_PNG_INSTANCES = 255


def mask_bbox_xywh(mask: np.ndarray) -> list[float]:
    """``[x, y, width, height]`` of the pixels of an ``HxW`` bool mask (zeros when empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def to_coco(
    masks: Sequence[AcceptedMask],
    *,
    labels: Sequence[str],
    image_size: tuple[int, int],
    image_id: int = 1,
    file_name: str = "",
) -> dict[str, Any]:
    """A COCO dataset dict (``images``, ``annotations``, ``categories``) for one image.

    Args:
        masks: Accepted masks, ``HxW`` bool each.
        labels: Category names; a mask whose label is missing gets a new category.
        image_size: ``(width, height)`` of the image in pixels.
        image_id: COCO id of the image.
        file_name: Stored in ``images[0]["file_name"]``.
    """
    from backend.formats.mask_codecs import to_coco_rle

    names = list(labels) + sorted({m.label for m in masks} - set(labels))
    category_ids = {name: i + 1 for i, name in enumerate(names)}
    annotations = [
        {
            "id": i + 1,
            "image_id": image_id,
            "category_id": category_ids[m.label],
            "segmentation": to_coco_rle(m.mask),
            "area": int(m.mask.sum()),
            "bbox": mask_bbox_xywh(m.mask),
            "iscrowd": 0,
            "score": float(m.score),
            **m.raw_scores,
        }
        for i, m in enumerate(masks)
    ]
    return {
        "images": [{"id": image_id, "width": image_size[0], "height": image_size[1], "file_name": file_name}],
        "annotations": annotations,
        "categories": [{"id": cid, "name": name} for name, cid in category_ids.items()],
    }


def from_coco(
    data: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, image_size: tuple[int, int]
) -> list[AcceptedMask]:
    """Accepted masks from :func:`to_coco` output (or a bare list of annotations).

    Args:
        data: A COCO dict with ``annotations`` (and optionally ``categories``),
            or a list of annotation dicts with an RLE ``segmentation``.
        image_size: ``(width, height)`` the masks must have.
    """
    from backend.formats.mask_codecs import from_coco_rle

    if isinstance(data, Mapping):
        annotations = data.get("annotations", [])
        names = {c["id"]: c["name"] for c in data.get("categories", [])}
    else:
        annotations, names = data, {}
    out = []
    for ann in annotations:
        mask = from_coco_rle(ann["segmentation"])
        check_mask_shape(mask, image_size)
        label = names.get(ann.get("category_id"), str(ann.get("category_id", "object")))
        raw = {name: float(ann[name]) for name in RAW_SCORE_NAMES if name in ann}
        out.append(AcceptedMask(mask=mask, label=label, score=float(ann.get("score", 1.0)), raw_scores=raw))
    return out


def load_masks(
    source: Sequence[np.ndarray] | Mapping[str, Any] | str | os.PathLike[str],
    *,
    label: str,
    image_size: tuple[int, int],
) -> list[AcceptedMask]:
    """Masks to continue editing, from any of the widget's formats.

    Args:
        source: ``HxW`` bool arrays; a COCO dict from :func:`to_coco`; or the
            path of an instance PNG from :func:`save_png`.
        label: Label of masks that carry none (arrays and PNG).
        image_size: ``(width, height)`` the masks must have.
    """
    if isinstance(source, (str, os.PathLike)):
        return load_png(source, label=label, image_size=image_size)
    if isinstance(source, Mapping):
        return from_coco(source, image_size=image_size)
    loaded = []
    for mask in source:
        array = np.asarray(mask).astype(bool)
        check_mask_shape(array, image_size)
        loaded.append(AcceptedMask(mask=array, label=label))
    return loaded


def check_mask_shape(mask: np.ndarray, image_size: tuple[int, int]) -> None:
    """Raise :class:`InvalidInput` unless ``mask`` is ``HxW`` for ``image_size`` = (W, H)."""
    width, height = image_size
    if mask.shape != (height, width):
        raise InvalidInput(
            f"mask has shape {mask.shape} but the image is {width}x{height}: "
            f"masks must be HxW = ({height}, {width}) bool arrays of this image"
        )


def instance_map(masks: Sequence[AcceptedMask], image_size: tuple[int, int]) -> np.ndarray:
    """``HxW`` uint8: 0 background, ``i`` where accepted mask ``i`` (1-based) is; later masks on top."""
    if len(masks) > MAX_PNG_INSTANCES:
        raise InvalidInput(
            f"{len(masks)} masks do not fit an 8-bit PNG (at most {MAX_PNG_INSTANCES}); use to_coco() instead"
        )
    width, height = image_size
    out = np.zeros((height, width), dtype=np.uint8)
    for i, m in enumerate(masks):
        out[m.mask] = i + 1
    return out


def save_png(
    path: str | os.PathLike[str], masks: Sequence[AcceptedMask], image_size: tuple[int, int]
) -> Path:
    """Write :func:`instance_map` as a grey PNG, atomically (temp file + rename).

    Returns:
        The path written.
    """
    target = Path(path)
    data = encode_png(instance_map(masks, image_size))
    atomic_write_bytes(target, data)
    return target


def load_png(path: str | os.PathLike[str], *, label: str, image_size: tuple[int, int]) -> list[AcceptedMask]:
    """Masks from an instance PNG written by :func:`save_png` (one per non-zero value, in value order)."""
    from PIL import Image

    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"no PNG file at {file}: give the path written by save_png()")
    with Image.open(file) as img:
        values = np.asarray(img)
    if values.ndim != 2:
        raise InvalidInput(
            f"{file} is not a single-channel instance PNG (shape {values.shape}); use save_png() output"
        )
    check_mask_shape(values, image_size)
    return [AcceptedMask(mask=values == v, label=label, score=1.0) for v in np.unique(values) if v != 0]
