"""The model API under ``/v1``: images, predict, automask, models.

Each request's work waits for the model thread with a deadline and a probe
of its client's connection (:mod:`backend.serving.client_probe`): a client
that disconnects cancels its job. ``POST /v1/images?priority=bulk`` queues the
encoding behind interactive work (batch pre-annotation). A full queue answers
503 with ``Retry-After``.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from flask import Blueprint, Response, jsonify, request

from backend.api.answers import empty_automask_note
from backend.api.errors import InvalidInput
from backend.api.priority import Priority, parse_priority
from backend.api.prompt import Prompt
from backend.memory_budget import MemoryBudget
from backend.serving.answer_budget import reserve_answer
from backend.serving.client_probe import disconnect_probe
from backend.serving.request_body import explain_image_errors, image_upload, parse_request
from backend.serving.responses import object_to_json, to_jsonable
from backend.serving.scheduling import QueueFull
from backend.serving.schemas import AutomaskRequest, PredictRequest
from backend.serving.service import SamService


def create_v1_blueprint(service: SamService, answers: MemoryBudget) -> Blueprint:
    """Routes that map typed requests onto :class:`SamService` calls.

    Args:
        service: The model service.
        answers: The server-wide budget of mask answers being built.
    """
    bp = Blueprint("v1", __name__, url_prefix="/v1")

    @bp.app_errorhandler(QueueFull)
    def queue_full(exc: QueueFull) -> tuple[Response, int, dict[str, str]]:
        """503 with ``Retry-After`` (seconds), for every route that queues model work (plugins too)."""
        body = jsonify(error=exc.code, detail=exc.detail)
        return body, exc.status, {"Retry-After": str(exc.retry_after_s)}

    @bp.get("/models")
    def models() -> Response:
        """What is served."""
        return jsonify(models=service.models())

    _add_image_routes(bp, service)
    _add_predict_route(bp, service, answers)
    _add_automask_route(bp, service)
    return bp


def _marked(service: SamService, interactive: bool) -> AbstractContextManager[None]:
    """While an interactive request is answered, bulk work pauses at its checkpoints."""
    return service.interactive_request() if interactive else nullcontext()


def _add_image_routes(bp: Blueprint, service: SamService) -> None:
    """``POST /images`` (upload) and ``GET /images/<id>`` (is it held?)."""

    @bp.post("/images")
    def add_image() -> Response:
        """Image file (raw body, or a multipart ``file`` field) -> ``{"image_id", "width", "height"}``.

        ``?priority=bulk`` (batch pre-annotation) queues the encoding behind
        interactive work; default ``interactive``. ``?model=`` picks the model.
        """
        _refuse_unknown_query_parameters("POST /v1/images", ("model", "priority"))
        priority = parse_priority(request.args.get("priority"))
        model = request.args.get("model")
        with explain_image_errors(), _marked(service, priority is Priority.INTERACTIVE):
            upload = image_upload(request)
            info = service.add_image(
                upload, model=model, priority=priority, abandoned=disconnect_probe(request.environ)
            )
        return jsonify(image_id=info.image_id, width=info.width, height=info.height)

    @bp.get("/images/<image_id>")
    def image_info(image_id: str) -> Response:
        """200 with the image's size when the server holds its embedding (or pixels), else 404."""
        _refuse_unknown_query_parameters("GET /v1/images/<image_id>", ("model",))
        info = service.image_info(image_id, model=request.args.get("model"))
        return jsonify(image_id=info.image_id, width=info.width, height=info.height)


def _add_predict_route(bp: Blueprint, service: SamService, answers: MemoryBudget) -> None:
    """``POST /predict``: a prompt -> ranked masks per object (or every instance of a concept)."""

    @bp.post("/predict")
    def predict() -> Response:
        start = time.perf_counter()
        _refuse_query_parameters("POST /v1/predict")
        body = parse_request(request.get_data(cache=False), PredictRequest)
        prompt = body.prompt()
        interactive = prompt.text is None and prompt.exemplars is None  # text and concepts are bulk work
        with (
            _marked(service, interactive),
            reserve_answer(answers, service, body.image_id, prompt, model=body.model),
        ):
            # the masks live in _answer's frame only, so they are freed before the budget is
            # released (and the allocator trimmed); only the encoded answer outlives it
            return _answer(service, body, prompt, start)


def _refuse_query_parameters(route: str) -> None:
    """Refuse a query string on a route whose parameters are JSON fields (``?model=...`` would
    otherwise be ignored silently, and the default model answer).

    Raises:
        InvalidInput: The request has query parameters.
    """
    if request.args:
        names = ", ".join(sorted(request.args))
        raise InvalidInput(
            f"{route} takes its parameters as fields of the JSON body, not in the query string (got {names}); "
            'e.g. {"image_id": ..., "model": ...}'
        )


def _refuse_unknown_query_parameters(route: str, known: tuple[str, ...]) -> None:
    """Refuse query parameters other than ``known`` (a misspelt ``?modle=`` would otherwise
    be ignored silently, and the default model do the work).

    Raises:
        InvalidInput: An unknown query parameter.
    """
    unknown = sorted(set(request.args) - set(known))
    if unknown:
        raise InvalidInput(
            f"{route} does not take the query parameter(s) {', '.join(unknown)}; "
            f"it takes {', '.join(known)} (e.g. ?model=vit_b)"
        )


def _answer(service: SamService, body: PredictRequest, prompt: Prompt, start: float) -> Response:
    """Run the prediction and encode its masks into the JSON response."""
    objects = service.predict(
        body.image_id, prompt, model=body.model, abandoned=disconnect_probe(request.environ)
    )
    encoded = [object_to_json(obj, body.format) for obj in objects]
    return jsonify(
        objects=encoded,
        model=body.model or service.model_name,
        timing_ms=(time.perf_counter() - start) * 1000.0,
    )


def _add_automask_route(bp: Blueprint, service: SamService) -> None:
    """``POST /automask``: segment everything."""

    @bp.post("/automask")
    def automask() -> Response:
        """SA-1B records (cached per model, image and parameters); a ``note`` when none passed the filters."""
        start = time.perf_counter()
        _refuse_query_parameters("POST /v1/automask")
        body = parse_request(request.get_data(cache=False), AutomaskRequest)
        params = body.model_dump(exclude={"image_id", "model"})
        records = service.automask(
            body.image_id, model=body.model, abandoned=disconnect_probe(request.environ), **params
        )
        answer: dict[str, Any] = {
            "records": to_jsonable(records),
            "model": body.model or service.model_name,
            "timing_ms": (time.perf_counter() - start) * 1000.0,
        }
        if not records:
            answer["note"] = empty_automask_note(service.automask_thresholds(params, model=body.model))
        return jsonify(answer)
