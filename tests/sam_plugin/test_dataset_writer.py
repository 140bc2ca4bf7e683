"""The fit() dataset folder: the training data format (backend/train/datasets.py), atomic, no duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from backend.formats.images import compute_image_id
from backend.train.datasets import LabelStudioFolder
from sam_plugin.dataset_writer import AcceptedMask, DatasetWriter, annotation_key


def _pixels(h: int = 20, w: int = 30) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_written_folder_is_read_back_by_the_training_loader(tmp_path: Path) -> None:
    pixels = _pixels()
    mask = np.zeros((20, 30), dtype=bool)
    mask[3:9, 4:20] = True
    writer = DatasetWriter(tmp_path)
    path = writer.write(
        annotation_key(1, 2, 3),
        pixels=pixels,
        image_id=compute_image_id(pixels),
        masks=[AcceptedMask(mask=mask, label="Cat", prompts={"points": [[5.0, 5.0]]})],
    )
    record = json.loads(path.read_text())
    assert record["image"] == f"images/{compute_image_id(pixels)}.png" and (
        record["width"],
        record["height"],
    ) == (30, 20)
    assert record["masks"][0]["label"] == "Cat" and record["masks"][0]["prompts"] == {"points": [[5.0, 5.0]]}
    item = LabelStudioFolder(tmp_path)[0]
    np.testing.assert_array_equal(item.image, pixels)
    np.testing.assert_array_equal(item.masks[0], mask)


def test_update_replaces_and_shared_image_is_stored_once(tmp_path: Path) -> None:
    pixels = _pixels()
    image_id = compute_image_id(pixels)
    writer = DatasetWriter(tmp_path)
    mask = np.ones((20, 30), dtype=bool)
    for _ in range(3):  # ANNOTATION_CREATED then two ANNOTATION_UPDATED
        writer.write("k1", pixels=pixels, image_id=image_id, masks=[AcceptedMask(mask=mask, label="A")])
    writer.write("k2", pixels=pixels, image_id=image_id, masks=[AcceptedMask(mask=mask, label="A")])
    assert sorted(p.name for p in (tmp_path / "annotations").iterdir()) == ["k1.json", "k2.json"]
    assert len(list((tmp_path / "images").iterdir())) == 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_annotation_without_masks_removes_the_file(tmp_path: Path) -> None:
    pixels = _pixels()
    writer = DatasetWriter(tmp_path)
    writer.write(
        "k", pixels=pixels, image_id="x", masks=[AcceptedMask(mask=np.ones((20, 30), bool), label=None)]
    )
    assert writer.write("k", pixels=pixels, image_id="x", masks=[]) is None
    assert not writer.annotation_path("k").exists()


def test_annotation_key_is_file_name_safe() -> None:
    assert annotation_key("1", "../2", "3/4") == "project1-task.._2-annotation3_4"
