"""sam-annotate: COCO / SA-1B outputs, resuming, fail-fast on missing CLIP weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    assert "lower them, e.g. --pred-iou-thresh 0.8 --stability-score-thresh 0.85" in capsys.readouterr().err


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
        assert 0.0 <= ann["score"] <= 1.0 and ann["score"] == max(0.0, min(1.0, ann["text_score"]))
        assert "predicted_iou" in ann
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
    assert not (tmp_path / "out.json.work").exists(), "the work folder goes once the output is written"


def test_ctrl_c_says_how_to_resume_and_exits_130(images_dir, model_path, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.json"
    args = [str(images_dir), "--everything", "--model", str(model_path), "--out", str(out), "--no-progress"]
    args += LOW_THRESHOLDS
    original = _ANNOTATE

    def interrupted_on_b(self, path, *, file_name):
        if file_name == "b.jpg":
            raise KeyboardInterrupt
        return original(self, path, file_name=file_name)

    monkeypatch.setattr(annotator_module.Annotator, "annotate", interrupted_on_b)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert (
        "interrupted: run the same command again to resume" in err and str(tmp_path / "out.json.work") in err
    )
    assert not out.exists()
    calls = _count_annotate_calls(monkeypatch)
    assert main(args) == 0 and calls == ["b.jpg", "sub/c.png"]


def test_a_work_dir_given_by_hand_keeps_other_files(images_dir, model_path, tmp_path):
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    args = [str(images_dir), "--everything", "--model", str(model_path), "--out", str(tmp_path / "o.json")]
    assert main([*args, "--work-dir", str(work), "--no-progress", *LOW_THRESHOLDS]) == 0
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]


def test_help_shows_every_default_and_bad_values_name_the_flag(capsys):
    import inspect

    from backend.annotate.cli import build_parser
    from backend.hub import META_AUTOMASK_DEFAULTS
    from backend.inference.automask import AutomaskGenerator
    from tests.support.cli_help import assert_help_shows_defaults

    parser = build_parser()
    assert_help_shows_defaults(parser)
    generator_defaults = inspect.signature(AutomaskGenerator).parameters
    helps = {a.dest: " ".join(str(a.help).split()) for a in parser._actions}
    for name in (
        "points_per_side",
        "points_per_batch",
        "box_nms_thresh",
        "crop_n_layers",
        "min_mask_region_area",
    ):
        assert f"(default: {generator_defaults[name].default})" in helps[name], helps[name]
    for name, value in META_AUTOMASK_DEFAULTS.items():
        assert f"Meta's {value}" in helps[name], helps[name]
    with pytest.raises(SystemExit):
        parser.parse_args(["images", "--everything", "--pred-iou-thresh", "2"])
    err = capsys.readouterr().err
    assert "--pred-iou-thresh" in err and "must be in [0, 1]" in err and "pred_iou_thresh" not in err


def test_other_settings_cannot_reuse_the_work_dir(images_dir, model_path, tmp_path, capsys, monkeypatch):
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
    _count_annotate_calls(monkeypatch, fail_on="b.jpg")
    with pytest.raises(_Crash):  # a job left unfinished keeps its work folder
        main(base)
    assert main([*base, "--crop-n-layers", "1"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_a_run_that_failed_before_any_image_does_not_block_the_corrected_one(
    images_dir, model_path, tmp_path, capsys
):
    out = tmp_path / "out.json"
    base = [str(images_dir), "--everything", "--out", str(out), "--no-progress", *LOW_THRESHOLDS]
    assert main([*base, "--model", str(tmp_path / "no_such_model.pt")]) == 2  # a typo in the model
    assert main([str(tmp_path / "no_such_folder"), *base[1:], "--model", str(model_path)]) == 2
    capsys.readouterr()

    assert main([*base, "--model", str(model_path)]) == 0, capsys.readouterr().err
    assert out.is_file()


def test_text_without_clip_weights_fails_before_any_work(images_dir, tmp_path, capsys, monkeypatch):
    import backend.hub

    def no_model(*args, **kwargs):
        raise AssertionError("the SAM model must not be loaded")

    monkeypatch.setattr(backend.hub, "load_model", no_model)
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
    assert (tmp_path / "out.json.work").is_dir(), "kept, so that a rerun retries only the unreadable image"


def test_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--everything", "--out", str(tmp_path / "o.json")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_sigint_in_a_real_process_prints_how_to_resume_and_no_traceback(model_path, tmp_path):
    images = 24
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(images):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "out.json"
    executable = shutil.which("sam-annotate", path=os.path.dirname(sys.executable))
    prefix = [executable] if executable else [sys.executable, "-m", "backend.annotate.cli"]
    command = [*prefix, str(folder), "--everything", "--model", str(model_path), "--out", str(out)]
    command += ["--no-progress", *LOW_THRESHOLDS]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    parts = tmp_path / "out.json.work" / "parts"
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (parts.is_dir() and any(parts.glob("*.json"))) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate(timeout=10)[1]
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 130, err
    assert "interrupted: run the same command again to resume" in err and "Traceback" not in err, err
    kept = len(list(parts.glob("*.json")))  # finished parts, not a temporary file being written
    assert 1 <= kept < images and not out.exists()
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(json.loads(out.read_text())["images"]) == images
    assert not (tmp_path / "out.json.work").exists()


def test_thresholds_not_given_are_the_models_as_the_help_says():
    from backend.annotate.cli import _settings, build_parser
    from backend.hub import MODELS

    parser = build_parser()
    demo = _settings(parser.parse_args(["images", "--everything", "--model", "demo"]))
    assert demo.automask == MODELS["demo"].automask_defaults
    given = _settings(
        parser.parse_args(["images", "--everything", "--model", "demo", "--pred-iou-thresh", "0.5"])
    )
    assert given.automask["pred_iou_thresh"] == 0.5
    path = _settings(parser.parse_args(["images", "--everything", "--model", "/some/model.pt"]))
    assert path.automask == {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}


def test_the_lowering_hint_is_below_the_thresholds_used(images_dir, model_path, tmp_path, capsys):
    """Nothing passes a predicted-IoU threshold of 1; the hint lowers both thresholds from
    those used (it once suggested raising a stability threshold of 0.5 to 0.85)."""
    out, used = tmp_path / "out.json", ["--pred-iou-thresh", "1.0", "--stability-score-thresh", "0.5"]
    argv = [str(images_dir), "--everything", "--model", str(model_path), "--out", str(out), "--no-progress"]
    assert main([*argv, *used, "--points-per-side", "2"]) == 0
    assert "e.g. --pred-iou-thresh 0.8 --stability-score-thresh 0.35" in capsys.readouterr().err


def test_images_whose_sa1b_files_would_be_one_are_refused_before_any_work(
    images_dir, model_path, tmp_path, capsys, monkeypatch
):
    Image.open(images_dir / "a.png").save(images_dir / "a.jpg")
    calls = _count_annotate_calls(monkeypatch)
    out = tmp_path / "masks"
    argv = [
        str(images_dir),
        "--everything",
        "--model",
        str(model_path),
        "--format",
        "sa1b",
        "--out",
        str(out),
    ]
    assert main([*argv, "--no-progress", *LOW_THRESHOLDS]) == 2
    err = capsys.readouterr().err
    assert "a.jpg and a.png would both be written to" in err and "--format coco" in err
    assert calls == [] and not out.exists()


def _a_folder(tmp_path: Path) -> tuple[Path, str]:
    (out := tmp_path / "out").mkdir()
    return out, f"--out {out} is a folder"


def _a_file(tmp_path: Path) -> tuple[Path, str]:
    (out := tmp_path / "out").touch()
    return out, f"--out {out} is a file"


def _under_a_file(tmp_path: Path) -> tuple[Path, str]:
    (parent := tmp_path / "f").touch()
    return parent / "out.json", f"{parent} is a file, not a folder"


@pytest.mark.parametrize(
    "output_format, make_out",
    [("coco", _a_folder), ("sa1b", _a_file), ("coco", _under_a_file)],
    ids=["coco into a folder", "sa1b into a file", "a file as the folder"],
)
def test_an_out_the_output_cannot_go_to_is_refused_before_any_work(
    images_dir, model_path, tmp_path, capsys, monkeypatch, output_format, make_out
):
    out, says = make_out(tmp_path)
    calls = _count_annotate_calls(monkeypatch)
    argv = [str(images_dir), "--everything", "--model", str(model_path), "--format", output_format]
    assert main([*argv, "--out", str(out), "--no-progress", *LOW_THRESHOLDS]) == 2
    assert says in capsys.readouterr().err
    assert calls == []


def test_an_image_the_user_may_not_read_is_skipped_and_the_rest_written(
    images_dir, model_path, tmp_path, capsys, monkeypatch
):
    import backend.formats.images as images_module

    load = images_module.load_image

    def refusing(source, *args, **kwargs):
        if str(source).endswith("b.jpg"):
            raise PermissionError(13, "Permission denied", str(source))
        return load(source, *args, **kwargs)

    monkeypatch.setattr(images_module, "load_image", refusing)
    out = tmp_path / "out.json"
    argv = [str(images_dir), "--everything", "--model", str(model_path), "--out", str(out), "--no-progress"]
    assert main([*argv, *LOW_THRESHOLDS]) == 1
    assert "skipped b.jpg: [Errno 13] Permission denied" in capsys.readouterr().err
    assert sorted(i["file_name"] for i in json.loads(out.read_text())["images"]) == ["a.png", "sub/c.png"]
