"""The HTTP front end: what it costs per request, and what slow clients do to it.

Two servers of the same app and model side by side on 127.0.0.1 (one torch
thread each):
``sam-server`` (waitress with deadlines, :mod:`backend.serving.front_end`)
and the same Flask app under gunicorn's ``gthread`` worker (1 worker, 16
threads), which ``sam-server`` used before. Requests alternate between them,
so both see the same machine load:

1. quiet: ``GET /health`` and ``POST /v1/predict`` (one point, cached
   embedding), one client, p50 / p99;
2. hostile: the same next to 128 slow or idle sockets per server (trickled
   headers, a trickled body, nothing sent; ``tests/reliability/slow_clients.py``),
   with a 5 s client timeout; errors are counted.

Run::

    python benchmarks/bench_front_end.py [--requests 200] [--weights tiny|auto]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_server import model_path, picture  # noqa: E402
from tests.reliability.slow_clients import SlowClients  # noqa: E402
from tests.serving.server_process import ServerProcess, free_port  # noqa: E402

TIMEOUT_S = 5.0
ONE_TORCH_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SAM_LOG_LEVEL": "WARNING"}
"""Two servers share the machine: one torch thread each, as in bench_server.py."""
GIVE_UP_AFTER = 5
"""Errors after which a server's route is counted as failing for the rest of a phase."""


def serve_with_gunicorn(model: str, port: int) -> None:
    """Run the app under gunicorn gthread (1 worker, 16 threads) until killed."""
    from gunicorn.app.base import BaseApplication

    from backend.serving.app import create_app
    from backend.serving.config import ServerConfig

    class Reference(BaseApplication):
        def load_config(self) -> None:
            settings = {"bind": f"127.0.0.1:{port}", "workers": 1, "worker_class": "gthread", "threads": 16}
            for key, value in {**settings, "loglevel": "warning", "control_socket_disable": True}.items():
                self.cfg.set(key, value)

        def load(self):  # noqa: ANN202 - gunicorn's hook
            return create_app(ServerConfig(model=model, device="cpu", plugins=False))

    Reference().run()


def start_gunicorn(model: str) -> tuple[subprocess.Popen[bytes], str]:
    """The reference server in a subprocess; returns it and its URL once ``/ready`` answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--gunicorn-serve", model, str(port)],
        env={**os.environ, "PYTHONPATH": str(REPO), **ONE_TORCH_THREAD},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                return process, url
        except requests.RequestException:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("gunicorn reference server did not start")


def upload(urls: dict[str, str]) -> dict[str, str]:
    """The benchmark picture on each server; its ``image_id`` per server."""
    from backend.formats.images import encode_png

    data = encode_png(picture(0))
    return {
        name: requests.post(f"{url}/v1/images", data=data, timeout=60).json()["image_id"]
        for name, url in urls.items()
    }


def measure(urls: dict[str, str], image_ids: dict[str, str], n: int) -> dict[str, dict[str, list[float]]]:
    """Alternating samples (seconds; ``nan`` for an error) per server and route."""
    sessions = {name: requests.Session() for name in urls}
    samples: dict[str, dict[str, list[float]]] = {name: {"health": [], "predict": []} for name in urls}
    names = list(urls)
    for i in range(n):
        for name in names if i % 2 == 0 else names[::-1]:  # alternate who goes first
            url = urls[name]
            body = {"image_id": image_ids[name], "points": [[200 + i % 7, 150]], "labels": [1]}
            for route in ("health", "predict"):
                if sum(np.isnan(samples[name][route])) >= GIVE_UP_AFTER:
                    samples[name][route].append(float("nan"))  # stalled: counted, not waited for
                    continue
                start = time.perf_counter()
                try:
                    if route == "health":
                        answer = sessions[name].get(f"{url}/health", timeout=TIMEOUT_S)
                    else:
                        answer = sessions[name].post(f"{url}/v1/predict", json=body, timeout=TIMEOUT_S)
                    ok = answer.status_code == 200
                except requests.RequestException:
                    ok = False
                samples[name][route].append(time.perf_counter() - start if ok else float("nan"))
    return samples


def report(title: str, samples: dict[str, dict[str, list[float]]]) -> None:
    """One markdown table: p50 / p99 in ms and errors, per server and route."""
    print(f"\n{title}\n\n| server | route | p50 ms | p99 ms | errors |\n|---|---|---|---|---|")
    for name, routes in samples.items():
        for route, values in routes.items():
            array = np.asarray(values) * 1000.0
            ok = array[~np.isnan(array)]
            p50, p99 = (np.percentile(ok, 50), np.percentile(ok, 99)) if len(ok) else (np.nan, np.nan)
            print(f"| {name} | {route} | {p50:.1f} | {p99:.1f} | {int(np.isnan(array).sum())}/{len(array)} |")


def paired_cost(samples: dict[str, dict[str, list[float]]]) -> None:
    """Median of the paired differences (first server minus second), per route: the cost per request."""
    first, second = samples.values()
    names = " - ".join(samples)
    for route in first:
        pairs = np.asarray(first[route]) - np.asarray(second[route])
        pairs = pairs[~np.isnan(pairs)] * 1000.0
        print(
            f"{names}, {route}: median paired difference {np.median(pairs):+.2f} ms over {len(pairs)} pairs"
        )


def main() -> None:
    """Parse arguments, start both servers, measure quiet and hostile, print the tables."""
    if len(sys.argv) == 4 and sys.argv[1] == "--gunicorn-serve":
        serve_with_gunicorn(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per route and server and phase")
    parser.add_argument(
        "--weights", default="tiny", choices=("tiny", "auto"), help="tiny: serving cost alone"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = model_path(Path(tmp), args.weights)
        waitress = ServerProcess(
            "--model", model, "--device", "cpu", "--no-plugins", "--threads", "16", env=ONE_TORCH_THREAD
        )
        waitress.start(timeout=120)
        gunicorn, gunicorn_url = start_gunicorn(model)
        urls = {"sam-server (waitress)": waitress.url, "gunicorn gthread": gunicorn_url}
        try:
            image_ids = upload(urls)
            quiet = measure(urls, image_ids, args.requests)
            report("quiet", quiet)
            print()
            paired_cost(quiet)
            ports = [int(url.rsplit(":", 1)[1]) for url in urls.values()]
            with SlowClients(ports[0], duration_s=120), SlowClients(ports[1], duration_s=120):
                time.sleep(1.0)
                report("128 slow or idle sockets per server", measure(urls, image_ids, args.requests))
        finally:
            waitress.stop()
            gunicorn.kill()
            gunicorn.wait(10)


if __name__ == "__main__":
    main()
