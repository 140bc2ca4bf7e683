"""Fixtures for sam-annotate: a tiny model checkpoint, a tiny CLIP checkpoint and a folder of images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from backend.hub import save_checkpoint
from backend.model import build_sam
from tests.support.reference import tiny_vit_config
from tests.support.tiny_clip import tiny_clip_module

# Thresholds low enough for a random model to produce masks.
LOW_THRESHOLDS = [
    "--points-per-side",
    "4",
    "--pred-iou-thresh",
    "0",
    "--stability-score-thresh",
    "0",
    "--device",
    "cpu",
]


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_vit_config()
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(
        path, model_state=build_sam(config).state_dict(), config=config, meta={"purpose": "tests"}
    )
    return path


@pytest.fixture(scope="session")
def clip_path(tmp_path_factory):
    """A random tiny CLIP saved as a plain state dict (what ``clip.load(path)`` accepts)."""
    pytest.importorskip("clip")
    model = tiny_clip_module()
    path = tmp_path_factory.mktemp("clip") / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture()
def images_dir(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (60, 80)), ("b.jpg", (70, 50)), ("sub/c.png", (64, 64))):
        pixels = np.full((*size, 3), 90, dtype=np.uint8)
        pixels[10:40, 10:40] = rng.integers(0, 256, 3, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="session")
def sam3_folder(tmp_path_factory):
    """A tiny random SAM 3 in ``facebook/sam3``'s folder layout (``--model <folder>``)."""
    pytest.importorskip("transformers", minversion="5")
    from tests.inference.sam3.tiny_sam3 import save_tiny_sam3

    folder = tmp_path_factory.mktemp("sam3") / "tiny-sam3"
    save_tiny_sam3(folder)
    return folder
