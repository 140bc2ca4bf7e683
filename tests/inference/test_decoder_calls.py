"""How many prompts one decoder call takes, and the candidates of prompts decoded in several calls."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch

from backend.api.errors import InvalidInput
from backend.inference.predictor import (
    SamPredictor,
    candidates_in_calls,
    decode_in_calls,
    prompts_per_decoder_call,
)
from backend.model import build_sam
from backend.model.mask_decoder import DecodedCandidates
from tests.support.reference import tiny_vit_config

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


class _Out(NamedTuple):
    first: torch.Tensor
    second: torch.Tensor


def test_a_batch_is_decoded_a_few_prompts_a_call_with_shared_rows_passed_whole() -> None:
    coords = torch.arange(5, dtype=torch.float32).view(5, 1, 1)
    shared = torch.full((1, 3), 7.0)  # e.g. one image embedding for every prompt
    seen: list[tuple[int, int, bool]] = []

    def decode(coords: torch.Tensor, missing: None, shared: torch.Tensor) -> _Out:
        seen.append((len(coords), len(shared), missing is None))
        return _Out(coords.view(-1) * 10, coords.view(-1, 1) + shared)

    out = decode_in_calls(decode, (coords, None, shared), 2)
    assert seen == [(2, 1, True), (2, 1, True), (1, 1, True)]
    assert isinstance(out, _Out)
    assert out.first.tolist() == [0, 10, 20, 30, 40]
    assert out.second[:, 0].tolist() == [7, 8, 9, 10, 11]


def test_a_batch_within_one_call_is_decoded_once_and_returned_as_decoded() -> None:
    coords = torch.arange(5, dtype=torch.float32).view(5, 1, 1)
    returned: list[tuple[torch.Tensor]] = []

    def decode(coords: torch.Tensor) -> tuple[torch.Tensor]:
        returned.append((coords * 2,))
        return returned[-1]

    out = decode_in_calls(decode, (coords,), 5)
    assert len(returned) == 1 and out is returned[0]
    assert len(out[0]) == 5


def test_inputs_with_other_row_counts_are_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="1 or 4 rows"):
        decode_in_calls(lambda *t: t, (torch.zeros(4, 2), torch.zeros(2, 2)), 2)


@pytest.fixture(scope="module")
def tiny_predictor() -> SamPredictor:
    torch.manual_seed(0)
    predictor = SamPredictor(build_sam(tiny_vit_config()).eval())
    predictor.set_image(np.random.default_rng(1).integers(0, 256, (120, 200, 3), dtype=np.uint8))
    return predictor


BOXES = np.array([[5, 5, 90, 60], [100, 20, 190, 110], [0, 0, 199, 119]], dtype=np.float64)


def test_several_boxes_give_the_masks_of_one_call_when_decoded_one_at_a_time(
    tiny_predictor: SamPredictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = tiny_predictor
    calls: list[int] = []
    decode = predictor.model.decode

    def counting_decode(cache, points, boxes, *args):
        calls.append(len(boxes))
        return decode(cache, points, boxes, *args)

    monkeypatch.setattr(predictor.model, "decode", counting_decode)
    monkeypatch.setattr(predictor, "prompts_per_decoder_call", lambda: 1 << 30)
    whole = predictor.predict(box=BOXES, point_coords=[[50, 40]], point_labels=[1])
    monkeypatch.setattr(predictor, "prompts_per_decoder_call", lambda: 1)
    split = predictor.predict(box=BOXES, point_coords=[[50, 40]], point_labels=[1])
    assert calls == [3, 1, 1, 1]
    assert not np.allclose(whole.low_res_logits[0], whole.low_res_logits[1])  # an exchange would show
    np.testing.assert_allclose(split.scores, whole.scores, rtol=0, atol=1e-6)
    np.testing.assert_allclose(split.low_res_logits, whole.low_res_logits, rtol=0, atol=1e-4)
    assert (split.masks != whole.masks).mean() < 1e-4


@pytest.mark.parametrize("per_prompt_embeddings", [False, True])
def test_the_servers_explicit_embeddings_follow_their_prompts_across_calls(
    tiny_predictor: SamPredictor, monkeypatch: pytest.MonkeyPatch, per_prompt_embeddings: bool
) -> None:
    """The server's path: one shared ``1xCxExE`` embedding, or one per prompt (micro-batched
    requests on different images), each staying with its own box when the batch is split."""
    predictor = tiny_predictor
    own = predictor.embedding
    other = torch.randn(own.shape, generator=torch.Generator().manual_seed(2))
    embedding = torch.cat([own, other, own]) if per_prompt_embeddings else own
    boxes = torch.as_tensor(BOXES, dtype=torch.float32)
    size = predictor.original_size
    with torch.inference_mode():
        monkeypatch.setattr(predictor, "prompts_per_decoder_call", lambda: 1 << 30)
        whole = predictor.predict_torch(boxes=boxes, embedding=embedding, original_size=size)
        monkeypatch.setattr(predictor, "prompts_per_decoder_call", lambda: 1)
        split = predictor.predict_torch(boxes=boxes, embedding=embedding, original_size=size)
        on_own = predictor.predict_torch(boxes=boxes[1:2], embedding=own, original_size=size)
        on_other = predictor.predict_torch(boxes=boxes[1:2], embedding=other, original_size=size)
    for got, expected in zip(split, whole, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    assert not torch.allclose(on_own[0], on_other[0], atol=1e-2)  # a mix-up would show
    # box 1 is decoded on its own embedding: ``other`` when each prompt has one
    alone = on_other if per_prompt_embeddings else on_own
    torch.testing.assert_close(split[0][1:2], alone[0], rtol=0, atol=1e-4)
