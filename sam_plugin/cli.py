"""``sam-plugin``: run the Label Studio plugin alone, or pre-compute embeddings.

Serve (forwarding to a model server elsewhere)::

    sam-plugin --model-server http://gpu-box:9090 [--token T] --host 127.0.0.1 --port 9091

The ML backend URL to paste in Label Studio is then ``http://127.0.0.1:9091``.

Pre-compute the embeddings of every task of a project::

    sam-plugin precompute --project 3 --model-server http://gpu-box:9090 \\
        --label-studio-url http://localhost:8080 --api-key $LABEL_STUDIO_API_KEY
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from backend.api.errors import SamError
from backend.client.base import SamClientBase

if TYPE_CHECKING:
    from flask import Flask

    from sam_plugin.settings import PluginSettings


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-server",
        default=os.environ.get("SAM_SERVER_URL"),
        help="model server URL (env SAM_SERVER_URL)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("SAM_TOKEN"), help="model server token (env SAM_TOKEN)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the model server")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``sam-plugin`` (serve) and ``sam-plugin precompute``."""
    parser = argparse.ArgumentParser(
        prog="sam-plugin", description="Label Studio ML backend for Segment Anything"
    )
    _client_args(parser)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9091, help="port to listen on (default 9091)")
    parser.add_argument("--log-level", default="INFO")
    return parser


def build_precompute_parser() -> argparse.ArgumentParser:
    """Arguments of ``sam-plugin precompute``."""
    parser = argparse.ArgumentParser(
        prog="sam-plugin precompute", description="Compute the embeddings of all task images of a project"
    )
    _client_args(parser)
    parser.add_argument("--project", type=int, required=True, help="Label Studio project id")
    parser.add_argument("--label-studio-url", default=os.environ.get("LABEL_STUDIO_URL"))
    parser.add_argument("--api-key", default=os.environ.get("LABEL_STUDIO_API_KEY"))
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


MAX_BODY_BYTES = 100 * 1024 * 1024
"""Largest accepted request body (413 above), as the model server's default."""


def _make_client(args: argparse.Namespace) -> SamClientBase:
    from backend.client.http_client import SamClient

    if not args.model_server:
        raise SystemExit("sam-plugin: give --model-server URL (or set SAM_SERVER_URL)")
    return SamClient(args.model_server, token=args.token, timeout=args.timeout)


def create_standalone_app(client: SamClientBase, settings: PluginSettings | None = None) -> Flask:
    """A Flask app serving the plugin's routes at its root, forwarding to ``client``."""
    from flask import Flask

    from sam_plugin.blueprint import create_blueprint

    app = Flask("sam_plugin")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.register_blueprint(create_blueprint(client, settings, url_prefix=""))
    return app


def serve(argv: Sequence[str]) -> int:
    """Serve the plugin at the root of ``--host:--port``."""
    from werkzeug.serving import make_server

    from sam_plugin.settings import PluginSettings

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = PluginSettings.from_env()
    except SamError as exc:
        raise SystemExit(f"sam-plugin: {exc}") from None
    app = create_standalone_app(_make_client(args), settings)
    server = make_server(args.host, args.port, app, threaded=True)
    logging.getLogger(__name__).info(
        "Label Studio ML backend URL: http://%s:%d (model server %s)",
        args.host,
        server.port,
        args.model_server,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def run_precompute(argv: Sequence[str]) -> int:
    """Register every task image of a project with the model server."""
    from sam_plugin.image_fetcher import TaskImageFetcher
    from sam_plugin.precompute import precompute, project_tasks
    from sam_plugin.settings import PluginSettings

    args = build_precompute_parser().parse_args(argv)
    logging.basicConfig(level="WARNING")
    if not args.label_studio_url or not args.api_key:
        raise SystemExit(
            "sam-plugin precompute: give --label-studio-url and --api-key (or LABEL_STUDIO_URL / _API_KEY)"
        )
    settings = PluginSettings.from_env()
    fetcher = TaskImageFetcher(
        label_studio_url=args.label_studio_url,
        api_key=args.api_key,
        allowed_hosts=settings.allowed_hosts,
        timeout_s=settings.fetch_timeout_s,
        max_bytes=settings.max_image_bytes,
    )
    try:
        image_key, tasks = project_tasks(args.label_studio_url, args.api_key, args.project)
        report = precompute(
            tasks,
            image_key=image_key,
            client=_make_client(args),
            fetcher=fetcher,
            progress=not args.no_progress,
        )
    except SamError as exc:
        raise SystemExit(f"sam-plugin precompute: {exc}") from None
    print(f"{report.done} embeddings computed, {report.failed} tasks failed")
    return 1 if report.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sam-plugin`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "precompute":
        return run_precompute(args[1:])
    if args and args[0] == "serve":
        args = args[1:]
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
