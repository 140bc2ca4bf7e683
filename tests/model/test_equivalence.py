"""Our network computes the same numbers as Meta's reference on the same random weights (fp32)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.model import VIT_B, VIT_T, SamConfig, TinyViTConfig, build_sam
from tests.support.reference import build_reference_sam, tiny_vit_config

TINY_REL = 1e-4
FULL_REL = 1e-3


def assert_close(ours: torch.Tensor, ref: torch.Tensor, rel: float = TINY_REL) -> None:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    if ref.numel() == 0:
        return
    scale = max(float(ref.abs().max()), 1e-6)
    diff = float((ours.float() - ref.float()).abs().max())
    assert diff <= rel * scale, f"max abs diff {diff:.3g} > {rel} x {scale:.3g}"


def perturb_batchnorm_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give BatchNorm layers non-trivial statistics (the reference leaves them at 0 / 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))


def make_pair(config: SamConfig, seed: int = 0):
    reference = build_reference_sam(config, seed=seed).eval()
    perturb_batchnorm_(reference, seed)
    ours = build_sam(config)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours.eval(), reference


@pytest.fixture(scope="module")
def tiny():
    return make_pair(tiny_vit_config(), seed=1)


def _image(config: SamConfig, batch: int = 1, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, config.image_size, config.image_size, generator=gen)


def _prompts(size: int, seed: int = 0) -> dict[str, dict]:
    """Prompt sets in model-input pixels, as the reference prompt encoder takes them."""
    gen = torch.Generator().manual_seed(seed)
    s = float(size)
    low = 4 * (size // 16)
    return {
        "one_point": dict(
            points=(torch.tensor([[[0.3 * s, 0.6 * s]]]), torch.tensor([[1]])), boxes=None, masks=None
        ),
        "points": dict(
            points=(
                torch.tensor(
                    [[[0.3 * s, 0.4 * s], [0.7 * s, 0.2 * s], [0.5 * s, 0.9 * s], [0.1 * s, 0.1 * s]]]
                ),
                torch.tensor([[1, 0, 1, 0]]),
            ),
            boxes=None,
            masks=None,
        ),
        "box": dict(points=None, boxes=torch.tensor([[0.1 * s, 0.2 * s, 0.8 * s, 0.7 * s]]), masks=None),
        "box_points": dict(
            points=(torch.tensor([[[0.5 * s, 0.5 * s], [0.2 * s, 0.3 * s]]]), torch.tensor([[0, 1]])),
            boxes=torch.tensor([[0.1 * s, 0.2 * s, 0.8 * s, 0.7 * s]]),
            masks=None,
        ),
        "mask_input": dict(
            points=(torch.tensor([[[0.4 * s, 0.4 * s]]]), torch.tensor([[1]])),
            boxes=None,
            masks=3 * torch.randn(1, 1, low, low, generator=gen),
        ),
        "mask_only": dict(points=None, boxes=None, masks=3 * torch.randn(1, 1, low, low, generator=gen)),
        "boxes": dict(
            points=None,
            boxes=torch.tensor(
                [
                    [0.1 * s, 0.2 * s, 0.8 * s, 0.7 * s],
                    [0.0, 0.0, 0.5 * s, 0.5 * s],
                    [0.6 * s, 0.3 * s, s - 1, s - 1],
                ]
            ),
            masks=None,
        ),
        "boxes_points": dict(
            points=(torch.rand(3, 2, 2, generator=gen) * s, torch.tensor([[1, 0], [1, 1], [0, 1]])),
            boxes=torch.tensor(
                [
                    [0.1 * s, 0.2 * s, 0.8 * s, 0.7 * s],
                    [0.0, 0.0, 0.5 * s, 0.5 * s],
                    [0.6 * s, 0.3 * s, s - 1, s - 1],
                ]
            ),
            masks=None,
        ),
        "padded_points": dict(
            points=(
                torch.tensor([[[0.3 * s, 0.4 * s], [0.0, 0.0]], [[0.5 * s, 0.5 * s], [0.6 * s, 0.1 * s]]]),
                torch.tensor([[1, -1], [1, 0]]),
            ),
            boxes=None,
            masks=None,
        ),
    }


CASES = list(_prompts(128))


# ---------------------------------------------------------------------------- image encoder


def test_image_embeddings_tiny(tiny):
    ours, ref = tiny
    x = _image(ours.config, batch=2)
    with torch.no_grad():
        assert_close(ours.image_encoder(x), ref.image_encoder(x))


def test_image_embeddings_with_the_mlps_in_many_row_chunks(tiny, monkeypatch):
    """Without autograd each block's MLP half runs a few tokens at a time into its own tensor."""
    import backend.model.token_products as token_products

    ours, ref = tiny
    x = _image(ours.config, batch=2)
    monkeypatch.setattr(token_products, "ROW_CHUNK_BYTES", 4 << 10)
    chunks = []
    original = token_products.add_in_row_chunks

    def counting(*args):
        chunks.append(1)
        return original(*args)

    monkeypatch.setattr("backend.model.image_encoder.add_in_row_chunks", counting)
    with torch.inference_mode():
        mine = ours.image_encoder(x)
    with torch.no_grad():
        theirs = ref.image_encoder(x)
    assert len(chunks) == len(ours.image_encoder.blocks), "every block took the chunked path"
    assert_close(mine, theirs)


def test_image_embeddings_window_padding():
    """Grid 10x10 with 4x4 windows: the padded windows behave as in the reference."""
    config = replace(tiny_vit_config(), image_size=160)
    ours, ref = make_pair(config, seed=2)
    x = _image(config)
    with torch.no_grad():
        assert_close(ours.image_encoder(x), ref.image_encoder(x))


def test_global_attention_chunked(monkeypatch):
    """The row-chunked global attention (used for large grids) matches the reference."""
    from backend.model import image_encoder

    monkeypatch.setattr(image_encoder, "_MAX_BIAS_ELEMENTS", 1000)
    ours, ref = make_pair(tiny_vit_config(), seed=4)
    x = _image(ours.config)
    with torch.no_grad():
        assert_close(ours.image_encoder(x), ref.image_encoder(x))


def tiny_tinyvit_config() -> SamConfig:
    # The reference TinyViT hard-codes a 64x64 output grid (1024 px) and a 256-wide
    # neck, and keeps the resolution in the last merge only for widths 320/448/576.
    return SamConfig(
        encoder="tiny_vit",
        tiny_vit=TinyViTConfig(
            embed_dims=(8, 16, 24, 320), depths=(1, 1, 2, 1), num_heads=(1, 2, 3, 4), num_classes=10
        ),
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    )


def test_image_embeddings_tinyvit_small():
    config = tiny_tinyvit_config()
    ours, ref = make_pair(config, seed=5)
    x = _image(config)
    with torch.no_grad():
        assert_close(ours.image_encoder(x), ref.image_encoder(x))


@pytest.mark.slow
def test_image_embeddings_vit_b_full_size():
    ours, ref = make_pair(VIT_B, seed=6)
    x = _image(VIT_B)
    with torch.inference_mode():
        assert_close(ours.image_encoder(x), ref.image_encoder(x), rel=FULL_REL)


@pytest.mark.slow
def test_image_embeddings_vit_t_full_size():
    ours, ref = make_pair(VIT_T, seed=7)
    x = _image(VIT_T)
    with torch.inference_mode():
        assert_close(ours.image_encoder(x), ref.image_encoder(x), rel=FULL_REL)


# ---------------------------------------------------------------------------- prompts -> masks


def _reference_decode(ref, embedding, prompt, multimask):
    sparse, dense = ref.prompt_encoder(**prompt)
    masks, iou = ref.mask_decoder(
        image_embeddings=embedding,
        image_pe=ref.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )
    return sparse, dense, masks, iou


def _embedding(config: SamConfig, batch: int = 1, seed: int = 11) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    e = config.embedding_size
    return torch.randn(batch, config.prompt_embed_dim, e, e, generator=gen)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("multimask", [True, False])
def test_prompt_encoder_and_decoder(tiny, case, multimask):
    ours, ref = tiny
    prompt = _prompts(ours.config.image_size)[case]
    embedding = _embedding(ours.config)
    with torch.no_grad():
        r_sparse, r_dense, r_masks, r_iou = _reference_decode(ref, embedding, prompt, multimask)
        sparse, dense = ours.prompt_encoder(**prompt)
        assert_close(sparse, r_sparse)
        assert_close(dense, r_dense)
        assert_close(ours.prompt_encoder.get_dense_pe(), ref.prompt_encoder.get_dense_pe())
        masks, iou = ours.mask_decoder(
            embedding, ours.prompt_encoder.get_dense_pe(), sparse, dense, multimask
        )
        assert masks.shape[1] == (3 if multimask else 1)
        assert_close(masks, r_masks)
        assert_close(iou, r_iou)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("multimask", [True, False])
def test_cached_decoder_path(tiny, case, multimask):
    """``prepare_decoder`` once + ``decode`` per prompt == the reference decoder."""
    ours, ref = tiny
    prompt = _prompts(ours.config.image_size)[case]
    embedding = _embedding(ours.config)
    with torch.inference_mode():
        _, _, r_masks, r_iou = _reference_decode(ref, embedding, prompt, multimask)
        cache = ours.prepare_decoder(embedding)
        masks, iou = ours.decode(
            cache,
            points=prompt["points"],
            boxes=prompt["boxes"],
            mask_input=prompt["masks"],
            multimask_output=multimask,
        )
        assert_close(masks, r_masks)
        assert_close(iou, r_iou)
        # The cache is reusable: a second prompt on the same image still agrees.
        again, _ = ours.decode(
            cache,
            points=prompt["points"],
            boxes=prompt["boxes"],
            mask_input=prompt["masks"],
            multimask_output=multimask,
        )
        assert torch.equal(again, masks)


def test_batched_embeddings_pair_with_prompts(tiny):
    """Image batch B: embedding i goes with prompt i."""
    ours, ref = tiny
    prompt = _prompts(ours.config.image_size)["boxes"]
    embeddings = _embedding(ours.config, batch=3)
    with torch.no_grad():
        sparse, dense = ours.prompt_encoder(**prompt)
        masks, iou = ours.mask_decoder(embeddings, ours.prompt_encoder.get_dense_pe(), sparse, dense, True)
        for i in range(3):
            one = {"points": None, "boxes": prompt["boxes"][i : i + 1], "masks": None}
            _, _, r_masks, r_iou = _reference_decode(ref, embeddings[i : i + 1], one, True)
            assert_close(masks[i : i + 1], r_masks)
            assert_close(iou[i : i + 1], r_iou)


def test_end_to_end_forward(tiny):
    """``Sam.forward`` (the reference's batched interface) agrees, including postprocessing."""
    ours, ref = tiny
    size = ours.config.image_size
    gen = torch.Generator().manual_seed(3)
    image = torch.randint(0, 256, (3, size - 28, size), generator=gen).float()
    record = {
        "image": image,
        "original_size": (150, 171),
        "point_coords": torch.tensor([[[40.0, 50.0], [90.0, 20.0]]]),
        "point_labels": torch.tensor([[1, 0]]),
    }
    with torch.no_grad():
        (o,) = ours([record], multimask_output=True)
        (r,) = ref([record], multimask_output=True)
    assert_close(o["low_res_logits"], r["low_res_logits"])
    assert_close(o["iou_predictions"], r["iou_predictions"])


def test_full_size_decoder_vit_b_dims():
    """Prompt encoder + decoder at the official widths (256, 8 heads, 64x64 grid)."""
    config = replace(VIT_B, vit=replace(VIT_B.vit, depth=1, global_attn_indexes=(0,)))
    ours, ref = make_pair(config, seed=8)
    embedding = _embedding(config)
    gen = torch.Generator().manual_seed(9)
    many = dict(  # 20 points: the unfolded attention path at full width
        points=(torch.rand(2, 20, 2, generator=gen) * 1024, torch.randint(0, 2, (2, 20), generator=gen)),
        boxes=None,
        masks=None,
    )
    for case in ("one_point", "box_points", "mask_input", "boxes", "many_points"):
        prompt = many if case == "many_points" else _prompts(config.image_size)[case]
        with torch.inference_mode():
            _, _, r_masks, r_iou = _reference_decode(ref, embedding, prompt, True)
            masks, iou = ours.decode(
                ours.prepare_decoder(embedding),
                points=prompt["points"],
                boxes=prompt["boxes"],
                mask_input=prompt["masks"],
            )
        assert_close(masks, r_masks, rel=FULL_REL)
        assert_close(iou, r_iou, rel=FULL_REL)


def test_postprocess_masks_match_reference_to_rounding(tiny):
    """The cropped, plane-by-plane, identity-skipping upscaling returns the reference's
    values up to float32 rounding (the bilinear kernel's vectorised paths for a
    ``Bx3`` and a ``(3B)x1`` layout may round the last bit differently)."""
    ours, ref = tiny
    side = ours.config.image_size
    low = torch.randn(
        2, 3, ours.config.low_res_size, ours.config.low_res_size, generator=torch.Generator().manual_seed(5)
    )
    for input_size, original in [
        ((side, side), (side, side)),
        ((96, side), (96, side)),
        ((side, 70), (333, 190)),
        ((37, side), (111, 517)),
        ((side - 1, 5), (1200, 7)),
    ]:
        with torch.no_grad():
            got = ours.postprocess_masks(low, input_size, original)
            want = ref.postprocess_masks(low, input_size, original)
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 4 * torch.finfo(torch.float32).eps * want.abs().max()


def test_encoder_grad_path_matches_inference_path(tiny):
    """The autograd path (no scratch buffers, no in-place ops) computes the same embeddings."""
    ours, _ = tiny
    x = _image(ours.config)
    with torch.no_grad():
        fast = ours.image_encoder(x)
    slow = ours.image_encoder(x.requires_grad_(True))
    slow.sum().backward()
    assert x.grad is not None
    assert_close(slow.detach(), fast)


def test_decoder_grad_path_matches_inference_path(tiny):
    ours, _ = tiny
    embedding = _embedding(ours.config)
    prompt = _prompts(ours.config.image_size)["box_points"]
    with torch.no_grad():
        sparse, dense = ours.prompt_encoder(**prompt)
        fast, _ = ours.mask_decoder(embedding, ours.prompt_encoder.get_dense_pe(), sparse, dense, True)
    emb = embedding.clone().requires_grad_(True)
    sparse, dense = ours.prompt_encoder(**prompt)
    slow, iou = ours.mask_decoder(emb, ours.prompt_encoder.get_dense_pe(), sparse, dense, True)
    (slow.sum() + iou.sum()).backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    assert_close(slow.detach(), fast)


# ---------------------------------------------------------------------------- dtypes


def test_bf16_close_to_fp32(tiny):
    ours, _ = tiny
    config = ours.config
    half = build_sam(config)
    half.load_state_dict(ours.state_dict())
    half = half.to(torch.bfloat16)
    x = _image(config)
    prompt = _prompts(config.image_size)["box_points"]
    with torch.inference_mode():
        e32 = ours.image_encoder(x)
        e16 = half.image_encoder(x.to(torch.bfloat16))
        assert e16.dtype == torch.bfloat16
        assert_close(e16, e32, rel=5e-2)
        m32, i32 = ours.decode(ours.prepare_decoder(e32), points=prompt["points"], boxes=prompt["boxes"])
        m16, i16 = half.decode(
            half.prepare_decoder(e32.to(torch.bfloat16)), points=prompt["points"], boxes=prompt["boxes"]
        )
        assert m16.dtype == torch.bfloat16
        assert_close(m16, m32, rel=5e-2)
        assert_close(i16, i32, rel=5e-2)


def test_fp16_runs_on_cpu(tiny):
    ours, _ = tiny
    half = build_sam(ours.config)
    half.load_state_dict(ours.state_dict())
    half = half.to(torch.float16)
    with torch.inference_mode():
        emb = half.image_encoder(_image(ours.config).half())
        masks, iou = half.decode(half.prepare_decoder(emb), points=_prompts(128)["one_point"]["points"])
    assert masks.dtype == torch.float16 and torch.isfinite(masks).all() and torch.isfinite(iou).all()
