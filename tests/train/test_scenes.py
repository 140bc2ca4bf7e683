from __future__ import annotations

import numpy as np
import pytest

from backend.api.errors import InvalidInput
from backend.train.scenes import SHAPE_KINDS, SceneSettings, generate_scene


def test_same_seed_gives_identical_scene():
    a, b = generate_scene(7), generate_scene(7)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.masks, b.masks)
    assert a.labels == b.labels


def test_different_seeds_give_different_scenes():
    assert not np.array_equal(generate_scene(1).image, generate_scene(2).image)


@pytest.mark.parametrize("seed", range(10))
def test_masks_are_visible_disjoint_and_large_enough(seed):
    settings = SceneSettings(size=96, min_area=30)
    scene = generate_scene(seed, settings)
    assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
    assert scene.masks.dtype == bool and scene.masks.shape[1:] == (96, 96)
    assert len(scene.masks) == len(scene.labels) >= 1
    assert (scene.masks.sum(axis=(1, 2)) >= 30).all()
    # occlusion: every pixel belongs to at most one object
    assert scene.masks.sum(axis=0).max() <= 1
    assert set(scene.labels) <= set(SHAPE_KINDS)


def test_all_shape_kinds_appear():
    kinds = set()
    for seed in range(40):
        kinds.update(generate_scene(seed, SceneSettings(size=64, min_area=1)).labels)
    assert kinds == set(SHAPE_KINDS)


def test_ring_has_a_hole():
    for seed in range(200):
        scene = generate_scene(seed, SceneSettings(size=96, min_area=1, max_objects=1, min_objects=1))
        if scene.labels == ("ring",):
            mask = scene.masks[0]
            ys, xs = np.nonzero(mask)
            cy, cx = int(round(ys.mean())), int(round(xs.mean()))
            assert not mask[cy, cx], "the centre of a lone ring is background"
            return
    pytest.fail("no lone ring in 200 seeds")


@pytest.mark.parametrize(
    "seed, settings",
    [(-1, SceneSettings()), (0, SceneSettings(size=8)), (0, SceneSettings(min_objects=3, max_objects=2))],
)
def test_bad_settings_raise(seed, settings):
    with pytest.raises(InvalidInput):
        generate_scene(seed, settings)
