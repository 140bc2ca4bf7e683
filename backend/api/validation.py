"""Validation helpers shared by the request models (torch-free): plain values in, one-line errors out."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def plain_values(value: Any) -> Any:
    """numpy arrays and scalars (anything with ``tolist`` that is not a list, tuple or
    Python scalar), also inside lists and tuples, as Python lists and scalars.

    The request models are strict (a JSON ``true`` is not a label, ``"4"`` not a
    number); this lets Python callers still pass numpy values.
    """
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    if not isinstance(value, (bool, int, float, str)) and hasattr(value, "tolist"):
        return value.tolist()
    return value


def validation_message(exc: ValidationError) -> str:
    """One line listing every problem pydantic found, field by field."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)
