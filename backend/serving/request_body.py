"""Strict JSON request bodies: malformed JSON, NaN and infinity are rejected.

Python's ``json`` module accepts the non-standard literals ``NaN``,
``Infinity`` and ``-Infinity`` and turns ``1e999`` into infinity; neither may
reach the model, so both are refused here (the pydantic models also refuse
non-finite floats).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from backend.errors import InvalidInput

ModelT = TypeVar("ModelT", bound=BaseModel)


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"the JSON body contains {name}; send finite numbers only", code="invalid_json")


def parse_json(data: bytes) -> Any:
    """Bytes -> JSON value.

    Raises:
        InvalidInput: ``invalid_json`` for an empty body, bad UTF-8, bad JSON
            or NaN/Infinity literals.
    """
    if not data:
        raise InvalidInput("the request body is empty; send a JSON object", code="invalid_json")
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise InvalidInput(
            "the JSON body is nested too deeply; send a flat request object", code="invalid_json"
        ) from None


def validation_message(exc: ValidationError) -> str:
    """One line listing every problem pydantic found, field by field."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def parse_request(data: bytes, model: type[ModelT]) -> ModelT:
    """Bytes -> a validated request model.

    Raises:
        InvalidInput: ``invalid_json`` (see :func:`parse_json`) or
            ``invalid_input`` listing the fields that do not validate.
    """
    value = parse_json(data)
    if not isinstance(value, dict):
        raise InvalidInput("the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidInput(f"invalid request: {validation_message(exc)}") from None
