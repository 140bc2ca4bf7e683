"""Load figures: N concurrent clients mixing uploads and point/box prompts against a real ``sam-server``.

Each client thread loops for ``--seconds``: upload one of ``--images``
distinct pictures (``POST /v1/images``; after the first time a cache hit
unless evicted), then three prompts on it (``POST /v1/predict``: a point, a
box, or points + a box), and checks every answer against the in-process
service's answer for that image and prompt (see
``tests/reliability/load_driver.py``). Prints p50 / p99 latency per route,
requests per second, errors, answers that did not match, and the server's
resident memory before and after.

``--hostile`` uploads every picture once and warms up (half ``--seconds``,
unmeasured), then runs the same clients on one server alone and next to
hostile load, in ``--rounds`` alternating windows so that both see the same
machine load, and reports them side by side. The hostile load
(``benchmarks/hostile_load.py``): ``--slow-sockets`` connections that trickle
headers or a body or send nothing (held off by the front end), and
``--flood-clients`` threads sending the largest segment-everything requests
the server allows, half the widest grid (90 points a side), half the deepest
crops (9 a side, 3 crop layers: 85 encodings), all thresholds 0, each
abandoned after 5 s, ``Retry-After`` ignored. Target: predict p99 under hostile load <= 3x the p99
without it, and no errors for the interactive clients.

Weights: ``backend/hub/packaged_weights/sam_demo.pt`` when present (``--weights auto``),
else the tests' tiny random model (``--weights tiny``), or a checkpoint path.
Run::

    python benchmarks/bench_load.py [--clients 16] [--seconds 20] [--images 30] [--weights auto|tiny|PATH]
                                    [--device auto] [--cache-mb 64]
                                    [--hostile [--slow-sockets 128] [--flood-clients 8] [--rounds 2]]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hostile_load import AutomaskFlood, SlowSockets  # noqa: E402
from tests.reliability.load_driver import (  # noqa: E402
    LoadResult,
    expected_masks,
    make_workload,
    process_tree_rss,
    run_load,
)
from tests.serving.server_process import ServerProcess  # noqa: E402

DEMO = REPO / "backend" / "hub" / "packaged_weights" / "sam_demo.pt"


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


LARGEST_ALLOWED = (
    {"points_per_side": 90, "crop_n_layers": 0},  # 8100 prompts: the widest grid under the default cap
    {"points_per_side": 9, "crop_n_layers": 3},  # 85 crops x 81 = 6885 prompts: the most encodings
)
"""The largest segment-everything requests the default ``--max-automask-points`` (8192) allows."""
NO_FILTER = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="duration of the run (--hostile: of each kind of run)"
    )
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache-mb", type=int, default=64)
    parser.add_argument("--hostile", action="store_true", help="also measure next to hostile load")
    parser.add_argument("--slow-sockets", type=int, default=128, help="slow or idle connections (--hostile)")
    parser.add_argument(
        "--flood-clients", type=int, default=8, help="segment-everything flooders (--hostile)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternating windows, alone and hostile, over --seconds (--hostile)",
    )
    return parser.parse_args()


def print_routes(label: str, result: LoadResult, seconds: float) -> None:
    """One block of per-route latencies for a run."""
    print(
        f"{label}: {result.requests} requests ({result.requests / seconds:.1f}/s), {result.checked} answers checked"
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


def merge(into: LoadResult, more: LoadResult) -> None:
    """Add the requests of ``more`` to ``into``."""
    for kind, values in more.latencies_ms.items():
        into.latencies_ms[kind].extend(values)
    into.errors.extend(more.errors)
    into.mismatches.extend(more.mismatches)
    into.checked += more.checked


@contextmanager
def hostile_load(server: ServerProcess, args: argparse.Namespace, image_id: str) -> Iterator[HostileLoad]:
    """Slow sockets and two segment-everything floods (widest grid, deepest crops) while the block runs."""
    floods = [
        AutomaskFlood(
            server.url,
            image_id,
            {**LARGEST_ALLOWED[k], **NO_FILTER},
            clients=(args.flood_clients + 1 - k) // 2,
            duration_s=args.seconds + 60,
        )
        for k in range(2)
    ]
    slow = SlowSockets(server.port, args.slow_sockets, duration_s=args.seconds + 60)
    with slow, floods[0], floods[1]:
        time.sleep(2.0)  # the flood fills the bulk queue, the sockets are open
        yield HostileLoad(slow, floods)


@dataclass
class HostileLoad:
    """The running attackers of one window."""

    slow: SlowSockets
    floods: list[AutomaskFlood]


def run_hostile(server: ServerProcess, args: argparse.Namespace, workload: list, expected: dict) -> None:
    """The clients alone and next to hostile load, in alternating windows; one table."""
    from tests.serving.tiny_model import picture, png_bytes

    for item in workload:  # every run starts with every embedding cached
        requests.post(f"{server.url}/v1/images", data=item.png, timeout=300).raise_for_status()
    # and with the kernels of the image and batch sizes prepared (the first calls of a shape are slow)
    run_load(server.url, workload, expected, clients=args.clients, duration_s=args.seconds / 2)
    flood_image = png_bytes(picture(height=480, width=640))
    image_id = requests.post(f"{server.url}/v1/images", data=flood_image, timeout=60).json()["image_id"]
    quiet, hostile = LoadResult(), LoadResult()
    window = args.seconds / args.rounds
    held, reopened, outcomes = args.slow_sockets, 0, Counter[str]()
    for _ in range(args.rounds):
        merge(quiet, run_load(server.url, workload, expected, clients=args.clients, duration_s=window))
        with hostile_load(server, args, image_id) as attack:
            held = min(held, attack.slow.open_now())
            merge(hostile, run_load(server.url, workload, expected, clients=args.clients, duration_s=window))
            held = min(held, attack.slow.open_now())
        reopened += attack.slow.reopened
        outcomes += attack.floods[0].outcomes + attack.floods[1].outcomes
    label = f"{args.clients} interactive clients, {args.rounds} windows of {window:g} s"
    print_routes(f"{label} alone", quiet, args.seconds)
    print_routes(f"{label} next to hostile load", hostile, args.seconds)
    print(
        f"hostile load: {args.slow_sockets} slow sockets (at least {held} open; {reopened} reopened after "
        f"the server closed them); {args.flood_clients} segment-everything flooders: {dict(sorted(outcomes.items()))}"
    )
    (q50, q99), (h50, h99) = quiet.percentiles("predict"), hostile.percentiles("predict")
    errors = len(hostile.errors) + len(hostile.mismatches)
    print()
    print("POST /v1/predict            p50 ms    p99 ms   errors")
    print(
        f"  alone                   {q50:8.1f}  {q99:8.1f}   {len(quiet.errors) + len(quiet.mismatches):6d}"
    )
    print(f"  next to hostile load    {h50:8.1f}  {h99:8.1f}   {errors:6d}")
    verdict = "met" if h99 <= 3 * q99 and errors == 0 else "NOT met"
    print(f"  p99 ratio {h99 / q99:.2f}x (target <= 3x, 0 errors): {verdict}")


def main() -> None:
    args = parse_args()
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
            "ERROR" if args.hostile else "WARNING",
        )
        server.start(timeout=300)
        try:
            assert server.process is not None
            rss_before = process_tree_rss(server.process.pid)
            if args.hostile:
                run_hostile(server, args, workload, expected)
            else:
                result = run_load(
                    server.url, workload, expected, clients=args.clients, duration_s=args.seconds
                )
                print_routes(
                    f"{args.clients} clients for {args.seconds:g} s on {args.device}", result, args.seconds
                )
            rss_after = process_tree_rss(server.process.pid)
        finally:
            server.stop()
    print(
        f"  server RSS {rss_before / 2**20:.0f} MiB -> {rss_after / 2**20:.0f} MiB (cache budget {args.cache_mb} MiB)"
    )


if __name__ == "__main__":
    main()
