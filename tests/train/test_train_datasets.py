from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from backend.api.errors import InvalidInput, NotFound
from backend.train.datasets import (
    CocoDataset,
    GeneratedScenes,
    LabelStudioFolder,
    Sa1bFolder,
    TrainingImage,
    open_dataset,
    resize_for_model,
)
from backend.train.scenes import generate_scene

from .conftest import TINY_SCENES

H, W = 30, 40


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)


def _masks() -> np.ndarray:
    masks = np.zeros((2, H, W), dtype=bool)
    masks[0, 2:10, 3:20] = True
    masks[1, 15:28, 25:39] = True
    return masks


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def test_label_studio_folder_reads_the_documented_layout(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.fromarray(_image()).save(tmp_path / "images" / "abc.png")
    record = {
        "image": "images/abc.png",
        "width": W,
        "height": H,
        "masks": [{"rle": _rle(m), "label": "thing", "prompts": {"points": [[5, 5]]}} for m in _masks()],
    }
    (tmp_path / "annotations" / "task-1.json").write_text(json.dumps(record))
    (tmp_path / "annotations" / "task-2.json").write_text(json.dumps({**record, "masks": []}))
    data = open_dataset(tmp_path)
    assert isinstance(data, LabelStudioFolder) and len(data) == 1
    item = data[0]
    assert np.array_equal(item.image, _image()) and np.array_equal(item.masks, _masks())
    assert item.key == "task-1"


def test_coco_json_with_polygons_and_rle_skips_crowds(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(_image()).save(tmp_path / "images" / "a.png")
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": W, "height": H},
            {"id": 2, "file_name": "none.png", "width": W, "height": H},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 1.0,
                "bbox": [0, 0, 1, 1],
                "segmentation": _rle(_masks()[0]),
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 1.0,
                "bbox": [0, 0, 1, 1],
                "segmentation": [[25, 15, 39, 15, 39, 28, 25, 28]],
            },
            {
                "id": 3,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 1,
                "area": 1.0,
                "bbox": [0, 0, 1, 1],
                "segmentation": _rle(_masks()[1]),
            },
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    data = open_dataset(tmp_path / "instances.json")
    assert isinstance(data, CocoDataset) and len(data) == 1, "image 2 has no annotation"
    item = data[0]
    assert item.masks.shape == (2, H, W)
    assert np.array_equal(item.masks[0], _masks()[0])
    assert item.masks[1, 20, 30] and not item.masks[1, 5, 5]


def test_sa1b_folder(tmp_path):
    Image.fromarray(_image()).save(tmp_path / "sa_1.jpg", quality=100)
    record = {
        "image": {"file_name": "sa_1.jpg", "width": W, "height": H},
        "annotations": [{"segmentation": _rle(m)} for m in _masks()],
    }
    (tmp_path / "sa_1.json").write_text(json.dumps(record))
    data = open_dataset(tmp_path)
    assert isinstance(data, Sa1bFolder) and len(data) == 1
    assert np.array_equal(data[0].masks, _masks()) and data[0].image.shape == (H, W, 3)


def test_mask_size_mismatch_is_reported(tmp_path):
    Image.fromarray(_image()).save(tmp_path / "sa_1.jpg")
    record = {"annotations": [{"segmentation": _rle(np.ones((5, 5), bool))}]}
    (tmp_path / "sa_1.json").write_text(json.dumps(record))
    with pytest.raises(InvalidInput, match="masks are"):
        Sa1bFolder(tmp_path)[0]


def test_missing_and_empty_datasets_raise(tmp_path):
    with pytest.raises(NotFound):
        open_dataset(tmp_path / "nope")
    with pytest.raises(InvalidInput):
        open_dataset(tmp_path)


def test_resize_keeps_aspect_and_masks_aligned():
    item = TrainingImage(image=_image(), masks=_masks(), key="k")
    small = resize_for_model(item, 20)
    assert small.image.shape == (15, 20, 3) and small.masks.shape == (2, 15, 20)
    assert small.masks[0, 3, 5] and not small.masks[0, 12, 15]


def test_generated_scenes_are_seeded_items():
    data = GeneratedScenes(3, first_seed=5, settings=TINY_SCENES)
    assert len(data) == 3 and data[1].key == "scene-6"
    assert np.array_equal(data[1].image, generate_scene(6, TINY_SCENES).image)
    with pytest.raises(IndexError):
        data[3]
