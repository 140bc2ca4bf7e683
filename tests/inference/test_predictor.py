"""SamPredictor: same masks, scores and logits as Meta's predictor on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.api.errors import InvalidInput
from backend.inference.predictor import SamPredictor
from backend.model import build_sam
from tests.support.reference import build_reference_sam, tiny_vit_config

SIZES = [(333, 517), (1200, 640)]  # (height, width), odd and non-square


@pytest.fixture(scope="module")
def models():
    config = tiny_vit_config()
    reference = build_reference_sam(config, seed=3)
    ours = build_sam(config)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours.eval(), reference


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _prompts(height: int, width: int) -> dict[str, dict]:
    w, h = width, height
    return {
        "one_point": dict(point_coords=[[0.3 * w, 0.4 * h]], point_labels=[1]),
        "points": dict(
            point_coords=[[0.3 * w, 0.4 * h], [0.7 * w, 0.2 * h], [0.5 * w, 0.8 * h]], point_labels=[1, 0, 1]
        ),
        "box": dict(box=[0.1 * w, 0.2 * h, 0.8 * w, 0.9 * h]),
        "box_points": dict(
            box=[0.1 * w, 0.2 * h, 0.8 * w, 0.9 * h], point_coords=[[0.5 * w, 0.5 * h]], point_labels=[0]
        ),
    }


def _assert_close(ours: np.ndarray, ref: np.ndarray, rel: float = 1e-4) -> None:
    scale = max(float(np.abs(ref).max()), 1e-6)
    assert np.abs(ours - ref).max() <= rel * scale


def _assert_masks_match(ours: np.ndarray, ref_logits: np.ndarray, rel: float = 1e-4) -> None:
    """Binary masks identical except where the reference logit is within tolerance of 0."""
    tol = rel * max(float(np.abs(ref_logits).max()), 1e-6)
    differ = ours != (ref_logits > 0)
    assert not (differ & (np.abs(ref_logits) > tol)).any()


def _ranked(masks, scores, low_res):
    order = np.argsort(-scores, axis=-1, kind="stable")

    def take(a):
        return np.take_along_axis(
            a, order.reshape(order.shape + (1,) * (a.ndim - order.ndim)), axis=order.ndim - 1
        )

    return take(masks), take(scores), take(low_res)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", ["one_point", "points", "box", "box_points"])
@pytest.mark.parametrize("multimask", [True, False])
def test_prompt_matches_reference(models, size, case, multimask):
    from segment_anything import SamPredictor as ReferencePredictor

    ours_model, reference = models
    image = _image(*size)
    prompt = _prompts(*size)[case]
    ours = SamPredictor(ours_model)
    ours.set_image(image)
    ref = ReferencePredictor(reference)
    ref.set_image(image)

    out = ours.predict(**prompt, multimask_output=multimask)
    ref_logits, ref_scores, ref_low = ref.predict(
        **{k: np.asarray(v) for k, v in prompt.items()}, multimask_output=multimask, return_logits=True
    )
    ref_logits, ref_scores, ref_low = _ranked(ref_logits, ref_scores, ref_low)

    _assert_close(ours.embedding.numpy(), ref.features.numpy())
    _assert_close(out.scores[0], ref_scores)
    _assert_close(out.low_res_logits[0], ref_low)
    _assert_masks_match(out.masks[0], ref_logits)
    assert (np.diff(out.scores[0]) <= 0).all()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_mask_input_refinement_matches_reference(models, size):
    from segment_anything import SamPredictor as ReferencePredictor

    ours_model, reference = models
    image = _image(*size, seed=1)
    prompt = _prompts(*size)["one_point"]
    ours, ref = SamPredictor(ours_model), ReferencePredictor(reference)
    ours.set_image(image)
    ref.set_image(image)
    first = ours.predict(**prompt)
    mask_input = first.low_res_logits[0, :1]  # 1xLxL, the best candidate

    out = ours.predict(**prompt, mask_input=mask_input, multimask_output=False)
    ref_logits, ref_scores, ref_low = ref.predict(
        **{k: np.asarray(v) for k, v in prompt.items()},
        mask_input=mask_input,
        multimask_output=False,
        return_logits=True,
    )
    _assert_close(out.scores[0], ref_scores)
    _assert_close(out.low_res_logits[0], ref_low)
    _assert_masks_match(out.masks[0], ref_logits)


def test_several_boxes_give_one_object_each(models):
    from segment_anything import SamPredictor as ReferencePredictor

    ours_model, reference = models
    height, width = SIZES[0]
    image = _image(height, width, seed=2)
    boxes = np.array([[10, 20, 200, 150], [250, 100, 500, 320], [0, 0, 516, 332]], dtype=np.float64)
    ours, ref = SamPredictor(ours_model), ReferencePredictor(reference)
    ours.set_image(image)
    ref.set_image(image)

    out = ours.predict(box=boxes)
    ref_boxes = ref.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float32), (height, width))
    with torch.no_grad():
        ref_logits, ref_scores, ref_low = ref.predict_torch(None, None, boxes=ref_boxes, return_logits=True)
    ref_logits, ref_scores, ref_low = _ranked(ref_logits.numpy(), ref_scores.numpy(), ref_low.numpy())

    assert out.masks.shape == (3, 3, height, width)
    _assert_close(out.scores, ref_scores)
    _assert_close(out.low_res_logits, ref_low)
    _assert_masks_match(out.masks, ref_logits)


@pytest.mark.parametrize("stability", [True, False])
def test_several_boxes_are_upscaled_an_object_at_a_time_with_the_same_masks(models, monkeypatch, stability):
    """Many boxes on a large photo would need gigabytes of full-size logits at once."""
    from backend.inference import mask_ops

    height, width = SIZES[1]
    predictor = SamPredictor(models[0])
    predictor.set_image(_image(height, width, seed=4))
    boxes = np.array([[10, 20, 200, 150], [250, 100, 500, 320], [0, 0, 639, 1199]], dtype=np.float64)
    sizes: list[int] = []
    upscale = predictor.upscale_logits
    monkeypatch.setattr(predictor, "upscale_logits", lambda low: sizes.append(len(low)) or upscale(low))
    monkeypatch.setattr(mask_ops, "CPU_UPSCALE_CHUNK_PIXELS", 1 << 40)
    whole = predictor.predict(box=boxes, stability=stability)
    monkeypatch.setattr(mask_ops, "CPU_UPSCALE_CHUNK_PIXELS", 3 * height * width)  # one object a chunk
    chunked = predictor.predict(box=boxes, stability=stability)
    assert sizes == [3, 1, 1, 1]
    np.testing.assert_array_equal(chunked.masks, whole.masks)
    assert chunked.masks[0].sum() != chunked.masks[2].sum()  # the objects differ: an exchange would show
    if stability:
        np.testing.assert_array_equal(chunked.stability_scores, whole.stability_scores)
    else:
        assert chunked.stability_scores is None and whole.stability_scores is None


def test_stability_score_matches_definition(models):
    ours_model, _ = models
    predictor = SamPredictor(ours_model)
    predictor.set_image(_image(64, 96))
    out = predictor.predict(point_coords=[[40, 30]], point_labels=[1])
    logits = predictor.upscale_logits(torch.from_numpy(out.low_res_logits)).numpy()
    expected = (logits > 1).sum(axis=(-1, -2)) / np.maximum((logits > -1).sum(axis=(-1, -2)), 1)
    np.testing.assert_allclose(out.stability_scores, expected, rtol=1e-6)


def test_stability_can_be_skipped_without_changing_the_masks(models):
    ours_model, _ = models
    predictor = SamPredictor(ours_model)
    predictor.set_image(_image(64, 96))
    full = predictor.predict(point_coords=[[40, 30]], point_labels=[1])
    lean = predictor.predict(point_coords=[[40, 30]], point_labels=[1], stability=False)
    assert lean.stability_scores is None
    np.testing.assert_array_equal(lean.masks, full.masks)
    np.testing.assert_array_equal(lean.scores, full.scores)


@pytest.mark.parametrize(
    "prompt, message",
    [
        (dict(point_coords=[[np.nan, 3]], point_labels=[1]), "finite"),
        (dict(point_coords=[[500, 3]], point_labels=[1]), "outside"),
        (dict(point_coords=[[5, 3]], point_labels=[1, 0]), "labels"),
        (dict(point_coords=[[5, 3]], point_labels=[2]), "labels must be 1"),
        (dict(point_coords=[5, 3], point_labels=[1]), "Nx2"),
        (dict(box=[50, 10, 20, 30]), "inverted"),
        (dict(box=[1, 2, 3]), "x1, y1, x2, y2"),
        (dict(mask_input=np.zeros((1, 10, 10))), "mask_input must be"),
        (dict(), "give a prompt"),
    ],
)
def test_bad_prompts_raise_clear_errors(models, prompt, message):
    predictor = SamPredictor(models[0])
    predictor.set_image(_image(64, 96))
    with pytest.raises(InvalidInput, match=message):
        predictor.predict(**prompt)


def test_predict_without_image_says_what_to_do(models):
    with pytest.raises(InvalidInput, match="set_image"):
        SamPredictor(models[0]).predict(point_coords=[[1, 1]], point_labels=[1])


def test_bad_image_is_rejected(models):
    with pytest.raises(InvalidInput, match="HxWx3 uint8"):
        SamPredictor(models[0]).set_image(np.zeros((10, 10), dtype=np.uint8))
