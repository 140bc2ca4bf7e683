"""The OpenAPI 3.1 document of the HTTP API, built from :mod:`backend.serving.schemas`.

``GET /openapi.json`` serves it and ``docs/openapi.json`` keeps a copy;
regenerate the copy after changing a schema or a route::

    python -m backend.serving.openapi docs/openapi.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from backend import __version__
from backend.atomic_files import atomic_open
from backend.serving import schemas

REF = "#/components/schemas/{model}"
_MODELS: list[type[BaseModel]] = [
    schemas.PredictRequest,
    schemas.AutomaskRequest,
    schemas.ImageInfoResponse,
    schemas.PredictResponse,
    schemas.AutomaskResponse,
    schemas.ModelsResponse,
    schemas.HealthResponse,
    schemas.ReadyResponse,
    schemas.ErrorResponse,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Invalid input (code invalid_input, invalid_json or invalid_image).",
        401: "Missing or wrong bearer token (code unauthorized).",
        404: "Unknown image_id or logits_id (code not_found): upload the image again.",
        413: "Body or image too large, too many boxes for the image size, or more segment-everything "
        "point prompts than the server allows (code payload_too_large).",
        503: "Model loading or out of GPU memory (code unavailable), or the model queue is full "
        "(code queue_full, with a Retry-After header in seconds): retry.",
        504: "The work did not finish within the server's deadline and was stopped (code deadline_exceeded).",
    }
    return {str(s): {"description": reasons[s], **_json(schemas.ErrorResponse)} for s in statuses}


def _operation(
    summary: str,
    ok: type[BaseModel],
    *,
    body: Any = None,
    errors: tuple[int, ...] = (401, 503),
    secure: bool = True,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "OK", **_json(ok)}, **_errors(*errors)},
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    if not secure:
        operation["security"] = []
    return operation


def build_openapi() -> dict[str, Any]:
    """The complete document (a fresh dict each call)."""
    _, definitions = models_json_schema([(m, "validation") for m in _MODELS], ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sam-server",
            "version": __version__,
            "description": "Segment Anything model server. Coordinates are pixels of the original image, (x, y), origin top-left; prompt boxes are [x1, y1, x2, y2].",
        },
        "servers": [{"url": "http://127.0.0.1:9090"}],
        "security": [{"bearer": []}],
        "paths": {**_image_paths(), **_prompt_paths(), **_ops_paths()},
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when the server was started with a token (SAM_TOKEN).",
                }
            },
        },
    }


def _image_paths() -> dict[str, Any]:
    """Uploading an image (raw bytes, any lane) and asking whether the server holds it."""
    image_bytes = {
        t: {"schema": {"type": "string", "format": "binary"}}
        for t in (
            "image/jpeg",
            "image/png",
            "image/webp",
            "image/tiff",
            "image/bmp",
            "application/octet-stream",
        )
    }
    image_id = {"name": "image_id", "in": "path", "required": True, "schema": {"type": "string"}}
    priority = {
        "name": "priority",
        "in": "query",
        "required": False,
        "description": "interactive (a person waits; default) or bulk (batch pre-annotation: "
        "the encoding waits for interactive work).",
        "schema": {"type": "string", "enum": ["interactive", "bulk"], "default": "interactive"},
    }
    model = {
        "name": "model",
        "in": "query",
        "required": False,
        "description": "Which served model encodes it (GET /v1/models); default: the server's first. "
        "Unknown names: 404 listing the served ones. Other query parameters, and multipart "
        "fields besides 'file', are refused (400).",
        "schema": {"type": "string"},
    }
    return {
        "/v1/images": {
            "post": {
                **_operation(
                    "Upload an image; its embedding is computed once and cached.",
                    schemas.ImageInfoResponse,
                    body=image_bytes,
                    errors=(400, 401, 413, 503, 504),
                ),
                "parameters": [priority, model],
            }
        },
        "/v1/images/{image_id}": {
            "get": {
                **_operation(
                    "Whether the server holds this image (no upload needed).",
                    schemas.ImageInfoResponse,
                    errors=(400, 401, 404, 503),
                ),
                "parameters": [image_id, model],
            }
        },
    }


def _prompt_paths() -> dict[str, Any]:
    """Prompts on an uploaded image, and segment-everything."""
    return {
        "/v1/predict": {
            "post": _operation(
                "Prompt -> three ranked masks per object.",
                schemas.PredictResponse,
                body=_json(schemas.PredictRequest)["content"],
                errors=(400, 401, 404, 413, 503, 504),
            )
        },
        "/v1/automask": {
            "post": _operation(
                "Segment everything (SA-1B records), cached per image and parameters.",
                schemas.AutomaskResponse,
                body=_json(schemas.AutomaskRequest)["content"],
                errors=(400, 401, 404, 413, 503, 504),
            )
        },
    }


def _ops_paths() -> dict[str, Any]:
    """The loaded models, health, readiness, metrics and this document."""
    return {
        "/v1/models": {"get": _operation("The loaded model.", schemas.ModelsResponse, errors=(401,))},
        "/health": {"get": _operation("The process is up.", schemas.HealthResponse, errors=(), secure=False)},
        "/ready": {
            "get": {
                **_operation(
                    "The model is loaded (503 while loading).", schemas.ReadyResponse, errors=(401,)
                ),
                "responses": {
                    "200": {"description": "Ready", **_json(schemas.ReadyResponse)},
                    "503": {"description": "Loading", **_json(schemas.ReadyResponse)},
                    **_errors(401),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format).",
                "responses": {
                    "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **_errors(401),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(401),
                },
            }
        },
    }


def write_openapi(path: str) -> None:
    """Write the document to ``path`` atomically (temp file + rename)."""
    with atomic_open(path, "w", encoding="utf-8") as stream:
        json.dump(build_openapi(), stream, indent=2, sort_keys=True)
        stream.write("\n")


if __name__ == "__main__":
    write_openapi(sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json")
