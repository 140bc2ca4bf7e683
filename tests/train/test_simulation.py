from __future__ import annotations

import pytest
import torch

from backend.api.errors import InvalidInput
from backend.train.simulation import RoundsSettings, interactive_rounds, rounds_without_point


def test_rounds_without_point_include_the_last_and_random_middle_ones():
    settings = RoundsSettings(rounds=11, rounds_without_point=2)
    seen = set()
    for seed in range(30):
        chosen = rounds_without_point(settings, torch.Generator().manual_seed(seed))
        assert len(chosen) == 2 and 10 in chosen
        middle = (chosen - {10}).pop()
        assert 1 <= middle <= 9
        seen.add(middle)
    assert len(seen) > 3


@pytest.mark.parametrize(
    "rounds, without, box, focal",
    [(0, 0, 0.5, 20.0), (3, 3, 0.5, 20.0), (3, 1, 1.5, 20.0), (3, 1, 0.5, -1.0)],
)
def test_bad_round_settings_raise(rounds, without, box, focal):
    settings = RoundsSettings(
        rounds=rounds, rounds_without_point=without, box_probability=box, focal_weight=focal
    )
    with pytest.raises(InvalidInput):
        settings.check()


def test_interactive_rounds_give_a_differentiable_loss(tiny_sam):
    size = tiny_sam.config.image_size
    targets = torch.zeros(3, size, size, dtype=torch.bool)
    targets[:, 10:30, 20:40] = True
    embeddings = tiny_sam.image_encoder(torch.randn(1, 3, size, size)).expand(3, -1, -1, -1)
    result = interactive_rounds(
        tiny_sam, embeddings, targets, RoundsSettings(rounds=3), torch.Generator().manual_seed(0)
    )
    result.loss.backward()
    assert result.loss.ndim == 0 and torch.isfinite(result.loss)
    assert 0 <= float(result.first_iou) <= 1 and 0 <= float(result.last_iou) <= 1
    assert tiny_sam.image_encoder.patch_embed.proj.weight.grad is not None
