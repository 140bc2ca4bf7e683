"""Image -> embedding once, then any number of prompts -> three ranked masks.

The predictor owns the per-image state (embedding, sizes); the network stays
stateless. Two entry points: :meth:`SamPredictor.predict` takes numpy arrays
in original-image pixels and returns numpy masks; :meth:`predict_torch` takes
batched tensors and returns low-res logits, for callers (segment-everything,
the server's micro-batcher) that upscale only what they keep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

import numpy as np
import torch

from backend.api.errors import InvalidInput
from backend.formats.coordinates import resized_shape, to_model_boxes, to_model_points
from backend.formats.images import check_rgb_pixels, resize_rgb
from backend.inference.mask_ops import upscale_in_chunks
from backend.inference.prompts import (
    PredictorPrompt,
    check_original_size,
    check_points_paired,
    check_predictor_prompt,
)
from backend.model.config import SamConfig
from backend.model.mask_decoder import DecodedCandidates
from backend.model.memo import MemoOnWeights
from backend.model.pixels import normalize_and_pad

if TYPE_CHECKING:
    from backend.model import Sam
    from backend.model.mask_decoder import DecoderImageCache

CPU_DECODER_WORKING_SET_BYTES = 4 * 1024 * 1024
"""Per-call image-token bytes the CPU decoder aims for (a few MiB: L2/L3-sized)."""


def prompts_per_decoder_call(device: torch.device, dtype: torch.dtype, image_tokens: int, width: int) -> int:
    """How many prompts one mask-decoder call should take: all on an accelerator; on a CPU
    as many as keep the call's image tokens, one ``image_tokens x width`` copy
    per prompt in ``dtype``, within :data:`CPU_DECODER_WORKING_SET_BYTES`, so
    that the decoder's elementwise passes over them run from cache instead of
    memory.

    At SAM's and SAM 2.1's sizes (4096 tokens of 256 channels) that is one
    prompt in float32 and two in bfloat16: a SAM 2.1 hiera_t call costs, a
    prompt, 22.6 ms with 1 or 2 prompts and 31 ms with 8 or 64 in float32;
    17.9, 13.8, 12.7 and 13.3 ms with 1, 2, 4 and 8 in bfloat16.
    `benchmarks/bench_automask.py` and `benchmarks/bench_server.py` measure
    the effect for SAM 1, `benchmarks/bench_sam2.py` for SAM 2.1.
    """
    if device.type != "cpu":
        return 1 << 30
    return max(1, CPU_DECODER_WORKING_SET_BYTES // (image_tokens * width * dtype.itemsize))


def check_features_fit_model(features: torch.Tensor, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse an image's features kept from before the model was moved or converted.

    Raises:
        InvalidInput: ``features`` are not of ``dtype`` on ``device`` (the model's now).
    """
    if features.dtype != dtype or features.device != device:
        raise InvalidInput(
            f"the model is now {dtype} on {device}, but the current image's features were computed "
            f"as {features.dtype} on {features.device}: call set_image() (or set_embedding()) again"
        )


DecoderOutputs = TypeVar("DecoderOutputs", bound=tuple)


def decode_in_calls(
    decode: Callable[..., DecoderOutputs], inputs: Sequence[torch.Tensor | None], prompts_per_call: int
) -> DecoderOutputs:
    """``decode(*inputs)`` for a batch of B prompts, ``prompts_per_call`` of them a call.

    Args:
        decode: Batch-first inputs -> a tuple (or NamedTuple) of batch-first
            outputs.
        inputs: Tensors of B rows, or None; one with a single row while B > 1
            (an image embedding shared by the prompts) goes whole to every call.
        prompts_per_call: At least 1 (see :func:`prompts_per_decoder_call`).

    Returns:
        ``decode``'s outputs for all B prompts (concatenated along dim 0 when
        there were several calls).

    Raises:
        InvalidInput: An input has neither 1 nor B rows.
    """
    rows = [len(t) for t in inputs if t is not None]
    batch = max(rows, default=0)
    if any(n not in (1, batch) for n in rows):
        raise InvalidInput(f"prompt inputs must have 1 or {batch} rows, got {rows}")
    if batch <= prompts_per_call:
        return decode(*inputs)
    parts = [
        decode(*(t[i : i + prompts_per_call] if t is not None and len(t) == batch else t for t in inputs))
        for i in range(0, batch, prompts_per_call)
    ]
    joined = [torch.cat(outputs) for outputs in zip(*parts, strict=True)]
    kind = type(parts[0])
    return cast(DecoderOutputs, kind(*joined) if hasattr(kind, "_fields") else kind(joined))


def candidates_in_calls(
    decode: Callable[[torch.Tensor, torch.Tensor], DecodedCandidates],
    point_coords: torch.Tensor,
    point_labels: torch.Tensor,
    prompts_per_call: int,
) -> DecodedCandidates:
    """Segment-everything's candidates of ``B`` point prompts, ``prompts_per_call`` at a time.

    Args:
        decode: ``(coords bxNx2, labels bxN)`` -> that slice's candidates
            (prompt indices counted within the slice).
        point_coords: ``BxNx2``.
        point_labels: ``BxN``.
        prompts_per_call: Prompts per ``decode`` call (at least 1).

    Returns:
        All candidates, prompt-major, prompt indices counted over all ``B``.

    Raises:
        InvalidInput: No prompts (``B = 0``).
    """
    if len(point_coords) == 0:
        raise InvalidInput("no point prompts to decode")
    starts = range(0, len(point_coords), prompts_per_call)
    parts = [
        decode(point_coords[i : i + prompts_per_call], point_labels[i : i + prompts_per_call]) for i in starts
    ]
    return DecodedCandidates(
        low_res=torch.cat([p.low_res for p in parts]),
        iou=torch.cat([p.iou for p in parts]),
        prompt=torch.cat([p.prompt + i for p, i in zip(parts, starts, strict=True)]),
        candidate=torch.cat([p.candidate for p in parts]),
    )


ArrayLike = np.ndarray | Sequence


@dataclass
class PredictorOutput:
    """Candidate masks for B objects, ranked best first.

    Attributes:
        masks: ``BxKxHxW`` bool at the original image size.
        scores: ``BxK`` float32 predicted IoU, descending along K.
        stability_scores: ``BxK`` float32, or None when not asked for.
        low_res_logits: ``BxKxLxL`` float32, for refinement (``mask_input``).
    """

    masks: np.ndarray
    scores: np.ndarray
    stability_scores: np.ndarray | None
    low_res_logits: np.ndarray


class SamPredictor:
    """Holds one image's embedding and answers prompts on it.

    Args:
        model: A :class:`backend.model.Sam` in eval mode, on its device and dtype.
    """

    def __init__(self, model: Sam) -> None:
        if model.config is None:
            raise InvalidInput(
                "SamPredictor needs a Sam built by build_sam: its config gives the input sizes"
            )
        self.model = model
        self.config: SamConfig = model.config
        self.image_size: int = self.config.image_size
        self.low_res_size: int = self.config.low_res_size
        self._embedding: torch.Tensor | None = None
        self._original_size: tuple[int, int] | None = None
        self._input_size: tuple[int, int] | None = None
        self._decoder_memo: MemoOnWeights[DecoderImageCache] = MemoOnWeights()

    # ------------------------------------------------------------------ image
    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def embedding(self) -> torch.Tensor:
        """``1xCxExE`` image embedding of the current image."""
        return self._require_image()[0]

    @property
    def original_size(self) -> tuple[int, int]:
        """``(height, width)`` of the current image in pixels."""
        return self._require_image()[1]

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the resized image inside the model input."""
        return self._require_image()[2]

    def _require_image(self) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        if self._embedding is None or self._original_size is None or self._input_size is None:
            raise InvalidInput("no image is set: call set_image() or set_embedding() first")
        return self._embedding, self._original_size, self._input_size

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``HxWx3`` uint8 RGB -> ``1x3xSxS`` normalised, padded model input."""
        check_rgb_pixels(image)
        new_h, new_w = resized_shape(image.shape[0], image.shape[1], self.image_size)
        resized = resize_rgb(image, (new_w, new_h))  # Pillow's bilinear, without a full-size copy
        x = torch.from_numpy(resized).to(self.device).permute(2, 0, 1)[None]
        return normalize_and_pad(
            x,
            pixel_mean=self.config.pixel_mean,
            pixel_std=self.config.pixel_std,
            size=self.image_size,
            dtype=self.dtype,
        )

    @torch.inference_mode()
    def compute_embedding(self, image: np.ndarray) -> torch.Tensor:
        """``HxWx3`` uint8 RGB -> ``1xCxExE`` embedding (does not change the current image)."""
        return self.model.image_encoder(self.preprocess(image))

    def set_image(self, image: np.ndarray) -> None:
        """Compute and keep the embedding of an ``HxWx3`` uint8 RGB image."""
        embedding = self.compute_embedding(image)
        self.set_embedding(embedding, original_size=(image.shape[0], image.shape[1]))

    def set_embedding(self, embedding: torch.Tensor, *, original_size: tuple[int, int]) -> None:
        """Use a precomputed ``1xCxExE`` embedding (e.g. from a cache).

        Args:
            embedding: Output of the image encoder for this image.
            original_size: ``(height, width)`` of the image in pixels.
        """
        expected = (self.config.prompt_embed_dim, self.config.embedding_size)
        if (
            embedding.ndim != 4
            or embedding.shape[0] != 1
            or embedding.shape[1] != expected[0]
            or embedding.shape[2] != expected[1]
        ):
            raise InvalidInput(
                f"embedding must be 1x{expected[0]}x{expected[1]}x{expected[1]}, got {tuple(embedding.shape)}"
            )
        size = check_original_size(original_size)
        self._embedding = embedding.to(self.device, self.dtype)
        self._original_size = size
        self._input_size = resized_shape(size[0], size[1], self.image_size)
        self._decoder_memo = MemoOnWeights()

    def reset_image(self) -> None:
        """Forget the current image."""
        self._embedding = self._original_size = self._input_size = None
        self._decoder_memo = MemoOnWeights()

    # ---------------------------------------------------------------- prompts
    def predict(
        self,
        *,
        point_coords: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        box: ArrayLike | None = None,
        mask_input: ArrayLike | None = None,
        multimask_output: bool = True,
        stability: bool = True,
    ) -> PredictorOutput:
        """Masks for a prompt on the current image.

        Args:
            point_coords: ``Nx2`` ``(x, y)`` in original pixels.
            point_labels: ``N`` ints, 1 = foreground, 0 = background.
            box: ``4`` or ``Bx4`` XYXY boxes in original pixels; B boxes give
                B objects, each with the same points.
            mask_input: ``1xLxL`` or ``Bx1xLxL`` low-res logits from an earlier
                answer (``low_res_logits[:, :1]`` of the chosen candidate).
            multimask_output: Three candidates (True) or one (False).
            stability: Also compute the stability scores (two more passes
                over the full-size logits, about 5% of a CPU call).

        Returns:
            A :class:`PredictorOutput` with B objects (B = 1 without boxes).
        """
        checked = check_predictor_prompt(
            size=self.original_size,
            point_coords=point_coords,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            mask_side=self.low_res_size,
        )
        tensors = prompt_tensors(checked, self.device)
        low_res, scores = self.predict_torch(*tensors, multimask_output=multimask_output)
        low_res = low_res.float()
        masks, stability_scores = upscale_in_chunks(
            self.upscale_logits, low_res, self.original_size, stability=stability
        )
        return PredictorOutput(
            masks=masks,
            scores=scores.float().cpu().numpy(),
            stability_scores=stability_scores,
            low_res_logits=low_res.cpu().numpy(),
        )

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        *,
        multimask_output: bool = True,
        sort: bool = True,
        embedding: torch.Tensor | None = None,
        original_size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched prompts -> low-res logits and scores (no upscaling; values unchecked, but points need labels).

        The B prompts (several boxes) are decoded :meth:`prompts_per_decoder_call`
        at a time.

        Args:
            point_coords: ``BxNx2`` float, original pixels.
            point_labels: ``BxN`` int (1 foreground, 0 background, -1 padding).
            boxes: ``Bx4`` XYXY float, original pixels.
            mask_input: ``Bx1xLxL`` logits.
            multimask_output: Three candidates (True) or one (False).
            sort: Rank candidates by predicted IoU, best first.
            embedding: ``1xCxExE`` or ``BxCxExE`` embeddings to use instead of
                the current image's (micro-batching across images); needs
                ``original_size``, shared by the batch.
            original_size: ``(H, W)`` that the coordinates refer to.

        Returns:
            ``(low_res_logits BxKxLxL, iou_scores BxK)`` in the model's dtype.
        """
        cache = None
        if embedding is None:
            embedding, original_size, _ = self._require_image()
            cache = self._decoder_cache()
        elif original_size is None:
            raise InvalidInput("original_size is required with an explicit embedding")
        check_points_paired(point_coords, point_labels)
        input_size = resized_shape(original_size[0], original_size[1], self.image_size)
        dtype = self.dtype
        coords = labels = None
        if point_coords is not None and point_labels is not None:
            coords = to_model_points(point_coords, original_size, input_size).to(dtype)
            labels = point_labels
        if boxes is not None:
            boxes = to_model_boxes(boxes, original_size, input_size).to(dtype)
        if mask_input is not None:
            mask_input = mask_input.to(dtype)

        def decode(
            coords: torch.Tensor | None,
            labels: torch.Tensor | None,
            boxes: torch.Tensor | None,
            masks: torch.Tensor | None,
            embedding: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            points = (coords, labels) if coords is not None and labels is not None else None
            if cache is not None:
                return self.model.decode(cache, points, boxes, masks, multimask_output)
            sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=masks)
            return self.model.mask_decoder(
                image_embeddings=embedding,
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )

        low_res, scores = decode_in_calls(
            decode, (coords, labels, boxes, mask_input, embedding), self.prompts_per_decoder_call()
        )
        if sort and scores.shape[1] > 1:
            scores, order = scores.sort(dim=1, descending=True)
            low_res = torch.gather(low_res, 1, order[:, :, None, None].expand_as(low_res))
        return low_res, scores

    @torch.inference_mode()
    def predict_candidates_above(
        self, point_coords: torch.Tensor, point_labels: torch.Tensor, min_iou: float | None
    ) -> DecodedCandidates:
        """Multimask candidates of many point prompts, keeping those with predicted IoU above ``min_iou``.

        Segment-everything's first filter, applied before the decoder upscales
        anything: a candidate that fails it costs no mask computation.

        Args:
            point_coords: ``BxNx2`` float, original pixels of the current image.
            point_labels: ``BxN`` int.
            min_iou: Keep candidates whose predicted IoU is strictly above
                this; ``None`` keeps all.

        Returns:
            The kept candidates (low-res logits ``KxLxL``, IoU, prompt index,
            unsorted candidate index), prompt-major.
        """
        _, original_size, _ = self._require_image()
        input_size = resized_shape(original_size[0], original_size[1], self.image_size)
        coords = to_model_points(point_coords, original_size, input_size).to(self.dtype)
        cache = self._decoder_cache()
        return candidates_in_calls(
            lambda points, labels: self.model.decode_above(cache, (points, labels), min_iou),
            coords,
            point_labels,
            self.prompts_per_decoder_call(),
        )

    def prompts_per_decoder_call(self) -> int:
        """See :func:`prompts_per_decoder_call` (at SAM's sizes on a CPU 1 in float32, 2 in
        bfloat16; 32 for the demo model in float32)."""
        config = self.config
        return prompts_per_decoder_call(
            self.device, self.dtype, config.embedding_size**2, config.prompt_embed_dim
        )

    def _decoder_cache(self) -> DecoderImageCache:
        """Prompt-independent decoder work for the current image, computed once per image
        and again whenever the weights it comes from change (:meth:`Sam.decoder_cache_inputs`)."""
        embedding = self.embedding
        check_features_fit_model(embedding, self.device, self.dtype)
        key, weights = self.model.decoder_cache_inputs()
        return self._decoder_memo.get(key, weights, lambda: self.model.prepare_decoder(embedding))

    def upscale_logits(
        self, low_res: torch.Tensor, original_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """``BxKxLxL`` low-res logits -> ``BxKxHxW`` logits at the original image size."""
        size = original_size or self.original_size
        input_size = resized_shape(size[0], size[1], self.image_size)
        return self.model.postprocess_masks(low_res, input_size, size)


def prompt_tensors(
    checked: PredictorPrompt, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """A checked numpy prompt -> ``(point_coords BxNx2, point_labels BxN, boxes Bx4,
    mask_input Bx1xLxL)`` tensors on ``device`` (float32, int64; None where absent), the
    points and a single mask repeated (as views) for each of the B objects."""
    prompt, batch = checked.prompt, checked.batch
    coords_t = labels_t = boxes_t = masks_t = None
    if prompt.points is not None and prompt.labels is not None:
        coords_t = torch.as_tensor(prompt.points, dtype=torch.float32, device=device)[None].expand(
            batch, -1, -1
        )
        labels_t = torch.as_tensor(prompt.labels, dtype=torch.int64, device=device)[None].expand(batch, -1)
    if prompt.boxes is not None:
        boxes_t = torch.as_tensor(prompt.boxes, dtype=torch.float32, device=device)
    if checked.masks is not None:
        masks_t = torch.as_tensor(checked.masks, dtype=torch.float32, device=device).expand(batch, -1, -1, -1)
    return coords_t, labels_t, boxes_t, masks_t
