"""``GET /openapi.json``: the OpenAPI document built from the request/response schemas."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backend.serving.openapi import build_openapi


def create_openapi_blueprint() -> Blueprint:
    """Serves the same document as ``docs/openapi.json``."""
    bp = Blueprint("openapi", __name__)
    document = build_openapi()

    @bp.get("/openapi.json")
    def openapi() -> Response:
        """The API description (OpenAPI 3.1)."""
        return jsonify(document)

    return bp
