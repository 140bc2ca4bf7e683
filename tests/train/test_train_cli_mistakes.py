"""sam-train and sam-eval facing a user's mistakes: each is a one-line error (exit status 2)
before any training, or handled, never a traceback nor a silently wrong run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.hub import load_checkpoint, save_checkpoint
from backend.train.cli import eval_main, train_main
from backend.train.datasets import open_dataset

from .conftest import TINY_CONFIG

QUICK = ["--steps", "1", "--batch", "1", "--masks-per-image", "1", "--rounds", "1"]
QUICK += ["--rounds-without-point", "0", "--no-progress", "--warmup", "0"]


@pytest.fixture
def base(tiny_sam, tmp_path) -> Path:
    path = tmp_path / "base.pt"
    save_checkpoint(path, model_state=tiny_sam.state_dict(), config=TINY_CONFIG, meta={})
    return path


def coco_folder(root: Path, *, objects: int = 1, **annotation_fields: object) -> Path:
    """A COCO file with one 40x48 image holding ``objects`` polygon masks."""
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(root / "images" / "a.png")
    annotations = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": [[4.0 + i, 4.0, 30.0, 4.0, 30.0, 30.0, 4.0 + i, 30.0]],
            "area": 676.0,
            "bbox": [4.0, 4.0, 26.0, 26.0],
            **annotation_fields,
        }
        for i in range(objects)
    ]
    dataset = {
        "images": [{"id": 1, "file_name": "a.png", "width": 48, "height": 40}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "thing"}],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(dataset))
    return path


def test_another_dataset_is_not_taken_for_the_finished_run_of_the_first(base, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = coco_folder(tmp_path / "first")
    second = coco_folder(tmp_path / "second", objects=2)
    out = str(tmp_path / "tuned.pt")
    assert train_main(["--data", str(first), "--base", str(base), "--out", out, *QUICK]) == 0
    capsys.readouterr()
    assert train_main(["--data", str(second), "--base", str(base), "--out", out, *QUICK]) == 2
    err = capsys.readouterr().err
    assert "trained something else" in err and str(second) in err and "--restart" in err
    assert train_main(["--data", str(second), "--base", str(base), "--out", out, *QUICK, "--restart"]) == 0
    assert load_checkpoint(out)[2]["data"] == str(second)


def test_the_embedding_cache_follows_the_base_weights_not_its_file_name(tiny_sam, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = coco_folder(tmp_path / "data")
    base = tmp_path / "base.pt"
    args = ["--data", str(data), "--base", str(base), "--freeze-encoder", "--cache-dir", "cache"]
    args += ["--out", str(tmp_path / "tuned.pt"), *QUICK, "--restart"]
    save_checkpoint(base, model_state=tiny_sam.state_dict(), config=TINY_CONFIG, meta={})
    assert train_main(args) == 0
    with torch.no_grad():
        for param in tiny_sam.image_encoder.parameters():
            param.add_(0.5)
    save_checkpoint(base, model_state=tiny_sam.state_dict(), config=TINY_CONFIG, meta={})  # same name
    assert train_main(args) == 0
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2, "the changed encoder's features are new entries"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "is not a JSON file"),
        ("[]", "is not a COCO instances file"),
        (None, "have no 'segmentation'"),
    ],
)
def test_a_file_that_is_not_coco_instances_is_a_clear_error(base, tmp_path, capsys, content, says):
    path = coco_folder(tmp_path / "d", segmentation=None)
    if content is not None:
        path.write_text(content)
    out = str(tmp_path / "o.pt")
    assert train_main(["--data", str(path), "--base", str(base), "--out", out, *QUICK]) == 2
    assert says in capsys.readouterr().err


def test_coco_without_iscrowd_trains(base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = coco_folder(tmp_path / "d")
    dataset = json.loads(path.read_text())
    for annotation in dataset["annotations"]:
        del annotation["iscrowd"]
    path.write_text(json.dumps(dataset))
    assert (
        train_main(["--data", str(path), "--base", str(base), "--out", str(tmp_path / "o.pt"), *QUICK]) == 0
    )


def test_sam_eval_json_on_coco_prints_only_json(base, tmp_path, capsys):
    path = coco_folder(tmp_path / "d")
    args = ["--model", str(base), "--data", str(path), "--clicks", "1", "--json", "--no-progress"]
    assert eval_main(args) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == 1


@pytest.mark.parametrize(
    ("flags", "says"), [(["--device", "cuda:7"], "not available"), (["--device", "foo"], "invalid device")]
)
def test_a_device_this_machine_lacks_is_a_clear_error(base, tmp_path, capsys, flags, says):
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has that device")
    path = coco_folder(tmp_path / "d")
    assert (
        train_main(
            ["--data", str(path), "--base", str(base), "--out", str(tmp_path / "o.pt"), *QUICK, *flags]
        )
        == 2
    )
    assert says in capsys.readouterr().err


def test_an_out_that_cannot_be_written_is_refused_before_training(base, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = coco_folder(tmp_path / "d")
    assert train_main(["--data", str(path), "--base", str(base), "--out", "/proc/sam_model.pt", *QUICK]) == 2
    assert "cannot write there" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists(), "nothing was trained"


def test_an_out_that_is_a_folder_is_refused_before_training(base, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    path = coco_folder(tmp_path / "d")
    assert (
        train_main(["--data", str(path), "--base", str(base), "--out", str(tmp_path / "models"), *QUICK]) == 2
    )
    assert "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists(), "nothing was trained"


def test_an_image_whose_objects_vanish_at_the_input_size_is_skipped_with_a_warning(
    base, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "d"
    path = coco_folder(root)
    dataset = json.loads(path.read_text())
    Image.fromarray(np.full((1000, 1000, 3), 90, np.uint8)).save(root / "images" / "big.png")
    dataset["images"].append({"id": 2, "file_name": "big.png", "width": 1000, "height": 1000})
    tiny = {"id": 9, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 1.0, "bbox": [500, 500, 1, 1]}
    dataset["annotations"].append({**tiny, "segmentation": [[500.0, 500.0, 501.0, 500.0, 501.0, 501.0]]})
    path.write_text(json.dumps(dataset))
    args = ["--data", str(path), "--base", str(base), "--out", str(tmp_path / "o.pt"), *QUICK]
    assert train_main([*args[: -len(QUICK)], *QUICK, "--steps", "4"]) == 0
    assert any("no mask is left" in record.getMessage() for record in caplog.records)
    assert len(open_dataset(path)) == 2


def test_corrected_annotations_are_not_taken_for_the_finished_run_and_other_spellings_resume(
    base, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    data = coco_folder(tmp_path / "d")
    args = ["--base", str(base), "--out", str(tmp_path / "o.pt"), *QUICK]
    assert train_main(["--data", str(data), *args]) == 0
    assert train_main(["--data", "d/../d/annotations.json", *args]) == 0, "the same file, spelt otherwise"
    capsys.readouterr()
    dataset = json.loads(data.read_text())
    dataset["annotations"][0]["segmentation"] = [
        [2.0, 2.0, 20.0, 2.0, 20.0, 20.0]
    ]  # an annotator's correction
    data.write_text(json.dumps(dataset))
    assert train_main(["--data", str(data), *args]) == 2
    assert "the annotations changed since" in capsys.readouterr().err
    assert train_main(["--data", str(data), *args, "--restart"]) == 0
    assert train_main(["--data", str(data), *args[: -len(QUICK)], *QUICK, "--batch", "2"]) == 2
    assert "--batch 1 there, 2 now" in capsys.readouterr().err, "settings are named by their flags"


def test_a_dataset_whose_objects_all_vanish_trains_nothing_and_says_so(base, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "d"
    path = coco_folder(root)
    dataset = json.loads(path.read_text())
    Image.fromarray(np.full((1000, 1000, 3), 90, np.uint8)).save(root / "images" / "a.png")
    dataset["images"][0].update(width=1000, height=1000)
    dataset["annotations"][0]["segmentation"] = [[500.0, 500.0, 501.0, 500.0, 501.0, 501.0]]
    path.write_text(json.dumps(dataset))
    out = tmp_path / "o.pt"
    assert train_main(["--data", str(path), "--base", str(base), "--out", str(out), *QUICK]) == 2
    assert "nothing was trained" in capsys.readouterr().err and not out.exists()


def test_coco_annotations_without_ids_train_and_without_a_category_are_named(
    base, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    path = coco_folder(tmp_path / "d")
    dataset = json.loads(path.read_text())
    del dataset["annotations"][0]["id"]
    path.write_text(json.dumps(dataset))
    args = ["--data", str(path), "--base", str(base), "--out", str(tmp_path / "o.pt"), *QUICK]
    assert train_main(args) == 0
    del dataset["annotations"][0]["category_id"]
    path.write_text(json.dumps(dataset))
    assert train_main([*args, "--restart"]) == 2
    assert "'category_id'" in capsys.readouterr().err
