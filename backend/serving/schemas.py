"""Typed request and response bodies of the HTTP API (pydantic).

These models are the single description of the wire format: the Flask routes
validate requests with them and :mod:`backend.serving.openapi` builds the
OpenAPI document from them. Non-finite numbers (NaN, infinity) are rejected
everywhere. Coordinates are pixels of the original image, ``(x, y)``, origin
top-left; prompt boxes are ``[x1, y1, x2, y2]``; mask ``bbox`` fields are COCO
``[x, y, width, height]`` like the SA-1B records.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.api.prompt import Prompt
from backend.api.segment_everything import SegmentEverythingParams

MODEL_FIELD: Any = Field(
    None,
    max_length=4096,  # a served model's name is its path when it is served from a file
    description="Which served model answers (GET /v1/models); default: the server's first.",
)
MaskFormat = Literal["coco_rle", "png", "polygon"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AutomaskParams(SegmentEverythingParams):
    """Parameters of segment-everything: :class:`backend.api.segment_everything.SegmentEverythingParams`,
    their one definition (names, defaults, ranges, descriptions)."""


class AutomaskRequest(AutomaskParams):
    """``POST /v1/automask``."""

    image_id: str = Field(min_length=1, max_length=128, description="From POST /v1/images.")
    model: str | None = MODEL_FIELD


class PredictRequest(Prompt):
    """``POST /v1/predict``: a prompt (see :class:`~backend.api.prompt.Prompt`) on an uploaded image."""

    image_id: str = Field(min_length=1, max_length=128, description="From POST /v1/images.")
    model: str | None = MODEL_FIELD
    format: MaskFormat = Field("coco_rle", description="Encoding of each mask's segmentation.")

    def prompt(self) -> Prompt:
        """The prompt alone (without the image, model and output format); already validated, not again."""
        return Prompt.model_construct(**{name: getattr(self, name) for name in Prompt.model_fields})


class ImageInfoResponse(BaseModel):
    """An uploaded image."""

    image_id: str = Field(description="SHA-256 (hex) of the decoded pixels.")
    width: int
    height: int


class MaskResponse(BaseModel):
    """One candidate mask."""

    score: float = Field(description="Predicted IoU (or CLIP similarity for text prompts).")
    stability_score: float
    area: int = Field(description="Pixels in the mask.")
    bbox: tuple[int, int, int, int] = Field(description="COCO [x, y, width, height] of the mask, pixels.")
    segmentation: Any = Field(
        description='coco_rle: {"size": [h, w], "counts": str}; png: base64 PNG string; polygon: list of flat [x, y, ...] lists.'
    )


class ObjectResponse(BaseModel):
    """Ranked candidates for one object, best first."""

    masks: list[MaskResponse]
    logits_id: str | None = Field(description="Pass as mask_input to refine this object.")
    labels: list[str] = Field(
        default_factory=list, description="Text prompts: the matched text per candidate."
    )
    box: tuple[float, float, float, float] | None = Field(
        None, description="SAM 3 concept instances: the detected [x1, y1, x2, y2] box in pixels."
    )


class PredictResponse(BaseModel):
    """Answer of ``POST /v1/predict``: one object per box (or one without boxes)."""

    objects: list[ObjectResponse]
    model: str
    timing_ms: float


class AutomaskRecord(BaseModel):
    """One SA-1B style record."""

    segmentation: dict[str, Any] = Field(description='COCO RLE {"size": [h, w], "counts": str}.')
    area: int
    bbox: list[float] = Field(description="COCO [x, y, width, height], pixels.")
    predicted_iou: float
    stability_score: float
    point_coords: list[list[float]]
    crop_box: list[float] = Field(
        description="COCO [x, y, width, height] of the crop that produced the mask."
    )


class AutomaskResponse(BaseModel):
    """Answer of ``POST /v1/automask``."""

    records: list[AutomaskRecord]
    model: str
    timing_ms: float


class ModelInfo(BaseModel):
    """A served model."""

    name: str
    ready: bool
    error: str | None = Field(
        None, description="Why the model failed to load (absent while it loads and once it is ready)."
    )
    family: str | None = Field(None, description="sam (SAM 1, MobileSAM), sam2.1 or sam3.")
    prompts: list[str] | None = Field(
        None, description="Prompt kinds the model answers, from points, box, boxes, mask, text, exemplars."
    )
    automask_defaults: dict[str, float] = Field(
        default_factory=dict, description="The model's segment-everything thresholds."
    )
    image_size: int | None = None
    device: str | None = None
    dtype: str | None = None
    cache_dtype: str | None = None
    max_batch: int | None = Field(
        None, description="Most prompts per batched decoder call (1: no micro-batching)."
    )


class ModelsResponse(BaseModel):
    """Answer of ``GET /v1/models``."""

    models: list[ModelInfo]


class HealthResponse(BaseModel):
    """Answer of ``GET /health`` (Label Studio's ML backend health check)."""

    status: Literal["UP"]


class ReadyResponse(BaseModel):
    """Answer of ``GET /ready``."""

    ready: bool
    model: str
    reason: str | None = Field(None, description="Why not ready (only with ready: false, status 503).")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer."""

    error: str = Field(description="Stable machine-readable code, e.g. invalid_input, not_found.")
    detail: str = Field(description="What went wrong and how to fix it.")
