from __future__ import annotations

import pytest
import torch

from backend.hub import load_checkpoint
from backend.train.datasets import GeneratedScenes
from backend.train.loop import learning_rate_factor, train
from backend.train.simulation import RoundsSettings

from .conftest import TINY_SCENES, quick_settings


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(tiny_sam, tmp_path):
    data = GeneratedScenes(2, settings=TINY_SCENES)
    settings = quick_settings(
        steps=40, rounds=RoundsSettings(rounds=1, rounds_without_point=0, box_probability=1.0)
    )
    result = train(
        tiny_sam, data, settings, out=tmp_path / "m.pt", state_path=tmp_path / "s.pt", progress=False
    )
    assert result.step == 40
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.7 * first


class _Interrupted(Exception):
    pass


class _CrashingScenes(GeneratedScenes):
    """Generated scenes that fail after ``budget`` reads, like a killed run."""

    def __init__(self, budget: int) -> None:
        super().__init__(16, settings=TINY_SCENES)
        self.budget = budget

    def __getitem__(self, index: int):
        self.budget -= 1
        if self.budget < 0:
            raise _Interrupted
        return super().__getitem__(index)


def _fresh_sam():
    from backend.model import build_sam

    from .conftest import TINY_CONFIG

    torch.manual_seed(0)
    return build_sam(TINY_CONFIG)


@pytest.mark.slow
def test_resume_continues_from_the_same_step_with_the_same_result(tmp_path):
    settings = quick_settings()
    data = GeneratedScenes(16, settings=TINY_SCENES)
    straight = _fresh_sam()
    train(straight, data, settings, out=tmp_path / "a.pt", state_path=tmp_path / "a_state.pt", progress=False)

    interrupted = _fresh_sam()
    with pytest.raises(_Interrupted):  # dies during step 3 (2 images per step), after the step-2 checkpoint
        train(
            interrupted,
            _CrashingScenes(5),
            settings,
            out=tmp_path / "b.pt",
            state_path=tmp_path / "b_state.pt",
            progress=False,
        )
    assert not (tmp_path / "b.pt").exists()
    resumed_sam = _fresh_sam()
    resumed = train(
        resumed_sam, data, settings, out=tmp_path / "b.pt", state_path=tmp_path / "b_state.pt", progress=False
    )
    assert resumed.resumed_from == 2 and resumed.step == 4 and len(resumed.losses) == 2
    for (name, a), b in zip(straight.state_dict().items(), resumed_sam.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.slow
def test_a_stop_request_saves_the_current_step_and_resuming_matches_a_straight_run(tmp_path):
    settings = quick_settings(steps=5, checkpoint_every=4)  # step 3 is no periodic checkpoint
    data = GeneratedScenes(16, settings=TINY_SCENES)
    straight = _fresh_sam()
    train(straight, data, settings, out=tmp_path / "a.pt", state_path=tmp_path / "a_state.pt", progress=False)

    asked: list[int] = []
    stopped_sam = _fresh_sam()
    stopped = train(
        stopped_sam,
        data,
        settings,
        out=tmp_path / "b.pt",
        state_path=tmp_path / "b_state.pt",
        progress=False,
        should_stop=lambda: asked.append(1) or len(asked) > 3,  # asked before each step: stop before step 4
    )
    assert stopped.stopped and stopped.step == 3 and not (tmp_path / "b.pt").exists()
    assert load_checkpoint(tmp_path / "b_state.pt")[2]["step"] == 3
    resumed_sam = _fresh_sam()
    resumed = train(
        resumed_sam, data, settings, out=tmp_path / "b.pt", state_path=tmp_path / "b_state.pt", progress=False
    )
    assert resumed.resumed_from == 3 and resumed.step == 5 and not resumed.stopped
    for (name, a), b in zip(straight.state_dict().items(), resumed_sam.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_result_loads_through_the_registry(tiny_sam, tmp_path):
    from backend.hub import load_model

    train(
        tiny_sam,
        GeneratedScenes(4, settings=TINY_SCENES),
        quick_settings(steps=1),
        out=tmp_path / "m.pt",
        state_path=tmp_path / "s.pt",
        progress=False,
    )
    loaded = load_model(str(tmp_path / "m.pt"))
    assert loaded.config == tiny_sam.config
    for a, b in zip(tiny_sam.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_resume_refuses_otherquick_settings(tiny_sam, tmp_path):
    from backend.api.errors import InvalidInput

    data = GeneratedScenes(4, settings=TINY_SCENES)
    train(
        tiny_sam,
        data,
        quick_settings(steps=2),
        out=tmp_path / "m.pt",
        state_path=tmp_path / "s.pt",
        progress=False,
    )
    with pytest.raises(
        InvalidInput, match=r"other training settings \(lr 0.002 there, 0.0001 now\).*restart"
    ):
        train(
            tiny_sam,
            data,
            quick_settings(steps=3, lr=1e-4),
            out=tmp_path / "m.pt",
            state_path=tmp_path / "s.pt",
            progress=False,
        )


@pytest.mark.slow
def test_frozen_encoder_is_not_trained_and_embeddings_are_cached(tiny_sam, tmp_path):
    from backend.train.embedding_cache import EmbeddingCache

    before = {k: v.clone() for k, v in tiny_sam.image_encoder.state_dict().items()}
    decoder_before = tiny_sam.mask_decoder.iou_token.weight.clone()
    cache = EmbeddingCache(tmp_path / "cache", encoder_name="tiny")
    data = GeneratedScenes(2, settings=TINY_SCENES)
    train(
        tiny_sam,
        data,
        quick_settings(steps=2, freeze_encoder=True),
        out=tmp_path / "m.pt",
        state_path=tmp_path / "s.pt",
        embedding_cache=cache,
        progress=False,
    )
    for key, value in tiny_sam.image_encoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(tiny_sam.mask_decoder.iou_token.weight, decoder_before)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_learning_rate_warms_up_then_decays():
    settings = quick_settings(warmup_steps=4, decay_steps=(10, 20), decay_factor=0.1)
    factors = [learning_rate_factor(s, settings) for s in (0, 3, 9, 10, 19, 20)]
    assert factors == pytest.approx([0.25, 1.0, 1.0, 0.1, 0.1, 0.01])


def _quick_run(sam, data, steps: int, folder, name: str) -> None:
    """``steps`` quick steps of ``sam`` on ``data``, model and state as ``folder/name.*``."""
    settings = quick_settings(steps=steps)
    train(sam, data, settings, out=folder / f"{name}.pt", state_path=folder / f"{name}.state", progress=False)


@pytest.mark.slow
def test_a_run_extended_with_more_steps_ends_as_one_started_with_them(tmp_path):
    from backend.api.errors import InvalidInput
    from backend.model import build_sam

    from .conftest import TINY_CONFIG

    data = GeneratedScenes(4, settings=TINY_SCENES)

    def fresh():
        torch.manual_seed(0)
        return build_sam(TINY_CONFIG)

    straight = fresh()
    _quick_run(straight, data, 4, tmp_path, "a")
    extended = fresh()
    for steps in (2, 4):
        _quick_run(extended, data, steps, tmp_path, "b")
    for a, b in zip(straight.state_dict().values(), extended.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(InvalidInput, match="at step 4, past the 3 steps asked for"):
        _quick_run(fresh(), data, 3, tmp_path, "b")
