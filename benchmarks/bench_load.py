"""Load figures: N concurrent clients mixing uploads and point/box prompts against a real ``sam-server``.

Each client thread loops for ``--seconds``: upload one of ``--images``
distinct pictures (``POST /v1/images``; after the first time a cache hit
unless evicted), then three prompts on it (``POST /v1/predict``: a point, a
box, or points + a box), and checks every answer against the in-process
service's answer for that image and prompt (see
``tests/reliability/load_driver.py``). Prints p50 / p99 latency per route,
requests per second, errors, answers that did not match, and the server's
resident memory before and after.

Weights: ``backend/weights/sam_demo.pt`` when present (``--weights auto``),
else the tests' tiny random model (``--weights tiny``), or a checkpoint path.
Run::

    python benchmarks/bench_load.py [--clients 16] [--seconds 20] [--images 30] [--weights auto|tiny|PATH]
                                    [--device auto] [--cache-mb 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.reliability.load_driver import (  # noqa: E402
    expected_masks,
    make_workload,
    process_tree_rss,
    run_load,
)
from tests.serving.server_process import ServerProcess  # noqa: E402

DEMO = REPO / "backend" / "weights" / "sam_demo.pt"


def resolve_weights(choice: str, tmp: Path) -> Path:
    """The checkpoint to serve."""
    if choice == "auto":
        choice = str(DEMO) if DEMO.is_file() else "tiny"
    if choice == "tiny":
        from tests.serving.tiny_model import save_tiny_checkpoint

        return save_tiny_checkpoint(tmp / "tiny.pt")
    path = Path(choice)
    if not path.is_file():
        raise SystemExit(f"no checkpoint at {path}; use --weights auto, tiny or a checkpoint path")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache-mb", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        weights = resolve_weights(args.weights, Path(tmp))
        workload = make_workload(args.images)
        start = time.perf_counter()
        expected = expected_masks(weights, workload)
        print(
            f"weights {weights.name}; reference answers for {len(expected)} (image, prompt) pairs "
            f"in {time.perf_counter() - start:.1f} s"
        )
        server = ServerProcess(
            "--model",
            str(weights),
            "--device",
            args.device,
            "--cache-mb",
            str(args.cache_mb),
            "--threads",
            str(max(args.clients, 8)),
            "--no-plugins",
            "--log-level",
            "WARNING",
        )
        server.start(timeout=300)
        try:
            assert server.process is not None
            rss_before = process_tree_rss(server.process.pid)
            result = run_load(server.url, workload, expected, clients=args.clients, duration_s=args.seconds)
            rss_after = process_tree_rss(server.process.pid)
        finally:
            server.stop()

    print(
        f"{args.clients} clients for {args.seconds:g} s on {args.device}: {result.requests} requests "
        f"({result.requests / args.seconds:.1f}/s), {result.checked} answers checked"
    )
    for kind in ("images", "predict"):
        if result.latencies_ms[kind]:
            p50, p99 = result.percentiles(kind)
            print(
                f"  POST /v1/{kind:<8} n={len(result.latencies_ms[kind]):5d}  p50 {p50:8.1f} ms  p99 {p99:8.1f} ms"
            )
    print(f"  errors {len(result.errors)}, mismatched answers {len(result.mismatches)}")
    for line in (result.errors + result.mismatches)[:10]:
        print("   ", line)
    print(
        f"  server RSS {rss_before / 2**20:.0f} MiB -> {rss_after / 2**20:.0f} MiB (cache budget {args.cache_mb} MiB)"
    )


if __name__ == "__main__":
    main()
