"""The SAM 2.1 network and predictor run in bfloat16 and give fp32's masks (IoU >= 0.95)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from backend.inference.sam2_predictor import Sam2Predictor


def test_bfloat16_masks_match_float32(tiny_pair):
    ours, _ = tiny_pair
    half = copy.deepcopy(ours).to(torch.bfloat16)
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    full_pred, half_pred = Sam2Predictor(ours), Sam2Predictor(half)
    full_pred.set_image(image)
    half_pred.set_image(image)
    assert all(t.dtype == torch.bfloat16 for t in half_pred.embedding)
    for prompt in (dict(point_coords=[[160, 100]], point_labels=[1]), dict(box=[40, 30, 250, 200])):
        full = full_pred.predict(**prompt, multimask_output=False)
        half_out = half_pred.predict(**prompt, multimask_output=False)
        union = (full.masks | half_out.masks).sum()
        iou = (full.masks & half_out.masks).sum() / max(int(union), 1)
        assert iou >= 0.95, iou
        assert abs(float(full.scores[0, 0]) - float(half_out.scores[0, 0])) < 0.02
