"""sam-annotate: COCO / SA-1B outputs, resuming, fail-fast on missing CLIP weights."""

from __future__ import annotations

import json

import pytest

from backend.annotate import annotator as annotator_module
from backend.annotate.cli import main
from tests.annotate.conftest import LOW_THRESHOLDS

_ANNOTATE = annotator_module.Annotator.annotate


class _Crash(Exception):
    """Stands for the job being killed while working on an image."""


def _count_annotate_calls(monkeypatch, fail_on: str | None = None) -> list[str]:
    calls: list[str] = []
    original = _ANNOTATE

    def counting(self, path, *, file_name):
        if file_name == fail_on:
            raise _Crash(file_name)
        calls.append(file_name)
        return original(self, path, file_name=file_name)

    monkeypatch.setattr(annotator_module.Annotator, "annotate", counting)
    return calls


def test_no_surviving_mask_prints_how_to_lower_the_thresholds(images_dir, model_path, tmp_path, capsys):
    out = tmp_path / "out.json"
    impossible = ["--pred-iou-thresh", "1.0", "--stability-score-thresh", "1.0"]
    argv = [str(images_dir), "--everything", "--model", str(model_path), "--out", str(out), "--no-progress"]
    assert main([*argv, *impossible]) == 0
    assert json.loads(out.read_text())["annotations"] == []
    assert "--pred-iou-thresh 0.6" in capsys.readouterr().err


def test_everything_to_coco_loads_in_pycocotools(images_dir, model_path, tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "out.json"
    assert (
        main(
            [
                str(images_dir),
                "--everything",
                "--model",
                str(model_path),
                "--out",
                str(out),
                "--no-progress",
                *LOW_THRESHOLDS,
            ]
        )
        == 0
    )
    coco = COCO(str(out))
    assert sorted(img["file_name"] for img in coco.dataset["images"]) == ["a.png", "b.jpg", "sub/c.png"]
    assert [c["name"] for c in coco.dataset["categories"]] == ["object"]
    assert coco.dataset["annotations"], "the set-up should produce masks"
    for ann in coco.dataset["annotations"]:
        mask = coco.annToMask(ann)
        image = coco.imgs[ann["image_id"]]
        assert mask.shape == (image["height"], image["width"])
        assert mask.sum() == ann["area"]


def test_text_prompts_become_categories(images_dir, model_path, clip_path, tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "out.json"
    args = [str(images_dir), "--text", "cat", "--text", "dog", "--top-k", "2", "--clip-model", str(clip_path)]
    assert main([*args, "--model", str(model_path), "--out", str(out), "--no-progress", *LOW_THRESHOLDS]) == 0
    coco = COCO(str(out))
    assert [c["name"] for c in coco.dataset["categories"]] == ["cat", "dog"]
    per_image_and_category: dict[tuple[int, int], int] = {}
    for ann in coco.dataset["annotations"]:
        key = (ann["image_id"], ann["category_id"])
        per_image_and_category[key] = per_image_and_category.get(key, 0) + 1
        assert -1.0 <= ann["score"] <= 1.0
    assert per_image_and_category and max(per_image_and_category.values()) <= 2


def test_sa1b_writes_one_file_per_image(images_dir, model_path, tmp_path):
    out = tmp_path / "sa1b"
    assert (
        main(
            [
                str(images_dir),
                "--everything",
                "--format",
                "sa1b",
                "--model",
                str(model_path),
                "--out",
                str(out),
                "--no-progress",
                *LOW_THRESHOLDS,
            ]
        )
        == 0
    )
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert files == ["a.json", "b.json", "sub/c.json"]
    data = json.loads((out / "sub" / "c.json").read_text())
    assert data["image"] == {"file_name": "sub/c.png", "width": 64, "height": 64}
    for record in data["annotations"]:
        assert {
            "segmentation",
            "area",
            "bbox",
            "predicted_iou",
            "stability_score",
            "point_coords",
            "crop_box",
            "id",
        } <= set(record)


def test_an_interrupted_job_resumes_without_redoing_images(images_dir, model_path, tmp_path, monkeypatch):
    out = tmp_path / "out.json"
    args = [
        str(images_dir),
        "--everything",
        "--model",
        str(model_path),
        "--out",
        str(out),
        "--no-progress",
        *LOW_THRESHOLDS,
    ]
    calls = _count_annotate_calls(monkeypatch, fail_on="b.jpg")
    with pytest.raises(_Crash):
        main(args)
    assert calls == ["a.png"]
    assert not out.exists(), "no output before every image is done"
    assert not list(tmp_path.rglob("*.tmp")), "no half-written files"

    calls = _count_annotate_calls(monkeypatch)
    assert main(args) == 0
    assert calls == ["b.jpg", "sub/c.png"]
    assert len(json.loads(out.read_text())["images"]) == 3

    calls = _count_annotate_calls(monkeypatch)
    assert main(args) == 0
    assert calls == []


def test_other_settings_cannot_reuse_the_work_dir(images_dir, model_path, tmp_path, capsys):
    out = tmp_path / "out.json"
    base = [
        str(images_dir),
        "--everything",
        "--model",
        str(model_path),
        "--out",
        str(out),
        "--no-progress",
        *LOW_THRESHOLDS,
    ]
    assert main(base) == 0
    assert main([*base, "--crop-n-layers", "1"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_text_without_clip_weights_fails_before_any_work(images_dir, tmp_path, capsys, monkeypatch):
    import backend.registry

    def no_model(*args, **kwargs):
        raise AssertionError("the SAM model must not be loaded")

    monkeypatch.setattr(backend.registry, "load_model", no_model)
    status = main(
        [
            str(images_dir),
            "--text",
            "cat",
            "--clip-root",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "o.json"),
        ]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "ViT-B-32.pt" in err and str(tmp_path / "empty") in err
    assert not (tmp_path / "o.json").exists()


def test_unreadable_images_are_skipped_and_reported(images_dir, model_path, tmp_path, capsys):
    (images_dir / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out.json"
    status = main(
        [
            str(images_dir),
            "--everything",
            "--model",
            str(model_path),
            "--out",
            str(out),
            "--no-progress",
            *LOW_THRESHOLDS,
        ]
    )
    assert status == 1
    assert "broken.png" in capsys.readouterr().err
    assert len(json.loads(out.read_text())["images"]) == 3


def test_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--everything", "--out", str(tmp_path / "o.json")]) == 2
    assert "not a folder" in capsys.readouterr().err
