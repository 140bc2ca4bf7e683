"""``sam-server``: serve a SAM model over HTTP (waitress, see :mod:`backend.serving.front_end`).

Every flag has an environment variable (the flag wins)::

    sam-server --model vit_b --port 9090          # or SAM_MODEL=vit_b SAM_PORT=9090 sam-server
    SAM_TOKEN=secret sam-server --host 0.0.0.0    # prefer the variable: flags show up in `ps`

Start-up fails fast: the model's weights file is found (or downloaded) before
the port opens, and a model that cannot be loaded after all (a corrupt file,
keys that do not fit, no GPU memory) stops the server with a non-zero exit
status. Either way one message says why and what to do; the traceback is
shown only with ``--log-level DEBUG``.

One process: the front end's loop thread reads every connection, ``--threads``
handler threads run the Flask app, and the model loads on the service's GPU
thread after the port is open; every forward pass runs on that one thread,
so the HTTP threads never compete for the GPU. There is no master process and
no worker to orphan: killing ``sam-server`` ends everything it runs.
"""

from __future__ import annotations

import _thread
import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from backend.api.errors import SamError
from backend.cli_help import at_least, new_parser, non_negative_float
from backend.serving.config import AUTO_MAX_BATCH_HELP, ServerConfig
from backend.serving.model_loading import model_label

if TYPE_CHECKING:
    from backend.serving.service import SamService

log = logging.getLogger(__name__)

_DEFAULTS = ServerConfig()
EXIT_BAD_MODEL = 2
"""Exit status when the model's weights cannot be found, downloaded or loaded."""
EXIT_INTERRUPTED = 130
GRACEFUL_STOP_S = 10.0
"""How long requests in progress may finish after SIGTERM."""


def _env(name: str, default: Any) -> Any:
    """``$name`` when set and not empty, else ``default`` (argparse converts a string with ``type``)."""
    value = os.environ.get(name)
    return default if value in (None, "") else value


def positive_seconds(text: str) -> float:
    """An argparse ``type``: a number of seconds > 0 (argparse's error names the flag)."""
    value = non_negative_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (defaults come from ``SAM_*`` variables)."""
    p = new_parser(
        "sam-server",
        "Segment Anything model server: HTTP API under /v1, health checks, metrics, Label Studio under /ls.",
        epilog="Every option also reads the environment variable in brackets; the option wins.",
    )
    p.add_argument(
        "--model",
        default=_env("SAM_MODEL", _DEFAULTS.model),
        help="vit_h, vit_l, vit_b, vit_t, demo, or a checkpoint path [SAM_MODEL]",
    )
    p.add_argument(
        "--device",
        default=_env("SAM_DEVICE", _DEFAULTS.device),
        help="auto (cuda, then mps, then cpu), cuda, cuda:1, mps, cpu [SAM_DEVICE]",
    )
    p.add_argument(
        "--dtype",
        default=_env("SAM_DTYPE", _DEFAULTS.dtype),
        choices=("float32", "float16", "bfloat16"),
        help="model weights dtype [SAM_DTYPE]",
    )
    p.add_argument(
        "--host", default=_env("SAM_HOST", _DEFAULTS.host), help="interface to listen on [SAM_HOST]"
    )
    p.add_argument(
        "--port", type=at_least(1), default=_env("SAM_PORT", _DEFAULTS.port), help="TCP port [SAM_PORT]"
    )
    p.add_argument(
        "--token",
        help="require 'Authorization: Bearer TOKEN' on every route but /health; "
        "prefer the variable, flags show in `ps` (default: none) [SAM_TOKEN]",
    )
    p.add_argument(
        "--cache-mb",
        type=at_least(0),
        default=_env("SAM_CACHE_MB", _DEFAULTS.cache_mb),
        help="embedding cache budget in MiB [SAM_CACHE_MB]",
    )
    p.add_argument(
        "--max-pixels",
        type=at_least(1),
        default=_env("SAM_MAX_PIXELS", _DEFAULTS.max_pixels),
        help="largest accepted image, width x height in pixels [SAM_MAX_PIXELS]",
    )
    p.add_argument(
        "--max-body-mb",
        type=at_least(1),
        default=_env("SAM_MAX_BODY_MB", _DEFAULTS.max_body_mb),
        help="largest request body in MiB; larger ones get 413 [SAM_MAX_BODY_MB]",
    )
    p.add_argument(
        "--max-batch",
        type=at_least(0),
        default=_env("SAM_MAX_BATCH", _DEFAULTS.max_batch),
        help=f"prompts per batched decoder call; 1 turns micro-batching off; 0 = auto: {AUTO_MAX_BATCH_HELP}; "
        "GET /v1/models shows the value in use [SAM_MAX_BATCH]",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=non_negative_float,
        default=_env("SAM_BATCH_WAIT_MS", _DEFAULTS.batch_wait_ms),
        help="longest wait for more decode requests while others are in flight [SAM_BATCH_WAIT_MS]",
    )
    p.add_argument(
        "--threads",
        type=at_least(1),
        default=_env("SAM_THREADS", _DEFAULTS.threads),
        help="HTTP handler threads; slow or idle connections never hold one [SAM_THREADS]",
    )
    p.add_argument(
        "--interactive-timeout",
        type=positive_seconds,
        default=_env("SAM_INTERACTIVE_TIMEOUT", _DEFAULTS.timeout_s),
        help="deadline of interactive work (predict, uploads) in seconds from the request's arrival; "
        "later: 504 [SAM_INTERACTIVE_TIMEOUT]",
    )
    p.add_argument(
        "--bulk-timeout",
        type=positive_seconds,
        default=_env("SAM_BULK_TIMEOUT", _DEFAULTS.bulk_timeout_s),
        help="deadline of bulk work (segment-everything, text prompts, priority=bulk uploads) in seconds; "
        "a running job stops at its next slice [SAM_BULK_TIMEOUT]",
    )
    p.add_argument(
        "--max-queue",
        type=at_least(1),
        default=_env("SAM_MAX_QUEUE", _DEFAULTS.max_queue),
        help="most interactive jobs waiting for the model thread; more: 503 queue_full [SAM_MAX_QUEUE]",
    )
    p.add_argument(
        "--max-bulk-jobs",
        type=at_least(1),
        default=_env("SAM_MAX_BULK_JOBS", _DEFAULTS.max_bulk_jobs),
        help="most bulk jobs waiting or running; more: 503 queue_full [SAM_MAX_BULK_JOBS]",
    )
    p.add_argument(
        "--max-automask-points",
        type=at_least(1),
        default=_env("SAM_MAX_AUTOMASK_POINTS", _DEFAULTS.max_automask_points),
        help="most point prompts of one segment-everything request, summed over its crops; "
        "more: 413 [SAM_MAX_AUTOMASK_POINTS]",
    )
    p.add_argument(
        "--header-timeout",
        type=positive_seconds,
        default=_env("SAM_HEADER_TIMEOUT", _DEFAULTS.header_timeout_s),
        help="seconds for a request's line and headers to arrive, from its first byte; "
        "later: 408 and the connection is closed [SAM_HEADER_TIMEOUT]",
    )
    p.add_argument(
        "--body-timeout",
        type=positive_seconds,
        default=_env("SAM_BODY_TIMEOUT", _DEFAULTS.body_timeout_s),
        help="seconds for a request's body to arrive after its headers; later: 408 [SAM_BODY_TIMEOUT]",
    )
    p.add_argument(
        "--idle-timeout",
        type=positive_seconds,
        default=_env("SAM_IDLE_TIMEOUT", _DEFAULTS.idle_timeout_s),
        help="seconds a kept-alive connection may wait for its next request [SAM_IDLE_TIMEOUT]",
    )
    p.add_argument(
        "--max-connections",
        type=at_least(1),
        default=_env("SAM_MAX_CONNECTIONS", _DEFAULTS.max_connections),
        help="most open HTTP connections; more wait in the listen backlog [SAM_MAX_CONNECTIONS]",
    )
    p.add_argument(
        "--decode-budget-mb",
        type=at_least(1),
        default=_env("SAM_DECODE_BUDGET_MB", _DEFAULTS.decode_budget_mb),
        help="MiB of image decoding in flight at once, server-wide (about 4 bytes per pixel each); "
        "further uploads wait [SAM_DECODE_BUDGET_MB]",
    )
    p.add_argument(
        "--answer-budget-mb",
        type=at_least(1),
        default=_env("SAM_ANSWER_BUDGET_MB", _DEFAULTS.answer_budget_mb),
        help="MiB of mask answers being built at once, server-wide (1 byte per mask pixel); "
        "further requests wait [SAM_ANSWER_BUDGET_MB]",
    )
    p.add_argument(
        "--clip-model",
        default=_env("SAM_CLIP_MODEL", _DEFAULTS.clip_model),
        help="CLIP model of text prompts: a name or a checkpoint path [SAM_CLIP_MODEL]",
    )
    p.add_argument(
        "--clip-root",
        default=_env("SAM_CLIP_ROOT", _DEFAULTS.clip_root),
        help="folder of the CLIP weights files (default: ~/.cache/clip) [SAM_CLIP_ROOT]",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        default=_env("SAM_LOG_LEVEL", _DEFAULTS.log_level),
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="DEBUG also prints tracebacks [SAM_LOG_LEVEL]",
    )
    p.add_argument(
        "--no-plugins",
        action="store_true",
        default=_env("SAM_NO_PLUGINS", "") not in ("", "0"),
        help="do not mount blueprints from the sam_server.blueprints entry points [SAM_NO_PLUGINS=1]",
    )
    return p


def config_from_args(argv: Sequence[str] | None = None) -> ServerConfig:
    """Parse flags and ``SAM_*`` variables into a :class:`ServerConfig`."""
    args = build_parser().parse_args(argv)
    return ServerConfig(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("SAM_TOKEN") or None,
        cache_mb=args.cache_mb,
        max_pixels=args.max_pixels,
        max_body_mb=args.max_body_mb,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        threads=args.threads,
        log_level=args.log_level,
        plugins=not args.no_plugins,
        clip_model=args.clip_model,
        clip_root=args.clip_root or None,
        timeout_s=args.interactive_timeout,
        bulk_timeout_s=args.bulk_timeout,
        max_queue=args.max_queue,
        max_bulk_jobs=args.max_bulk_jobs,
        max_automask_points=args.max_automask_points,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        idle_timeout_s=args.idle_timeout,
        max_connections=args.max_connections,
        decode_budget_mb=args.decode_budget_mb,
        answer_budget_mb=args.answer_budget_mb,
    )


def bind_address(host: str, port: int) -> str:
    """``host:port`` as the server listens on it (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def find_weights(config: ServerConfig) -> None:
    """Find each served model's weights file before serving, downloading it into the cache if needed.

    Raises:
        InvalidInput: An unknown model name, or no file at the given path.
        WeightsUnavailable: Not in the cache and not downloadable (offline);
            the message names the file, its URL, where to put it and
            ``SAM_CACHE_DIR``.
    """
    from backend.hub import resolve_weights

    for model in config.models:
        if isinstance(model, str):
            resolve_weights(model)


def warn_about_clip(config: ServerConfig) -> None:
    """Warn at start-up when CLIP options were given but text prompts cannot work with them."""
    if (config.clip_model, config.clip_root) == (_DEFAULTS.clip_model, _DEFAULTS.clip_root):
        return
    from backend.inference.text import TextPrompter

    try:
        TextPrompter(clip_model=config.clip_model, download_root=config.clip_root).check_weights()
    except SamError as error:
        log.warning("text prompts will fail until this is fixed: %s", error)


def stop_when_loading_fails(service: SamService) -> None:
    """Wait for the model; if it failed to load, stop the front end (the service has logged why).

    Runs on a helper thread: it interrupts the main thread, whose
    :func:`serve` then returns :data:`EXIT_BAD_MODEL`.
    """
    service.wait_ready()
    if service.load_error is not None:
        _thread.interrupt_main()


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def serve(config: ServerConfig) -> int:
    """Serve in the foreground until SIGINT / SIGTERM, or until the model fails to load.

    Returns:
        0 after a stop by signal; :data:`EXIT_BAD_MODEL` when the model failed to load.
    """
    from backend.serving.app import create_app
    from backend.serving.front_end import create_front_end

    app = create_app(config)
    service: SamService = app.extensions["sam_service"]
    server = create_front_end(app, config)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        watch = threading.Thread(target=stop_when_loading_fails, args=(service,), name="sam-load-watch")
        watch.daemon = True
        watch.start()
        server.run()  # returns after SIGTERM (SystemExit) or Ctrl-C (KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=GRACEFUL_STOP_S)
    if service.load_error is not None:
        return EXIT_BAD_MODEL
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sam-server``; returns the exit status."""
    config = config_from_args(argv)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        find_weights(config)
    except SamError as error:
        log.debug("the model's weights are not available", exc_info=True)
        print(f"sam-server: error: {error}", file=sys.stderr)
        return EXIT_BAD_MODEL
    except KeyboardInterrupt:
        print("sam-server: interrupted; a started download resumes next time", file=sys.stderr)
        return EXIT_INTERRUPTED
    warn_about_clip(config)
    log.info(
        "sam-server: model %s on %s, http://%s",
        ", ".join(model_label(model) for model in config.models),
        config.device,
        bind_address(config.host, config.port),
    )
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
