"""Operational routes: ``/health``, ``/ready``, ``/metrics``."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backend.public_detail import public_detail
from backend.serving.metrics import ServerMetrics
from backend.serving.service import SamService


def not_ready_reason(service: SamService) -> str:
    """Why ``service`` cannot answer yet: still loading, or why loading failed."""
    error = service.load_error
    if error is not None:
        return public_detail(f"model {service.model_name} failed to load: {error}", keep=service.model_names)
    return public_detail(f"loading model {service.model_name} ...", keep=service.model_names)


def create_ops_blueprint(service: SamService, metrics: ServerMetrics) -> Blueprint:
    """Routes that monitoring and Label Studio's health check call."""
    bp = Blueprint("ops", __name__)

    @bp.get("/health")
    def health() -> Response:
        """The process is up (the model may still be loading)."""
        return jsonify(status="UP")

    @bp.get("/ready")
    def ready() -> tuple[Response, int]:
        """200 once the model is loaded; 503 before, with the ``reason``."""
        if service.ready():
            return jsonify(ready=True, model=service.model_name), 200
        return jsonify(ready=False, model=service.model_name, reason=not_ready_reason(service)), 503

    @bp.get("/metrics")
    def prometheus() -> Response:
        """Prometheus text format."""
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4; charset=utf-8")

    return bp
