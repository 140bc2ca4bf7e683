"""Text prompts: rank segment-everything candidates by how well they match a text.

Each candidate mask's region is cut out of the image with some context
around its box, the pixels outside the mask are dimmed, and the result is
embedded by CLIP's image encoder (in batches). The text is embedded through
several prompt templates ("a photo of a {}."), averaged. The score of a
candidate is the cosine similarity of the two embeddings, in ``[-1, 1]``.

Combining with other prompts:

- with a box ``[x1, y1, x2, y2]``: only candidates with at least
  ``BOX_INSIDE_FRACTION`` of their mask pixels inside the box are ranked;
- with points: only candidates whose mask contains every positive point
  (label 1) and no negative point (label 0) are ranked.

CLIP (``pip install openai-clip``) is imported when first needed. Weights are
read from ``download_root`` (default ``~/.cache/clip``) and never downloaded
unless ``download=True``; a missing file raises
:class:`backend.api.errors.WeightsUnavailable` naming the file and its URL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend.api.errors import InvalidInput, ServiceUnavailable, WeightsUnavailable
from backend.byte_lru import ByteBoundedLRU
from backend.formats.images import check_rgb_pixels
from backend.formats.mask_codecs import from_coco_rle

#: Prompt templates; the text embedding is the mean over them.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
)
#: CLIP's per-channel RGB normalisation (0..1 scale).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Share of a candidate's mask that must lie inside a box prompt.
BOX_INSIDE_FRACTION = 0.9
_TEXT_CACHE_BYTES = 512 * 1024
"""Budget of the text-embedding cache: 256 phrases of ViT-B/32 (512 float32 each)."""


class TextPrompter:
    """Ranks candidate masks of an image against a text with CLIP.

    Args:
        clip_model: A CLIP model name (``clip.available_models()``, e.g.
            ``"ViT-B/32"``) or the path of a CLIP checkpoint file.
        download_root: Folder of the CLIP weights (default ``~/.cache/clip``).
        device: Torch device for CLIP.
        download: Allow CLIP to download missing weights (off: offline use
            fails fast with a clear error instead).
        model: An already loaded CLIP model (``encode_image``,
            ``encode_text``); with ``preprocess``, replaces loading by name.
        preprocess: PIL image -> ``3xSxS`` float tensor for ``model``.
        templates: Prompt templates with one ``{}`` for the text.
        context: Margin added around each candidate's box, as a fraction of
            the box's width and height on each side.
        background_brightness: Factor applied to pixels outside the mask
            (0 = black, 1 = unchanged).
        batch_size: Regions embedded per CLIP forward pass.
    """

    def __init__(
        self,
        *,
        clip_model: str = "ViT-B/32",
        download_root: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        download: bool = False,
        model: torch.nn.Module | None = None,
        preprocess: Callable[[Image.Image], torch.Tensor] | None = None,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        context: float = 0.1,
        background_brightness: float = 0.3,
        batch_size: int = 32,
    ) -> None:
        if (model is None) != (preprocess is None):
            raise InvalidInput("give both model and preprocess, or neither (then clip_model is loaded)")
        if not templates or any(t.count("{}") != 1 for t in templates):
            raise InvalidInput(
                "each template needs exactly one '{}' where the text goes, e.g. 'a photo of a {}.'"
            )
        if context < 0 or not 0.0 <= background_brightness <= 1.0 or batch_size < 1:
            raise InvalidInput("need context >= 0, background_brightness in [0, 1] and batch_size >= 1")
        self.clip_model = clip_model
        self.download_root = os.path.expanduser(str(download_root or "~/.cache/clip"))
        self.device = torch.device(device)
        self.download = download
        self.templates = tuple(templates)
        self.context = context
        self.background_brightness = background_brightness
        self.batch_size = batch_size
        self._model = model.to(self.device).eval() if model is not None else None
        self._preprocess = preprocess
        self._text_cache: ByteBoundedLRU[torch.Tensor] = ByteBoundedLRU(_TEXT_CACHE_BYTES)

    # ----------------------------------------------------------------- model
    def weights_path(self) -> str:
        """Local file the CLIP weights are read from (may not exist yet)."""
        if os.path.isfile(self.clip_model):
            return self.clip_model
        return os.path.join(self.download_root, os.path.basename(_clip_url(self.clip_model)))

    def check_weights(self) -> None:
        """Raise :class:`WeightsUnavailable` (naming the file and its URL) when CLIP cannot be loaded offline."""
        if self._model is not None or self.download:
            return
        _import_clip()
        path = self.weights_path()
        if not os.path.isfile(path):
            raise WeightsUnavailable(
                f"CLIP weights for {self.clip_model!r} not found: download {_clip_url(self.clip_model)} "
                f"and save it as {path}, or put it in another folder and give that folder as --clip-root "
                "(sam-server, sam-annotate) or download_root (TextPrompter); the default folder is ~/.cache/clip"
            )

    def load(self) -> None:
        """Load CLIP now (otherwise on first use); fails fast when weights are missing."""
        if self._model is not None:
            return
        self.check_weights()
        path = self.weights_path()
        if os.path.isfile(path):
            self._model, self._preprocess = _load_clip_file(path, self.device)
        else:  # download=True: let CLIP fetch the official file
            model, self._preprocess = _import_clip().load(
                self.clip_model, device=self.device, jit=False, download_root=self.download_root
            )
            self._model = model.eval()

    @property
    def model(self) -> Any:
        """The CLIP model (loaded on first use): ``encode_image``, ``encode_text``."""
        return self._loaded()[0]

    def _loaded(self) -> tuple[Any, Callable[[Image.Image], torch.Tensor]]:
        """``(model, preprocess)``, loading them on first use."""
        self.load()
        if self._model is None or self._preprocess is None:
            raise ServiceUnavailable(f"CLIP model {self.clip_model!r} could not be loaded")
        return self._model, self._preprocess

    # --------------------------------------------------------------- ranking
    @torch.inference_mode()
    def rank(
        self,
        image: np.ndarray,
        records: Sequence[dict[str, Any]],
        text: str,
        *,
        box: Sequence[float] | None = None,
        points: Sequence[Sequence[float]] | None = None,
        labels: Sequence[int] | None = None,
        top_k: int = 3,
    ) -> list[tuple[dict[str, Any], float]]:
        """The ``top_k`` candidates that best match ``text``, best first.

        Args:
            image: ``HxWx3`` uint8 RGB.
            records: Segment-everything records (``segmentation`` as COCO RLE
                or an ``HxW`` bool array, ``bbox`` XYWH pixels).
            text: What to find, e.g. ``"cat"``.
            box: Optional ``[x1, y1, x2, y2]`` pixels restricting candidates.
            points: Optional ``Nx2`` ``(x, y)`` pixels restricting candidates.
            labels: ``N`` labels for ``points``: 1 must be inside, 0 outside.
            top_k: How many candidates to return.

        Returns:
            ``(record, cosine similarity)`` pairs, at most ``top_k``.
        """
        check_rgb_pixels(image)
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("text must be a non-empty string such as 'cat'")
        if top_k < 1:
            raise InvalidInput(f"top_k must be >= 1, got {top_k}")
        height, width = image.shape[:2]
        box_xyxy = _check_box(box, width, height)
        point_xy, point_labels = _check_points(points, labels, width, height)

        kept: list[tuple[dict[str, Any], np.ndarray]] = []
        for record in records:
            mask = _record_mask(record, height, width)
            if box_xyxy is not None and not _mostly_inside(mask, box_xyxy):
                continue
            if point_xy is not None and not _agrees_with_points(mask, point_xy, point_labels):
                continue
            kept.append((record, mask))
        if not kept:
            return []

        text_embedding = self.embed_text(text)
        scores = []
        for start in range(0, len(kept), self.batch_size):
            regions = [
                self.region_image(image, mask, record["bbox"])
                for record, mask in kept[start : start + self.batch_size]
            ]
            scores.append(self.embed_regions(regions) @ text_embedding)
        all_scores = torch.cat(scores).float().cpu()
        order = torch.argsort(all_scores, descending=True, stable=True)[:top_k]
        return [(kept[i][0], float(all_scores[i])) for i in order.tolist()]

    def region_image(self, image: np.ndarray, mask: np.ndarray, bbox: Sequence[float]) -> Image.Image:
        """The candidate's region: its box plus context, pixels outside the mask dimmed.

        Args:
            image: ``HxWx3`` uint8 RGB.
            mask: ``HxW`` bool.
            bbox: ``[x, y, w, h]`` pixels of the mask's box.

        Returns:
            An RGB PIL image of the crop.
        """
        height, width = mask.shape
        x, y, w, h = (float(v) for v in bbox)
        margin_x, margin_y = self.context * (w + 1), self.context * (h + 1)
        x1, y1 = max(0, int(x - margin_x)), max(0, int(y - margin_y))
        x2, y2 = (
            min(width, int(np.ceil(x + w + 1 + margin_x))),
            min(height, int(np.ceil(y + h + 1 + margin_y))),
        )
        crop = image[y1:y2, x1:x2].astype(np.float32)
        inside = mask[y1:y2, x1:x2, None]
        dimmed = np.where(inside, crop, crop * self.background_brightness)
        return Image.fromarray(np.round(dimmed).astype(np.uint8))

    def embed_regions(self, regions: Sequence[Image.Image]) -> torch.Tensor:
        """``N`` region images -> ``NxD`` unit-length CLIP image embeddings (float32)."""
        model, preprocess = self._loaded()
        batch = torch.stack([preprocess(region) for region in regions]).to(self.device)
        features = model.encode_image(batch).float()
        return features / features.norm(dim=-1, keepdim=True)

    def embed_text(self, text: str) -> torch.Tensor:
        """``D`` unit-length text embedding: mean over the templates of the unit-length embeddings."""
        key = text.strip()
        cached = self._text_cache.get(key)
        if cached is not None:
            return cached
        clip = _import_clip()
        tokens = clip.tokenize([t.format(key) for t in self.templates], truncate=True).to(self.device)
        features = self.model.encode_text(tokens).float()
        features = features / features.norm(dim=-1, keepdim=True)
        mean = features.mean(dim=0)
        embedding = mean / mean.norm()
        self._text_cache.put(key, embedding, embedding.numel() * embedding.element_size())
        return embedding


def _import_clip() -> Any:
    """Import the ``clip`` package or say how to install it."""
    try:
        import clip
    except ImportError as error:
        raise ServiceUnavailable(
            "text prompts need CLIP: pip install openai-clip (or sam-server[text])"
        ) from error
    return clip


def _load_clip_file(
    path: str, device: torch.device
) -> tuple[torch.nn.Module, Callable[[Image.Image], torch.Tensor]]:
    """A CLIP model and its preprocessing from an official (TorchScript) file or a plain state dict."""
    clip = _import_clip()
    try:
        state_dict = torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model = clip.model.build_model(dict(state_dict)).to(device)
    except (KeyError, RuntimeError, ValueError) as error:
        raise InvalidInput(
            f"{path} is not a CLIP checkpoint ({error}); give an official CLIP file or a CLIP state dict"
        ) from error
    if device.type == "cpu":
        model.float()
    return model.eval(), _clip_preprocess(model.visual.input_resolution)


def _clip_preprocess(side: int) -> Callable[[Image.Image], torch.Tensor]:
    """CLIP's input transform: bicubic resize of the short side, centre crop, CLIP normalisation."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(side, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(side),
            transforms.ToTensor(),
            transforms.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


def _clip_url(name: str) -> str:
    """Download URL of a named CLIP model."""
    from clip import clip as clip_module

    urls: dict[str, str] = clip_module._MODELS
    if name not in urls:
        raise InvalidInput(
            f"unknown CLIP model {name!r}: use one of {sorted(urls)} or the path of a CLIP checkpoint file"
        )
    return urls[name]


def _record_mask(record: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The ``HxW`` bool mask of a record (COCO RLE or array)."""
    segmentation = record.get("segmentation")
    if segmentation is None or "bbox" not in record:
        raise InvalidInput("each candidate needs 'segmentation' and 'bbox' (segment-everything records)")
    if isinstance(segmentation, dict):
        mask = from_coco_rle(segmentation, height, width)
    else:
        mask = np.asarray(segmentation, dtype=bool)
    if mask.shape != (height, width):
        raise InvalidInput(
            f"candidate mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}"
        )
    return mask


def _mostly_inside(mask: np.ndarray, box: np.ndarray) -> bool:
    """At least ``BOX_INSIDE_FRACTION`` of the mask's pixels lie in the XYXY box."""
    area = int(mask.sum())
    if area == 0:
        return False
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    x2, y2 = int(np.ceil(box[2])) + 1, int(np.ceil(box[3])) + 1
    inside = int(mask[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)].sum())
    return inside >= BOX_INSIDE_FRACTION * area


def _agrees_with_points(mask: np.ndarray, points: np.ndarray, labels: np.ndarray) -> bool:
    """Every positive point inside the mask, every negative point outside."""
    height, width = mask.shape
    cols = np.clip(np.floor(points[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.floor(points[:, 1]).astype(int), 0, height - 1)
    hits = mask[rows, cols]
    return bool(np.all(hits == (labels == 1)))


def _check_box(box: Sequence[float] | None, width: int, height: int) -> np.ndarray | None:
    """A finite, non-inverted ``[x1, y1, x2, y2]`` or None."""
    if box is None:
        return None
    array = np.asarray(box, dtype=np.float64).reshape(-1)
    if array.shape != (4,) or not np.isfinite(array).all():
        raise InvalidInput("box must be [x1, y1, x2, y2] in pixels")
    if array[2] < array[0] or array[3] < array[1]:
        raise InvalidInput("box is inverted: need x1 <= x2 and y1 <= y2 ([x1, y1, x2, y2])")
    return array


def _check_points(
    points: Sequence[Sequence[float]] | None, labels: Sequence[int] | None, width: int, height: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """``Nx2`` finite points with ``N`` labels in {0, 1}, or ``(None, empty)``."""
    if points is None or len(points) == 0:
        return None, np.zeros(0, dtype=np.int64)
    xy = np.asarray(points, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or not np.isfinite(xy).all():
        raise InvalidInput("points must be a list of [x, y] pairs in pixels")
    label_array = np.ones(len(xy), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    if label_array.shape != (len(xy),) or not np.isin(label_array, (0, 1)).all():
        raise InvalidInput(f"give one label (1 or 0) per point: {len(xy)} points, labels {list(label_array)}")
    return xy, label_array
