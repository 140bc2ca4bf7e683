"""sam-annotate --concept: SAM 3 finds every instance of each phrase, one COCO category per concept.

A tiny random SAM 3 (no download) gives arbitrary instances: these tests check
the structure (categories, masks at the image's size, scores sorted and above
the threshold, one encoding per image, resuming), not their quality.
"""

from __future__ import annotations

import json

import pytest

from backend.annotate import annotator as annotator_module
from backend.annotate.annotator import AnnotateSettings
from backend.annotate.cli import main

CONCEPTS = ["cat", "red car"]


def _concept_args(images_dir, sam3_folder, out, *extra: str) -> list[str]:
    args = [str(images_dir), "--model", str(sam3_folder), "--out", str(out), "--device", "cpu"]
    for concept in CONCEPTS:
        args += ["--concept", concept]
    return [*args, "--no-progress", *extra]


def _scores_by_image_and_category(annotations) -> dict[tuple[int, int], list[float]]:
    groups: dict[tuple[int, int], list[float]] = {}
    for ann in annotations:
        groups.setdefault((ann["image_id"], ann["category_id"]), []).append(ann["score"])
    return groups


@pytest.fixture()
def encodings(monkeypatch):
    """Counts image encodings (SAM 3's ViT) and concept queries."""
    from backend.inference.sam3 import Sam3Predictor

    counts = {"images": 0, "concepts": 0}
    compute_embedding, predict_concept = Sam3Predictor.compute_embedding, Sam3Predictor.predict_concept

    def counting_embedding(self, image):
        counts["images"] += 1
        return compute_embedding(self, image)

    def counting_concept(self, *args, **kwargs):
        counts["concepts"] += 1
        return predict_concept(self, *args, **kwargs)

    monkeypatch.setattr(Sam3Predictor, "compute_embedding", counting_embedding)
    monkeypatch.setattr(Sam3Predictor, "predict_concept", counting_concept)
    return counts


def test_concepts_to_coco_one_category_each_encoded_once(images_dir, sam3_folder, tmp_path, encodings):
    from pycocotools.coco import COCO

    out = tmp_path / "out.json"
    assert main(_concept_args(images_dir, sam3_folder, out, "--concept-threshold", "0")) == 0
    coco = COCO(str(out))
    assert sorted(img["file_name"] for img in coco.dataset["images"]) == ["a.png", "b.jpg", "sub/c.png"]
    assert [(c["id"], c["name"]) for c in coco.dataset["categories"]] == [(1, "cat"), (2, "red car")]
    assert encodings == {"images": 3, "concepts": 6}, "each image encoded once for both concepts"
    annotations = coco.dataset["annotations"]
    assert {ann["category_id"] for ann in annotations} == {1, 2}, "random weights at threshold 0 find some"
    for ann in annotations:
        image = coco.imgs[ann["image_id"]]
        mask = coco.annToMask(ann)
        assert mask.shape == (image["height"], image["width"])
        assert mask.sum() == ann["area"] > 0
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"]
        assert 0.0 <= ann["score"] <= 1.0 and ann["score"] == ann["concept_score"]
        assert len(ann["instance_box"]) == 4 and "predicted_iou" not in ann and ann["iscrowd"] == 0
    for scores in _scores_by_image_and_category(annotations).values():
        assert scores == sorted(scores, reverse=True), "best instance first within each image and concept"


def test_the_threshold_keeps_exactly_the_instances_above_it(images_dir, sam3_folder, tmp_path):
    everything = tmp_path / "all.json"
    assert main(_concept_args(images_dir, sam3_folder, everything, "--concept-threshold", "0")) == 0
    every_annotation = json.loads(everything.read_text())["annotations"]
    scores = sorted({ann["score"] for ann in every_annotation})
    assert len(scores) >= 2
    middle = scores[len(scores) // 2]
    threshold = (scores[len(scores) // 2 - 1] + middle) / 2  # between two scores: no tie at the threshold
    kept = tmp_path / "kept.json"
    assert main(_concept_args(images_dir, sam3_folder, kept, "--concept-threshold", str(threshold))) == 0
    above = [ann for ann in every_annotation if ann["score"] > threshold]
    got = json.loads(kept.read_text())["annotations"]
    assert 0 < len(got) < len(every_annotation)
    assert [(a["image_id"], a["category_id"]) for a in got] == [
        (a["image_id"], a["category_id"]) for a in above
    ]
    for a, b in zip(
        got, above, strict=True
    ):  # the same instances (masks are resized in a batch of another size)
        assert a["score"] == pytest.approx(b["score"], abs=1e-6) and a["score"] > threshold
        assert a["instance_box"] == pytest.approx(b["instance_box"], abs=1e-3)
        assert a["area"] == pytest.approx(b["area"], rel=0.05)


def test_nothing_above_the_threshold_says_how_to_lower_it(images_dir, sam3_folder, tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main(_concept_args(images_dir, sam3_folder, out, "--concept-threshold", "1")) == 0
    data = json.loads(out.read_text())
    assert data["annotations"] == [] and [c["name"] for c in data["categories"]] == CONCEPTS
    assert "--concept-threshold 0.3" in capsys.readouterr().err


def test_an_interrupted_concept_job_resumes_and_refuses_other_concepts(
    images_dir, sam3_folder, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out.json"
    args = _concept_args(images_dir, sam3_folder, out, "--concept-threshold", "0")
    original = annotator_module.Annotator.annotate
    calls: list[str] = []

    def crash_on_b(self, path, *, file_name):
        if file_name == "b.jpg":
            raise KeyboardInterrupt
        calls.append(file_name)
        return original(self, path, file_name=file_name)

    monkeypatch.setattr(annotator_module.Annotator, "annotate", crash_on_b)
    assert main(args) == 130
    assert calls == ["a.png"] and not out.exists()
    capsys.readouterr()

    other = [a if a != "red car" else "dog" for a in args]
    assert main(other) == 2, "another concept list must not reuse the finished images"
    assert "other settings" in capsys.readouterr().err
    assert main([*args, "--concept-threshold", "0.2"]) == 2, "nor another threshold"

    calls.clear()
    monkeypatch.setattr(
        annotator_module.Annotator,
        "annotate",
        lambda self, path, *, file_name: calls.append(file_name) or original(self, path, file_name=file_name),
    )
    assert main([*args, "--top-k", "3"]) == 0, "segment-everything settings do not matter to concepts"
    assert calls == ["b.jpg", "sub/c.png"]
    data = json.loads(out.read_text())
    assert len(data["images"]) == 3 and [c["name"] for c in data["categories"]] == CONCEPTS
    assert not (tmp_path / "out.json.work").exists()


def test_concepts_to_sa1b(images_dir, sam3_folder, tmp_path):
    out = tmp_path / "sa1b"
    args = _concept_args(images_dir, sam3_folder, out, "--concept-threshold", "0", "--format", "sa1b")
    assert main(args) == 0
    data = json.loads((out / "sub" / "c.json").read_text())
    assert data["image"] == {"file_name": "sub/c.png", "width": 64, "height": 64}
    assert data["annotations"]
    for record in data["annotations"]:
        assert record["category"] in CONCEPTS
        assert {"segmentation", "area", "bbox", "instance_box", "concept_score", "id"} <= set(record)


def test_a_concept_too_long_for_the_text_encoder_fails_before_any_image(
    images_dir, sam3_folder, tmp_path, capsys
):
    out = tmp_path / "out.json"
    args = [str(images_dir), "--model", str(sam3_folder), "--concept", "a" * 40, "--out", str(out)]
    assert main([*args, "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "tokens long" in err and "at most 32" in err
    assert not out.exists() and not list((tmp_path / "out.json.work" / "parts").glob("*.json"))


@pytest.fixture()
def no_model_loading(monkeypatch):
    import backend.hub
    import backend.inference.families

    def no_model(*args, **kwargs):
        raise AssertionError("no model may be loaded")

    monkeypatch.setattr(backend.hub, "load_model", no_model)
    monkeypatch.setattr(backend.inference.families, "load_network", no_model)


@pytest.mark.parametrize("model", ["vit_b", "sam2.1_hiera_t", "demo", "checkpoint file"])
def test_concepts_with_a_sam1_or_sam2_model_fail_before_any_work(
    model, images_dir, model_path, tmp_path, capsys, no_model_loading
):
    model = str(model_path) if model == "checkpoint file" else model
    out = tmp_path / "out.json"
    status = main([str(images_dir), "--concept", "cat", "--model", model, "--out", str(out), "--no-progress"])
    assert status == 2
    err = capsys.readouterr().err
    assert "--concept needs a SAM 3 model" in err and "--model sam3" in err and "--text" in err
    assert not out.exists() and not (tmp_path / "out.json.work").exists()


@pytest.mark.parametrize("mode", [["--everything"], ["--text", "cat"]])
def test_segment_everything_with_a_sam3_model_says_to_use_concepts(
    mode, images_dir, tmp_path, capsys, no_model_loading
):
    folder = tmp_path / "some-sam3-folder"
    folder.mkdir()
    for model in ("sam3", str(folder)):
        status = main([str(images_dir), *mode, "--model", model, "--out", str(tmp_path / "o.json")])
        assert status == 2
        err = capsys.readouterr().err
        assert "is a SAM 3 model: use --concept" in err and mode[0] in err
    assert not (tmp_path / "o.json.work").exists()


def test_segment_everything_flags_with_concepts_are_refused(images_dir, tmp_path, capsys, no_model_loading):
    args = [str(images_dir), "--concept", "cat", "--model", "sam3", "--out", str(tmp_path / "o.json")]
    assert main([*args, "--points-per-side", "8", "--pred-iou-thresh", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--points-per-side, --pred-iou-thresh" in err and "--concept-threshold" in err


def test_help_shows_the_concept_threshold_default_and_modes_do_not_mix(capsys):
    from backend.annotate.cli import build_parser

    parser = build_parser()
    helps = {a.dest: " ".join(str(a.help).split()) for a in parser._actions}
    assert "(default: 0.5)" in " ".join(parser.format_help().split())
    assert "--model sam3" in helps["concept"] and "one mode per job" in helps["concept"]
    assert parser.parse_args(["images", "--concept", "cat"]).concept_threshold == 0.5
    for bad in ("2", "-0.1", "nan"):
        with pytest.raises(SystemExit):
            parser.parse_args(["images", "--concept", "cat", "--concept-threshold", bad])
        err = capsys.readouterr().err
        assert "--concept-threshold" in err and ("must be in [0, 1]" in err or "not a number" in err)
    for other in (["--text", "dog"], ["--everything"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["images", "--concept", "cat", *other])
        assert "not allowed with argument" in capsys.readouterr().err


def test_fingerprints_hash_only_the_settings_of_their_mode():
    text = AnnotateSettings(texts=("cat",), automask={"pred_iou_thresh": 0.88})
    assert (
        text.fingerprint()
        == AnnotateSettings(
            texts=("cat",), automask={"pred_iou_thresh": 0.88}, concept_threshold=0.1
        ).fingerprint()
    )
    concepts = AnnotateSettings(model="sam3", concepts=("cat", "red car"))
    assert (
        concepts.fingerprint()
        == AnnotateSettings(
            model="sam3", concepts=("cat", "red car"), top_k=5, automask={"points_per_side": 8}, device="cuda"
        ).fingerprint()
    )
    for other in (
        AnnotateSettings(model="sam3", concepts=("red car", "cat")),  # category ids follow the order
        AnnotateSettings(model="sam3", concepts=("cat",)),
        AnnotateSettings(model="sam3", concepts=("cat", "red car"), concept_threshold=0.4),
    ):
        assert other.fingerprint() != concepts.fingerprint()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concepts": ("cat", " ")}, "non-empty"),
        ({"concepts": ("cat", "cat")}, "given once"),
        ({"concepts": ("cat",), "texts": ("dog",)}, "do not mix"),
        ({"concepts": ("cat",), "concept_threshold": 1.5}, "[0, 1]"),
        ({"concepts": ("cat",), "concept_threshold": float("nan")}, "[0, 1]"),
    ],
)
def test_bad_concept_settings_are_refused(kwargs, message):
    from backend.api.errors import InvalidInput

    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        AnnotateSettings(model="sam3", **kwargs)
