"""A tiny random SAM 3 checkpoint folder and its loaded networks, shared by the SAM 3 tests."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers", minversion="5")

from backend.inference.sam3 import Sam3Models, load_sam3  # noqa: E402
from tests.inference.sam3.tiny_sam3 import save_tiny_sam3  # noqa: E402


@pytest.fixture(scope="session")
def sam3_folder(tmp_path_factory):
    """A folder laid out as ``facebook/sam3`` (both heads), random tiny weights."""
    folder = tmp_path_factory.mktemp("sam3") / "tiny-sam3"
    save_tiny_sam3(folder)
    return folder


@pytest.fixture(scope="session")
def sam3_models(sam3_folder) -> Sam3Models:
    return load_sam3(sam3_folder)


@pytest.fixture()
def image() -> np.ndarray:
    """A 90x130 (height x width) RGB image: not square, not the model's size."""
    return np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)
