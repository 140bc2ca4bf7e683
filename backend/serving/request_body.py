"""Request bodies: strict JSON, and image uploads (raw bytes or a multipart ``file`` field).

Python's ``json`` module accepts the non-standard literals ``NaN``,
``Infinity`` and ``-Infinity`` and turns ``1e999`` into infinity; neither may
reach the model, so both are refused here (the pydantic models also refuse
non-finite floats).

An image arrives as the body itself (``curl --data-binary @photo.jpg``) or
as the ``file`` field of a multipart form (``curl -F file=@photo.jpg``).
Whatever cannot be decoded gets a 400 that says how to send an image, never
a Python object's repr.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, TypeVar

from flask import Request
from PIL import UnidentifiedImageError
from pydantic import BaseModel, ValidationError

from backend.api.errors import InvalidImage, InvalidInput
from backend.api.validation import validation_message
from backend.formats.images import SUPPORTED_FORMATS

UPLOAD_FIELD = "file"
HOW_TO_UPLOAD = (
    f"send the image file's bytes as the request body (curl --data-binary @photo.jpg URL/v1/images) "
    f"or as a multipart form field named '{UPLOAD_FIELD}' (curl -F {UPLOAD_FIELD}=@photo.jpg URL/v1/images)"
)

ModelT = TypeVar("ModelT", bound=BaseModel)


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"the JSON body contains {name}; send finite numbers only", code="invalid_json")


def parse_json(data: bytes) -> Any:
    """Bytes -> JSON value.

    Raises:
        InvalidInput: ``invalid_json`` for an empty body, bad UTF-8, bad JSON,
            NaN/Infinity literals or an integer beyond Python's digit limit.
    """
    if not data:
        raise InvalidInput("the request body is empty; send a JSON object", code="invalid_json")
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except ValueError:  # Python's limit on the digits of an integer (sys.get_int_max_str_digits)
        raise InvalidInput(
            "the JSON body has an integer with thousands of digits; send numbers of ordinary size",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise InvalidInput(
            "the JSON body is nested too deeply; send a flat request object", code="invalid_json"
        ) from None


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


def image_upload(request: Request) -> bytes:
    """The uploaded image file: a multipart form's ``file`` field, else the raw body.

    Raises:
        InvalidImage: An empty body or file, or a multipart form without a
            ``file`` field; the message says how to send an image.
        InvalidInput: A multipart form with other fields (``model`` belongs in
            the query string).
    """
    if request.mimetype == "multipart/form-data":
        upload = request.files.get(UPLOAD_FIELD)
        fields = sorted({*request.files, *request.form})
        if upload is None:
            raise InvalidImage(
                f"the multipart form has no '{UPLOAD_FIELD}' field (its fields: {', '.join(fields) or 'none'}); "
                f"{HOW_TO_UPLOAD}"
            )
        if len(request.files.getlist(UPLOAD_FIELD)) > 1:
            raise InvalidInput(
                f"the multipart form has several '{UPLOAD_FIELD}' fields; send one image per request"
            )
        others = [name for name in fields if name != UPLOAD_FIELD]
        if others:  # e.g. -F model=...: it would be ignored, and the default model encode the image
            raise InvalidInput(
                f"the multipart form has fields besides '{UPLOAD_FIELD}' ({', '.join(others)}); "
                "give the model and priority in the query string: POST /v1/images?model=...&priority=..."
            )
        data = upload.read()
    else:
        data = request.get_data(cache=False)
    if not data:
        raise InvalidImage(f"no image data: the request body is empty; {HOW_TO_UPLOAD}")
    return data


@contextlib.contextmanager
def explain_image_errors() -> Iterator[None]:
    """Add how to send an image to an :class:`InvalidImage` raised inside (upload routes).

    Data that is no image at all is described in words: Pillow's own message
    names a Python object (``<_io.BytesIO object at 0x...>``).
    """
    try:
        yield
    except InvalidImage as error:
        if isinstance(error.__cause__, UnidentifiedImageError):
            raise InvalidImage(
                f"the uploaded data is not an image file of a supported format "
                f"({', '.join(SUPPORTED_FORMATS)}); {HOW_TO_UPLOAD}"
            ) from None
        raise InvalidImage(f"{error.detail}; {HOW_TO_UPLOAD}", code=error.code) from None
