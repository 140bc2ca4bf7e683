"""The Ray runner gives the same results as the local one, on a small local Ray cluster (shared by the tests)."""

from __future__ import annotations

import json

import pytest

from backend.annotate.cli import main
from tests.annotate.conftest import LOW_THRESHOLDS


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    import os
    import sys

    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    python_path = os.pathsep.join([repo_root, *[p for p in sys.path if p]])
    failure = None
    for _ in range(3):  # Ray's agents may miss their 15 s start-up window on a loaded machine
        try:
            ray.init(
                num_cpus=2,
                num_gpus=0,
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=80 * 1024 * 1024,
                runtime_env={"env_vars": {"PYTHONPATH": python_path}},
            )
            break
        except Exception as error:  # noqa: BLE001 - Ray raises plain Exception on start-up timeouts
            failure = error
            ray.shutdown()
    else:
        pytest.skip(f"a local Ray cluster could not start on this machine: {failure}")
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_job_matches_the_local_job(images_dir, model_path, tmp_path, local_ray):
    common = [str(images_dir), "--everything", "--model", str(model_path), "--no-progress", *LOW_THRESHOLDS]
    assert main([*common, "--out", str(tmp_path / "local.json")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray.json"), "--ray", "--workers", "1"]) == 0
    local = json.loads((tmp_path / "local.json").read_text())
    on_ray = json.loads((tmp_path / "ray.json").read_text())
    assert on_ray["images"] == local["images"]
    assert len(on_ray["annotations"]) == len(local["annotations"]) > 0
    for got, expected in zip(on_ray["annotations"], local["annotations"], strict=True):
        assert got["segmentation"] == expected["segmentation"]
        assert got["score"] == pytest.approx(expected["score"], abs=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_concept_job_matches_the_local_job(images_dir, sam3_folder, tmp_path, local_ray):
    common = [str(images_dir), "--model", str(sam3_folder), "--concept", "cat", "--concept", "red car"]
    common += ["--concept-threshold", "0", "--device", "cpu", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "local.json")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray.json"), "--ray", "--workers", "1"]) == 0
    local = json.loads((tmp_path / "local.json").read_text())
    on_ray = json.loads((tmp_path / "ray.json").read_text())
    assert on_ray["images"] == local["images"] and on_ray["categories"] == local["categories"]
    assert len(on_ray["annotations"]) == len(local["annotations"]) > 0
    for got, expected in zip(on_ray["annotations"], local["annotations"], strict=True):
        assert got["category_id"] == expected["category_id"]
        assert got["segmentation"] == expected["segmentation"]
        assert got["score"] == pytest.approx(expected["score"], abs=1e-5)
