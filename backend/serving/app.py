"""The Flask application factory of the model server.

``create_app(config)`` builds everything one server needs (the
:class:`~backend.serving.service.SamService`, metrics, blueprints, plugins);
nothing is created at import time. Errors become
``{"error": code, "detail": message}`` with the status from
:mod:`backend.api.errors`; messages reach clients without Python reprs or the
server's file paths (:func:`backend.public_detail.public_detail`; the log
keeps them); an unexpected exception is logged and answered with a generic
500, never a traceback. There is no static route: the app serves no files.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from backend.api.errors import SamError
from backend.memory_budget import DECODE_BUDGET, MemoryBudget
from backend.public_detail import public_detail
from backend.serving.auth import check_token, is_public_path
from backend.serving.blueprints import create_openapi_blueprint, create_ops_blueprint, create_v1_blueprint
from backend.serving.config import ServerConfig
from backend.serving.metrics import ServerMetrics
from backend.serving.plugins import mount_plugins
from backend.serving.service import SamService

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_HTTP_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def create_app(config: ServerConfig | None = None, *, service: SamService | None = None) -> Flask:
    """Build the server's Flask app.

    Args:
        config: Server settings (defaults: the demo model on the best device).
        service: An already started service to serve (tests, embedding the
            server in another process); by default one is created from
            ``config`` and started (the model loads on its worker thread).

    Returns:
        The app; ``app.extensions["sam_service"]`` holds the service.
    """
    config = config or ServerConfig()
    if service is None:
        service = SamService(config).start()
    app = Flask("sam_server", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_mb * MiB
    app.json.sort_keys = False  # type: ignore[attr-defined]
    DECODE_BUDGET.set_capacity(config.decode_budget_mb * MiB)  # one per process: decode_image uses it
    answers = MemoryBudget(config.answer_budget_mb * MiB, name="mask answers")
    metrics = ServerMetrics(service, budgets=(DECODE_BUDGET, answers))
    app.extensions["sam_service"] = service
    app.extensions["sam_metrics"] = metrics
    app.extensions["sam_answer_budget"] = answers

    _install_hooks(app, config, metrics)
    _install_error_handlers(app, service)
    app.register_blueprint(create_ops_blueprint(service, metrics))
    app.register_blueprint(create_openapi_blueprint())
    app.register_blueprint(create_v1_blueprint(service, answers))
    if config.plugins:
        from backend.serving.answer_budget import BudgetedClient
        from backend.serving.local_client import LocalSamClient

        mount_plugins(app, BudgetedClient(LocalSamClient.from_service(service), answers))
    return app


def _install_hooks(app: Flask, config: ServerConfig, metrics: ServerMetrics) -> None:
    token = config.token

    @app.before_request
    def start_and_authenticate() -> None:
        g.sam_start = time.perf_counter()
        if token and not is_public_path(request.path):
            check_token(request.headers.get("Authorization"), token)
            g.sam_token_verified = True  # plugins may rely on it (sam_plugin.access)

    @app.after_request
    def count(response: Response) -> Response:
        start = g.get("sam_start")
        if start is not None and response.status_code != 401:  # unauthenticated: not counted
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            metrics.observe(
                route=route,
                method=request.method,
                status=response.status_code,
                seconds=time.perf_counter() - start,
            )
        return response


def _error(code: str, detail: str, status: int) -> tuple[Response, int]:
    return jsonify(error=code, detail=detail), status


def _install_error_handlers(app: Flask, service: SamService) -> None:
    @app.errorhandler(SamError)
    def sam_error(exc: SamError) -> tuple[Response, int]:
        detail = public_detail(exc.detail, keep=[*service.model_names, *exc.echoes])
        if exc.status >= 500 or detail != exc.detail:
            log.warning("%s %s -> %s %s: %s", request.method, request.path, exc.status, exc.code, exc.detail)
        return _error(exc.code, detail, exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, (exc.name or "error").lower().replace(" ", "_"))
        detail = exc.description or exc.name or "error"
        if status == 413:
            detail = f"the request body is larger than the server's limit of {app.config['MAX_CONTENT_LENGTH'] // MiB} MiB"
        return _error(code, detail, status)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error("internal_error", "internal server error; the server logged the details", 500)
