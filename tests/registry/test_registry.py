"""Model registry: official records, names, devices, and load_model end to end on tiny networks."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from urllib.parse import urlparse

import pytest
import torch

from backend.api.errors import InvalidInput
from backend.hub import (
    MODELS,
    ModelRecord,
    get_record,
    infer_config,
    list_models,
    load_model,
    pick_device,
    register,
    save_checkpoint,
)
from backend.model import VIT_B, VIT_H, VIT_L, VIT_T, build_sam
from tests.support.reference import tiny_vit_config

OFFICIAL = {"vit_h": VIT_H, "vit_l": VIT_L, "vit_b": VIT_B, "vit_t": VIT_T}
TINY = tiny_vit_config()


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_records_are_complete(name):
    record = get_record(name)
    assert record.config == OFFICIAL[name]
    assert re.fullmatch(r"[0-9a-f]{64}", record.sha256 or "")
    assert record.size_bytes and record.size_bytes > 10_000_000
    assert record.url and record.url.startswith("https://")
    assert PurePosixPath(urlparse(record.url).path).name == record.filename
    assert record.licence and record.description


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_configs_are_recognised_from_their_weights_layout(name):
    with torch.device("meta"):  # shapes and keys only, no memory
        state = build_sam(OFFICIAL[name]).state_dict()
    assert infer_config(state) == OFFICIAL[name]


def test_an_unofficial_layout_cannot_be_guessed():
    with pytest.raises(InvalidInput, match="config="):
        infer_config(build_sam(TINY).state_dict())


def test_unknown_name_lists_the_valid_names_and_mentions_paths():
    with pytest.raises(InvalidInput) as info:
        get_record("sam_huge")
    assert all(name in str(info.value) for name in MODELS) and "path" in str(info.value)


def test_register_refuses_to_replace_silently(monkeypatch):
    record = ModelRecord(name="extra", config=TINY, filename="extra.pt")
    monkeypatch.setitem(MODELS, "extra", record)
    with pytest.raises(InvalidInput, match="overwrite"):
        register(ModelRecord(name="extra", config=None, filename="other.pt"))
    register(ModelRecord(name="extra", config=None, filename="other.pt"), overwrite=True)
    assert get_record("extra").filename == "other.pt"


def test_list_models_is_json_ready_and_in_registry_order():
    models = list_models()
    assert [m["name"] for m in models] == list(MODELS)
    assert json.loads(json.dumps(models)) == models
    assert {m["name"]: m["encoder"] for m in models}["vit_t"] == "tiny_vit"


def test_pick_device():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto") == expected
    assert pick_device("cpu") == "cpu"
    with pytest.raises(InvalidInput, match="invalid device"):
        pick_device("gpu please")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInput, match="CUDA is not available"):
            pick_device("cuda:0")


def _tiny_sam(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_sam(TINY)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


def test_load_model_from_our_checkpoint(tmp_path):
    sam = _tiny_sam()
    save_checkpoint(tmp_path / "tiny.pt", model_state=sam.state_dict(), config=TINY, meta={})
    loaded = load_model(tmp_path / "tiny.pt")
    assert loaded.config == TINY and not loaded.training
    assert _same_weights(loaded, sam)
    half = load_model(str(tmp_path / "tiny.pt"), dtype="bfloat16")
    assert next(half.parameters()).dtype == torch.bfloat16


def test_load_model_by_name_takes_the_config_from_the_record(tmp_path, monkeypatch):
    sam = _tiny_sam(1)
    torch.save(sam.state_dict(), tmp_path / "tiny_official.pth")  # a plain state dict, like Meta's files
    monkeypatch.setitem(MODELS, "tiny", ModelRecord(name="tiny", config=TINY, filename="tiny_official.pth"))
    monkeypatch.setenv("SAM_CACHE_DIR", str(tmp_path))
    loaded = load_model("tiny", dtype=torch.float64)
    assert _same_weights(loaded, sam) and next(loaded.parameters()).dtype == torch.float64
    with pytest.raises(InvalidInput, match="config="):
        load_model(tmp_path / "tiny_official.pth")  # a plain file alone does not say its layout
    assert _same_weights(load_model(tmp_path / "tiny_official.pth", config=TINY), sam)


def test_load_model_reports_weights_of_another_network(tmp_path):
    other = tiny_vit_config(prompt_dim=16)
    save_checkpoint(tmp_path / "other.pt", model_state=build_sam(other).state_dict(), config=other, meta={})
    with pytest.raises(InvalidInput, match="with another shape"):
        load_model(tmp_path / "other.pt", config=TINY)


def test_load_model_rejects_bad_dtypes_and_names():
    with pytest.raises(
        InvalidInput, match="dtype must be one of 'float32', 'float16', 'bfloat16', 'float64'"
    ):
        load_model("demo", dtype="int8")
    with pytest.raises(InvalidInput, match="got 'float8_e4m3fn'"):  # floating-point, but no convolutions
        load_model("demo", dtype="float8_e4m3fn")
    with pytest.raises(InvalidInput, match="valid names"):
        load_model("vit_huge")


def test_the_packaged_demo_model_loads():
    path = get_record("demo").packaged_path
    if path is None or not path.is_file():
        pytest.skip(
            "backend/hub/packaged_weights/sam_demo.pt is missing: build it with `sam-train --demo --out backend/hub/packaged_weights/sam_demo.pt`"
        )
    sam = load_model("demo")
    assert not sam.training and sam.config.image_size > 0
    assert MODELS["demo"].config is None  # the configuration comes from the file


@pytest.mark.slow
def test_an_official_style_plain_state_dict_loads_by_path(tmp_path):
    from tests.support.reference import build_reference_sam

    reference = build_reference_sam(VIT_T, seed=3)  # MobileSAM's own module: the official key layout
    torch.save(reference.state_dict(), tmp_path / "mobile_sam.pt")
    sam = load_model(tmp_path / "mobile_sam.pt")
    assert sam.config == VIT_T
    assert _same_weights(sam, reference)
