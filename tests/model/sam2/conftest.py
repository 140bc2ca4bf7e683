"""Shared SAM 2.1 models: Meta's hiera_t at a 256-pixel input and ours with the same random weights."""

from __future__ import annotations

import pytest

from tests.model.sam2.reference import build_reference, ours_from

SMALL_IMAGE = 256


@pytest.fixture(scope="session")
def tiny_pair():
    """``(ours, reference)``: sam2.1_hiera_t at a 256-pixel input, identical random weights."""
    reference = build_reference("sam2.1_hiera_t", image_size=SMALL_IMAGE, seed=0)
    return ours_from(reference, SMALL_IMAGE), reference
