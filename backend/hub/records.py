"""Model records: names -> network configuration + weights record (pure data and lookups).

One entry per model, as in timm: ``MODELS[name]`` is a :class:`ModelRecord`
(configuration, download URL, SHA-256, size, licence). Add one with
:func:`register`; tests swap records with ``monkeypatch.setitem(MODELS, ...)``.
Files are found or downloaded by :mod:`backend.hub.downloads`; networks are
built by :mod:`backend.hub.loading`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.api.errors import InvalidInput
from backend.api.prompt_kinds import CLICK_PROMPT_KINDS, CONCEPT_PROMPT_KINDS, TEXT
from backend.api.segment_everything import META_THRESHOLDS
from backend.inference.sam3.record import SAM3 as _SAM3_RECORD
from backend.model.config import VIT_B, VIT_H, VIT_L, VIT_T, SamConfig
from backend.model.sam2.config import (
    SAM2_1_HIERA_B_PLUS,
    SAM2_1_HIERA_L,
    SAM2_1_HIERA_S,
    SAM2_1_HIERA_T,
    Sam2Config,
)

PACKAGED_WEIGHTS = Path(__file__).resolve().parent / "packaged_weights"
_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2_1_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"

SAM = "sam"
"""Family of SAM 1 and MobileSAM (the ``Sam`` network)."""
SAM2_1 = "sam2.1"
"""Family of SAM 2.1 (the ``Sam2`` network, image mode)."""
SAM3 = "sam3"
"""Family of SAM 3 (transformers' ``Sam3Model`` and ``Sam3TrackerModel``)."""
ALL_PROMPT_KINDS = (*CLICK_PROMPT_KINDS, TEXT)
"""Prompt kinds of the point-and-box families; ``text`` ranks segment-everything candidates with CLIP."""
SAM3_PROMPT_KINDS = (*CLICK_PROMPT_KINDS, *CONCEPT_PROMPT_KINDS)
"""SAM 3's prompt kinds: text and exemplars find every instance, the others one object's ranked masks."""
SAM2_1_AUTOMASK_DEFAULTS: dict[str, float] = {"pred_iou_thresh": 0.8, "stability_score_thresh": 0.95}
"""The filter thresholds of Meta's ``SAM2AutomaticMaskGenerator``."""

META_AUTOMASK_DEFAULTS: dict[str, float] = dict(META_THRESHOLDS)
"""Segment-everything filter thresholds of Meta's ``SamAutomaticMaskGenerator``, kept for Meta's models
(from the parameters' one definition, :mod:`backend.api.segment_everything`)."""
FAMILY_AUTOMASK_DEFAULTS: dict[str, dict[str, float]] = {
    SAM: META_AUTOMASK_DEFAULTS,
    SAM2_1: SAM2_1_AUTOMASK_DEFAULTS,
    SAM3: {},
}
"""Family -> the thresholds of its reference generator, for models given as paths or modules
(SAM 3 has no segment-everything: it finds the instances of a concept)."""


@dataclass(frozen=True, kw_only=True)
class ModelRecord:
    """Everything needed to fetch and build one named model.

    Attributes:
        name: Registry name (``"vit_b"``).
        family: Which network and engine: :data:`SAM` or :data:`SAM2_1`.
        config: Network configuration; ``None`` when the checkpoint (our
            format) carries it.
        filename: File name in the cache folder (or in
            ``backend/hub/packaged_weights`` for packaged models).
        url: Download URL; ``None`` for packaged models.
        sha256: Expected SHA-256 of the file (hex); ``None``: the digest is
            pinned on first download and later downloads must match it.
        size_bytes: Expected file size in bytes, if known.
        licence: SPDX licence of the weights.
        description: One line for people choosing a model.
        packaged: The file ships inside this package
            (``backend/hub/packaged_weights``).
        hub_repo: A Hugging Face Hub repository the weights are read from
            (through its cache and ``HF_TOKEN``) instead of a file here.
        automask_defaults: Segment-everything thresholds used when a request
            leaves them out (``pred_iou_thresh``, ``stability_score_thresh``):
            Meta's for Meta's models, calibrated on held-out data for ours.
        prompt_kinds: Prompt kinds the model answers.
    """

    name: str
    family: str = SAM
    config: SamConfig | Sam2Config | None
    filename: str
    url: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    licence: str = ""
    description: str = ""
    packaged: bool = False
    hub_repo: str | None = None
    automask_defaults: dict[str, float] = field(default_factory=lambda: dict(META_AUTOMASK_DEFAULTS))
    prompt_kinds: tuple[str, ...] = ALL_PROMPT_KINDS

    @property
    def packaged_path(self) -> Path | None:
        """Where a packaged model's file lives, else ``None``."""
        return PACKAGED_WEIGHTS / self.filename if self.packaged else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for ``GET /v1/models``)."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "licence": self.licence,
            "encoder": getattr(self.config, "encoder", "hiera") if self.config else None,
            "image_size": self.config.image_size if self.config else None,
            "filename": self.filename,
            "url": self.url,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "packaged": self.packaged,
            "hub_repo": self.hub_repo,
            "automask_defaults": dict(self.automask_defaults),
            "prompts": list(self.prompt_kinds),
        }


# SHA-256 and sizes of the official SAM files, as published by projects that pin them
# (micro-sam's model registry, several download scripts) and agreeing across sources.
# Meta publishes neither for the SAM 2.1 files: their digest is pinned on first download.
MODELS: dict[str, ModelRecord] = {
    r.name: r
    for r in (
        ModelRecord(
            name="vit_h",
            config=VIT_H,
            filename="sam_vit_h_4b8939.pth",
            url=_SAM_URL + "sam_vit_h_4b8939.pth",
            sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            size_bytes=2_564_550_879,
            licence="Apache-2.0",
            description="Segment Anything ViT-H (Meta): best masks, slowest (636M parameters)",
        ),
        ModelRecord(
            name="vit_l",
            config=VIT_L,
            filename="sam_vit_l_0b3195.pth",
            url=_SAM_URL + "sam_vit_l_0b3195.pth",
            sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            size_bytes=1_249_524_607,
            licence="Apache-2.0",
            description="Segment Anything ViT-L (Meta): close to ViT-H, faster (308M parameters)",
        ),
        ModelRecord(
            name="vit_b",
            config=VIT_B,
            filename="sam_vit_b_01ec64.pth",
            url=_SAM_URL + "sam_vit_b_01ec64.pth",
            sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            size_bytes=375_042_383,
            licence="Apache-2.0",
            description="Segment Anything ViT-B (Meta): the fastest of Meta's models (91M parameters)",
        ),
        ModelRecord(
            name="vit_t",
            config=VIT_T,
            filename="mobile_sam.pt",
            url="https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            size_bytes=40_728_226,
            licence="Apache-2.0",
            description="MobileSAM (TinyViT encoder, about 10M parameters): runs well on a CPU",
        ),
        ModelRecord(
            name="demo",
            config=None,
            filename="sam_demo.pt",
            packaged=True,
            licence="Apache-2.0",
            description="Small model trained on synthetic shapes; ships with the package (tests, offline demos)",
            # calibrated on its held-out scenes: benchmarks/calibrate_automask.py (docs/automask.md)
            automask_defaults={"pred_iou_thresh": 0.7, "stability_score_thresh": 0.75},
        ),
        *(
            ModelRecord(
                name=name,
                family=SAM2_1,
                config=config,
                filename=filename,
                url=_SAM2_1_URL + filename,
                licence="Apache-2.0",
                description=description,
                automask_defaults=dict(SAM2_1_AUTOMASK_DEFAULTS),
            )
            for name, config, filename, description in (
                (
                    "sam2.1_hiera_t",
                    SAM2_1_HIERA_T,
                    "sam2.1_hiera_tiny.pt",
                    "SAM 2.1 Hiera-T (Meta): 39M parameters",
                ),
                (
                    "sam2.1_hiera_s",
                    SAM2_1_HIERA_S,
                    "sam2.1_hiera_small.pt",
                    "SAM 2.1 Hiera-S (Meta): 46M parameters",
                ),
                (
                    "sam2.1_hiera_b+",
                    SAM2_1_HIERA_B_PLUS,
                    "sam2.1_hiera_base_plus.pt",
                    "SAM 2.1 Hiera-B+ (Meta): 81M parameters",
                ),
                (
                    "sam2.1_hiera_l",
                    SAM2_1_HIERA_L,
                    "sam2.1_hiera_large.pt",
                    "SAM 2.1 Hiera-L (Meta): 224M parameters",
                ),
            )
        ),
        ModelRecord(
            name=_SAM3_RECORD.name,
            family=SAM3,
            config=None,
            filename="",
            hub_repo=_SAM3_RECORD.hub_repo,
            licence=_SAM3_RECORD.licence,
            description=_SAM3_RECORD.description,
            automask_defaults={},
            prompt_kinds=SAM3_PROMPT_KINDS,
        ),
    )
}


def register(record: ModelRecord, *, overwrite: bool = False) -> None:
    """Add a model under ``record.name``.

    Raises:
        InvalidInput: The name is taken and ``overwrite`` is false.
    """
    if record.name in MODELS and not overwrite:
        raise InvalidInput(f"model {record.name!r} is already registered; pass overwrite=True to replace it")
    MODELS[record.name] = record


def get_record(name: str) -> ModelRecord:
    """The record of a registered model.

    Raises:
        InvalidInput: Unknown name; the message lists the valid names.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown model {name!r}; valid names: {', '.join(MODELS)}; or give the path of a checkpoint file"
        ) from None


def list_models() -> list[dict[str, Any]]:
    """Summaries of all registered models, in registration order."""
    return [record.to_dict() for record in MODELS.values()]
