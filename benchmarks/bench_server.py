"""Model-server overhead and micro-batching throughput.

1. Point-prompt latency with a cached embedding: the in-process predictor
   (``SamPredictor.predict``) vs the same prompt over HTTP to a real
   ``sam-server`` (raw ``requests`` POST, and ``SamClient.predict`` which also
   decodes the COCO RLE masks). Target: HTTP adds <= 10 ms at p50.
2. Throughput (requests/s) with 1, 4 and 16 concurrent clients, each on its
   own image, with micro-batching on (default) and off (``--max-batch 1``).
   Target: >= 2x at 16 clients.

Weights: ``backend/weights/sam_demo.pt`` when present, else a random network
whose prompt encoder and mask decoder have ViT-B's sizes (the decoder is what
a cached-embedding request costs) with a one-block image encoder so that
filling the cache is quick. Run::

    python benchmarks/bench_server.py [--seconds 10] [--requests 100] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.client.http_client import SamClient  # noqa: E402
from tests.serving.server_process import ServerProcess  # noqa: E402

DEMO = REPO / "backend" / "weights" / "sam_demo.pt"


def model_path(tmp: Path) -> str:
    """The demo checkpoint, or a random ViT-B-decoder checkpoint written to ``tmp``."""
    if DEMO.is_file():
        return str(DEMO)
    import torch

    from backend.checkpoints import save_checkpoint
    from backend.model import SamConfig, ViTConfig, build_sam

    config = SamConfig(
        vit=ViTConfig(embed_dim=64, depth=1, num_heads=2, global_attn_indexes=(0,), window_size=14)
    )
    torch.manual_seed(0)
    path = tmp / "vit_b_decoder.pt"
    save_checkpoint(path, model_state=build_sam(config).state_dict(), config=config, meta={"name": "bench"})
    return str(path)


def picture(seed: int, height: int = 480, width: int = 640) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    pixels[height // 4 : height // 2, width // 4 : width // 2] = 240
    return pixels


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples_s) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def in_process_latency(path: str, device: str, n: int) -> list[float]:
    from backend.inference.predictor import SamPredictor
    from backend.registry import load_model

    predictor = SamPredictor(load_model(path, device=device))
    predictor.set_image(picture(0))
    point = np.array([[200.0, 150.0]])
    times = []
    for i in range(n + 5):
        start = time.perf_counter()
        predictor.predict(point_coords=point + i % 7, point_labels=np.array([1]))
        if i >= 5:
            times.append(time.perf_counter() - start)
    return times


def http_latency(server: ServerProcess, n: int) -> tuple[list[float], list[float], list[float]]:
    client = SamClient(server.url, timeout=120)
    image_id = client.add_image(picture(0)).image_id
    session = requests.Session()
    raw, server_side, decoded = [], [], []
    for i in range(n + 5):
        body = {"image_id": image_id, "points": [[200.0 + i % 7, 150.0 + i % 7]], "labels": [1]}
        start = time.perf_counter()
        answer = session.post(f"{server.url}/v1/predict", json=body, timeout=120).json()
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        client.predict(image_id, points=body["points"], labels=[1])
        if i >= 5:
            raw.append(elapsed)
            server_side.append(answer["timing_ms"] / 1000.0)
            decoded.append(time.perf_counter() - start)
    return raw, server_side, decoded


def throughput(server: ServerProcess, clients: int, seconds: float, image_ids: list[str]) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * clients
    errors: list[BaseException] = []

    def run(k: int) -> None:
        session = requests.Session()
        i = 0
        try:
            while time.monotonic() < stop:
                body = {
                    "image_id": image_ids[k % len(image_ids)],
                    "points": [[100.0 + i % 50, 120.0]],
                    "labels": [1],
                }
                response = session.post(f"{server.url}/v1/predict", json=body, timeout=120)
                response.raise_for_status()
                counts[k] += 1
                i += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client errors, first: {errors[0]}")
    return sum(counts) / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
    parser.add_argument("--requests", type=int, default=100, help="latency samples")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clients", default="1,4,16")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        path = model_path(Path(tmp))
        print(
            f"weights: {path if path == str(DEMO) else 'random, ViT-B-sized decoder'}; image 640x480; device {args.device}"
        )
        local = in_process_latency(path, _device(args.device), args.requests)
        rps: dict[tuple[str, int], float] = {}
        for mode, extra in (("batching on", []), ("batching off", ["--max-batch", "1"])):
            server = ServerProcess(
                "--model",
                path,
                "--device",
                args.device,
                "--no-plugins",
                "--threads",
                "32",
                *extra,
                env={"SAM_LOG_LEVEL": "WARNING"},
            )
            server.start(timeout=300)
            try:
                if mode == "batching on":
                    raw, server_side, decoded = http_latency(server, args.requests)
                    lp50, lp99 = percentiles(local)
                    hp50, hp99 = percentiles(raw)
                    sp50, _ = percentiles(server_side)
                    dp50, dp99 = percentiles(decoded)
                    print("\npoint prompt, cached embedding (ms)      p50      p99")
                    print(f"  in-process SamPredictor.predict   {lp50:8.1f} {lp99:8.1f}")
                    print(
                        f"  HTTP POST /v1/predict (raw)       {hp50:8.1f} {hp99:8.1f}   (server-side timing_ms p50 {sp50:.1f})"
                    )
                    print(f"  SamClient.predict (+RLE decode)   {dp50:8.1f} {dp99:8.1f}")
                    print(
                        f"  HTTP overhead at p50: {hp50 - lp50:+.1f} ms raw, {dp50 - lp50:+.1f} ms with SamClient "
                        f"(target <= 10 ms)"
                    )
                client = SamClient(server.url, timeout=300)
                image_ids = [client.add_image(picture(s)).image_id for s in range(max(levels))]
                throughput(server, 2, 1.0, image_ids)  # warm-up
                for clients in levels:
                    rps[(mode, clients)] = throughput(server, clients, args.seconds, image_ids)
            finally:
                server.stop()
        print("\nthroughput (requests/s)   " + "".join(f"{c:>8} cl" for c in levels))
        for mode in ("batching on", "batching off"):
            print(f"  {mode:<22}" + "".join(f"{rps[(mode, c)]:11.1f}" for c in levels))
        print(
            "  ratio on/off          "
            + "".join(f"{rps[('batching on', c)] / rps[('batching off', c)]:10.2f}x" for c in levels)
            + "   (target >= 2x at 16 clients)"
        )
        print(f"\nCPU cores: {os.cpu_count()}; client threads share this machine with the server.")


def _device(name: str) -> str:
    from backend.registry import pick_device

    return pick_device(name)


if __name__ == "__main__":
    main()
