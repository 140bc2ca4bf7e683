"""``sam-server``: serve a SAM model over HTTP with gunicorn.

Every flag has an environment variable (the flag wins)::

    sam-server --model vit_b --port 9090          # or SAM_MODEL=vit_b SAM_PORT=9090 sam-server
    SAM_TOKEN=secret sam-server --host 0.0.0.0    # prefer the variable: flags show up in `ps`

One gunicorn worker process with many threads: the model is loaded in that
worker (after the fork, on the service's GPU thread) and every forward pass
runs on that one thread, so the HTTP threads never compete for the GPU.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any

from backend.serving.config import ServerConfig

_DEFAULTS = ServerConfig()


def _env(name: str, default: Any) -> Any:
    value = os.environ.get(name)
    return default if value in (None, "") else value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (defaults come from ``SAM_*`` variables)."""
    p = argparse.ArgumentParser(
        prog="sam-server", description="Segment Anything model server (HTTP API under /v1)."
    )
    p.add_argument(
        "--model",
        default=_env("SAM_MODEL", _DEFAULTS.model),
        help="vit_h, vit_l, vit_b, vit_t, demo, or a checkpoint path [SAM_MODEL, default demo]",
    )
    p.add_argument(
        "--device",
        default=_env("SAM_DEVICE", _DEFAULTS.device),
        help="auto (cuda, mps, cpu), cuda, cuda:1, mps, cpu [SAM_DEVICE]",
    )
    p.add_argument(
        "--dtype",
        default=_env("SAM_DTYPE", _DEFAULTS.dtype),
        choices=("float32", "float16", "bfloat16"),
        help="model weights dtype [SAM_DTYPE]",
    )
    p.add_argument(
        "--host", default=_env("SAM_HOST", _DEFAULTS.host), help="interface [SAM_HOST, default 127.0.0.1]"
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(_env("SAM_PORT", _DEFAULTS.port)),
        help="TCP port [SAM_PORT, default 9090]",
    )
    p.add_argument(
        "--token",
        default=_env("SAM_TOKEN", None),
        help="require 'Authorization: Bearer TOKEN' on every route but /health [SAM_TOKEN]",
    )
    p.add_argument(
        "--cache-mb",
        type=int,
        default=int(_env("SAM_CACHE_MB", _DEFAULTS.cache_mb)),
        help="embedding cache budget in MiB [SAM_CACHE_MB]",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=int(_env("SAM_MAX_PIXELS", _DEFAULTS.max_pixels)),
        help="largest accepted image in pixels [SAM_MAX_PIXELS]",
    )
    p.add_argument(
        "--max-body-mb",
        type=int,
        default=int(_env("SAM_MAX_BODY_MB", _DEFAULTS.max_body_mb)),
        help="largest request body in MiB [SAM_MAX_BODY_MB]",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=int(_env("SAM_MAX_BATCH", _DEFAULTS.max_batch)),
        help="prompts per batched decoder call; 1 disables micro-batching; 0 = auto: 16 on CUDA, 1 elsewhere [SAM_MAX_BATCH]",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=float(_env("SAM_BATCH_WAIT_MS", _DEFAULTS.batch_wait_ms)),
        help="longest wait for more decode requests [SAM_BATCH_WAIT_MS]",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=int(_env("SAM_THREADS", _DEFAULTS.threads)),
        help="HTTP threads [SAM_THREADS]",
    )
    p.add_argument(
        "--log-level",
        default=_env("SAM_LOG_LEVEL", _DEFAULTS.log_level).upper(),
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="[SAM_LOG_LEVEL]",
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
        token=args.token or None,
        cache_mb=args.cache_mb,
        max_pixels=args.max_pixels,
        max_body_mb=args.max_body_mb,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        threads=args.threads,
        log_level=args.log_level,
        plugins=not args.no_plugins,
    )


def bind_address(host: str, port: int) -> str:
    """gunicorn ``bind`` value (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def serve(config: ServerConfig) -> None:
    """Run gunicorn in the foreground until SIGINT / SIGTERM."""
    from gunicorn.app.base import BaseApplication

    class SamServerApplication(BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": bind_address(config.host, config.port),
                "workers": 1,
                "worker_class": "gthread",
                "threads": config.threads,
                "timeout": 300,
                "graceful_timeout": 10,
                "loglevel": config.log_level.lower(),
                "preload_app": False,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from backend.serving.app import create_app

            return create_app(config)

    SamServerApplication().run()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``sam-server``."""
    config = config_from_args(argv)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).info(
        "sam-server: model %s on %s, http://%s",
        config.model,
        config.device,
        bind_address(config.host, config.port),
    )
    serve(config)


if __name__ == "__main__":
    main()
