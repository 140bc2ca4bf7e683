"""SAM 2.1 records: Meta's file names and URLs, found in the cache by name or loaded by path, family recognised."""

from __future__ import annotations

import pytest
import torch

from backend.hub import MODELS, load_model
from backend.model.sam2 import Sam2, build_sam2, sam2_config
from backend.serving.config import ServerConfig
from backend.serving.model_loading import load_engine

META_FILES = {
    "sam2.1_hiera_t": "sam2.1_hiera_tiny.pt",
    "sam2.1_hiera_s": "sam2.1_hiera_small.pt",
    "sam2.1_hiera_b+": "sam2.1_hiera_base_plus.pt",
    "sam2.1_hiera_l": "sam2.1_hiera_large.pt",
}


@pytest.mark.parametrize("name", sorted(META_FILES))
def test_each_size_has_metas_file_url_and_the_reference_generators_thresholds(name):
    record = MODELS[name]
    assert record.family == "sam2.1" and record.filename == META_FILES[name]
    assert record.url == f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/{META_FILES[name]}"
    assert record.config == sam2_config(name)
    assert record.automask_defaults == {"pred_iou_thresh": 0.8, "stability_score_thresh": 0.95}
    assert record.sha256 is None, "Meta publishes no digest: it is pinned on first download"


@pytest.fixture(scope="module")
def meta_layout_file(tmp_path_factory):
    """hiera_t with random weights, saved as Meta saves it: ``{"model": state_dict}`` plus video-only keys."""
    torch.manual_seed(3)
    network = build_sam2(sam2_config("sam2.1_hiera_t"))
    state = dict(network.state_dict())
    state["memory_encoder.out_proj.weight"] = torch.zeros(64, 256, 1, 1)  # a video-only key, skipped
    folder = tmp_path_factory.mktemp("cache")
    torch.save({"model": state}, folder / "sam2.1_hiera_tiny.pt")
    return folder, network


@pytest.mark.slow
def test_a_meta_file_loads_by_path_and_by_name_from_the_cache(meta_layout_file, monkeypatch):
    folder, network = meta_layout_file
    by_path = load_model(folder / "sam2.1_hiera_tiny.pt")
    monkeypatch.setenv("SAM_CACHE_DIR", str(folder))
    by_name = load_model("sam2.1_hiera_t")
    for loaded in (by_path, by_name):
        assert isinstance(loaded, Sam2)
        for key, value in network.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.slow
def test_the_server_serves_a_sam2_name_with_its_records_facts(meta_layout_file, monkeypatch):
    folder, _ = meta_layout_file
    monkeypatch.setenv("SAM_CACHE_DIR", str(folder))
    engine = load_engine("sam2.1_hiera_t", ServerConfig(model="sam2.1_hiera_t", device="cpu"))
    assert type(engine).__name__ == "Sam2Engine" and engine.name == "sam2.1_hiera_t"
    assert engine.facts.family == "sam2.1" and engine.facts.automask_defaults["pred_iou_thresh"] == 0.8
