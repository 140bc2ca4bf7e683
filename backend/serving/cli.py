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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.api.errors import SamError
from backend.cli_help import at_least, new_parser, non_negative_float, path_or_name
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
    parser = new_parser(
        "sam-server",
        "Segment Anything model server: HTTP API under /v1, health checks, metrics, Label Studio under /ls.",
        epilog="Every option also reads the environment variable in brackets; the option wins.",
    )
    _add_model_options(parser)
    _add_listening_options(parser)
    _add_memory_options(parser)
    _add_scheduling_options(parser)
    _add_connection_options(parser)
    _add_text_and_logging_options(parser)
    return parser


def _option(parser: argparse.ArgumentParser, flag: str, default: Any, help: str, **kwargs: Any) -> None:
    """``flag`` with its ``SAM_*`` variable (``--max-batch``: ``SAM_MAX_BATCH``) as default, named in its help."""
    variable = "SAM_" + flag.removeprefix("--").upper().replace("-", "_")
    parser.add_argument(flag, default=_env(variable, default), help=f"{help} [{variable}]", **kwargs)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """Which model, where, in which dtype."""
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME_OR_PATH",
        help="a model to serve: vit_h, vit_l, vit_b, vit_t, demo, sam2.1_hiera_t, sam2.1_hiera_s, "
        "sam2.1_hiera_b+, sam2.1_hiera_l, sam3, a checkpoint path or a SAM 3 folder; repeat it to serve several side by side "
        f"(requests choose with 'model'; the first answers those that name none) (default: {_env('SAM_MODEL', _DEFAULTS.model)}) "
        "[SAM_MODEL, comma-separated]",
    )
    _option(parser, "--device", _DEFAULTS.device, "auto (cuda, then mps, then cpu), cuda, cuda:1, mps, cpu")
    _option(
        parser,
        "--dtype",
        _DEFAULTS.dtype,
        "model weights dtype",
        choices=("float32", "float16", "bfloat16"),
    )


def _add_listening_options(parser: argparse.ArgumentParser) -> None:
    """Where the server listens and who may call it."""
    _option(parser, "--host", _DEFAULTS.host, "interface to listen on")
    _option(parser, "--port", _DEFAULTS.port, "TCP port", type=at_least(1))
    parser.add_argument(  # not _option: the variable is read later, so a token never shows as a default
        "--token",
        help="require 'Authorization: Bearer TOKEN' on every route but /health; "
        "prefer the variable, flags show in `ps` (default: none) [SAM_TOKEN]",
    )


def _add_memory_options(parser: argparse.ArgumentParser) -> None:
    """How much memory caches, images, bodies, decodes and answers may take."""
    _option(parser, "--cache-mb", _DEFAULTS.cache_mb, "embedding cache budget in MiB", type=at_least(0))
    _option(
        parser,
        "--cache-dtype",
        _DEFAULTS.cache_dtype,
        "storage dtype of cached embeddings: auto (float16 on CUDA, the model's dtype elsewhere)",
        choices=("auto", "float32", "float16", "bfloat16"),
    )
    _option(
        parser,
        "--image-store-mb",
        _DEFAULTS.image_store_mb,
        "budget in MiB for decoded pixels kept for segment-everything, text prompts and other models",
        type=at_least(1),
    )
    _option(
        parser,
        "--logits-store-mb",
        _DEFAULTS.logits_store_mb,
        "budget in MiB for low-res logits kept for refinement (logits_id)",
        type=at_least(1),
    )
    _option(
        parser,
        "--automask-store-mb",
        _DEFAULTS.automask_store_mb,
        "budget in MiB for cached segment-everything answers",
        type=at_least(0),
    )
    _option(
        parser,
        "--max-pixels",
        _DEFAULTS.max_pixels,
        "largest accepted image, width x height in pixels",
        type=at_least(1),
    )
    _option(
        parser,
        "--max-body-mb",
        _DEFAULTS.max_body_mb,
        "largest request body in MiB; larger ones get 413",
        type=at_least(1),
    )


def _add_scheduling_options(parser: argparse.ArgumentParser) -> None:
    """Micro-batching, handler threads, deadlines and queue bounds of the model work."""
    _option(
        parser,
        "--max-batch",
        _DEFAULTS.max_batch,
        f"prompts per batched decoder call; 1 turns micro-batching off; 0 = auto: {AUTO_MAX_BATCH_HELP}; "
        "GET /v1/models shows the value in use",
        type=at_least(0),
    )
    _option(
        parser,
        "--batch-wait-ms",
        _DEFAULTS.batch_wait_ms,
        "longest wait for more decode requests while others are in flight",
        type=non_negative_float,
    )
    _option(
        parser,
        "--threads",
        _DEFAULTS.threads,
        "HTTP handler threads; slow or idle connections never hold one",
        type=at_least(1),
    )
    _option(
        parser,
        "--interactive-timeout",
        _DEFAULTS.timeout_s,
        "deadline of interactive work (predict, uploads) in seconds from the request's arrival; later: 504",
        type=positive_seconds,
    )
    _option(
        parser,
        "--bulk-timeout",
        _DEFAULTS.bulk_timeout_s,
        "deadline of bulk work (segment-everything, text prompts, priority=bulk uploads) in seconds; "
        "a running job stops at its next slice",
        type=positive_seconds,
    )
    _add_queue_options(parser)


def _add_queue_options(parser: argparse.ArgumentParser) -> None:
    """How much model work may wait, and how big one segment-everything request may be."""
    _option(
        parser,
        "--max-queue",
        _DEFAULTS.max_queue,
        "most interactive jobs waiting for the model thread; more: 503 queue_full",
        type=at_least(1),
    )
    _option(
        parser,
        "--max-bulk-jobs",
        _DEFAULTS.max_bulk_jobs,
        "most bulk jobs waiting or running; more: 503 queue_full",
        type=at_least(1),
    )
    _option(
        parser,
        "--max-automask-points",
        _DEFAULTS.max_automask_points,
        "most point prompts of one segment-everything request, summed over its crops; more: 413",
        type=at_least(1),
    )


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    """Deadlines and bounds of HTTP connections, and of decoding and answering across them."""
    _option(
        parser,
        "--header-timeout",
        _DEFAULTS.header_timeout_s,
        "seconds for a request's line and headers to arrive, from its first byte; "
        "later: 408 and the connection is closed",
        type=positive_seconds,
    )
    _option(
        parser,
        "--body-timeout",
        _DEFAULTS.body_timeout_s,
        "seconds for a request's body to arrive after its headers; later: 408",
        type=positive_seconds,
    )
    _option(
        parser,
        "--idle-timeout",
        _DEFAULTS.idle_timeout_s,
        "seconds a kept-alive connection may wait for its next request",
        type=positive_seconds,
    )
    _option(
        parser,
        "--max-connections",
        _DEFAULTS.max_connections,
        "most open HTTP connections; more wait in the listen backlog",
        type=at_least(1),
    )
    _add_server_wide_budgets(parser)


def _add_server_wide_budgets(parser: argparse.ArgumentParser) -> None:
    """Memory for image decoding and mask answers in flight, shared by all requests."""
    _option(
        parser,
        "--decode-budget-mb",
        _DEFAULTS.decode_budget_mb,
        "MiB of image decoding in flight at once, server-wide (about 4 bytes per pixel each); "
        "further uploads wait",
        type=at_least(1),
    )
    _option(
        parser,
        "--answer-budget-mb",
        _DEFAULTS.answer_budget_mb,
        "MiB of mask answers being built at once, server-wide (2 bytes per mask pixel); further requests wait",
        type=at_least(1),
    )


def _add_text_and_logging_options(parser: argparse.ArgumentParser) -> None:
    """CLIP for text prompts, the log level and plugins."""
    _option(
        parser,
        "--clip-model",
        _DEFAULTS.clip_model,
        "CLIP model of text prompts: a name or a checkpoint path",
    )
    _option(
        parser,
        "--clip-root",
        _DEFAULTS.clip_root,
        "folder of the CLIP weights files (default: ~/.cache/clip)",
    )
    _option(
        parser,
        "--log-level",
        _DEFAULTS.log_level,
        "DEBUG also prints tracebacks",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    parser.add_argument(
        "--no-plugins",
        action="store_true",
        default=_env("SAM_NO_PLUGINS", "") not in ("", "0"),
        help="do not mount blueprints from the sam_server.blueprints entry points [SAM_NO_PLUGINS=1]",
    )


def config_from_args(argv: Sequence[str] | None = None) -> ServerConfig:
    """Parse flags and ``SAM_*`` variables into a :class:`ServerConfig`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = args.model if args.model is not None else _env("SAM_MODEL", _DEFAULTS.model).split(",")
    models = [name.strip() for name in given if name.strip()]
    if args.model is not None and len(models) != len(args.model):
        parser.error("--model needs a model name or path, got an empty one")
    if not models:
        parser.error("SAM_MODEL names no model: give --model NAME_OR_PATH or a comma-separated SAM_MODEL")
    same = [path_or_name(name) for name in models]
    repeated = sorted({name for name, key in zip(models, same, strict=True) if same.count(key) > 1})
    if repeated:
        parser.error(
            f"each model may be served once; {', '.join(repeated)} name the same model more than once"
        )
    return ServerConfig(
        model=models[0],
        extra_models=tuple(models[1:]),
        device=args.device,
        dtype=args.dtype,
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("SAM_TOKEN") or None,
        cache_mb=args.cache_mb,
        cache_dtype=args.cache_dtype,
        image_store_mb=args.image_store_mb,
        logits_store_mb=args.logits_store_mb,
        automask_store_mb=args.automask_store_mb,
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
    from backend.hub import MODELS, resolve_weights

    for model in config.models:
        hub_repo = MODELS[model].hub_repo if isinstance(model, str) and model in MODELS else None
        if isinstance(model, str) and hub_repo is None and not Path(model).expanduser().is_dir():
            resolve_weights(model)  # Hub models (SAM 3) and folders are checked when they load


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
