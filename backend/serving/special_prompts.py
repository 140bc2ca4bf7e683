"""Segment-everything results (cached) and CLIP text prompts for the service.

Segment-everything is expensive, so its records are cached per image and
parameters, and a request asking for more point prompts than the server's
limit is refused before any work. A text prompt reuses the records of the
default parameters and only ranks them with CLIP. Both run as bulk work on
the GPU worker through the ``run`` callables the service passes in, in
slices: a crop's encoding, a point batch of at most :data:`SLICE_POINTS`
prompts, a chunk of at most :data:`SLICE_UPSCALE_PIXELS` upscaled logits, one
mask's encoding, or :data:`TEXT_SLICE_RECORDS` ranked candidates, between two
calls of the ``checkpoint`` the service passes in. The generator and the CLIP ranker
modules are imported on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
from pydantic import ValidationError

from backend.api.answers import ObjectMasks
from backend.api.errors import InvalidInput, PayloadTooLarge
from backend.api.segment_everything import SegmentEverythingParams
from backend.byte_lru import ByteBoundedLRU, CacheStats
from backend.inference.prompts import CheckedPrompt, check_prompt
from backend.serving.config import ServerConfig

TEXT_TOP_K = 3
SLICE_POINTS = 64
"""Most point prompts decoded in one slice of segment-everything (a larger
``points_per_batch`` is decoded in slices of this size; Meta's default is 64).
The engine cuts a slice further to one decoder call's prompts
(:meth:`~backend.inference.engine.PredictorEngine.segment_everything`)."""
SLICE_UPSCALE_PIXELS = 2**21
"""Most logit pixels upscaled in one slice of segment-everything (8 MiB of
float32; the generator's own default is 2**25). The result is the same, the
slices shorter: for the demo model on one CPU core at 640x480, 99% of slices
take under 25 ms; the longest is a crop's encoding, about 0.3 s."""
TEXT_SLICE_RECORDS = 64
"""Candidates ranked by CLIP in one slice of a text prompt."""
LATEST_PARAMS_BYTES = 4 * 1024 * 1024
"""Budget of the remembered last parameters per model and image (what a text prompt
ranks), at :data:`PARAMS_ENTRY_BYTES` an entry: about 4,000 images, oldest forgotten first."""
PARAMS_ENTRY_BYTES = 1024
"""What one remembered parameter set counts against :data:`LATEST_PARAMS_BYTES` (a dict of a dozen numbers)."""
DEFAULT_MAX_AUTOMASK_POINTS = 8192
"""Most point prompts of one segment-everything request, over all crops
(``--max-automask-points``): allows Meta's defaults (32 a side, 1024 prompts)
with one crop layer (5 crops, 5120 prompts), or 64 a side on the whole image."""

Checkpoint = Callable[[], None]


def check_automask_params(params: dict[str, Any], model_defaults: dict[str, float]) -> dict[str, Any]:
    """Validate generator parameters; returns them with defaults filled in.

    Args:
        params: Parameters a request gave (any subset of :class:`SegmentEverythingParams`).
        model_defaults: The model's thresholds, for those the request leaves out.

    Raises:
        InvalidInput: Unknown names or values out of range.
    """
    try:
        given = SegmentEverythingParams(**params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"bad automask parameters: {problems}") from None
    return given.filled(model_defaults)


def automask_points(params: dict[str, Any]) -> int:
    """Point prompts a segment-everything request decodes: the sum over crops of their grid's points.

    Crop layer ``i`` has ``4**i`` crops, each with a grid of
    ``int(points_per_side / crop_n_points_downscale_factor**i)`` points a side.

    Args:
        params: Validated generator parameters (:func:`check_automask_params`).
    """
    per_side, factor = params["points_per_side"], params["crop_n_points_downscale_factor"]
    return sum(4**layer * int(per_side / factor**layer) ** 2 for layer in range(params["crop_n_layers"] + 1))


def check_automask_work(params: dict[str, Any], max_points: int) -> None:
    """Refuse a segment-everything request that asks for more than ``max_points`` point prompts.

    Raises:
        PayloadTooLarge: Over the limit; the message gives the count, the limit and how to fit.
    """
    points = automask_points(params)
    if points > max_points:
        raise PayloadTooLarge(
            f"segment-everything with points_per_side {params['points_per_side']}, crop_n_layers "
            f"{params['crop_n_layers']} and crop_n_points_downscale_factor "
            f"{params['crop_n_points_downscale_factor']} decodes {points} point prompts (points a side squared, "
            f"summed over all crops); this server allows at most {max_points} per request "
            "(sam-server --max-automask-points). Lower points_per_side or crop_n_layers, or raise "
            "crop_n_points_downscale_factor"
        )


def check_text_prompt(
    text: str,
    *,
    width: int,
    height: int,
    points: Any,
    labels: Any,
    box: Any,
    boxes: Any,
    mask_input: str | None,
) -> CheckedPrompt:
    """Validate a text prompt's companions: points or one box, within a ``width`` x ``height`` image.

    Raises:
        InvalidInput: ``boxes`` or ``mask_input`` given, empty text, or a bad point or box.
    """
    if mask_input is not None or boxes is not None:
        raise InvalidInput("a text prompt combines with points or one box only (not boxes or mask_input)")
    if not text.strip():
        raise InvalidInput("text must not be empty")
    return check_prompt(
        width=width, height=height, points=points, labels=labels, box=box, boxes=None, has_mask_input=True
    )


def clip_text_prompter(config: ServerConfig, device: str) -> Any:
    """The CLIP ranker of text prompts, with the configured CLIP model and weights folder."""
    from backend.inference.text import TextPrompter

    return TextPrompter(clip_model=config.clip_model, download_root=config.clip_root, device=device)


def _records_nbytes(records: list[dict[str, Any]]) -> int:
    """Rough size of SA-1B records: RLE strings plus a fixed overhead each."""
    return sum(len(str(r.get("segmentation", {}).get("counts", ""))) + 512 for r in records) + 64


class AutomaskRunner:
    """Caches segment-everything records (of every model, under one budget) and ranks them for text prompts.

    Args:
        store_bytes: Budget of the records cache, in bytes.
        text_prompter_factory: ``factory(device) -> ranker`` with the
            ``TextPrompter.rank`` signature; default builds a ``TextPrompter``.
        max_points: Most point prompts per request (:func:`check_automask_work`).
    """

    def __init__(
        self,
        *,
        store_bytes: int,
        text_prompter_factory: Callable[[str], Any] | None = None,
        max_points: int = DEFAULT_MAX_AUTOMASK_POINTS,
    ) -> None:
        self.max_points = max_points
        self._records: ByteBoundedLRU[list[dict[str, Any]]] = ByteBoundedLRU(store_bytes)
        self._latest_params: ByteBoundedLRU[dict[str, Any]] = ByteBoundedLRU(LATEST_PARAMS_BYTES)
        self._text_prompter_factory = text_prompter_factory
        self._text_prompter: Any = None
        self._lock = threading.RLock()

    def stats(self) -> CacheStats:
        """Counters of the records cache."""
        return self._records.stats()

    def check(self, params: dict[str, Any], model_defaults: dict[str, float]) -> dict[str, Any]:
        """Validated parameters with defaults filled in (the model's thresholds), within the work limit.

        Raises:
            InvalidInput: Unknown names or values out of range.
            PayloadTooLarge: More point prompts than ``max_points``.
        """
        full = check_automask_params(params, model_defaults)
        check_automask_work(full, self.max_points)
        return full

    def automask(
        self,
        *,
        key: Hashable,
        pixels: np.ndarray,
        params: dict[str, Any],
        model_defaults: dict[str, float],
        run: Callable[[dict[str, Any]], list[dict[str, Any]]],
    ) -> list[dict[str, Any]]:
        """Records for an image, computed once per model and parameter set.

        Args:
            key: Model and image identity.
            pixels: ``HxWx3`` uint8 image.
            params: Generator parameters (validated here).
            model_defaults: The model's thresholds, for those ``params`` leave out.
            run: Runs the generator with the given parameters on the GPU
                worker (in slices: see the module docstring) and returns its records.
        """
        full = self.check(params, model_defaults)
        cache_key = (key, tuple(sorted(full.items())))
        with self._lock:
            self._latest_params.put(key, full, PARAMS_ENTRY_BYTES)
        cached = self._records.get(cache_key)
        if cached is not None:
            return cached
        sliced = {
            **full,
            "points_per_batch": min(full["points_per_batch"], SLICE_POINTS),
            "upscale_pixel_budget": SLICE_UPSCALE_PIXELS,
        }
        records = run(sliced)
        self._records.put(cache_key, records, _records_nbytes(records))
        return records

    def text_candidate_params(self, key: Hashable) -> dict[str, Any]:
        """Parameters of the last segment-everything run on this image (defaults if none).

        A text prompt ranks those records, so a client that tuned the
        generator for an image gets text results from the same candidates.
        """
        with self._lock:
            return dict(self._latest_params.get(key) or {})

    def rank_text(
        self,
        *,
        pixels: np.ndarray,
        records: list[dict[str, Any]],
        text: str,
        prompt: CheckedPrompt,
        device: str,
        run: Callable[[Callable[[], Any]], Any],
        checkpoint: Checkpoint,
    ) -> list[ObjectMasks]:
        """The ``TEXT_TOP_K`` records that best match ``text``, as one object.

        A box keeps candidates inside it, positive points keep candidates
        containing them (the ranker does the filtering). The ranker sees
        :data:`TEXT_SLICE_RECORDS` records at a time, ``checkpoint`` between
        them; the best of every slice are merged (the same top ``TEXT_TOP_K``).

        Returns:
            One :class:`ObjectMasks` whose scores are CLIP similarities, or an
            empty list when no candidate matches.
        """
        from backend.formats.mask_codecs import from_coco_rle

        box = None if prompt.boxes is None else prompt.boxes[0].tolist()
        points = None if prompt.points is None else prompt.points.tolist()
        labels = None if prompt.labels is None else prompt.labels.tolist()

        def rank() -> list[tuple[dict[str, Any], float]]:
            ranker, best = self._ranker(device), []
            for start in range(0, max(len(records), 1), TEXT_SLICE_RECORDS):
                if start:
                    checkpoint()
                chunk = records[start : start + TEXT_SLICE_RECORDS]
                best += ranker.rank(
                    pixels, chunk, text, box=box, points=points, labels=labels, top_k=TEXT_TOP_K
                )
            return sorted(best, key=lambda pair: -pair[1])[:TEXT_TOP_K]  # stable: earlier records win ties

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

    def check_ranker(self, device: str) -> None:
        """Raise what the ranker would raise for missing weights, before segment-everything runs
        (a text prompt whose candidates are all filtered out would otherwise answer "no object"
        after the whole run, and only a prompt with candidates learn that CLIP is missing).

        Raises:
            WeightsUnavailable: CLIP's weights are not on disk (offline).
        """
        check = getattr(self._ranker(device), "check_weights", None)
        if callable(check):
            check()

    def _ranker(self, device: str) -> Any:
        """The CLIP ranker, built on first use (light: CLIP itself loads when it first ranks, on the worker thread)."""
        with self._lock:
            if self._text_prompter is None:
                if self._text_prompter_factory is not None:
                    self._text_prompter = self._text_prompter_factory(device)
                else:
                    from backend.inference.text import TextPrompter

                    self._text_prompter = TextPrompter(device=device)
            return self._text_prompter
