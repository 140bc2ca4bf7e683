"""Final outputs of an annotation job: one COCO JSON file, or SA-1B JSON per image.

COCO: ``images`` (ids 1.. in file order), ``categories`` (ids 1.. in prompt
order), ``annotations`` with COCO RLE ``segmentation``, ``area``, ``bbox``
(``[x, y, width, height]`` as pycocotools computes it), ``iscrowd`` 0 and a
``score`` (CLIP similarity in text mode, SAM 3's instance score in concept
mode, predicted IoU otherwise, clipped to [0, 1] by
:func:`~backend.formats.scores.as_probability`); the raw values stay under
``predicted_iou``, ``text_score`` and ``concept_score``. Concept annotations
also keep SAM 3's detected box as ``instance_box`` (``[x1, y1, x2, y2]``).

SA-1B: ``<out>/<image path without suffix>.json`` holding ``image`` and
``annotations`` (the segment-everything records plus ``id`` and ``category``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pycocotools import mask as coco_mask

from backend.annotate.work_dir import write_json_atomic
from backend.formats.scores import as_probability


def coco_document(results: Iterable[dict[str, Any]], categories: list[str]) -> dict[str, Any]:
    """A COCO instance-segmentation document from per-image results (in order)."""
    category_ids = {name: i + 1 for i, name in enumerate(categories)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, result in enumerate(results, start=1):
        images.append(dict(result["image"], id=image_id))
        for record in result["annotations"]:
            rle = record["segmentation"]
            bbox = coco_mask.toBbox({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[record["category"]],
                    "segmentation": rle,
                    "area": int(record["area"]),
                    "bbox": [float(v) for v in bbox],
                    "iscrowd": 0,
                    "score": as_probability(_raw_score(record)),
                    **{name: float(record[name]) for name in _RAW_SCORES if name in record},
                    **({"instance_box": record["instance_box"]} if "instance_box" in record else {}),
                }
            )
    return {
        "info": {"description": "masks from sam-annotate"},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i, "name": name, "supercategory": "object"} for name, i in category_ids.items()
        ],
    }


_RAW_SCORES = ("predicted_iou", "text_score", "concept_score")
"""Scores kept as they are in COCO annotations, next to ``score``."""


def _raw_score(record: dict[str, Any]) -> float:
    """The score that ranks a record: CLIP's in text mode, SAM 3's for concepts, else the predicted IoU."""
    for name in ("text_score", "concept_score", "predicted_iou"):
        if name in record:
            return float(record[name])
    raise KeyError(f"a record without a score: {sorted(record)}")


def write_coco(path: str | Path, results: Iterable[dict[str, Any]], categories: list[str]) -> None:
    """Write the COCO document atomically."""
    write_json_atomic(path, coco_document(results, categories))


def sa1b_path(out_dir: str | Path, file_name: str) -> Path:
    """The SA-1B JSON file of an image (its relative path, suffix replaced by ``.json``)."""
    return Path(out_dir) / Path(file_name).with_suffix(".json")


def write_sa1b(out_dir: str | Path, result: dict[str, Any]) -> None:
    """Write one image's SA-1B JSON atomically."""
    annotations = [dict(record, id=i + 1) for i, record in enumerate(result["annotations"])]
    write_json_atomic(
        sa1b_path(out_dir, result["image"]["file_name"]),
        {"image": result["image"], "annotations": annotations},
    )
