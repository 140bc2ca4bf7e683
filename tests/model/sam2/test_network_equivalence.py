"""Our SAM 2.1 network computes Meta's numbers on the same random weights (fp32, hiera_t).

Encoder: the trunk's four stages, the image embedding (with ``no_mem_embed``)
and the two high-resolution maps. Prompts -> masks: the prompt encoder and the
mask decoder (masks, IoU, object score) for one point, points with a negative,
a box, a box with a point, several boxes at once and a mask input, with and
without multimask output, through both the reference-style ``forward`` and
the per-image cached path the predictor uses.
"""

from __future__ import annotations

import pytest
import torch

from tests.model.sam2.conftest import SMALL_IMAGE
from tests.model.sam2.reference import assert_close, build_reference, ours_from, reference_features


def _images(size: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_trunk_stages(tiny_pair):
    ours, ref = tiny_pair
    x = _images(SMALL_IMAGE, batch=2)
    with torch.no_grad():
        mine, theirs = ours.image_encoder.trunk(x), ref.image_encoder.trunk(x)
    assert len(mine) == len(theirs) == 4
    for a, b in zip(mine, theirs, strict=True):
        assert_close(a, b)


def test_image_features(tiny_pair):
    ours, ref = tiny_pair
    x = _images(SMALL_IMAGE, batch=2, seed=1)
    feat_s0, feat_s1, embed = reference_features(ref, x)
    with torch.inference_mode():
        features = ours.encode_image(x)
    assert_close(features.image_embed, embed)
    assert_close(features.feat_s0, feat_s0)
    assert_close(features.feat_s1, feat_s1)
    side = SMALL_IMAGE // 16
    assert features.image_embed.shape == (2, 256, side, side)
    assert features.feat_s0.shape == (2, 32, 4 * side, 4 * side)
    assert features.feat_s1.shape == (2, 64, 2 * side, 2 * side)


def test_trunk_in_small_chunks_equals_the_reference(tiny_pair, monkeypatch):
    """The MLPs in row chunks and the windowed attention in groups of windows (what keeps
    1024-pixel temporaries small) give the reference's stages, with many chunks and groups."""
    import backend.model.sam2.hiera_block as hiera_block

    ours, ref = tiny_pair
    x = _images(SMALL_IMAGE, batch=2, seed=2)
    import backend.model.token_products as token_products

    monkeypatch.setattr(token_products, "ROW_CHUNK_BYTES", 64 << 10)  # a few hundred tokens per chunk
    monkeypatch.setattr(hiera_block, "ATTENTION_GROUP_BYTES", 256 << 10)  # a few windows per group
    calls = {"norms": 0, "groups": 0}
    original_attend = hiera_block.MultiScaleAttention._attend
    original_norm = torch.nn.functional.layer_norm

    def counting_attend(self, *args):
        calls["groups"] += 1
        return original_attend(self, *args)

    def counting_norm(*args, **kwargs):
        calls["norms"] += 1
        return original_norm(*args, **kwargs)

    monkeypatch.setattr(hiera_block.MultiScaleAttention, "_attend", counting_attend)
    monkeypatch.setattr(torch.nn.functional, "layer_norm", counting_norm)
    with torch.inference_mode():
        mine = ours.image_encoder.trunk(x)
    monkeypatch.undo()
    with torch.no_grad():
        theirs = ref.image_encoder.trunk(x)
    blocks = len(ours.image_encoder.trunk.blocks)
    assert calls["groups"] > blocks, "the windowed blocks ran in several groups"
    assert calls["norms"] > 3 * blocks, "the MLPs ran in several row chunks (one norm2 each)"
    for a, b in zip(mine, theirs, strict=True):
        assert_close(a, b)


def test_image_features_under_autograd_equal_the_fast_path(tiny_pair):
    ours, _ = tiny_pair
    x = _images(SMALL_IMAGE, seed=2)
    with torch.inference_mode():
        fast = ours.encode_image(x)
    slow = ours.encode_image(x)  # autograd records: the functional path
    for a, b in zip(slow, fast, strict=True):
        assert_close(a, b)


@pytest.mark.slow
def test_image_features_at_1024():
    """Full-size hiera_t: padded windows in stages 3 and 4 (64 -> 70, 32 -> 35)."""
    ref = build_reference("sam2.1_hiera_t", image_size=1024, seed=5)
    ours = ours_from(ref, 1024)
    x = _images(1024, seed=3)
    feat_s0, feat_s1, embed = reference_features(ref, x)
    with torch.inference_mode():
        features = ours.encode_image(x)
    assert_close(features.image_embed, embed)
    assert_close(features.feat_s0, feat_s0)
    assert_close(features.feat_s1, feat_s1)


def _prompts(size: int, seed: int = 0) -> dict[str, dict]:
    """Point prompts in model-input pixels as Meta's predictor hands them to the prompt
    encoder (a box is two points labelled 2 and 3, placed first)."""
    s = float(size)
    low = 4 * (size // 16)
    gen = torch.Generator().manual_seed(seed)
    box = [[0.1 * s, 0.2 * s], [0.8 * s, 0.7 * s]]
    return {
        "one_point": dict(coords=[[[0.3 * s, 0.6 * s]]], labels=[[1]]),
        "points_with_negative": dict(
            coords=[[[0.3 * s, 0.4 * s], [0.7 * s, 0.2 * s], [0.5 * s, 0.9 * s]]], labels=[[1, 0, 1]]
        ),
        "box": dict(coords=[box], labels=[[2, 3]]),
        "box_and_point": dict(coords=[[*box, [0.5 * s, 0.5 * s]]], labels=[[2, 3, 0]]),
        "boxes": dict(
            coords=[box, [[0.0, 0.0], [0.5 * s, 0.5 * s]], [[0.6 * s, 0.3 * s], [s - 1, s - 1]]],
            labels=[[2, 3]] * 3,
        ),
        "mask_input": dict(
            coords=[[[0.4 * s, 0.4 * s]]], labels=[[1]], masks=3 * torch.randn(1, 1, low, low, generator=gen)
        ),
    }


CASES = list(_prompts(64))


def _points(prompt: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(prompt["coords"], dtype=torch.float32), torch.tensor(
        prompt["labels"], dtype=torch.int32
    )


def _reference_decode(ref, feats: list[torch.Tensor], prompt: dict, multimask: bool):
    points = _points(prompt)
    with torch.no_grad():
        sparse, dense = ref.sam_prompt_encoder(points=points, boxes=None, masks=prompt.get("masks"))
        masks, iou, _, obj = ref.sam_mask_decoder(
            image_embeddings=feats[2],
            image_pe=ref.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=points[0].shape[0] > 1,
            high_res_features=feats[:2],
        )
    return sparse, dense, masks, iou, obj


@pytest.fixture(scope="module")
def features(tiny_pair):
    ours, ref = tiny_pair
    x = _images(SMALL_IMAGE, seed=4)
    with torch.inference_mode():
        mine = ours.encode_image(x)
    return mine, reference_features(ref, x)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("multimask", [True, False])
def test_prompt_encoder_and_decoder(tiny_pair, features, case, multimask):
    ours, ref = tiny_pair
    mine, theirs = features
    prompt = _prompts(SMALL_IMAGE)[case]
    r_sparse, r_dense, r_masks, r_iou, r_obj = _reference_decode(ref, theirs, prompt, multimask)
    with torch.no_grad():
        sparse, dense = ours.sam_prompt_encoder(_points(prompt), None, prompt.get("masks"))
        assert_close(sparse, r_sparse)
        assert_close(dense, r_dense)
        out = ours.sam_mask_decoder(
            mine.image_embed,
            ours.sam_prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            multimask,
            mine.high_res_feats,
        )
    assert out.masks.shape[1] == (3 if multimask else 1)
    assert_close(out.masks, r_masks)
    assert_close(out.iou_pred, r_iou)
    assert_close(out.object_score_logits, r_obj)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("multimask", [True, False])
def test_cached_decoder_path(tiny_pair, features, case, multimask):
    """``prepare_decoder`` once + ``decode`` per prompt == Meta's prompt encoder and decoder."""
    ours, ref = tiny_pair
    mine, theirs = features
    prompt = _prompts(SMALL_IMAGE)[case]
    _, _, r_masks, r_iou, r_obj = _reference_decode(ref, theirs, prompt, multimask)
    with torch.inference_mode():
        out = ours.decode(ours.prepare_decoder(mine), _points(prompt), prompt.get("masks"), multimask)
    assert_close(out.masks, r_masks)
    assert_close(out.iou_pred, r_iou)
    assert_close(out.object_score_logits, r_obj)


@pytest.mark.parametrize("threshold", [0.0, 1.01], ids=["always_stable", "always_fallback"])
def test_dynamic_multimask_both_ways(tiny_pair, features, threshold, monkeypatch):
    """A single-mask request returns mask 0 when stable, else the best multimask candidate."""
    ours, ref = tiny_pair
    mine, theirs = features
    for decoder in (ours.sam_mask_decoder, ref.sam_mask_decoder):
        monkeypatch.setattr(decoder, "dynamic_multimask_stability_thresh", threshold)
    prompt = _prompts(SMALL_IMAGE)["boxes"]
    _, _, r_masks, r_iou, _ = _reference_decode(ref, theirs, prompt, multimask=False)
    _, _, r_multi, r_multi_iou, _ = _reference_decode(ref, theirs, prompt, multimask=True)
    with torch.inference_mode():
        out = ours.decode(ours.prepare_decoder(mine), _points(prompt), None, False)
    assert_close(out.masks, r_masks)
    assert_close(out.iou_pred, r_iou)
    if threshold > 1:  # the fallback is the best of the three candidates
        best = r_multi_iou.argmax(dim=1)
        assert_close(out.iou_pred[:, 0], r_multi_iou[torch.arange(3), best])
