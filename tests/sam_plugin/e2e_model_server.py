"""Model server with the Label Studio plugin mounted, for the end-to-end test.

Run as ``python tests/sam_plugin/e2e_model_server.py --port P [--model demo] [--model NAME=FOLDER]``.
It serves the real ``sam-server`` app (``backend.serving.app.create_app``) on
CPU; the plugin is mounted under ``/ls`` by the ``sam_server.blueprints``
entry point, or here when the package is not installed (a source checkout
has no entry-point metadata). ``--model tiny-random`` builds a small
randomly initialised SAM (seed 0) so the test runs where no weights exist.
``--model`` may be repeated (the first is the default); ``NAME=PATH`` serves
a checkpoint file or folder (e.g. a tiny SAM 3) under ``NAME``. The body of
every ``POST /ls/predict`` is logged on one line starting with
:data:`PREDICT_LOG_PREFIX` (what Label Studio forwarded).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def tiny_random_model() -> Any:
    """A small random SAM (ViT with 2 blocks, 256-pixel input)."""
    import torch

    from backend.model.config import SamConfig, ViTConfig
    from backend.model.sam import build_sam

    torch.manual_seed(0)
    config = SamConfig(
        vit=ViTConfig(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4),
        image_size=256,
    )
    return build_sam(config).eval()


def model_spec(given: str) -> Any:
    """``tiny-random`` -> a built network; ``NAME=PATH`` -> ``(NAME, PATH)``; else the name or path itself."""
    if given == "tiny-random":
        return tiny_random_model()
    name, sep, path = given.partition("=")
    return (name, path) if sep else given


PREDICT_LOG_PREFIX = "e2e POST /ls/predict body: "
"""Starts the log line with the JSON body Label Studio sent to the plugin's ``/predict``."""


def log_predict_bodies(app: Any) -> None:
    """Log the body of every ``POST /ls/predict`` (what Label Studio forwards from the page), one line each."""
    from flask import request

    logger = logging.getLogger("e2e")

    @app.before_request
    def _log_predict() -> None:
        if request.method == "POST" and request.path == "/ls/predict":
            body = request.get_data(cache=True, as_text=True)[:20_000]
            # a JSON body has line breaks only between tokens: one line, still JSON
            logger.info("%s%s", PREDICT_LOG_PREFIX, body.replace("\r", " ").replace("\n", " "))


def main() -> None:
    from werkzeug.serving import make_server

    from backend.serving.app import create_app
    from backend.serving.config import ServerConfig
    from backend.serving.local_client import LocalSamClient
    from sam_plugin.blueprint import create_blueprint

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", help="repeat for several models; NAME=PATH names a path")
    args = parser.parse_args()
    logging.basicConfig(level="INFO")
    first, *extra = [model_spec(given) for given in args.model or ["demo"]]
    config = ServerConfig(
        model=first, extra_models=tuple(extra), device="cpu", host="127.0.0.1", port=args.port
    )
    app = create_app(config)
    if "labelstudio" not in app.blueprints:
        client = LocalSamClient.from_service(app.extensions["sam_service"])
        app.register_blueprint(create_blueprint(client))
    log_predict_bodies(app)
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    # serve_forever() runs in this thread, so a handler calling shutdown() would wait forever
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
