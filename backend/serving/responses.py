"""Service results -> JSON bodies of the HTTP API (see :mod:`backend.serving.schemas`).

The client (:mod:`backend.client.http_client`) does the inverse.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from backend.api.answers import ObjectMasks
from backend.formats.mask_codecs import encode_mask

WIRE_TO_CODEC = {"coco_rle": "coco_rle", "png": "png", "polygon": "polygons"}
"""``format`` values of the API -> :mod:`backend.formats.mask_codecs` format names."""


def mask_bbox_xywh(mask: np.ndarray) -> list[int]:
    """COCO ``[x, y, width, height]`` of an ``HxW`` bool mask, ``[0, 0, 0, 0]`` if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def encode_segmentation(mask: np.ndarray, fmt: str) -> Any:
    """``HxW`` bool -> the JSON value of ``segmentation`` in API format ``fmt``."""
    encoded = encode_mask(mask, WIRE_TO_CODEC[fmt])
    if fmt == "png":
        return base64.b64encode(encoded).decode("ascii")
    return encoded


def object_to_json(obj: ObjectMasks, fmt: str) -> dict[str, Any]:
    """One object's ranked candidates -> ``ObjectResponse`` JSON."""
    masks = [
        {
            "score": float(obj.scores[k]),
            "stability_score": float(obj.stability_scores[k]),
            "area": int(obj.masks[k].sum()),
            "bbox": mask_bbox_xywh(obj.masks[k]),
            "segmentation": encode_segmentation(obj.masks[k], fmt),
        }
        for k in range(len(obj.masks))
    ]
    answer: dict[str, Any] = {"masks": masks, "logits_id": obj.logits_id, "labels": list(obj.labels)}
    if obj.box is not None:
        answer["box"] = [float(v) for v in obj.box]
    return answer


def to_jsonable(value: Any) -> Any:
    """Numpy scalars and arrays inside dicts and lists -> plain JSON values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("ascii")
    return value
