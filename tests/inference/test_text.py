"""TextPrompter: CLIP ranking of candidate masks, checked against a direct computation with a tiny random CLIP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.api.errors import InvalidInput, WeightsUnavailable
from backend.formats.mask_codecs import to_coco_rle
from backend.inference.text import TextPrompter
from tests.support.tiny_clip import TINY_CLIP_RESOLUTION, tiny_clip_module

clip = pytest.importorskip("clip")

RESOLUTION = TINY_CLIP_RESOLUTION


@pytest.fixture(scope="module")
def tiny_clip():
    """A random CLIP with tiny widths, rebuilt from its state dict by ``clip.model.build_model``."""
    from torchvision import transforms

    source = tiny_clip_module()
    with torch.no_grad():  # the default init leaves some projections tiny; spread the scores out
        for parameter in source.parameters():
            parameter.normal_(0.0, 0.5)
    model = clip.model.build_model(source.state_dict()).float().eval()
    preprocess = transforms.Compose(
        [
            transforms.Resize(RESOLUTION, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(RESOLUTION),
            transforms.ToTensor(),
            transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ]
    )
    return model, preprocess


@pytest.fixture()
def prompter(tiny_clip):
    model, preprocess = tiny_clip
    return TextPrompter(model=model, preprocess=preprocess)


def _scene() -> tuple[np.ndarray, list[dict]]:
    """A 120x160 image with six rectangles of different colours and their records."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
    records = []
    for i, (x, y, w, h) in enumerate(
        [
            (5, 5, 30, 20),
            (50, 10, 40, 30),
            (100, 5, 50, 50),
            (10, 60, 20, 50),
            (60, 70, 45, 40),
            (120, 80, 30, 30),
        ]
    ):
        mask = np.zeros((120, 160), dtype=bool)
        mask[y : y + h, x : x + w] = True
        image[mask] = rng.integers(0, 256, 3, dtype=np.uint8)
        records.append(
            {"segmentation": to_coco_rle(mask), "bbox": [x, y, w - 1, h - 1], "area": w * h, "id": i}
        )
    return image, records


def _direct_scores(
    prompter: TextPrompter, preprocess, image: np.ndarray, records: list[dict], text: str
) -> list[float]:
    """Cosine similarities computed straight from CLIP's encode_image / encode_text."""
    from backend.formats.mask_codecs import from_coco_rle

    model = prompter.model
    with torch.no_grad():
        tokens = clip.tokenize([t.format(text) for t in prompter.templates])
        text_features = model.encode_text(tokens)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        text_embedding = text_features.mean(0)
        text_embedding = text_embedding / text_embedding.norm()
        scores = []
        for record in records:
            region = prompter.region_image(image, from_coco_rle(record["segmentation"]), record["bbox"])
            features = model.encode_image(preprocess(region)[None])[0]
            scores.append(float(features @ text_embedding / features.norm()))
    return scores


@pytest.mark.parametrize("text", ["cat", "a red car"])
def test_ranking_equals_direct_similarities(prompter, tiny_clip, text):
    image, records = _scene()
    ranked = prompter.rank(image, records, text, top_k=3)
    scores = _direct_scores(prompter, tiny_clip[1], image, records, text)
    expected = sorted(range(len(records)), key=lambda i: -scores[i])[:3]
    assert [r["id"] for r, _ in ranked] == expected
    assert [s for _, s in ranked] == pytest.approx([scores[i] for i in expected], abs=1e-5)
    assert max(scores) - min(scores) > 1e-3, "the set-up should separate the candidates"


def test_small_batches_give_the_same_ranking(tiny_clip):
    image, records = _scene()
    model, preprocess = tiny_clip
    one = TextPrompter(model=model, preprocess=preprocess, batch_size=1).rank(image, records, "dog", top_k=6)
    many = TextPrompter(model=model, preprocess=preprocess, batch_size=32).rank(
        image, records, "dog", top_k=6
    )
    assert [r["id"] for r, _ in one] == [r["id"] for r, _ in many]
    assert [s for _, s in one] == pytest.approx([s for _, s in many], abs=1e-5)


def test_box_keeps_candidates_inside(prompter):
    image, records = _scene()
    ranked = prompter.rank(image, records, "cat", box=[0, 0, 95, 45], top_k=6)
    assert sorted(r["id"] for r, _ in ranked) == [0, 1]


def test_box_tolerates_a_sliver_outside(prompter):
    image, records = _scene()  # record 1 spans x 50..89; cutting 2 columns leaves 95% inside
    ranked = prompter.rank(image, records, "cat", box=[52, 10, 89, 39], top_k=6)
    assert [r["id"] for r, _ in ranked] == [1]


def test_points_keep_candidates_containing_positives_and_not_negatives(prompter):
    image, records = _scene()
    ranked = prompter.rank(image, records, "cat", points=[[70, 20]], labels=[1], top_k=6)
    assert [r["id"] for r, _ in ranked] == [1]
    ranked = prompter.rank(image, records, "cat", points=[[70, 20]], labels=[0], top_k=6)
    assert sorted(r["id"] for r, _ in ranked) == [0, 2, 3, 4, 5]


def test_region_image_dims_the_background(prompter):
    image = np.full((50, 60, 3), 200, dtype=np.uint8)
    mask = np.zeros((50, 60), dtype=bool)
    mask[20:30, 20:40] = True
    region = np.asarray(prompter.region_image(image, mask, [20, 20, 19, 9]))
    assert region.shape == (12, 24, 3)  # box 20x10 pixels plus 10% context each side
    assert (region[1:11, 2:22] == 200).all()
    assert (region[0] == round(200 * prompter.background_brightness)).all()


def test_missing_weights_name_the_file(tmp_path):
    prompter = TextPrompter(clip_model="ViT-B/32", download_root=tmp_path)
    with pytest.raises(WeightsUnavailable, match=r"ViT-B-32\.pt") as info:
        prompter.load()
    assert str(tmp_path) in str(info.value) and "https://" in str(info.value)


def test_unknown_clip_model_lists_the_known_ones(tmp_path):
    with pytest.raises(InvalidInput, match="ViT-B/32"):
        TextPrompter(clip_model="ViT-Z/99", download_root=tmp_path).load()


def test_bad_inputs_are_refused(prompter):
    image, records = _scene()
    with pytest.raises(InvalidInput, match="non-empty string"):
        prompter.rank(image, records, "  ")
    with pytest.raises(InvalidInput, match="inverted"):
        prompter.rank(image, records, "cat", box=[50, 50, 10, 10])
    with pytest.raises(InvalidInput, match="one label"):
        prompter.rank(image, records, "cat", points=[[1, 2]], labels=[3])
    assert prompter.rank(image, [], "cat") == []
