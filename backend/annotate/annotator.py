"""Annotate one image: segment everything (optionally picking masks by text), or SAM 3 concepts.

:class:`AnnotateSettings` is everything that decides the result of a job (it
is fingerprinted so that a resumed job never mixes results of different
settings); :class:`Annotator` holds the loaded models and turns one image
file into one per-image result (plain JSON data).

Three modes: every segment-everything mask (``--everything``), the masks CLIP
ranks best for each text (``--text``, SAM 1 and SAM 2.1), or every instance
SAM 3 finds of each concept (``--concept``): the image is encoded once, then
each concept runs the text encoder and the detector head only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.api.errors import InvalidInput

if TYPE_CHECKING:
    from backend.inference.automask import AutomaskGenerator
    from backend.inference.sam3 import Sam3Predictor
    from backend.inference.text import TextPrompter

#: The category of every mask in ``--everything`` mode.
EVERYTHING_CATEGORY = "object"
#: Default of ``--concept-threshold``: SAM 3 keeps instances scoring above it.
DEFAULT_CONCEPT_THRESHOLD = 0.5
_CONCEPT_ONLY = ("concepts", "concept_threshold")
"""Settings that change only concept results (left out of other jobs' fingerprints)."""
_SEGMENT_EVERYTHING_ONLY = ("texts", "top_k", "clip_model", "clip_root", "automask")
"""Settings that change only segment-everything and text results (left out of concept jobs')."""


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
        concepts: SAM 3 concept prompts (noun phrases); each becomes a
            category and every instance found one annotation. Not with ``texts``.
        concept_threshold: SAM 3 keeps instances whose score is above this, in ``[0, 1]``.
    """

    model: str = "demo"
    texts: tuple[str, ...] = ()
    top_k: int = 1
    device: str = "auto"
    clip_model: str = "ViT-B/32"
    clip_root: str | None = None
    automask: dict[str, Any] = field(default_factory=dict)
    concepts: tuple[str, ...] = ()
    concept_threshold: float = DEFAULT_CONCEPT_THRESHOLD

    def __post_init__(self) -> None:
        if any(not t.strip() for t in self.texts):
            raise InvalidInput("text prompts must be non-empty, e.g. --text cat")
        if len(set(self.texts)) != len(self.texts):
            raise InvalidInput("each --text may be given once (it becomes one category)")
        if self.top_k < 1:
            raise InvalidInput(f"--top-k must be >= 1, got {self.top_k}")
        if any(not c.strip() for c in self.concepts):
            raise InvalidInput('concepts must be non-empty phrases, e.g. --concept cat --concept "red car"')
        if len({c.strip() for c in self.concepts}) != len(self.concepts):
            raise InvalidInput("each --concept may be given once (it becomes one category)")
        if self.texts and self.concepts:
            raise InvalidInput(
                "--text and --concept do not mix: --text ranks segment-everything masks with CLIP, "
                "--concept asks SAM 3 for every instance; run one job per mode"
            )
        threshold = self.concept_threshold
        if not isinstance(threshold, (int, float)) or not (math.isfinite(threshold) and 0 <= threshold <= 1):
            raise InvalidInput(f"--concept-threshold must be in [0, 1], got {threshold!r}")

    @property
    def categories(self) -> list[str]:
        """Category names, in id order (ids start at 1)."""
        if self.concepts:
            return list(self.concepts)
        return list(self.texts) if self.texts else [EVERYTHING_CATEGORY]

    def fingerprint(self) -> str:
        """SHA-256 of the settings that change results (not the device, nor another mode's settings).

        Jobs without concepts hash what they hashed before concepts existed,
        so their work folders still resume.
        """
        data = asdict(self)
        data.pop("device")
        for name in _SEGMENT_EVERYTHING_ONLY if self.concepts else _CONCEPT_ONLY:
            data.pop(name)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def model_answers_concepts(model: str) -> bool | None:
    """Whether ``--model`` names a SAM 3 model, without loading it.

    As :func:`backend.inference.families.load_network` decides: a registry
    name by its record's family, a folder is SAM 3 (``save_pretrained``
    layout), a file is a SAM 1 or SAM 2.1 checkpoint.

    Returns:
        True (SAM 3), False (SAM 1 or SAM 2.1), None (no such name nor path:
        the loader says what is wrong).
    """
    from backend.hub import MODELS
    from backend.hub.records import SAM3

    record = MODELS.get(model)
    if record is not None:
        return record.family == SAM3
    path = Path(model).expanduser()
    if path.is_dir():
        return True
    return False if path.is_file() else None


def check_model_fits(settings: AnnotateSettings) -> None:
    """Refuse, before any work, a model that cannot answer the job's prompts.

    Raises:
        InvalidInput: Concepts with a SAM 1 / SAM 2.1 model, or segment-everything
            (``--everything``, ``--text``) with a SAM 3 model.
    """
    concepts = model_answers_concepts(settings.model)
    if settings.concepts and concepts is False:
        raise InvalidInput(
            f"--concept needs a SAM 3 model (--model sam3, or a SAM 3 folder in save_pretrained layout); "
            f"{settings.model!r} is a SAM 1 / SAM 2.1 model, which does not find concepts: "
            "use --text to rank its segment-everything masks with CLIP instead"
        )
    if not settings.concepts and concepts is True:
        mode = "--text" if settings.texts else "--everything"
        raise InvalidInput(
            f"{settings.model!r} is a SAM 3 model: use --concept PHRASE to find every instance of a concept; "
            f"{mode} runs segment-everything, which needs a SAM 1 or SAM 2.1 model (e.g. --model vit_b)"
        )


class Annotator:
    """Loads the models once and annotates image files.

    Args:
        settings: The job's settings.
    """

    def __init__(self, settings: AnnotateSettings) -> None:
        from backend.hub import pick_device

        self.settings = settings
        device = pick_device(settings.device)
        self.generator: AutomaskGenerator | None = None
        self.prompter: TextPrompter | None = None
        self.concept_predictor: Sam3Predictor | None = None
        if settings.concepts:
            self.concept_predictor = _concept_predictor(settings, device)
            return
        from backend.hub import load_model
        from backend.inference.automask import AutomaskGenerator

        self.generator = AutomaskGenerator(load_model(settings.model, device=device), **settings.automask)
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
            ``category`` and, in text mode, ``text_score`` (CLIP cosine similarity);
            in concept mode see :meth:`concept_annotations`.
        """
        from backend.formats.images import load_image

        image = load_image(str(path))
        height, width = image.shape[:2]
        image_info = {"file_name": file_name, "width": width, "height": height}
        if self.concept_predictor is not None:
            return {"image": image_info, "annotations": self.concept_annotations(image)}
        assert self.generator is not None  # built for every mode but concepts
        records = self.generator.generate(image)
        annotations: list[dict[str, Any]] = []
        if self.prompter is None:
            annotations = [dict(r, category=EVERYTHING_CATEGORY) for r in records]
        else:
            for text in self.settings.texts:
                for record, score in self.prompter.rank(image, records, text, top_k=self.settings.top_k):
                    annotations.append(dict(record, category=text, text_score=score))
        return {"image": image_info, "annotations": annotations}

    def concept_annotations(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Every instance of each concept on an ``HxWx3`` uint8 RGB image (encoded once for all).

        Returns:
            Per concept in order, best score first: ``segmentation`` (COCO
            RLE), ``area`` (pixels), ``bbox`` (``[x, y, w, h]`` of the mask,
            as pycocotools computes it), ``instance_box`` (SAM 3's detected
            ``[x1, y1, x2, y2]`` in pixels), ``concept_score`` (in ``[0, 1]``,
            above the threshold) and ``category`` (the concept). Instances whose
            mask is empty at the image's size are left out.
        """
        from pycocotools import mask as coco_mask

        from backend.formats.mask_codecs import to_coco_rle

        predictor = self.concept_predictor
        if predictor is None:
            raise InvalidInput("this job has no concepts (--concept)")
        predictor.set_image(image)
        annotations: list[dict[str, Any]] = []
        try:
            for concept in self.settings.concepts:
                for instance in predictor.predict_concept(concept, threshold=self.settings.concept_threshold):
                    area = int(instance.mask.sum())
                    if area == 0:
                        continue
                    rle = to_coco_rle(instance.mask)
                    bbox = coco_mask.toBbox({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
                    annotations.append(
                        {
                            "segmentation": rle,
                            "area": area,
                            "bbox": [float(v) for v in bbox],
                            "instance_box": [float(v) for v in instance.box],
                            "concept_score": float(instance.score),
                            "category": concept,
                        }
                    )
        finally:
            predictor.reset_image()
        return annotations


def _concept_predictor(settings: AnnotateSettings, device: str) -> Sam3Predictor:
    """SAM 3's predictor for the job's model, after checking every concept fits its text encoder.

    Raises:
        InvalidInput: Not a SAM 3 model, or a concept longer than the text encoder's context.
    """
    import torch

    from backend.inference.families import load_network
    from backend.inference.sam3 import Sam3Models, Sam3Predictor

    models = load_network(settings.model, device=device, dtype=torch.float32)
    if not isinstance(models, Sam3Models):
        raise InvalidInput(
            f"--concept needs a SAM 3 model (--model sam3, or a SAM 3 folder); {settings.model!r} loads a "
            f"{type(models).__name__}, which does not find concepts: use --text instead"
        )
    text_config: Any = models.detector.config.text_config
    limit = int(text_config.max_position_embeddings)
    for concept in settings.concepts:
        tokens = int(models.processor(text=concept.strip(), return_tensors="pt")["input_ids"].shape[-1])
        if tokens > limit:
            raise InvalidInput(
                f"--concept {concept!r} is {tokens} tokens long; SAM 3's text encoder takes at most {limit}: "
                "use a shorter phrase"
            )
    return Sam3Predictor(models)
