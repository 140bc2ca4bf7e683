"""Fine-tuning SAM 2.1 image networks: the family's adapter, the loop, the checkpoint, resuming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.hub import load_checkpoint, load_model
from backend.inference.sam2_predictor import Sam2Predictor
from backend.model.sam2 import Sam2, Sam2ImageFeatures
from backend.train.adapters import Prompts, Sam2Adapter, SamAdapter, training_adapter
from backend.train.datasets import GeneratedScenes, TrainingImage
from backend.train.embedding_cache import EmbeddingCache
from backend.train.loop import train
from backend.train.simulation import RoundsSettings, interactive_rounds

from .conftest import TINY_SCENES, fresh_sam2, quick_settings

FROZEN_PREFIXES = ("image_encoder.", "no_mem_embed", "sam_mask_decoder.conv_s0.", "sam_mask_decoder.conv_s1.")
"""What --freeze-encoder keeps as it is in a SAM 2.1 network (the cached features' computation)."""


def _state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def test_each_family_has_its_adapter(tiny_sam, tiny_sam2):
    assert isinstance(training_adapter(tiny_sam), SamAdapter)
    assert isinstance(training_adapter(tiny_sam2), Sam2Adapter)
    adapter = training_adapter(tiny_sam2)
    assert training_adapter(adapter) is adapter


def test_sam2_frame_stretches_the_image_and_its_masks_to_the_square_input(tiny_sam2):
    image = np.zeros((40, 100, 3), dtype=np.uint8)
    image[:, 50:] = 255
    masks = np.zeros((1, 40, 100), dtype=bool)
    masks[0, :, 50:] = True  # the right half
    item = TrainingImage(image=image, masks=masks, key="k")
    pixels, frame_masks = training_adapter(tiny_sam2).model_input(item, torch.device("cpu"))
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.float32
    assert (
        frame_masks.shape == (1, 64, 64) and frame_masks[0, :, 32:].all() and not frame_masks[0, :, :32].any()
    )
    expected = tiny_sam2.preprocess(torch.from_numpy(image).permute(2, 0, 1)[None])[0]
    assert torch.equal(pixels, expected)  # exactly what inference feeds the encoder


def test_sam_frame_keeps_the_aspect_ratio_and_pads(tiny_sam):
    item = TrainingImage(image=np.zeros((32, 64, 3), np.uint8), masks=np.ones((1, 32, 64), bool), key="k")
    pixels, masks = training_adapter(tiny_sam).model_input(item, torch.device("cpu"))
    assert pixels.shape == (3, 64, 64) and masks.shape == (1, 32, 64)


def test_training_decoder_gives_the_predictors_values_for_points_and_boxes(tiny_sam2):
    adapter = training_adapter(tiny_sam2)
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        features = adapter.encode(image)
    predictor = Sam2Predictor(tiny_sam2)
    predictor.set_embedding(Sam2ImageFeatures(*features), original_size=(64, 64))
    coords = torch.tensor([[[10.0, 20.0], [40.0, 30.0]], [[5.0, 5.0], [60.0, 50.0]]])
    labels = torch.tensor([[1, 0], [1, 1]])
    boxes = torch.tensor([[4.0, 6.0, 50.0, 40.0], [0.0, 0.0, 63.0, 63.0]])
    decode = adapter.decoder(tuple(f.expand(2, -1, -1, -1) for f in features))
    for with_boxes in (False, True):
        trained = decode(Prompts(coords, labels, boxes if with_boxes else None), None, True)
        served = predictor.decode_torch(coords, labels, boxes if with_boxes else None, multimask_output=True)
        assert torch.allclose(trained.low_res, served.masks, atol=1e-4)
        assert torch.allclose(trained.iou_pred, served.iou_pred, atol=1e-5)
        assert trained.object_score_logits is not None
        assert torch.allclose(trained.object_score_logits, served.object_score_logits, atol=1e-5)


def test_rounds_give_gradients_to_the_decoder_and_the_encoder_when_it_trains(tiny_sam2):
    adapter = training_adapter(tiny_sam2)
    tiny_sam2.train()
    targets = torch.zeros(3, 64, 64, dtype=torch.bool)
    targets[:, 10:30, 20:40] = True
    features = adapter.encode(torch.randn(1, 3, 64, 64))
    result = interactive_rounds(
        tiny_sam2,
        tuple(f.expand(3, -1, -1, -1) for f in features),
        targets,
        RoundsSettings(rounds=3, box_probability=0.0),  # a positive click first
        torch.Generator().manual_seed(0),
    )
    result.loss.backward()
    assert result.loss.ndim == 0 and torch.isfinite(result.loss)
    for name in (
        "sam_mask_decoder.iou_token.weight",
        "sam_mask_decoder.pred_obj_score_head.layers.0.weight",
        "sam_prompt_encoder.point_embeddings.1.weight",
        "sam_mask_decoder.conv_s0.weight",
        "image_encoder.trunk.patch_embed.proj.weight",
    ):
        grad = tiny_sam2.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.slow
def test_frozen_encoder_training_changes_the_decoder_only_caches_features_and_saves_sam2(tmp_path):
    sam2 = fresh_sam2()
    before = _state(sam2)
    cache = EmbeddingCache(tmp_path / "cache", encoder_name="tiny-sam2")
    result = train(
        sam2,
        GeneratedScenes(2, settings=TINY_SCENES),
        quick_settings(steps=3, freeze_encoder=True),
        out=tmp_path / "tuned.pt",
        state_path=tmp_path / "state.pt",
        embedding_cache=cache,
        progress=False,
    )
    assert result.step == 3 and all(np.isfinite(result.losses))
    after = sam2.state_dict()
    for key, value in after.items():
        if key.startswith(FROZEN_PREFIXES):
            assert torch.equal(value, before[key]), key
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert any(k.startswith("sam_mask_decoder.transformer.") for k in changed)
    assert any(k.startswith("sam_prompt_encoder.") for k in changed)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # one file of three tensors per image

    raw = torch.load(tmp_path / "tuned.pt", weights_only=True)
    assert raw["family"] == "sam2.1"
    config, _, meta = load_checkpoint(tmp_path / "tuned.pt")
    assert config == sam2.config and meta["step"] == 3
    loaded = load_model(tmp_path / "tuned.pt")  # strict on the image path's keys
    assert isinstance(loaded, Sam2) and loaded.config == sam2.config and not loaded.training
    assert loaded.state_dict().keys() == after.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, after[key]), key


@pytest.mark.slow
def test_cached_features_are_reused_and_give_the_same_losses(tmp_path):
    settings = quick_settings(steps=2, freeze_encoder=True)
    data = GeneratedScenes(2, settings=TINY_SCENES)
    runs = []
    for name in ("first", "second"):
        cache = EmbeddingCache(tmp_path / "cache", encoder_name="tiny-sam2")
        runs.append(
            train(
                fresh_sam2(),
                data,
                settings,
                out=tmp_path / f"{name}.pt",
                state_path=tmp_path / f"{name}_state.pt",
                embedding_cache=cache,
                progress=False,
            )
        )
    assert runs[0].losses == pytest.approx(runs[1].losses, rel=1e-5)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(tmp_path):
    data = GeneratedScenes(2, settings=TINY_SCENES)
    settings = quick_settings(
        steps=30,
        freeze_encoder=True,
        rounds=RoundsSettings(rounds=1, rounds_without_point=0, box_probability=1.0),
    )
    result = train(
        fresh_sam2(),
        data,
        settings,
        out=tmp_path / "m.pt",
        state_path=tmp_path / "s.pt",
        embedding_cache=EmbeddingCache(tmp_path / "cache", encoder_name="tiny-sam2"),
        progress=False,
    )
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.7 * first


@pytest.mark.slow
def test_training_everything_changes_the_image_encoder_too(tmp_path):
    sam2 = fresh_sam2()
    before = _state(sam2)
    train(
        sam2,
        GeneratedScenes(2, settings=TINY_SCENES),
        quick_settings(steps=1),
        out=tmp_path / "m.pt",
        state_path=tmp_path / "s.pt",
        progress=False,
    )
    after = sam2.state_dict()
    for key in ("image_encoder.trunk.patch_embed.proj.weight", "sam_mask_decoder.conv_s0.weight"):
        assert not torch.equal(after[key], before[key]), key


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_straight_runs_weights(tmp_path):
    settings = quick_settings(steps=4, checkpoint_every=4, freeze_encoder=True)
    data = GeneratedScenes(8, settings=TINY_SCENES)

    def run(name: str, network: Sam2, **kwargs):
        cache = EmbeddingCache(tmp_path / "cache", encoder_name="tiny-sam2")
        return train(
            network,
            data,
            settings,
            out=tmp_path / f"{name}.pt",
            state_path=tmp_path / f"{name}_state.pt",
            embedding_cache=cache,
            progress=False,
            **kwargs,
        )

    straight = fresh_sam2()
    run("a", straight)
    asked: list[int] = []
    stopped = run("b", fresh_sam2(), should_stop=lambda: asked.append(1) or len(asked) > 2)
    assert stopped.stopped and stopped.step == 2 and not (tmp_path / "b.pt").exists()
    resumed_sam2 = fresh_sam2()
    resumed = run("b", resumed_sam2)
    assert resumed.resumed_from == 2 and resumed.step == 4
    for (name, a), b in zip(straight.state_dict().items(), resumed_sam2.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.slow
def test_a_sam_training_state_is_refused_for_a_sam2_network(tiny_sam, tmp_path):
    from backend.api.errors import InvalidInput

    settings = quick_settings(steps=1)
    data = GeneratedScenes(2, settings=TINY_SCENES)
    train(tiny_sam, data, settings, out=tmp_path / "m.pt", state_path=tmp_path / "s.pt", progress=False)
    with pytest.raises(InvalidInput, match="another model configuration"):
        train(
            fresh_sam2(), data, settings, out=tmp_path / "m2.pt", state_path=tmp_path / "s.pt", progress=False
        )
