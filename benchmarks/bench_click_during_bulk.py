"""Clicks on one model while another model's segment-everything runs, in one ``sam-server``.

A real ``sam-server`` serves the demo model and a SAM 2.1 hiera_t (random
weights, 1024-pixel input). A client starts segment-everything on SAM 2.1
(``--points-per-side`` a side, a fresh 240x320 picture); meanwhile another
clicks on the demo model, one request after the other, until it ends. Then
the same segment-everything runs alone on another fresh picture. Printed per
run: the clicks' count, median and longest wait, and both segment-everything
times.

``--baseline DIR`` runs a checkout of another revision the same way (make one
with ``git worktree add /tmp/base <rev>``), alternating with the working tree
``--rounds`` times, so that both see the same machine::

    python benchmarks/bench_click_during_bulk.py [--baseline /tmp/base] [--rounds 2] [--points-per-side 16]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.serving.server_process import free_port  # noqa: E402

SAM2_FILE = "sam2.1_hiera_t_random.pt"
LAUNCH = "import sys; from backend.serving.cli import main; sys.argv[0] = 'sam-server'; sys.exit(main())"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of another revision to run side by side")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--points-per-side", type=int, default=16)
    return parser.parse_args()


def make_sam2(folder: Path) -> Path:
    """A SAM 2.1 hiera_t with random weights (seed 0) at its 1024-pixel input, in our checkpoint format."""
    import torch

    from backend.hub.checkpoint_files import save_checkpoint
    from backend.model.sam2 import build_sam2, sam2_config

    torch.manual_seed(0)
    config = sam2_config("sam2.1_hiera_t")
    path = folder / SAM2_FILE
    save_checkpoint(path, model_state=build_sam2(config).state_dict(), config=config)
    return path


def start_server(code: Path, sam2: Path, port: int) -> subprocess.Popen[bytes]:
    """``sam-server --model demo --model <sam2>`` from the checkout ``code``, both models loaded."""
    args = ["--model", "demo", "--model", str(sam2), "--port", str(port), "--host", "127.0.0.1"]
    args += ["--no-plugins", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(code)}
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args],
        cwd=code,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            models = requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).json()["models"]
            if all(m["ready"] for m in models):  # /ready answers for the first model alone
                return process
        except (requests.ConnectionError, ValueError, KeyError):  # not listening, or not answering yet
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"sam-server from {code} was not ready within 180 s")


def fresh_picture(seed: int) -> bytes:
    pixels = (np.random.default_rng(seed).random((240, 320, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def measure(url: str, sam2: str, points_per_side: int, seed: int) -> dict[str, Any]:
    """Clicks on the demo model during a SAM 2.1 segment-everything, then the latter alone."""
    uploads = []
    for i in range(2):
        answer = requests.post(
            f"{url}/v1/images", data=fresh_picture(seed + i), params={"model": sam2}, timeout=120
        )
        if not answer.ok:
            raise RuntimeError(f"upload for {sam2}: {answer.status_code} {answer.text}")
        uploads.append(answer.json()["image_id"])
    busy_id, alone_id = uploads
    requests.post(f"{url}/v1/images", data=fresh_picture(seed), timeout=120).raise_for_status()  # demo's too
    bulk = {"image_id": busy_id, "model": sam2, "points_per_side": points_per_side}
    took: dict[str, float] = {}

    failed: list[str] = []

    def segment_everything() -> None:
        start = time.perf_counter()
        answer = requests.post(f"{url}/v1/automask", json=bulk, timeout=600)
        took["during"] = time.perf_counter() - start
        if not answer.ok:
            failed.append(f"{answer.status_code} {answer.text}")

    worker = threading.Thread(target=segment_everything)
    worker.start()
    time.sleep(0.3)
    waits, click = [], {"image_id": busy_id, "points": [[100, 100]], "labels": [1]}
    while worker.is_alive():
        start = time.perf_counter()
        requests.post(f"{url}/v1/predict", json=click, timeout=60).raise_for_status()
        waits.append(time.perf_counter() - start)
    worker.join()
    if failed or not waits:
        raise RuntimeError(
            failed[0]
            if failed
            else "segment-everything ended before the first click: raise --points-per-side"
        )
    start = time.perf_counter()
    requests.post(f"{url}/v1/automask", json={**bulk, "image_id": alone_id}, timeout=600).raise_for_status()
    took["alone"] = time.perf_counter() - start
    return {
        "clicks": len(waits),
        "p50_ms": 1000 * statistics.median(waits),
        "max_ms": 1000 * max(waits),
        **took,
    }


def main() -> None:
    args = parse_args()
    codes = [("baseline", args.baseline)] if args.baseline else []
    codes.append(("working tree", ROOT))
    with tempfile.TemporaryDirectory() as folder:
        sam2 = make_sam2(Path(folder))
        print(
            "code | round | clicks | click p50 ms | longest click ms | segment-everything with clicks s | alone s"
        )
        for round_ in range(args.rounds):
            for name, code in codes:
                port = free_port()
                server = start_server(code, sam2, port)
                try:
                    row = measure(
                        f"http://127.0.0.1:{port}", str(sam2), args.points_per_side, seed=100 * round_
                    )
                finally:
                    server.terminate()
                    server.wait(30)
                print(
                    f"{name} | {round_ + 1} | {row['clicks']} | {row['p50_ms']:.0f} | {row['max_ms']:.0f} | "
                    f"{row['during']:.1f} | {row['alone']:.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
