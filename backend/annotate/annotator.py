"""Annotate one image: segment everything, then optionally pick masks by text.

:class:`AnnotateSettings` is everything that decides the result of a job (it
is fingerprinted so that a resumed job never mixes results of different
settings); :class:`Annotator` holds the loaded models and turns one image
file into one per-image result (plain JSON data).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.api.errors import InvalidInput

#: The category of every mask in ``--everything`` mode.
EVERYTHING_CATEGORY = "object"


@dataclass(frozen=True, kw_only=True)
class AnnotateSettings:
    """What a job computes.

    Attributes:
        model: Model registry name or checkpoint path.
        texts: Text prompts; each becomes a category. Empty means every
            segment-everything mask is kept (category ``"object"``).
        top_k: Masks kept per text prompt and image, best first.
        device: Torch device (``"auto"`` picks a GPU when there is one).
        clip_model: CLIP model name or checkpoint path (text mode).
        clip_root: Folder of the CLIP weights (default ``~/.cache/clip``).
        automask: Keyword arguments of :class:`AutomaskGenerator`
            (``points_per_side``, ``pred_iou_thresh``...).
    """

    model: str = "demo"
    texts: tuple[str, ...] = ()
    top_k: int = 1
    device: str = "auto"
    clip_model: str = "ViT-B/32"
    clip_root: str | None = None
    automask: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any(not t.strip() for t in self.texts):
            raise InvalidInput("text prompts must be non-empty, e.g. --text cat")
        if len(set(self.texts)) != len(self.texts):
            raise InvalidInput("each --text may be given once (it becomes one category)")
        if self.top_k < 1:
            raise InvalidInput(f"--top-k must be >= 1, got {self.top_k}")

    @property
    def categories(self) -> list[str]:
        """Category names, in id order (ids start at 1)."""
        return list(self.texts) if self.texts else [EVERYTHING_CATEGORY]

    def fingerprint(self) -> str:
        """SHA-256 of the settings that change results (not the device)."""
        data = asdict(self)
        data.pop("device")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class Annotator:
    """Loads the models once and annotates image files.

    Args:
        settings: The job's settings.
    """

    def __init__(self, settings: AnnotateSettings) -> None:
        from backend.hub import load_model, pick_device
        from backend.inference.automask import AutomaskGenerator

        self.settings = settings
        device = pick_device(settings.device)
        self.generator = AutomaskGenerator(load_model(settings.model, device=device), **settings.automask)
        self.prompter = None
        if settings.texts:
            from backend.inference.text import TextPrompter

            self.prompter = TextPrompter(
                clip_model=settings.clip_model, download_root=settings.clip_root, device=device
            )
            self.prompter.load()

    def annotate(self, path: str | Path, *, file_name: str) -> dict[str, Any]:
        """Masks of one image.

        Args:
            path: Image file.
            file_name: Name recorded for the image (relative to the folder).

        Returns:
            ``{"image": {"file_name", "width", "height"}, "annotations": [...]}``
            where each annotation is a segment-everything record plus
            ``category`` and, in text mode, ``text_score`` (CLIP cosine similarity).
        """
        from backend.formats.images import load_image

        image = load_image(str(path))
        records = self.generator.generate(image)
        annotations: list[dict[str, Any]] = []
        if self.prompter is None:
            annotations = [dict(r, category=EVERYTHING_CATEGORY) for r in records]
        else:
            for text in self.settings.texts:
                for record, score in self.prompter.rank(image, records, text, top_k=self.settings.top_k):
                    annotations.append(dict(record, category=text, text_score=score))
        height, width = image.shape[:2]
        return {
            "image": {"file_name": file_name, "width": width, "height": height},
            "annotations": annotations,
        }
