"""AutomaskGenerator: the same masks and scores as Meta's SamAutomaticMaskGenerator on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from backend.errors import InvalidInput
from backend.inference.automask import AutomaskGenerator
from backend.model import build_sam
from tests.support.reference import build_reference_sam, tiny_vit_config


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


def _models(seed: int):
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
    encoder = PooledEncoder(config.image_size, config.prompt_embed_dim, seed)
    reference.image_encoder = encoder
    ours.image_encoder = encoder
    return ours.eval(), reference.eval()


@pytest.fixture(scope="module")
def models():
    return _models(seed=3)


def _block_image(height: int = 150, width: int = 200, seed: int = 0) -> np.ndarray:
    """Coloured 50x50 blocks: objects with clear borders."""
    colors = np.random.default_rng(seed).integers(0, 256, (height // 50, width // 50, 3), dtype=np.uint8)
    return np.kron(colors, np.ones((50, 50, 1), dtype=np.uint8))


def _decode(record: dict) -> np.ndarray:
    rle = dict(record["segmentation"])
    rle["counts"] = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
    return coco_mask.decode(rle).astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


def _assert_same_records(ours: list[dict], reference: list[dict]) -> None:
    """One-to-one match with mask IoU >= 0.99 and equal scores, points and crop boxes."""
    assert len(ours) == len(reference)
    ours_masks = [_decode(r) for r in ours]
    unmatched = set(range(len(ours)))
    for ref in reference:
        ref_mask = _decode(ref)
        match = next((i for i in unmatched if _iou(ours_masks[i], ref_mask) >= 0.99), None)
        assert match is not None, f"no mask of ours matches reference mask at {ref['bbox']}"
        unmatched.discard(match)
        mine = ours[match]
        assert mine["predicted_iou"] == pytest.approx(ref["predicted_iou"], abs=1e-4)
        assert mine["stability_score"] == pytest.approx(ref["stability_score"], abs=1e-2)
        assert mine["point_coords"] == pytest.approx(ref["point_coords"])
        assert mine["crop_box"] == [int(v) for v in ref["crop_box"]]
        assert mine["area"] == pytest.approx(ref["area"], rel=0.01)
        assert np.abs(np.array(mine["bbox"]) - np.array(ref["bbox"])).max() <= 1


THRESHOLDS = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("crop_n_layers", [0, 1])
def test_same_masks_as_reference(models, crop_n_layers):
    from segment_anything import SamAutomaticMaskGenerator

    ours, reference = models
    image = _block_image()
    kwargs = dict(THRESHOLDS, crop_n_layers=crop_n_layers)
    expected = SamAutomaticMaskGenerator(reference, output_mode="coco_rle", **kwargs).generate(image)
    got = AutomaskGenerator(ours, **kwargs).generate(image)
    assert len(expected) >= 3, "the test set-up should produce several masks"
    if crop_n_layers:
        assert any(r["crop_box"] != [0, 0, 200, 150] for r in expected), "crops should contribute masks"
    _assert_same_records(got, expected)
