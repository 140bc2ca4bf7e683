"""Sam2Predictor: the same features, masks, scores and logits as Meta's SAM2ImagePredictor.

Both predictors hold hiera_t with the same random weights at a 256-pixel model
input (Meta's feature sizes set to match), on odd, non-square images.
Candidates are compared best first; where two of Meta's scores are too close
to rank reliably, in the decoder's order (``Sam2Predictor.decode_torch``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.api.errors import InvalidInput
from backend.inference.sam2_predictor import Sam2Predictor
from tests.model.sam2.reference import (
    assert_close,
    assert_masks_match,
    build_reference,
    ours_from,
    reference_predictor,
)

SIZES = [(300, 412), (517, 333), (192, 256)]  # (height, width); the last: whole factors 3 and 4 of 64
REL = 1e-4


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _prompts(height: int, width: int) -> dict[str, dict]:
    w, h = width, height
    box = [0.1 * w, 0.2 * h, 0.8 * w, 0.9 * h]
    return {
        "one_point": dict(point_coords=[[0.3 * w, 0.4 * h]], point_labels=[1]),
        "points_with_negative": dict(
            point_coords=[[0.3 * w, 0.4 * h], [0.7 * w, 0.2 * h], [0.5 * w, 0.8 * h]], point_labels=[1, 0, 1]
        ),
        "box": dict(box=box),
        "box_and_point": dict(box=box, point_coords=[[0.5 * w, 0.5 * h]], point_labels=[0]),
        "boxes": dict(box=[box, [0.0, 0.0, 0.5 * w, 0.5 * h], [0.6 * w, 0.3 * h, w - 1.0, h - 1.0]]),
    }


@pytest.fixture(scope="module")
def predictors(tiny_pair):
    ours, ref = tiny_pair
    return Sam2Predictor(ours), reference_predictor(ref)


_ENCODED: dict[bytes, tuple] = {}


def _set(predictors, image):
    """Both predictors on ``image``; each image is encoded once per test session."""
    ours, ref = predictors
    key = image.tobytes()[:4096] + repr(image.shape).encode()
    if key not in _ENCODED:
        ours.set_image(image)
        ref.set_image(image)
        _ENCODED[key] = (ours.embedding, ref._features, ref._orig_hw)
    features, ref_features, ref_hw = _ENCODED[key]
    ours.set_embedding(features, original_size=image.shape[:2])
    # Meta's predictor has no public way to reuse features: restore what set_image stored.
    ref._features, ref._orig_hw, ref._is_image_set, ref._is_batch = ref_features, ref_hw, True, False


def _reference(ref, prompt: dict, multimask: bool, **extra):
    """Meta's logits, scores and low-res logits, always with a leading object axis."""
    args = {
        k: np.asarray(v, dtype=np.float64 if k != "point_labels" else np.int64) for k, v in prompt.items()
    }
    logits, scores, low = ref.predict(**args, **extra, multimask_output=multimask, return_logits=True)
    if logits.ndim == 3:
        logits, scores, low = logits[None], scores[None], low[None]
    return logits, scores, low


def _rankable(scores: np.ndarray) -> bool:
    """Whether the candidates' order is decided by more than rounding."""
    ranked = -np.sort(-scores, axis=-1)
    return scores.shape[-1] == 1 or bool((-np.diff(ranked, axis=-1) > 10 * REL).all())


def _compare(ours: Sam2Predictor, out, ref_logits, ref_scores, ref_low, prompt) -> None:
    if _rankable(ref_scores):
        order = np.argsort(-ref_scores, axis=-1, kind="stable")
        take = lambda a: np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)  # noqa: E731
        assert_close(out.scores, take(ref_scores))
        assert_close(out.low_res_logits, take(ref_low))
        assert_masks_match(out.masks, take(ref_logits))
    else:  # too close to rank: the decoder's order
        raw = ours.decode_torch(*_torch_prompt(prompt, len(ref_scores)))
        assert_close(raw.iou_pred, ref_scores)
        assert_close(raw.masks.clamp(-32, 32), ref_low)
        assert_masks_match(ours.upscale_logits(raw.masks).numpy() > 0, ref_logits)
    assert (np.diff(out.scores, axis=-1) <= 0).all()


def _torch_prompt(prompt: dict, batch: int):
    coords = labels = boxes = None
    if "point_coords" in prompt:
        coords = torch.tensor(prompt["point_coords"], dtype=torch.float32)[None].expand(batch, -1, -1)
        labels = torch.tensor(prompt["point_labels"])[None].expand(batch, -1)
    if "box" in prompt:
        boxes = torch.tensor(prompt["box"], dtype=torch.float32).reshape(-1, 4)
    return coords, labels, boxes


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_features_match_reference(predictors, size):
    ours, ref = predictors
    _set(predictors, _image(*size))
    assert_close(ours.embedding.image_embed, ref._features["image_embed"])
    assert_close(ours.embedding.feat_s0, ref._features["high_res_feats"][0])
    assert_close(ours.embedding.feat_s1, ref._features["high_res_feats"][1])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", list(_prompts(10, 10)))
@pytest.mark.parametrize("multimask", [True, False])
def test_prompt_matches_reference(predictors, size, case, multimask):
    ours, ref = predictors
    _set(predictors, _image(*size))
    prompt = _prompts(*size)[case]
    out = ours.predict(**prompt, multimask_output=multimask)
    ref_logits, ref_scores, ref_low = _reference(ref, prompt, multimask)
    batch = 3 if case == "boxes" else 1
    assert out.masks.shape == (batch, 3 if multimask else 1, *size)
    assert out.object_score_logits.shape == (batch, 1)
    _compare(ours, out, ref_logits, ref_scores, ref_low, prompt)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_mask_input_refinement_matches_reference(predictors, size):
    ours, ref = predictors
    _set(predictors, _image(*size))
    prompt = _prompts(*size)["one_point"]
    first = ours.predict(**prompt)
    mask_input = first.low_res_logits[0, :1]  # 1xLxL: the best candidate, clamped as Meta's
    out = ours.predict(**prompt, mask_input=mask_input, multimask_output=False)
    ref_logits, ref_scores, ref_low = _reference(ref, prompt, False, mask_input=mask_input)
    _compare(ours, out, ref_logits, ref_scores, ref_low, prompt)


def test_mask_input_alone(predictors):
    ours, ref = predictors
    size = SIZES[0]
    _set(predictors, _image(*size))
    side = ours.low_res_size
    mask_input = 4 * np.random.default_rng(0).standard_normal((1, side, side)).astype(np.float32)
    out = ours.predict(mask_input=mask_input)
    logits, scores, low = ref.predict(mask_input=mask_input, multimask_output=True, return_logits=True)
    _compare(ours, out, logits[None], scores[None], low[None], {})


def test_set_embedding_equals_set_image(predictors):
    ours, _ = predictors
    image = _image(*SIZES[1], seed=4)
    features = ours.compute_embedding(image)
    ours.set_image(image)
    direct = ours.predict(point_coords=[[100, 100]], point_labels=[1])
    ours.reset_image()
    ours.set_embedding(features, original_size=image.shape[:2])
    cached = ours.predict(point_coords=[[100, 100]], point_labels=[1])
    np.testing.assert_array_equal(direct.masks, cached.masks)
    np.testing.assert_array_equal(direct.scores, cached.scores)
    assert features.nbytes == sum(t.numel() * 4 for t in features)


def test_clear_errors(tiny_pair):
    ours_model, _ = tiny_pair
    predictor = Sam2Predictor(ours_model)
    with pytest.raises(InvalidInput, match="no image is set"):
        predictor.predict(point_coords=[[1, 1]], point_labels=[1])
    features = predictor.compute_embedding(_image(64, 64))
    with pytest.raises(InvalidInput, match="Sam2ImageFeatures"):
        predictor.set_embedding(features.image_embed, original_size=(64, 64))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="shapes"):
        predictor.set_embedding(features._replace(feat_s0=features.feat_s1), original_size=(64, 64))
    predictor.set_embedding(features, original_size=(64, 64))
    with pytest.raises(InvalidInput, match="mask_input must be"):
        predictor.predict(point_coords=[[1, 1]], point_labels=[1], mask_input=np.zeros((1, 8, 8)))
    with pytest.raises(InvalidInput, match="outside"):
        predictor.predict(point_coords=[[100, 1]], point_labels=[1])


@pytest.mark.slow
def test_full_size_predictor_matches_reference():
    """hiera_t at 1024 pixels, Meta's predictor unmodified: features, one point, a box."""
    ref_model = build_reference("sam2.1_hiera_t", image_size=1024, seed=7)
    ours, ref = Sam2Predictor(ours_from(ref_model, 1024)), reference_predictor(ref_model)
    image = _image(600, 800, seed=5)
    ours.set_image(image)
    ref.set_image(image)
    assert_close(ours.embedding.image_embed, ref._features["image_embed"])
    assert_close(ours.embedding.feat_s0, ref._features["high_res_feats"][0])
    for prompt in (
        dict(point_coords=[[300.0, 200.0]], point_labels=[1]),
        dict(box=[100.0, 80.0, 500.0, 420.0]),
    ):
        out = ours.predict(**prompt)
        _compare(ours, out, *_reference(ref, prompt, True), prompt)
