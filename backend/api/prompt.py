"""The prompt: what a person gives the model for one prediction, defined once.

:class:`Prompt` is the one description of a prompt's fields. The HTTP
request body (:class:`~backend.serving.schemas.PredictRequest`) extends it,
both clients accept it (or its fields as keywords), the service answers it
and the widget builds it. A new prompt field is added here, and in the
engines that answer it.

Coordinates are pixels of the original image, ``(x, y)``, origin top-left;
boxes ``[x1, y1, x2, y2]``. Non-finite numbers are refused. Whether the
values fit the image (inside it, labels matching points) is checked by the
service, which knows the image.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backend.api.errors import InvalidInput
from backend.api.validation import plain_values, validation_message

Finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]
"""A finite number: an int or a float, not a bool or a string."""
Point = tuple[Finite, Finite]
Box = tuple[Finite, Finite, Finite, Finite]


class Exemplar(BaseModel):
    """A box around an example of a concept (``positive``) or a counter-example (SAM 3)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    box: Box = Field(description="[x1, y1, x2, y2] in pixels.")
    positive: bool = Field(
        True, strict=True, description="An example (true: more like this) or a counter-example (false)."
    )

    @field_validator("box", "positive", mode="before")
    @classmethod
    def _numpy_as_python(cls, value: Any) -> Any:
        """numpy arrays and scalars are taken as Python lists and scalars."""
        return plain_values(value)


class Prompt(BaseModel):
    """Points, boxes, an earlier mask, text and exemplars, alone or combined; immutable."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    points: list[Point] | None = Field(None, max_length=1000, description="Nx2 pixel (x, y) clicks.")
    labels: list[Annotated[int, Field(strict=True)]] | None = Field(
        None, max_length=1000, description="N labels: 1 foreground, 0 background."
    )
    box: Box | None = Field(None, description="One [x1, y1, x2, y2] box in pixels (one object).")
    boxes: list[Box] | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Bx4 boxes, one object each; points apply to every box.",
    )
    mask_input: str | None = Field(
        None, max_length=64, description="logits_id of an earlier answer, to refine that object."
    )
    text: str | None = Field(
        None,
        max_length=500,
        description="Text prompt. SAM 3: a concept, every instance comes back (one object each). "
        "Other models: CLIP ranks segment-everything candidates (one object), alone or with points or one box.",
    )
    exemplars: list[Exemplar] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="SAM 3: boxes around examples (positive) and counter-examples of the concept; "
        "with or instead of text.",
    )
    threshold: Finite | None = Field(
        None, ge=0.0, le=1.0, description="SAM 3 concepts: keep instances scoring above this (default 0.5)."
    )
    multimask: bool = Field(
        True, strict=True, description="Three ranked candidates (true) or one mask (false)."
    )

    @field_validator("points", "box", "boxes", "threshold", "multimask", mode="before")
    @classmethod
    def _arrays_as_lists(cls, value: Any) -> Any:
        """numpy arrays and scalars are taken as Python lists and scalars."""
        return plain_values(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _whole_labels(cls, value: Any) -> Any:
        """A numpy array of labels (``np.ones(n)`` is float) is taken as ints where its values are
        whole; a JSON or Python list keeps its types (``1.0`` and ``true`` are not labels)."""
        if isinstance(value, (list, tuple)) or not hasattr(value, "tolist"):
            return plain_values(value)
        items = value.tolist()
        if not isinstance(items, list):
            return items
        return [int(v) if isinstance(v, float) and v.is_integer() else v for v in items]

    @classmethod
    def of(cls, prompt: Prompt | None = None, **fields: Any) -> Prompt:
        """The prompt given, or one built from its fields as keywords (not both).

        Raises:
            InvalidInput: Both or an unknown field name (the message lists the
                known ones), or a value that does not validate.
        """
        if prompt is not None:
            if fields:
                raise InvalidInput(
                    f"give a Prompt or its fields as keywords, not both (got {sorted(fields)})"
                )
            return prompt
        unknown = sorted(set(fields) - set(cls.model_fields))
        if unknown:
            raise InvalidInput(f"unknown prompt fields {unknown}; the fields are {list(cls.model_fields)}")
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InvalidInput(f"invalid prompt: {validation_message(exc)}") from None

    def fields(self) -> dict[str, Any]:
        """The fields that are set (not None), as JSON-ready values."""
        return self.model_dump(mode="json", include=set(Prompt.model_fields), exclude_none=True)


def prompt_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Keyword fields as JSON-ready values, without validating them (the server will).

    Raises:
        InvalidInput: An unknown field name.
    """
    unknown = sorted(set(fields) - set(Prompt.model_fields))
    if unknown:
        raise InvalidInput(f"unknown prompt fields {unknown}; the fields are {list(Prompt.model_fields)}")
    return {
        name: value.tolist() if hasattr(value, "tolist") else value
        for name, value in fields.items()
        if value is not None
    }
