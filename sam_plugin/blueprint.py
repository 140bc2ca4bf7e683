"""Label Studio's ML backend protocol as a Flask blueprint.

Routes (relative to where the blueprint is mounted: ``/ls`` on the model
server, ``/`` in the standalone ``sam-plugin``):

==========  ==========  ==================================================
``POST``    /setup      ``{"project", "schema", "hostname", "access_token", "extra_params"}``
                        -> ``{"model_version"}``; answers within 3 s.
``POST``    /predict    ``{"tasks", "project", "label_config", "params": {"context", ...}}``
                        -> ``{"results": [{"result", "score", "model_version"}, ...]}``
``POST``    /webhook    ``{"action", "annotation", "task", "project"}`` -> ``{"status", "result"}``
``GET``     /versions   ``{"versions": [model_version, ...]}`` (every served model's; the default first)
``GET``     /health     ``{"status": "UP", "model_class"}`` (also ``GET /``)
``GET``     /metrics    Prometheus text
==========  ==========  ==================================================

Errors are ``{"error": code, "detail": message}`` with the error's status.
Label Studio shows ``requests``' message for a failed call, which holds the
HTTP *reason phrase*, not the body; so the reason phrase carries the message
too (one line of ASCII), e.g. ``503 the model server cannot be reached ...``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from backend.api.errors import InvalidInput, SamError
from backend.client.base import SamClientBase
from backend.public_detail import public_detail
from sam_plugin.access import check_access
from sam_plugin.model import FIT_EVENTS, SamLabelStudioModel
from sam_plugin.runtime import PluginRuntime
from sam_plugin.settings import PluginSettings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

logger = logging.getLogger(__name__)

MODEL_CLASS = SamLabelStudioModel


def _reason(message: str) -> str:
    """A message made safe for an HTTP status line."""
    text = " ".join(message.split())
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:300]


def error_response(error: SamError, model_names: Iterable[str] = ()) -> Response:
    """``{"error", "detail"}`` JSON with the error's status and its message as reason phrase.

    The message goes out without Python object reprs or this machine's file
    paths (:func:`backend.public_detail.public_detail`), except the
    ``model_names`` (which are paths for models served from a file); the log keeps it whole.
    """
    detail = public_detail(error.detail, keep=model_names)
    response = jsonify({"error": error.code, "detail": detail})
    response.status = f"{error.status} {_reason(detail)}"
    return response


def _load_sdk() -> None:
    """Import label-studio-sdk's config parser now, while the server starts.

    The import takes seconds on a busy machine, longer than the 3 s Label
    Studio gives ``/setup``; paying it when the blueprint is created keeps
    every ``/setup`` fast.
    """
    import label_studio_sdk.label_interface  # noqa: F401


def _json_body() -> dict[str, Any]:
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise InvalidInput("the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object (Content-Type: application/json)")
    return body


def _project_id(raw: Any) -> str | None:
    """``"12.1700000000"`` (Label Studio's project uid) -> ``"12"``."""
    if isinstance(raw, dict):
        raw = raw.get("id")
    if raw is None:
        return None
    return str(raw).split(".", 1)[0]


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}

DEFAULT_URL_PREFIX = "/ls"
"""Where the model server mounts the plugin: the ML backend URL is ``http://HOST:PORT/ls``."""


def create_blueprint(
    client: SamClientBase,
    settings: PluginSettings | None = None,
    *,
    runtime: PluginRuntime | None = None,
    url_prefix: str = DEFAULT_URL_PREFIX,
) -> Blueprint:
    """The Label Studio ML backend routes, talking to ``client``.

    This is the ``sam_server.blueprints`` entry point: the model server calls
    ``create_blueprint(client)`` and registers the result, which carries its
    own ``/ls`` prefix.

    Args:
        client: The model server (``SamClient`` over HTTP, or in-process).
        settings: Plugin settings; read from the environment when ``None``.
        runtime: Prebuilt runtime (tests inject a fetcher through it); when
            given, its client and settings are used.
        url_prefix: Mount point; ``""`` for the standalone plugin.

    Returns:
        A blueprint named ``labelstudio``.
    """
    _load_sdk()
    runtime = runtime or PluginRuntime(client, settings or PluginSettings.from_env())
    bp = Blueprint("labelstudio", __name__, url_prefix=url_prefix or None)
    _require_access(bp, runtime.settings)  # first: a refused request runs no other hook
    metrics_registry = _count_requests(bp)
    _answer_errors_as_json(bp, runtime)
    _add_protocol_routes(bp, runtime)
    _add_status_routes(bp, runtime, metrics_registry)
    return bp


def _require_access(bp: Blueprint, settings: PluginSettings) -> None:
    """Check basic auth (when configured) before every request."""

    @bp.before_request
    def _check_access() -> Response | None:
        return check_access(settings)


def _count_requests(bp: Blueprint) -> CollectorRegistry:
    """Count requests by route and status and time them; returns the Prometheus registry of ``/metrics``."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    requests_total = Counter(
        "sam_plugin_requests",
        "Label Studio requests by route and status",
        ["route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "sam_plugin_request_seconds", "Label Studio request latency by route", ["route"], registry=registry
    )

    @bp.before_request
    def _start_timer() -> None:
        request.environ["sam_plugin.start"] = time.perf_counter()

    @bp.after_request
    def _count(response: Response) -> Response:
        route = request.url_rule.endpoint.rsplit(".", 1)[-1] if request.url_rule else "unknown"
        requests_total.labels(route=route, status=str(response.status_code)).inc()
        start = request.environ.get("sam_plugin.start")
        if start is not None:
            latency.labels(route=route).observe(time.perf_counter() - start)
        return response

    return registry


def _answer_errors_as_json(bp: Blueprint, runtime: PluginRuntime) -> None:
    """Every failure, ours or Flask's (404, 405, 413 ...), as ``{"error", "detail"}`` JSON (:func:`error_response`)."""

    @bp.errorhandler(SamError)
    def _sam_error(error: SamError) -> Response:
        logger.info("Label Studio request failed: %s", error)
        return error_response(error, runtime.model_names())

    @bp.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        from werkzeug.exceptions import HTTPException

        if isinstance(error, HTTPException):  # 404, 405, 413 ...: same JSON shape as every other error
            failure = SamError(
                error.description or error.name or "error",
                code=_HTTP_CODES.get(error.code or 0, "http_error"),
            )
            failure.status = error.code or 500
            return error_response(failure, runtime.model_names())
        logger.exception("unexpected error in the Label Studio plugin")
        return error_response(SamError("internal error in the SAM plugin; see its log for details"))


def _add_protocol_routes(bp: Blueprint, runtime: PluginRuntime) -> None:
    """``/setup``, ``/predict`` and ``/webhook``: each builds the model class for the request's project."""
    settings = runtime.settings

    @bp.post("/setup")
    def setup() -> Response:
        body = _json_body()
        project_id = _project_id(body.get("project"))
        token = body.get("access_token")
        if project_id and isinstance(token, str) and token:
            runtime.project_tokens[project_id] = token
        extra = _extra_params(body.get("extra_params"))
        model_name = extra.get("model")
        chosen = model_name.strip() if isinstance(model_name, str) and model_name.strip() else None
        before = runtime.project_models.get(project_id) if project_id else None
        if project_id:  # Label Studio sends the current Extra params every time (none: no model named)
            _set_project_model(runtime, project_id, chosen)
        try:
            model = MODEL_CLASS(project_id, body.get("schema"), runtime=runtime)
            version = model.setup(timeout_s=settings.setup_timeout_s)
        except Exception:  # Label Studio keeps the old settings when the check fails: so does the plugin
            if project_id:
                _set_project_model(runtime, project_id, before)
            raise
        return jsonify({"model_version": version})

    @bp.post("/predict")
    def predict() -> Response:
        body = _json_body()
        context, extra = _predict_params(body)
        model = MODEL_CLASS(_project_id(body.get("project")), body.get("label_config"), runtime=runtime)
        results = model.predict(body.get("tasks") or [], context=context, **extra)
        return jsonify({"results": results})

    @bp.post("/webhook")
    def webhook() -> tuple[Response, int]:
        body = _json_body()
        event = body.pop("action", None)
        if event not in FIT_EVENTS:  # Label Studio sends every event to the ML backend's webhook
            return jsonify({"status": "Unknown event"}), 200
        project = body.get("project") or {}
        if not isinstance(project, dict):
            raise InvalidInput("an annotation webhook needs a 'project' object")
        model = MODEL_CLASS(_project_id(project), project.get("label_config"), runtime=runtime)
        result = model.fit(event, body)
        return jsonify({"status": "ok", "result": result}), 201


def _set_project_model(runtime: PluginRuntime, project_id: Any, model: str | None) -> None:
    """Serve the project with ``model`` (None: the configured default)."""
    if model is None:
        runtime.project_models.pop(project_id, None)
    else:
        runtime.project_models[project_id] = model


def _extra_params(value: Any) -> dict[str, Any]:
    """The "Extra params" of Label Studio's model settings: a JSON object, sent as one or as its
    text (empty text or none: no params). Its one key is ``model``, a served model's name.

    Raises:
        InvalidInput: Not a JSON object, an unknown key (a typo would silently be ignored),
            or a ``model`` that is not a string.
    """
    example = 'e.g. {"model": "sam2.1_hiera_t"}'
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict):
        raise InvalidInput(f'the model\'s "Extra params" in Label Studio must be a JSON object, {example}')
    unknown = sorted(set(value) - {"model"})
    if unknown:
        raise InvalidInput(
            f'unknown "Extra params" {", ".join(map(repr, unknown))}: the plugin reads only "model", {example}'
        )
    if "model" in value and not isinstance(value["model"], str):
        raise InvalidInput(f'"Extra params" "model" must be a model name (a string), {example}')
    return value


def _predict_params(body: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``(context, other params)`` of a ``/predict`` body's ``params``.

    Raises:
        InvalidInput: ``params`` or ``params.context`` is not a JSON object.
    """
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidInput("'params' must be a JSON object")
    context = params.get("context") or None
    if context is not None and not isinstance(context, dict):
        raise InvalidInput("'params.context' must be a JSON object such as {\"result\": [...]}")
    extra = {k: v for k, v in params.items() if k not in ("self", "tasks", "context")}
    return context, extra


def _add_status_routes(bp: Blueprint, runtime: PluginRuntime, metrics_registry: CollectorRegistry) -> None:
    """``/versions``, ``/health`` (also ``/``) and ``/metrics``."""
    from prometheus_client import generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    @bp.get("/versions")
    def versions() -> Response:
        return jsonify({"versions": runtime.model_versions(timeout_s=runtime.settings.setup_timeout_s)})

    @bp.get("/")
    @bp.get("/health")
    def health() -> Response:
        return jsonify({"status": "UP", "model_class": MODEL_CLASS.__name__})

    @bp.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(metrics_registry), mimetype=CONTENT_TYPE_LATEST)
