"""The parameters of segment-everything (automask), defined once (torch-free).

:class:`SegmentEverythingParams` holds each parameter's name, default, range
and one-line description. Everything else is derived from it: the HTTP
schema (``backend.serving.schemas.AutomaskParams`` and the OpenAPI document),
the ``sam-annotate`` flags (names, help, defaults, range-checked types), the
server's parameter check and the keyword defaults of
``backend.inference.automask.AutomaskGenerator``. A value out of range gets
the same message everywhere (:meth:`ParamRange.problem`), e.g. ``must be in
[0, 1], got 2``.

The two filter thresholds default to ``None``, "the model's": each model's
registry record has ``automask_defaults`` (Meta's :data:`META_THRESHOLDS`
for Meta's models, calibrated values for ours); the generator, which knows
no registry, defaults to Meta's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from backend.api.validation import plain_values

META_THRESHOLDS: dict[str, float] = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}
"""Filter thresholds of Meta's ``SamAutomaticMaskGenerator``: the defaults of Meta's models and of the generator."""


def _model_default(name: str) -> str:
    return (
        "Default: the model's automask_defaults in the registry, shown by GET /v1/models "
        f"(Meta's {META_THRESHOLDS[name]} for Meta's models)."
    )


class SegmentEverythingParams(BaseModel):
    """Parameters of segment-everything (see ``AutomaskGenerator``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    points_per_side: int = Field(
        default=32,
        ge=1,
        le=128,
        description="Point prompts along each side of the square grid over the image.",
    )
    points_per_batch: int = Field(default=64, ge=1, le=1024, description="Point prompts per decoder call.")
    pred_iou_thresh: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Keep masks whose predicted IoU is above this; 0 keeps all. "
        + _model_default("pred_iou_thresh"),
    )
    stability_score_thresh: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Keep masks whose stability score is at least this; 0 keeps all. "
        + _model_default("stability_score_thresh"),
    )
    stability_score_offset: float = Field(
        default=1.0,
        gt=0.0,
        le=100.0,
        description="Logit offset of the two thresholds the stability score compares.",
    )
    box_nms_thresh: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="Box IoU above which the lower-scored of two masks of a crop is dropped.",
    )
    crop_n_layers: int = Field(
        default=0, ge=0, le=3, description="Layers of image crops segmented again; 0: the whole image only."
    )
    crop_nms_thresh: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="Box IoU above which a duplicate from a larger crop is dropped.",
    )
    crop_overlap_ratio: float = Field(
        default=512 / 1500,
        ge=0.0,
        lt=1.0,
        description="Overlap of neighbouring crops, as a fraction of the short side.",
    )
    crop_n_points_downscale_factor: int = Field(
        default=1, ge=1, le=16, description="Crop layer i has points_per_side / factor**i points a side."
    )
    min_mask_region_area: int = Field(
        default=0, ge=0, description="Remove holes and islands smaller than this many pixels; 0 keeps them."
    )

    @field_validator("*", mode="before")
    @classmethod
    def _numpy_as_python(cls, value: Any) -> Any:
        """numpy scalars are taken as Python numbers (strict: ``true`` or ``"4"`` are not)."""
        return plain_values(value)

    @field_validator("*", mode="wrap")
    @classmethod
    def _same_range_message(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """A number out of range gets :meth:`ParamRange.problem`'s message, as on the command line."""
        try:
            return handler(value)
        except ValidationError as exc:
            name, number = info.field_name, _as_number(value)
            if (
                name in PARAM_NAMES
                and number is not None
                and all(e["type"] in _BOUND_ERRORS for e in exc.errors())
            ):
                problem = param_range(name).problem(number)
                if problem is not None:
                    raise PydanticCustomError("out_of_range", "{problem}", {"problem": problem}) from None
            raise

    def filled(self, model_defaults: Mapping[str, float]) -> dict[str, Any]:
        """Every parameter, the thresholds left out taken from ``model_defaults`` (else Meta's)."""
        values = self.model_dump()
        for name in MODEL_DEFAULT_NAMES:
            if values[name] is None:
                values[name] = model_defaults.get(name, META_THRESHOLDS[name])
        return values


PARAM_NAMES: tuple[str, ...] = tuple(SegmentEverythingParams.model_fields)
"""Every parameter, in definition order."""

MODEL_DEFAULT_NAMES: tuple[str, ...] = tuple(META_THRESHOLDS)
"""Parameters whose default (``None``) is the model's."""

_BOUND_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def generator_defaults() -> dict[str, Any]:
    """Every parameter's default for a model-free generator: the model's thresholds are Meta's."""
    return SegmentEverythingParams().filled(META_THRESHOLDS)


@dataclass(frozen=True)
class ParamRange:
    """The values one parameter accepts: a whole number or a finite number within bounds."""

    kind: type[int] | type[float]
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        """``in [0, 1]``, ``in (0, 100]``, ``>= 1`` ..."""
        low = None if self.ge is None and self.gt is None else ("[" if self.ge is not None else "(")
        high = None if self.le is None and self.lt is None else ("]" if self.le is not None else ")")
        low_value = _number(self.ge if self.ge is not None else self.gt)
        high_value = _number(self.le if self.le is not None else self.lt)
        if low and high:
            return f"in {low}{low_value}, {high_value}{high}"
        if low:
            return f"{'>=' if low == '[' else '>'} {low_value}"
        if high:
            return f"{'<=' if high == ']' else '<'} {high_value}"
        return "any number"

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value`` (``must be in [0, 1], got 2``), or ``None`` when it fits."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        fits = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )
        return None if fits else f"must be {self.describe()}, got {_number(value)}"


def param_range(name: str) -> ParamRange:
    """The range of parameter ``name``, read from its field's constraints."""
    field = SegmentEverythingParams.model_fields[name]
    bounds: dict[str, float] = {}
    for constraint in field.metadata:
        for key in ("ge", "gt", "le", "lt"):
            if isinstance(constraint, getattr(annotated_types, key.capitalize())):
                bounds[key] = getattr(constraint, key)
    kind = int if field.annotation is int else float
    return ParamRange(kind, **bounds)


def _as_number(value: object) -> float | None:
    """The number a request gave (JSON numbers, or strings pydantic would parse), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _number(value: object) -> str:
    """``2`` for 2.0, ``0.5`` for 0.5: a number as a person would write it."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)
