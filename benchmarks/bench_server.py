"""Model-server overhead and micro-batching throughput.

1. Point-prompt latency with a cached embedding: the in-process predictor
   (``SamPredictor.predict``) vs the same prompt over HTTP to a real
   ``sam-server`` (raw ``requests`` POST, and ``SamClient.predict`` which also
   decodes the COCO RLE masks), interleaved so all see the same machine load.
   Target: HTTP adds <= 10 ms at p50.
2. Throughput (requests/s) with 1, 4 and 16 concurrent clients, each on its
   own image, with micro-batching on (``--max-batch 16``) and off
   (``--max-batch 1``): two servers side by side, measured in alternating
   windows. Target: >= 2x at 16 clients. Batching pays where a
   decoder call has a large fixed cost: GPU kernel launches, or on a CPU the
   per-call overhead of a small decoder (the demo model's). For SAM's
   decoder on a CPU one batched call is slower than one call per request,
   which is why ``--max-batch 0`` (auto) batches on a CPU only as many
   prompts as fit a cache-sized call (1 at SAM's sizes, 16 for the demo).
3. What batching can share, in-process: the decoder's time per prompt in a
   call of 1 and of 16 prompts, next to the per-request work that no batch
   shares (upscaling three masks to 640x480, threshold, stability). With
   HTTP left out, ``(decoder@1 + rest) / (decoder@16 + rest)`` bounds what
   batching can gain on this device.

Weights: ``backend/hub/packaged_weights/sam_demo.pt`` when present, else a random network
whose prompt encoder and mask decoder have ViT-B's sizes (the decoder is what
a cached-embedding request costs) with a one-block image encoder so that
filling the cache is quick; ``--weights tiny`` isolates the serving overhead.
Run::

    python benchmarks/bench_server.py [--seconds 10] [--requests 100] [--device auto] [--weights auto|vit_b_decoder|tiny]
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

DEMO = REPO / "backend" / "hub" / "packaged_weights" / "sam_demo.pt"


def model_path(tmp: Path, weights: str) -> str:
    """The demo checkpoint, or a random checkpoint written to ``tmp``.

    ``weights``: ``auto`` (demo if present, else random with ViT-B's decoder
    sizes and a one-block encoder), ``vit_b_decoder`` or ``tiny`` (a 32-wide
    network: the decoder costs almost nothing, so latency differences show
    the serving overhead alone).
    """
    if weights == "auto" and DEMO.is_file():
        return str(DEMO)
    import torch

    from backend.hub import save_checkpoint
    from backend.model import SamConfig, ViTConfig, build_sam

    if weights == "tiny":
        vit = ViTConfig(embed_dim=32, depth=1, num_heads=2, global_attn_indexes=(0,), window_size=4)
        config = SamConfig(
            vit=vit,
            image_size=256,
            prompt_embed_dim=32,
            mask_in_chans=4,
            decoder_mlp_dim=64,
            decoder_num_heads=2,
            iou_head_hidden_dim=32,
        )
    else:
        config = SamConfig(
            vit=ViTConfig(embed_dim=64, depth=1, num_heads=2, global_attn_indexes=(0,), window_size=14)
        )
    torch.manual_seed(0)
    path = tmp / f"bench_{weights}.pt"
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


def latencies(path: str, device: str, server: ServerProcess, n: int) -> dict[str, list[float]]:
    """Interleaved samples (seconds), so that all three see the same machine load.

    Per iteration: the in-process predictor, a raw ``requests`` POST, and
    ``SamClient.predict`` (which also decodes the RLE masks), on the same
    cached image and the same point.
    """
    from backend.hub import load_model
    from backend.inference.predictor import SamPredictor

    predictor = SamPredictor(load_model(path, device=device))
    pixels = picture(0)
    predictor.set_image(pixels)
    client = SamClient(server.url, timeout=300)
    image_id = client.add_image(pixels).image_id
    session = requests.Session()
    samples: dict[str, list[float]] = {"local": [], "http": [], "server": [], "client": []}
    for i in range(n + 3):
        point = [[200.0 + i % 7, 150.0 + i % 5]]
        start = time.perf_counter()
        predictor.predict(point_coords=np.array(point), point_labels=np.array([1]))
        local = time.perf_counter() - start
        start = time.perf_counter()
        answer = session.post(
            f"{server.url}/v1/predict",
            json={"image_id": image_id, "points": point, "labels": [1]},
            timeout=300,
        ).json()
        http = time.perf_counter() - start
        start = time.perf_counter()
        client.predict(image_id, points=point, labels=[1])
        decoded = time.perf_counter() - start
        if i >= 3:  # warm-up
            samples["local"].append(local)
            samples["http"].append(http)
            samples["server"].append(answer["timing_ms"] / 1000.0)
            samples["client"].append(decoded)
    return samples


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


def start_server(path: str, device: str, threads: int, *extra: str) -> ServerProcess:
    """A real sam-server on a free port, ``threads`` torch intra-op threads."""
    server = ServerProcess(
        "--model",
        path,
        "--device",
        device,
        "--no-plugins",
        "--threads",
        "32",
        *extra,
        env={"SAM_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
    )
    return server.start(timeout=300)


def report_latency(path: str, device: str, n: int, threads: int) -> None:
    server = start_server(path, device, threads)
    try:
        lat = latencies(path, _device(device), server, n)
    finally:
        server.stop()
    print("\npoint prompt, cached embedding (ms)      p50      p99")
    rows = (
        ("local", "in-process SamPredictor.predict"),
        ("http", "HTTP POST /v1/predict (raw)"),
        ("server", "  of which server-side timing_ms"),
        ("client", "SamClient.predict (+RLE decode)"),
    )
    for key, label in rows:
        p50, p99 = percentiles(lat[key])
        print(f"  {label:<34}{p50:8.1f} {p99:8.1f}")
    raw = np.median(np.subtract(lat["http"], lat["local"])) * 1000
    dec = np.median(np.subtract(lat["client"], lat["local"])) * 1000
    print(
        f"  HTTP overhead, median of paired differences: {raw:+.1f} ms raw, {dec:+.1f} ms with SamClient "
        "(target <= 10 ms)"
    )


def report_shareable(path: str, device: str, repeats: int = 200) -> None:
    """Median in-process times (ms per prompt) of the shareable and the per-request work.

    The 16 prompts go to the decoder in one call, whatever the predictor's own
    per-call rule (``prompts_per_decoder_call``: one at a time for ``vit_b`` in
    fp32 on a CPU) would do: the figure is what sharing a call would gain.
    """
    import torch

    from backend.hub import load_model
    from backend.inference.mask_ops import MASK_THRESHOLD, stability_score
    from backend.inference.predictor import SamPredictor

    predictor = SamPredictor(load_model(path, device=device))
    predictor.prompts_per_decoder_call = lambda: 1 << 30
    predictor.set_image(picture(0))

    def median_ms(fn, count: int) -> float:
        for _ in range(5):
            fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return float(np.median(samples)) * 1000.0 / count

    def per_request(low_res: torch.Tensor) -> None:
        logits = predictor.upscale_logits(low_res.float())
        (logits > MASK_THRESHOLD).cpu().numpy()
        stability_score(logits)

    decoder: dict[int, float] = {}
    with torch.inference_mode():
        for count in (1, 16):
            coords = torch.tensor([[[200.0, 150.0]]], device=predictor.device).expand(count, 1, 2)
            labels = torch.ones((count, 1), dtype=torch.int64, device=predictor.device)
            decoder[count] = median_ms(lambda c=coords, k=labels: predictor.predict_torch(c, k), count)
        one, _ = predictor.predict_torch(coords[:1], labels[:1])
        rest = median_ms(lambda: per_request(one), 1)
    bound = (decoder[1] + rest) / (decoder[16] + rest)
    print("\nmodel work of one point request, in-process (ms per prompt)")
    print(f"  decoder, 1 prompt per call         {decoder[1]:8.2f}")
    print(f"  decoder, 16 prompts per call       {decoder[16]:8.2f}")
    print(f"  upscale + threshold + stability    {rest:8.2f}   (per request, never shared)")
    print(f"  most that batching can gain, HTTP left out: {bound:.2f}x")


def report_throughput(
    path: str, device: str, levels: list[int], seconds: float, threads: int, rounds: int = 3
) -> None:
    """Both servers run side by side; each concurrency level alternates short windows
    on one and the other (``rounds`` each, ``seconds`` in all per server), so that
    drifts in machine speed hit both alike."""
    modes = {"batching on": ["--max-batch", "16"], "batching off": ["--max-batch", "1"]}
    rps: dict[tuple[str, int], float] = {}
    servers: dict[str, ServerProcess] = {}
    try:
        for mode, extra in modes.items():
            servers[mode] = start_server(path, device, threads, *extra)
        image_ids: dict[str, list[str]] = {}
        for mode, server in servers.items():
            client = SamClient(server.url, timeout=300)
            image_ids[mode] = [client.add_image(picture(s)).image_id for s in range(max(levels))]
            throughput(server, 2, 1.0, image_ids[mode])  # warm-up
        for clients in levels:
            for mode in modes:
                rps[(mode, clients)] = 0.0
            for _ in range(rounds):
                for mode, server in servers.items():
                    window = throughput(server, clients, seconds / rounds, image_ids[mode])
                    rps[(mode, clients)] += window / rounds
    finally:
        for server in servers.values():
            server.stop()
    print("\nthroughput (requests/s)   " + "".join(f"{c:>8} cl" for c in levels))
    for mode in modes:
        print(f"  {mode:<22}" + "".join(f"{rps[(mode, c)]:11.1f}" for c in levels))
    ratios = "".join(f"{rps[('batching on', c)] / rps[('batching off', c)]:10.2f}x" for c in levels)
    print(f"  ratio on/off          {ratios}   (target >= 2x at 16 clients)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
    parser.add_argument("--requests", type=int, default=100, help="latency samples")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    parser.add_argument("--only", choices=("latency", "throughput", "shareable"), help="run one part only")
    parser.add_argument(
        "--weights", choices=("auto", "vit_b_decoder", "tiny"), default="auto", help="see model_path()"
    )
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="intra-op threads, here and in the server"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = model_path(Path(tmp), args.weights)
        weights = path if path == str(DEMO) else f"random ({args.weights})"
        print(f"weights: {weights}; image 640x480; device {_device(args.device)}; CPU cores {os.cpu_count()}")
        if args.only in (None, "latency"):
            report_latency(path, args.device, args.requests, args.torch_threads)
        if args.only in (None, "throughput"):
            report_throughput(
                path, args.device, [int(c) for c in args.clients.split(",")], args.seconds, args.torch_threads
            )
        if args.only in (None, "shareable"):
            report_shareable(path, _device(args.device))


def _device(name: str) -> str:
    from backend.hub import pick_device

    return pick_device(name)


if __name__ == "__main__":
    main()
