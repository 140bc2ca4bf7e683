"""Segment-everything results (cached) and CLIP text prompts for the service.

Segment-everything is expensive, so its records are cached per image and
parameters; a text prompt reuses the records of the default parameters and
only ranks them with CLIP. Both run on the GPU worker through the ``run``
callables the service passes in. The generator and the CLIP ranker modules
are imported on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import ValidationError

from backend.client.base import ObjectMasks
from backend.errors import InvalidInput
from backend.inference.prompts import Prompt
from backend.serving.embedding_cache import ByteBoundedLRU, CacheStats
from backend.serving.schemas import AutomaskParams

TEXT_TOP_K = 3


def check_automask_params(params: dict[str, Any], model_defaults: dict[str, float]) -> dict[str, Any]:
    """Validate generator parameters; returns them with defaults filled in.

    Args:
        params: Parameters a request gave (any subset of :class:`AutomaskParams`).
        model_defaults: The model's thresholds, for those the request leaves out.

    Raises:
        InvalidInput: Unknown names or values out of range.
    """
    try:
        full = AutomaskParams(**params).model_dump()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"bad automask parameters: {problems}") from None
    for name, value in model_defaults.items():
        if full.get(name) is None:
            full[name] = value
    return full


def _records_nbytes(records: list[dict[str, Any]]) -> int:
    """Rough size of SA-1B records: RLE strings plus a fixed overhead each."""
    return sum(len(str(r.get("segmentation", {}).get("counts", ""))) + 512 for r in records) + 64


class AutomaskRunner:
    """Caches segment-everything records and ranks them for text prompts.

    Args:
        store_bytes: Budget of the records cache, in bytes.
        model_defaults: The model's segment-everything thresholds (registry ``automask_defaults``).
        text_prompter_factory: ``factory(device) -> ranker`` with the
            ``TextPrompter.rank`` signature; default builds a ``TextPrompter``.
    """

    def __init__(
        self,
        *,
        store_bytes: int,
        model_defaults: dict[str, float],
        text_prompter_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.model_defaults = dict(model_defaults)
        self._records: ByteBoundedLRU[list[dict[str, Any]]] = ByteBoundedLRU(store_bytes)
        self._latest_params: dict[str, dict[str, Any]] = {}
        self._text_prompter_factory = text_prompter_factory
        self._text_prompter: Any = None
        self._lock = threading.RLock()

    def stats(self) -> CacheStats:
        """Counters of the records cache."""
        return self._records.stats()

    def automask(
        self,
        *,
        key: str,
        pixels: np.ndarray,
        params: dict[str, Any],
        run: Callable[[Callable[[Any, Any], Any]], Any],
    ) -> list[dict[str, Any]]:
        """Records for an image, computed once per parameter set.

        Args:
            key: Model and image identity.
            pixels: ``HxWx3`` uint8 image.
            params: Generator parameters (validated here).
            run: Runs ``fn(model, predictor)`` on the GPU worker, with the
                predictor already holding this image's embedding.
        """
        full = check_automask_params(params, self.model_defaults)
        cache_key = (key, tuple(sorted(full.items())))
        with self._lock:
            self._latest_params[key] = full
        cached = self._records.get(cache_key)
        if cached is not None:
            return cached
        from backend.inference.automask import AutomaskGenerator

        def generate(model: Any, predictor: Any) -> list[dict[str, Any]]:
            return AutomaskGenerator(model, **full).generate(pixels, predictor=predictor)

        records = run(generate)
        self._records.put(cache_key, records, _records_nbytes(records))
        return records

    def text_candidate_params(self, key: str) -> dict[str, Any]:
        """Parameters of the last segment-everything run on this image (defaults if none).

        A text prompt ranks those records, so a client that tuned the
        generator for an image gets text results from the same candidates.
        """
        with self._lock:
            return dict(self._latest_params.get(key, {}))

    def rank_text(
        self,
        *,
        pixels: np.ndarray,
        records: list[dict[str, Any]],
        text: str,
        prompt: Prompt,
        device: str,
        run: Callable[[Callable[[], Any]], Any],
    ) -> list[ObjectMasks]:
        """The ``TEXT_TOP_K`` records that best match ``text``, as one object.

        A box keeps candidates inside it, positive points keep candidates
        containing them (the ranker does the filtering).

        Returns:
            One :class:`ObjectMasks` whose scores are CLIP similarities, or an
            empty list when no candidate matches.
        """
        from backend.formats.mask_codecs import from_coco_rle

        box = None if prompt.boxes is None else prompt.boxes[0].tolist()
        points = None if prompt.points is None else prompt.points.tolist()
        labels = None if prompt.labels is None else prompt.labels.tolist()

        def rank() -> list[tuple[dict[str, Any], float]]:
            return self._ranker(device).rank(
                pixels, records, text, box=box, points=points, labels=labels, top_k=TEXT_TOP_K
            )

        ranked = run(rank)
        if not ranked:
            return []
        masks = np.stack([from_coco_rle(record["segmentation"]) for record, _ in ranked])
        return [
            ObjectMasks(
                masks=masks,
                scores=np.asarray([score for _, score in ranked], dtype=np.float32),
                stability_scores=np.asarray(
                    [r.get("stability_score", 0.0) for r, _ in ranked], dtype=np.float32
                ),
                logits_id=None,
                labels=[text] * len(ranked),
            )
        ]

    def _ranker(self, device: str) -> Any:
        """The CLIP ranker, built on first use (on the worker thread)."""
        with self._lock:
            if self._text_prompter is None:
                if self._text_prompter_factory is not None:
                    self._text_prompter = self._text_prompter_factory(device)
                else:
                    from backend.inference.text import TextPrompter

                    self._text_prompter = TextPrompter(device=device)
            return self._text_prompter
