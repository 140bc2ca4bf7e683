"""SAM 2.1 prompts decoded in calls of a cache-sized few on a CPU (segment-everything, several boxes).

A SAM 2.1 decoder call carries one ``4096 x 256`` copy of the image tokens per
prompt; on a CPU a call of 64 prompts spends its time moving those through
memory, so the predictor decodes them a few at a time (the rule SAM 1's
predictor follows). The candidates must not depend on how the prompts are split.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.inference import mask_ops
from backend.inference.sam2_predictor import Sam2Predictor


@pytest.mark.parametrize("median", [False, True])
def test_split_calls_give_the_candidates_of_one_call(
    tiny_pair, monkeypatch: pytest.MonkeyPatch, median: bool
) -> None:
    ours, _ = tiny_pair
    predictor = Sam2Predictor(ours)
    predictor.set_image(np.random.default_rng(5).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    gen = torch.Generator().manual_seed(6)
    coords = torch.rand(7, 1, 2, generator=gen) * torch.tensor([300.0, 200.0])
    labels = torch.ones(7, 1, dtype=torch.int64)
    sizes: list[int] = []
    decode = predictor.decode_torch

    def counting_decode(points: torch.Tensor, *args: object, **kwargs: object):
        sizes.append(len(points))
        return decode(points, *args, **kwargs)

    monkeypatch.setattr(predictor, "decode_torch", counting_decode)
    with torch.inference_mode():
        monkeypatch.setattr(predictor, "prompts_per_decoder_call", lambda: 1 << 30)
        min_iou = 0.0
        if median:  # keep about half: some slices lose candidates
            min_iou = float(predictor.predict_candidates_above(coords, labels, None).iou.median())
            sizes.clear()
        whole = predictor.predict_candidates_above(coords, labels, min_iou)
        assert sizes == [7]
        monkeypatch.setattr(predictor, "prompts_per_decoder_call", lambda: 3)
        split = predictor.predict_candidates_above(coords, labels, min_iou)
    assert sizes == [7, 3, 3, 1]
    assert 0 < len(split.iou) < (21 if median else 22)
    assert torch.equal(split.prompt, whole.prompt)
    assert torch.equal(split.candidate, whole.candidate)
    torch.testing.assert_close(split.iou, whole.iou, rtol=0, atol=1e-5)
    scale = float(whole.low_res.abs().max())
    torch.testing.assert_close(split.low_res, whole.low_res, rtol=0, atol=1e-5 * scale)


def test_the_predictor_counts_its_own_tokens(tiny_pair) -> None:
    ours, _ = tiny_pair
    # The 256-pixel model: 16x16 image tokens of 256 channels, 256 KiB a prompt in float32.
    assert (ours.config.embedding_size, ours.config.hidden_dim) == (16, 256)
    assert Sam2Predictor(ours).prompts_per_decoder_call() == 16


def test_several_boxes_are_decoded_a_few_a_call_with_the_masks_of_one_call(
    tiny_pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, _ = tiny_pair
    predictor = Sam2Predictor(ours)
    predictor.set_image(np.random.default_rng(7).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    boxes = np.array([[10, 10, 120, 90], [150, 40, 290, 190], [0, 0, 299, 199]], dtype=np.float64)
    calls: list[int] = []
    decode = ours.decode

    def counting_decode(cache, points, *args):
        calls.append(len(points[0]))
        return decode(cache, points, *args)

    monkeypatch.setattr(ours, "decode", counting_decode)
    # One earlier answer refines every box: a single mask, repeated (as views) for the three.
    refine = np.random.default_rng(8).normal(0, 4, (1, 64, 64)).astype(np.float32)
    monkeypatch.setattr(predictor, "prompts_per_decoder_call", lambda: 1 << 30)
    whole = predictor.predict(box=boxes, mask_input=refine)
    monkeypatch.setattr(predictor, "prompts_per_decoder_call", lambda: 2)
    split = predictor.predict(box=boxes, mask_input=refine)
    assert calls == [3, 2, 1]
    assert not np.allclose(whole.low_res_logits[0], whole.low_res_logits[1])  # an exchange would show
    np.testing.assert_allclose(split.scores, whole.scores, rtol=0, atol=1e-6)
    np.testing.assert_allclose(split.low_res_logits, whole.low_res_logits, rtol=0, atol=1e-4)
    assert (split.masks != whole.masks).mean() < 1e-4
    # The full-size masks an object at a time: the same as all three at once.
    monkeypatch.setattr(mask_ops, "CPU_UPSCALE_CHUNK_PIXELS", 3 * 200 * 300)
    chunked = predictor.predict(box=boxes, mask_input=refine)
    np.testing.assert_array_equal(chunked.masks, split.masks)
    np.testing.assert_array_equal(chunked.stability_scores, split.stability_scores)
