"""Where our SAM 2.1 spends its CPU time: the encoder or one click, by kind of operation.

Runs our network alone (random weights, no reference package needed) under
``torch.profiler`` and sums each operator's own CPU time into a few kinds:
the products of the linear layers and convolutions, the attention products,
softmax, layer norms, activations, copies, other elementwise passes, and
everything else (allocation, views, dispatch). For the two kinds of
products it also gives the multiply-adds they did and so the rate they ran
at, next to this machine's peak product rate in that dtype
(``bench_sam2.peak_multiply_adds_per_second``). This is the evidence behind
"what remains is spread thin" in docs/models.md: how much of a call is
products already near the peak, and how much is passes no product speed-up
can shorten. Not a test: it prints a table.

    python benchmarks/profile_sam2.py [--part encoder|click] [--size t|b+] [--dtype fp32|bf16] [--threads N]

The encoder is profiled for one warm 1024x1024 call, a click (one positive
point, three masks, the 768x1024 image of ``bench_sam2``,
``predict(stability=False)``) for twenty; times are per call. The profiler
adds its own overhead, so the kinds' total exceeds the unprofiled wall time
printed first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.inference.sam2_predictor import Sam2Predictor  # noqa: E402
from backend.model.sam2 import build_sam2  # noqa: E402
from backend.model.sam2.config import sam2_config  # noqa: E402
from benchmarks.bench_sam2 import IMAGE_HW, POINT_XY, peak_multiply_adds_per_second  # noqa: E402
from benchmarks.side_by_side import interleaved  # noqa: E402

KINDS: dict[str, tuple[str, ...]] = {
    "linear layers and convolutions": ("aten::mkldnn_convolution", "aten::addmm", "aten::mm"),
    "attention products": ("aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu"),
    "softmax": ("aten::_softmax",),
    "layer norms": ("aten::native_layer_norm",),
    "activations": ("aten::gelu", "aten::gelu_"),
    "copies": ("aten::copy_", "aten::cat"),
    "other elementwise passes": (
        "aten::add",
        "aten::add_",
        "aten::mul",
        "aten::mul_",
        "aten::maximum",
        "aten::lerp",
        "aten::gather",
        "aten::fill_",
        "aten::clamp",
        "aten::gt",
    ),
}
"""Operator names summed into each kind (self CPU time); the rest is "everything else"."""

PRODUCT_KINDS = ("linear layers and convolutions", "attention products")


def multiply_adds(name: str, shapes: list[list[int]]) -> float:
    """Multiply-adds of one product call, from the input shapes the profiler recorded.

    Convolutions are counted as stride-1 (every convolution on the measured
    paths is a 1x1 token product except the patch embedding, a 7x7 stride-4
    one, which is counted from its 256x256 output); fused attention from its
    query, key and value shapes (two products of ``Tq x Tk x d`` per head).
    """
    if name == "aten::mm":
        (m, k), (_, n) = shapes[0], shapes[1]
        return float(m * k * n)
    if name == "aten::addmm":
        (m, k), (_, n) = shapes[1], shapes[2]
        return float(m * k * n)
    if name == "aten::bmm":
        (b, m, k), (_, _, n) = shapes[0], shapes[1]
        return float(b * m * k * n)
    if name == "aten::_scaled_dot_product_flash_attention_for_cpu":
        q, k = shapes[0], shapes[1]
        return 2.0 * float(np.prod(q[:-1])) * k[-2] * q[-1]
    if name == "aten::mkldnn_convolution":
        x, w = shapes[0], shapes[1]
        out_hw = x[2] * x[3] if w[2] * w[3] == 1 else (x[2] // 4) * (x[3] // 4)
        return float(x[0] * w[0] * w[1] * w[2] * w[3] * out_hw)
    return 0.0


def kind_of(name: str) -> str:
    """The kind an operator's time is summed into."""
    for kind, names in KINDS.items():
        if name in names:
            return kind
    return "everything else"


def profile_by_kind(call: Callable[[], object], calls: int) -> tuple[dict[str, float], dict[str, float]]:
    """Per-call self CPU seconds and multiply-adds of each kind over ``calls`` profiled calls."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(calls):
            call()
    seconds: dict[str, float] = defaultdict(float)
    macs: dict[str, float] = defaultdict(float)
    for event in prof.events():
        kind = kind_of(event.name)
        seconds[kind] += event.self_cpu_time_total / 1e6 / calls
        if kind in PRODUCT_KINDS:
            macs[kind] += multiply_adds(event.name, event.input_shapes) / calls
    return seconds, macs


def wall_seconds(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after two untimed ones."""
    return statistics.median(interleaved({"call": call}, repeats, warmup=2)["call"].wall)


def the_call(part: str, size: str, dtype: torch.dtype) -> Callable[[], object]:
    """Our encoder on a random 1024x1024 input, or one click on a random 768x1024 image."""
    torch.manual_seed(0)
    model = build_sam2(sam2_config(f"sam2.1_hiera_{size}")).to(dtype).eval()
    if part == "encoder":
        x = torch.randn(1, 3, 1024, 1024, dtype=dtype)
        return lambda: model.encode_image(x)
    predictor = Sam2Predictor(model)
    predictor.set_image(np.random.default_rng(0).integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8))
    coords, labels = np.array([POINT_XY]), np.array([1])
    return lambda: predictor.predict(
        point_coords=coords, point_labels=labels, multimask_output=True, stability=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("encoder", "click"), default="encoder")
    parser.add_argument("--size", choices=("t", "b+"), default="t")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    scale, unit = (1.0, "s") if args.part == "encoder" else (1e3, "ms")
    with torch.inference_mode():
        call = the_call(args.part, args.size, dtype)
        wall = wall_seconds(call, 3 if args.part == "encoder" else 30)
        seconds, macs = profile_by_kind(call, 1 if args.part == "encoder" else 20)
    peak = peak_multiply_adds_per_second(dtype)
    total = sum(seconds.values())
    print(
        f"ours, sam2.1_hiera_{args.size} {args.part}, {args.dtype}, {torch.get_num_threads()} threads: "
        f"{wall * scale:.2f} {unit} a call unprofiled, {total * scale:.2f} {unit} of operators profiled"
    )
    print(f"  peak product rate of this machine in {args.dtype}: {peak / 1e9:.0f} G multiply-adds/s")
    for kind in (*KINDS, "everything else"):
        line = f"  {kind:32s} {seconds[kind] * scale:8.2f} {unit}  {100 * seconds[kind] / total:5.1f}%"
        if kind in PRODUCT_KINDS and seconds[kind] > 0:
            rate = macs[kind] / seconds[kind]
            line += f"  {macs[kind] / 1e9:7.2f} G multiply-adds at {rate / 1e9:4.0f} G/s ({100 * rate / peak:.0f}% of peak)"
        print(line)
    at_peak = sum(macs.values()) / peak
    rest = total - sum(seconds[kind] for kind in PRODUCT_KINDS)
    print(
        f"  with every product at the peak rate and the rest unchanged: "
        f"{(at_peak + rest) * scale:.2f} {unit} ({at_peak * scale:.2f} of products + {rest * scale:.2f} of the rest)"
    )


if __name__ == "__main__":
    main()
