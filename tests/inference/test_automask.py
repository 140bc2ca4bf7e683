"""AutomaskGenerator: the same masks and scores as Meta's SamAutomaticMaskGenerator on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.api.errors import InvalidInput
from backend.inference.automask import AutomaskGenerator
from backend.model import build_sam
from tests.support.reference import build_reference_sam, tiny_vit_config
from tests.support.sa1b_records import assert_same_records


class PooledEncoder(torch.nn.Module):
    """A stand-in image encoder whose embedding follows image regions (16-pixel average, then 1x1 conv).

    Random ViT weights give noise masks that all span the whole image, which
    leaves nothing for NMS and crop-edge filtering to do. Both generators get
    this same module, so the comparison is still like for like.
    """

    def __init__(self, img_size: int, dim: int, seed: int) -> None:
        super().__init__()
        self.img_size = img_size
        generator = torch.Generator().manual_seed(seed)
        self.proj = torch.nn.Conv2d(3, dim, 1)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(dim, 3, 1, 1, generator=generator))
            self.proj.bias.copy_(torch.randn(dim, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.nn.functional.avg_pool2d(x, 16))


LOGIT_SCALE = 100.0


def _models(seed: int, *, pooled_encoder: bool = True):
    config = tiny_vit_config()
    reference = build_reference_sam(config, seed=seed)
    with torch.no_grad():
        for index in (0, 3):  # no sub-pixel checkerboard from the transposed convolutions
            weight = reference.mask_decoder.output_upscaling[index].weight
            weight.copy_(weight[:, :, :1, :1].expand_as(weight))
        for mlp in reference.mask_decoder.output_hypernetworks_mlps:  # logits of a trained model's scale
            mlp.layers[-1].weight.mul_(LOGIT_SCALE)
            mlp.layers[-1].bias.mul_(LOGIT_SCALE)
    ours = build_sam(config)
    ours.load_state_dict(reference.state_dict(), strict=True)
    if pooled_encoder:
        encoder = PooledEncoder(config.image_size, config.prompt_embed_dim, seed)
        reference.image_encoder = encoder
        ours.image_encoder = encoder
    return ours.eval(), reference.eval()


@pytest.fixture(scope="module")
def models():
    return _models(seed=5)


def _scene(height: int = 150, width: int = 200) -> np.ndarray:
    """Grey background with four coloured 35x35 squares near the corners (one inside each layer-1 crop)."""
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    colors = [(230, 30, 30), (30, 220, 40), (20, 40, 230), (240, 240, 20)]
    corners = [(15, 15), (15, width - 50), (height - 50, 15), (height - 50, width - 50)]
    for (y, x), color in zip(corners, colors, strict=True):
        image[y : y + 35, x : x + 35] = color
    return image


# Lowered thresholds: random weights predict low IoU.
THRESHOLDS = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.3)


def _both(models, image: np.ndarray, **kwargs) -> tuple[list[dict], list[dict]]:
    from segment_anything import SamAutomaticMaskGenerator

    ours, reference = models
    expected = SamAutomaticMaskGenerator(reference, output_mode="coco_rle", **kwargs).generate(image)
    return AutomaskGenerator(ours, **kwargs).generate(image), expected


@pytest.mark.slow
@pytest.mark.parametrize("crop_n_layers", [0, 1])
def test_same_masks_as_reference(models, crop_n_layers):
    got, expected = _both(models, _scene(), **THRESHOLDS, crop_n_layers=crop_n_layers)
    if crop_n_layers:
        assert sum(r["crop_box"][2] < 200 for r in expected) >= 2, "crops should contribute masks"
    assert_same_records(got, expected)


@pytest.mark.slow
def test_same_candidates_as_reference_without_nms(models):
    """With NMS disabled every candidate passing the filters is compared, not only the survivors."""
    got, expected = _both(models, _scene(), **THRESHOLDS, box_nms_thresh=1.0)
    assert len(expected) >= 20, "the test set-up should produce many candidates"
    assert_same_records(got, expected)


@pytest.mark.slow
def test_same_candidates_with_both_vit_encoders():
    """The whole network path (our ViT encoder too) on the same random weights."""
    got, expected = _both(
        _models(seed=5, pooled_encoder=False),
        _scene(),
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.001,
        box_nms_thresh=1.0,
    )
    assert len(expected) >= 5, "the test set-up should produce several candidates"
    assert_same_records(got, expected)


@pytest.mark.slow
def test_small_region_removal_matches_reference(models):
    got, expected = _both(models, _scene(), **THRESHOLDS, crop_n_layers=1, min_mask_region_area=1000)
    _, unprocessed = _both(models, _scene(), **THRESHOLDS, crop_n_layers=1)
    assert [r["area"] for r in expected] != [r["area"] for r in unprocessed], (
        "the set-up should have small regions"
    )
    assert_same_records(got, expected)


class _UpscaleSpy:
    """Wraps a predictor's ``upscale_logits`` to record how many masks each call upscales."""

    def __init__(self, predictor) -> None:
        self.batches: list[int] = []
        self.pixels: list[int] = []
        original = predictor.upscale_logits

        def spy(low_res, *args, **kwargs):
            out = original(low_res, *args, **kwargs)
            self.batches.append(out.shape[0] * out.shape[1])
            self.pixels.append(out.numel())
            return out

        predictor.upscale_logits = spy


@pytest.mark.slow
def test_large_photo_upscales_a_bounded_number_of_masks(models):
    """A 4000x3000 photo: never more than the budget's worth of full-resolution logits at once."""
    from backend.inference.predictor import SamPredictor

    ours = models[0]
    image = np.zeros((3000, 4000, 3), dtype=np.uint8)
    image[:1500] = (200, 30, 30)
    predictor = SamPredictor(ours)
    predictor.set_image(image)
    spy = _UpscaleSpy(predictor)
    budget = 2 * 3000 * 4000 + 2 * ours.config.image_size**2
    generator = AutomaskGenerator(
        ours, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, upscale_pixel_budget=budget
    )
    records = generator.generate(image, predictor=predictor)
    assert max(spy.batches) <= 2
    assert sum(spy.batches) == 12, (
        "every candidate (4 points x 3 masks) passes the IoU filter and is upscaled"
    )
    assert max(spy.pixels) <= budget
    for record in records:
        assert record["segmentation"]["size"] == [3000, 4000]


def test_iou_filter_runs_before_upscaling(models):
    """Candidates below pred_iou_thresh are never upscaled."""
    from backend.inference.predictor import SamPredictor

    ours = models[0]
    image = _scene()
    predictor = SamPredictor(ours)
    predictor.set_image(image)
    spy = _UpscaleSpy(predictor)
    records = AutomaskGenerator(ours, points_per_side=4, pred_iou_thresh=1.0).generate(
        image, predictor=predictor
    )
    assert records == []
    assert sum(spy.batches) == 0


def test_predictor_of_another_image_is_refused(models):
    from backend.inference.predictor import SamPredictor

    predictor = SamPredictor(models[0])
    predictor.set_image(np.zeros((40, 50, 3), dtype=np.uint8))
    with pytest.raises(InvalidInput, match="predictor holds a 50x40 image"):
        AutomaskGenerator(models[0]).generate(_scene(), predictor=predictor)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(points_per_side=None), "exactly one of points_per_side or point_grids"),
        (
            dict(points_per_side=4, point_grids=[np.zeros((1, 2))]),
            "exactly one of points_per_side or point_grids",
        ),
        (dict(points_per_side=None, point_grids=[np.full((3, 2), 2.0)]), r"must be in \[0, 1\]"),
        (dict(points_per_side=None, point_grids=[np.zeros((3, 2))], crop_n_layers=1), "one grid per layer"),
        (dict(pred_iou_thresh=1.5), "pred_iou_thresh must be in"),
        (dict(points_per_batch=0), "points_per_batch must be >= 1"),
        (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2), "would get no points"),
        (dict(min_mask_region_area=-1), "min_mask_region_area must be >= 0"),
        (dict(stability_score_offset=0.0), "stability_score_offset must be a finite number > 0"),
        (dict(stability_score_offset=-1.0), "stability_score_offset must be a finite number > 0"),
        (dict(stability_score_offset=float("nan")), "stability_score_offset must be a finite number > 0"),
        (dict(points_per_side="4"), "points_per_side must be a whole number, got '4'"),
        (dict(points_per_side=2.5), "points_per_side must be a whole number"),
        (dict(points_per_side=0), "points_per_side must be >= 1, got 0"),
        (dict(points_per_batch=2.5), "points_per_batch must be a whole number"),
        (dict(crop_n_layers=1.5), "crop_n_layers must be a whole number"),
        (dict(pred_iou_thresh=True), "pred_iou_thresh must be a number, got True"),
    ],
)
def test_bad_parameters_say_how_to_fix(models, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        AutomaskGenerator(models[0], **kwargs)


def test_bad_image_is_refused(models):
    with pytest.raises(InvalidInput, match="HxWx3 uint8"):
        AutomaskGenerator(models[0]).generate(np.zeros((10, 10), dtype=np.uint8))


@pytest.mark.parametrize(
    "size", [(1, 1), (5, 40), (35, 300)], ids=["1x1", "5 pixels high", "a 35-pixel strip"]
)
def test_crop_layers_on_an_image_a_few_pixels_across_skip_the_empty_crops(models, size):
    """Meta's crop layout leaves empty crops on sides of a few pixels; they are skipped, and
    the image is segmented (it was refused as 'image size must be positive')."""
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    records = AutomaskGenerator(
        models[0], points_per_side=4, crop_n_layers=3, pred_iou_thresh=0.0, stability_score_thresh=0.0
    ).generate(image)
    assert records, "thresholds of 0 keep the masks of a random model"
    assert all(r["crop_box"][2] > 0 and r["crop_box"][3] > 0 for r in records)
