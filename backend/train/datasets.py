"""Training and evaluation data: images with instance masks.

Every source yields :class:`TrainingImage` items (original pixels and
``NxHxW`` bool masks); :func:`resize_for_model` brings one to the model-input
frame (longest side = ``image_size``, no padding; padding happens in the
batch). Four sources:

* **Generated scenes** (:class:`GeneratedScenes`): item ``i`` is
  ``generate_scene(first_seed + i)``.
* **COCO** (:class:`CocoDataset`): a COCO instances JSON (pycocotools) and
  its image folder; crowd annotations are skipped.
* **SA-1B** (:class:`Sa1bFolder`): a folder of ``<name>.jpg`` images, each
  with ``<name>.json`` = ``{"image": {"file_name", "width", "height", ...},
  "annotations": [{"segmentation": COCO RLE, ...}, ...]}``.
* **Label Studio fit() folder** (:class:`LabelStudioFolder`), the format the
  Label Studio plugin writes::

      <dir>/images/<image_id>.<ext>          the image (any format PIL reads)
      <dir>/annotations/<annotation_key>.json
          {
            "image": "images/<image_id>.<ext>",   path relative to <dir>
            "width": W, "height": H,              original pixels
            "masks": [
              {"rle": {"size": [H, W], "counts": "..."},   COCO RLE (column-major)
               "label": "Cat",                            class name (informative)
               "prompts": {...}},                         clicks/boxes used (informative)
              ...
            ]
          }

  Every ``annotations/*.json`` file is one training image; several
  annotation files may point at the same image. Files with no masks are
  skipped.

:func:`open_dataset` picks the source from a path.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from backend.api.errors import InvalidInput, NotFound
from backend.formats.coordinates import resized_shape
from backend.formats.images import load_image
from backend.train.scenes import SceneSettings, generate_scene


@dataclass(frozen=True)
class TrainingImage:
    """One image and its objects.

    Attributes:
        image: ``HxWx3`` uint8 RGB.
        masks: ``NxHxW`` bool instance masks.
        key: Stable identifier (file name or scene seed).
    """

    image: np.ndarray
    masks: np.ndarray
    key: str


class MaskDataset(Protocol):
    """What the training loop and the evaluator read."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> TrainingImage: ...


def resize_for_model(item: TrainingImage, image_size: int) -> TrainingImage:
    """Resizes image (bilinear) and masks (nearest) so the longest side is ``image_size``.

    The SAM frame (aspect ratio kept). SAM 2.1 stretches the whole image to
    ``image_size x image_size`` instead (``backend.train.adapters``).

    Args:
        item: Original-resolution image and masks.
        image_size: The model's input side.

    Returns:
        A new item of size ``resized_shape(H, W, image_size)``.
    """
    height, width = item.image.shape[:2]
    new_h, new_w = resized_shape(height, width, image_size)
    if (new_h, new_w) == (height, width):
        return item
    image = np.asarray(Image.fromarray(item.image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    return TrainingImage(image=image, masks=resize_masks(item.masks, new_h, new_w), key=item.key)


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """``NxHxW`` bool masks -> ``N x height x width`` bool (nearest neighbour; the same array when
    the size is unchanged)."""
    if masks.shape[1:] == (height, width):
        return masks
    if not len(masks):
        return np.zeros((0, height, width), dtype=bool)
    resized = [
        np.asarray(Image.fromarray(m).resize((width, height), Image.Resampling.NEAREST)) for m in masks
    ]
    return np.stack(resized).astype(bool)


class GeneratedScenes:
    """``count`` procedural scenes with seeds ``first_seed .. first_seed + count - 1``.

    Args:
        count: Number of scenes.
        first_seed: Seed of item 0.
        settings: Scene difficulty.
    """

    def __init__(self, count: int, *, first_seed: int = 0, settings: SceneSettings | None = None) -> None:
        if count < 1:
            raise InvalidInput(f"scene count must be >= 1, got {count}")
        self.count = count
        self.first_seed = first_seed
        self.settings = settings or SceneSettings()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> TrainingImage:
        seed = self.first_seed + _check_index(index, self.count)
        scene = generate_scene(seed, self.settings)
        return TrainingImage(image=scene.image, masks=scene.masks, key=f"scene-{seed}")


class CocoDataset:
    """COCO instance annotations (polygons or RLE) read with pycocotools.

    Args:
        annotation_file: The instances JSON.
        image_dir: Folder holding the ``file_name`` of each image.
    """

    def __init__(self, annotation_file: str | Path, image_dir: str | Path) -> None:
        path = _existing(annotation_file)
        self.image_dir = _existing(image_dir)
        self.coco = _coco_index(path)
        self.image_ids = [
            image_id
            for image_id in sorted(self.coco.getImgIds())
            if self.coco.getAnnIds(imgIds=image_id, iscrowd=False)
        ]
        if not self.image_ids:
            raise InvalidInput(f"{path} has no image with a non-crowd annotation")

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> TrainingImage:
        image_id = self.image_ids[_check_index(index, len(self))]
        info = self.coco.loadImgs(image_id)[0]
        image = load_image(self.image_dir / info["file_name"])
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False))
        masks = np.stack([self.coco.annToMask(a).astype(bool) for a in annotations])
        return TrainingImage(image=image, masks=_match(masks, image, info["file_name"]), key=str(image_id))


class Sa1bFolder:
    """SA-1B layout: ``<name>.jpg`` + ``<name>.json`` pairs in one folder.

    Args:
        folder: The folder.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = _existing(folder)
        self.files = sorted(p for p in self.folder.glob("*.json"))
        if not self.files:
            raise InvalidInput(f"{self.folder} holds no SA-1B <name>.json annotation file")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> TrainingImage:
        path = self.files[_check_index(index, len(self))]
        record = _read_json(path)
        name = record.get("image", {}).get("file_name", path.with_suffix(".jpg").name)
        image = load_image(self.folder / name)
        masks = [decode_rle(a["segmentation"]) for a in record.get("annotations", [])]
        return TrainingImage(image=image, masks=_match(_stack(masks, image), image, path.name), key=path.stem)


class LabelStudioFolder:
    """The folder written by the Label Studio plugin's ``fit()`` (format in the module docstring).

    Args:
        folder: The dataset folder (holding ``images/`` and ``annotations/``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = _existing(folder)
        self.files = [
            p for p in sorted((self.folder / "annotations").glob("*.json")) if _read_json(p).get("masks")
        ]
        if not self.files:
            raise InvalidInput(f"{self.folder / 'annotations'} holds no annotation JSON with masks")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> TrainingImage:
        path = self.files[_check_index(index, len(self))]
        record = _read_json(path)
        image = load_image(self.folder / record["image"])
        masks = _stack([decode_rle(m["rle"]) for m in record["masks"]], image)
        return TrainingImage(image=image, masks=_match(masks, image, path.name), key=path.stem)


def dataset_fingerprint(path: str | Path) -> str:
    """A short hash of a dataset's annotations as they are now, so that a training state made
    before annotators added or corrected masks is not taken for this data's: a COCO file's
    bytes, or a folder's JSON files' names, sizes and modification times (not their pixels)."""
    target = Path(path)
    digest = hashlib.sha256()
    if target.is_file():
        digest.update(target.read_bytes())
    else:
        for file in sorted(target.rglob("*.json")):
            stat = file.stat()
            digest.update(f"{file.relative_to(target)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def _coco_index(path: Path) -> Any:
    """pycocotools' index of a COCO instances file, checked first (pycocotools fails on a
    malformed file with a bare ``AssertionError`` or ``KeyError``) and built without its
    progress lines on stdout (``sam-eval --json`` prints JSON there).

    Raises:
        InvalidInput: Not JSON, not a COCO instances object, or annotations without masks.
    """
    from pycocotools.coco import COCO

    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path} is not a JSON file ({exc}); --data takes a COCO instances JSON") from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("annotations"), list):
        raise InvalidInput(
            f"{path} is not a COCO instances file (an object with 'images' and 'annotations'); "
            "a Label Studio export is read from the plugin's dataset folder instead (docs/training.md)"
        )
    images = dataset.get("images")
    if not isinstance(images, list) or not all(
        isinstance(i, dict) and {"id", "file_name"} <= set(i) for i in images
    ):
        raise InvalidInput(f"{path}: 'images' must be a list of objects with an 'id' and a 'file_name'")
    annotations = dataset["annotations"]
    needed = {"image_id", "category_id"} if "categories" in dataset else {"image_id"}
    if not all(isinstance(a, dict) and needed <= set(a) for a in annotations):
        raise InvalidInput(f"{path}: every annotation needs {' and '.join(repr(k) for k in sorted(needed))}")
    unmasked = sum(1 for a in annotations if not a.get("segmentation"))
    if unmasked:
        raise InvalidInput(
            f"{path}: {unmasked} of {len(annotations)} annotations have no 'segmentation' (polygons or RLE); "
            "training needs masks, not only boxes"
        )
    for number, annotation in enumerate(annotations, start=1):
        annotation.setdefault("iscrowd", 0)  # optional in practice; pycocotools needs both
        annotation.setdefault("id", -number)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def open_dataset(path: str | Path, *, image_dir: str | Path | None = None) -> MaskDataset:
    """Opens a dataset, recognising its layout.

    Args:
        path: A COCO JSON file, an SA-1B folder, or a Label Studio fit()
            folder (one with an ``annotations/`` sub-folder).
        image_dir: Image folder for a COCO JSON (default: an ``images``
            folder next to the JSON, else the JSON's folder).

    Returns:
        The dataset.

    Raises:
        NotFound: When the path does not exist.
        InvalidInput: When the layout is not recognised or holds no masks.
    """
    target = _existing(path)
    if target.is_file():
        if image_dir is None:
            image_dir = target.parent / "images" if (target.parent / "images").is_dir() else target.parent
        return CocoDataset(target, image_dir)
    if (target / "annotations").is_dir():
        return LabelStudioFolder(target)
    return Sa1bFolder(target)


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (``counts`` as str or bytes) -> ``HxW`` bool."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    encoded = {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def _stack(masks: list[np.ndarray], image: np.ndarray) -> np.ndarray:
    return np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), dtype=bool)


def _match(masks: np.ndarray, image: np.ndarray, name: str) -> np.ndarray:
    if masks.shape[1:] != image.shape[:2]:
        raise InvalidInput(
            f"{name}: masks are {masks.shape[1:]} but the image is {image.shape[:2]} (height, width)"
        )
    return masks


def _existing(path: str | Path) -> Path:
    resolved = Path(path)
    if not resolved.exists():
        raise NotFound(f"{resolved} does not exist; check the dataset path")
    return resolved


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InvalidInput(f"{path} is not readable JSON: {error}") from error
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} must hold a JSON object")
    return data


def _check_index(index: int, length: int) -> int:
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for {length} items")
    return index
