"""How many prompts one decoder call takes, and the candidates of prompts decoded in several calls."""

from __future__ import annotations

import pytest
import torch

from backend.api.errors import InvalidInput
from backend.inference.predictor import candidates_in_calls, prompts_per_decoder_call
from backend.model.mask_decoder import DecodedCandidates

CPU = torch.device("cpu")


def test_a_cpu_call_holds_a_cache_sized_few_prompts() -> None:
    # SAM and SAM 2.1 at full size: 64x64 tokens of 256 channels, 4 MiB a prompt in float32.
    assert prompts_per_decoder_call(CPU, torch.float32, 64 * 64, 256) == 1
    assert prompts_per_decoder_call(CPU, torch.bfloat16, 64 * 64, 256) == 2
    assert prompts_per_decoder_call(CPU, torch.float32, 16 * 16, 256) == 16
    # Never none, however large the tokens.
    assert prompts_per_decoder_call(CPU, torch.float32, 256 * 256, 1024) == 1


def test_an_accelerator_takes_every_prompt_in_one_call() -> None:
    assert prompts_per_decoder_call(torch.device("cuda"), torch.float32, 64 * 64, 256) >= 1 << 20


def _fake_decode(keep: dict[int, list[int]]):
    """A decoder whose prompt ``p`` (its x coordinate) keeps candidates ``keep[p]``; records its call sizes."""
    sizes: list[int] = []

    def decode(coords: torch.Tensor, labels: torch.Tensor) -> DecodedCandidates:
        sizes.append(len(coords))
        prompt, candidate = [], []
        for i, p in enumerate(coords[:, 0, 0].long().tolist()):
            for c in keep.get(p, []):
                prompt.append(i)
                candidate.append(c)
        n = len(prompt)
        return DecodedCandidates(
            low_res=torch.tensor(
                [float(coords[i, 0, 0]) * 10 + c for i, c in zip(prompt, candidate, strict=True)]
            )
            .view(n, 1, 1)
            .expand(n, 2, 2)
            .clone(),
            iou=torch.tensor([0.5 + 0.1 * c for c in candidate]),
            prompt=torch.tensor(prompt, dtype=torch.int64),
            candidate=torch.tensor(candidate, dtype=torch.int64),
        )

    return decode, sizes


def test_candidates_of_several_calls_count_prompts_over_the_whole_batch() -> None:
    # Prompts 3 and 4 (the second call) keep nothing: an empty slice in the middle.
    keep = {0: [0, 2], 1: [1], 2: [], 3: [], 4: [], 5: [0, 1, 2], 6: [2]}
    coords = torch.arange(7, dtype=torch.float32).view(7, 1, 1).expand(7, 1, 2).clone()
    labels = torch.ones(7, 1, dtype=torch.int64)
    decode, sizes = _fake_decode(keep)
    found = candidates_in_calls(decode, coords, labels, 3)
    assert sizes == [3, 3, 1]
    assert found.prompt.tolist() == [0, 0, 1, 5, 5, 5, 6]
    assert found.candidate.tolist() == [0, 2, 1, 0, 1, 2, 2]
    assert found.low_res[:, 0, 0].tolist() == [0, 2, 11, 50, 51, 52, 62]
    decode_once, once = _fake_decode(keep)
    whole = candidates_in_calls(decode_once, coords, labels, 100)
    assert once == [7]
    assert torch.equal(whole.prompt, found.prompt) and torch.equal(whole.low_res, found.low_res)


def test_no_prompts_is_a_clear_error() -> None:
    decode, sizes = _fake_decode({})
    with pytest.raises(InvalidInput, match="no point prompts"):
        candidates_in_calls(decode, torch.zeros(0, 1, 2), torch.zeros(0, 1, dtype=torch.int64), 4)
    assert sizes == []
