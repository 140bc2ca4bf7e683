"""SAM 2.1: ours vs Meta's ``sam2`` (1.1.0), side by side, one process, the same random weights.

Meta's network is built from its own ``sam2.1_hiera_{t,b+}.yaml`` with random
parameters; ours loads its state dict (the video-memory keys skipped).
Measured, median over repeats, ours and Meta's alternating so both see the
same machine load:

* the image encoder at 1024x1024 (what ``set_image`` runs: trunk, neck, the
  decoder's ``conv_s0`` / ``conv_s1``, ``no_mem_embed``), hiera_t and hiera_b+,
  fp32 and bf16 (both networks converted with ``.to(torch.bfloat16)``);
* prompt -> masks for one positive point on a 768x1024 (HxW) image, three
  masks: ``Sam2Predictor.predict`` vs ``SAM2ImagePredictor.predict`` (prompt
  encoder, mask decoder, resize to the image, threshold; the features are set
  once, outside the timing). Ours is timed as called by default (also
  computing stability scores, which Meta's predictor does not) and with
  ``stability=False`` (the same outputs as Meta's);
* segment-everything on hiera_t without the encoder (both given the same
  features): ``AutomaskGenerator`` with ``Sam2Predictor`` vs
  ``SAM2AutomaticMaskGenerator``, 256 points (16 a side) on the 768x1024
  image, SAM 2's other defaults, with the IoU and stability filters lowered
  (``--automask-thresholds``) so that masks are also upscaled, scored and
  encoded: alternating whole runs, with the record counts and whether both
  generators returned the same records;
* peak memory of one encoder call above the loaded model (``VmHWM`` after
  resetting it, each in a fresh process, with glibc returning freed blocks at once);
* the arithmetic floor of each encoder: its multiply-adds (counted on Meta's
  network) at this machine's peak matrix-product speed, and so the largest
  speed-up over Meta's fp32 that any implementation could reach here.

Ratios are given for wall time and for process CPU time (the steadier figure
when other processes share the machine). Not a test: it prints a table.

    python benchmarks/bench_sam2.py [--quick] [--threads N] [--models t,b+] [--skip-encoder] [--skip-memory]
                                    [--skip-automask] [--automask-thresholds IOU,STABILITY]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.inference.sam2_predictor import Sam2Predictor  # noqa: E402
from backend.model.sam2 import (  # noqa: E402
    Sam2,
    build_sam2,
    load_sam2_state_dict,
    sam2_config_from_state_dict,
)
from benchmarks.side_by_side import interleaved, row  # noqa: E402

IMAGE_HW = (768, 1024)
POINT_XY = (412.0, 300.0)
SUFFIX = {"t": "t", "b+": "b+"}


def reference_model(size: str, seed: int = 0) -> torch.nn.Module:
    """Meta's SAM 2.1 (``SAM2Base``) with random weights; constant-initialised ones randomised."""
    from sam2.build_sam import build_sam2 as build_meta

    torch.manual_seed(seed)
    model = build_meta(f"configs/sam2.1/sam2.1_hiera_{SUFFIX[size]}.yaml", ckpt_path=None, device="cpu")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "pos_embed" in name or "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def ours_from(reference: torch.nn.Module) -> Sam2:
    state = reference.state_dict()
    ours = build_sam2(sam2_config_from_state_dict(state))
    load_sam2_state_dict(ours, state)
    return ours.eval()


def bench_encoder(size: str, repeats: int) -> None:
    ref = reference_model(size)
    ours = ours_from(ref)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    ref_bf16 = reference_model(size).to(torch.bfloat16)
    ours_bf16 = ours_from(reference_model(size)).to(torch.bfloat16)
    xb = x.to(torch.bfloat16)
    with torch.inference_mode():
        r = ref.forward_image(x)
        o = ours.encode_image(x)
        b = ours_bf16.encode_image(xb)
        embed = r["backbone_fpn"][-1] + ref.no_mem_embed.view(1, -1, 1, 1)
        scale = float(embed.abs().max())
        print(
            f"  (max |ours - Meta| / max |Meta|, image embedding: fp32 {float((o.image_embed - embed).abs().max()) / scale:.1e}, "
            f"ours bf16 {float((b.image_embed.float() - embed).abs().max()) / scale:.1e})"
        )
        times = interleaved(
            {
                "Meta fp32 (forward_image)": lambda: ref.forward_image(x),
                "ours fp32 (encode_image)": lambda: ours.encode_image(x),
                "Meta bf16": lambda: ref_bf16.forward_image(xb),
                "ours bf16": lambda: ours_bf16.encode_image(xb),
            },
            repeats,
            warmup=1,
        )
    names = list(times)
    print(f"hiera_{size} image encoder, 1x3x1024x1024 (speed-up vs Meta fp32; last row vs Meta bf16)")
    print(row(names[0], times[names[0]], None, "s"))
    print(row(names[1], times[names[1]], times[names[0]], "s"))
    print(row(names[2], times[names[2]], times[names[0]], "s"))
    print(row(names[3], times[names[3]], times[names[0]], "s"))
    print(row("ours bf16 vs Meta bf16", times[names[3]], times[names[2]], "s"))
    print_arithmetic_floor(ref, x, statistics.median(times[names[0]].wall))


def multiply_adds(reference: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Multiply-adds of Meta's ``forward_image`` on ``x``: (matrix products and convolutions,
    attention). Products are counted by ``FlopCounterMode``; attention (which it does not
    count on the CPU) from the shapes passed to ``scaled_dot_product_attention``."""
    from torch.utils.flop_counter import FlopCounterMode

    attention = [0.0]
    fused = F.scaled_dot_product_attention

    def counting(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: object, **kwargs: object):
        # q k^T and then (weights) v: two products of Tq x Tk x d per head and batch item.
        attention[0] += 2.0 * q.shape[:-1].numel() * k.shape[-2] * q.shape[-1]
        return fused(q, k, v, *args, **kwargs)

    F.scaled_dot_product_attention = counting  # Meta's Hiera calls it through torch.nn.functional
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            reference.forward_image(x)
    finally:
        F.scaled_dot_product_attention = fused
    return counter.get_total_flops() / 2.0, attention[0]


def peak_multiply_adds_per_second(dtype: torch.dtype) -> float:
    """This machine's fastest matrix products (multiply-adds/s): the best of three runs of a
    4096^3 ``torch.mm`` and of the token products the encoders make (1x1 convolutions on
    4096 channels-last tokens, 768 <-> 3072 channels), whichever is faster."""
    from backend.model.token_products import tokens_times_weights

    a, b = torch.randn(4096, 4096, dtype=dtype), torch.randn(4096, 4096, dtype=dtype)
    x, w = torch.randn(4096, 768, dtype=dtype), torch.randn(3072, 768, dtype=dtype)
    y, v = torch.randn(4096, 3072, dtype=dtype), torch.randn(768, 3072, dtype=dtype)
    products = [
        (4096.0**3, lambda: torch.mm(a, b)),
        (4096.0 * 768 * 3072, lambda: tokens_times_weights(x, w)),
        (4096.0 * 3072 * 768, lambda: tokens_times_weights(y, v)),
    ]
    best = 0.0
    for macs, product in products:
        product()
        for _ in range(3):
            start = time.perf_counter()
            product()
            best = max(best, macs / (time.perf_counter() - start))
    return best


def print_arithmetic_floor(reference: torch.nn.Module, x: torch.Tensor, meta_fp32_s: float) -> None:
    """The time no implementation can beat: the encoder's multiply-adds at the machine's peak
    product speed, with nothing else (norms, activations, copies) costing anything."""
    products, attention = multiply_adds(reference, x)
    total = products + attention
    print(
        f"  arithmetic floor: {total / 1e9:.1f} G multiply-adds ({products / 1e9:.1f} G in products, "
        f"{attention / 1e9:.1f} G in attention)"
    )
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak = peak_multiply_adds_per_second(dtype)
        floor = total / peak
        print(
            f"    {name}: peak {peak / 1e9:.0f} G/s -> floor {floor:.2f} s; "
            f"the most any {name} encoder can be faster than Meta fp32 here: {meta_fp32_s / floor:.2f}x"
        )


def hiera_t_on_an_image() -> tuple[torch.nn.Module, Sam2Predictor, np.ndarray]:
    """Meta's hiera_t, ours with its weights holding a random ``IMAGE_HW`` image, and the image."""
    ref = reference_model("t")
    h, w = IMAGE_HW
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    our_pred = Sam2Predictor(ours_from(ref))
    our_pred.set_image(image)
    return ref, our_pred, image


def give_features(ref_pred, features, hw: tuple[int, int]) -> None:
    """What ``SAM2ImagePredictor.set_image`` stores, from our features (no encoder run)."""
    ref_pred._features = {
        "image_embed": features.image_embed.clone(),
        "high_res_feats": [features.feat_s0.clone(), features.feat_s1.clone()],
    }
    ref_pred._orig_hw = [hw]
    ref_pred._is_image_set = True


def bench_prompt(repeats: int) -> None:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    ref, our_pred, image = hiera_t_on_an_image()
    h, w = IMAGE_HW
    ref_pred = SAM2ImagePredictor(ref)
    give_features(ref_pred, our_pred.embedding, (h, w))

    coords, labels = np.array([POINT_XY]), np.array([1])
    ref_masks, ref_scores, _ = ref_pred.predict(point_coords=coords, point_labels=labels)
    out = our_pred.predict(point_coords=coords, point_labels=labels)
    order = np.argsort(-ref_scores, kind="stable")
    same = int((out.masks[0] != ref_masks[order].astype(bool)).sum())
    print(
        f"  (scores ours {np.round(out.scores[0], 4)} Meta {np.round(ref_scores[order], 4)}; {same} mask pixels differ)"
    )
    with torch.inference_mode():
        times = interleaved(
            {
                "Meta SAM2ImagePredictor.predict": lambda: ref_pred.predict(
                    point_coords=coords, point_labels=labels, multimask_output=True
                ),
                "ours Sam2Predictor.predict": lambda: our_pred.predict(
                    point_coords=coords, point_labels=labels, multimask_output=True
                ),
                "ours predict(stability=False), Meta's outputs": lambda: our_pred.predict(
                    point_coords=coords, point_labels=labels, multimask_output=True, stability=False
                ),
            },
            repeats,
            warmup=3,
        )
    names = list(times)
    print(f"prompt -> masks, hiera_t, one point, {h}x{w} image, 3 masks (speed-up vs Meta)")
    print(row(names[0], times[names[0]], None, "ms"))
    for name in names[1:]:
        print(row(name, times[name], times[names[0]], "ms"))


def bench_automask(repeats: int, thresholds: tuple[float, float]) -> None:
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from backend.inference.automask import AutomaskGenerator

    ref, our_pred, image = hiera_t_on_an_image()
    h, w = IMAGE_HW
    kwargs = dict(points_per_side=16, pred_iou_thresh=thresholds[0], stability_score_thresh=thresholds[1])
    theirs = SAM2AutomaticMaskGenerator(ref, output_mode="coco_rle", **kwargs)
    ref_pred = theirs.predictor

    def reference_set_image(crop: np.ndarray) -> None:  # the features are given: no encoder
        ref_pred.reset_predictor()
        give_features(ref_pred, our_pred.embedding, crop.shape[:2])

    ref_pred.set_image = reference_set_image
    generator = AutomaskGenerator(our_pred.model, **kwargs)  # crops get the model family's predictor
    records: dict[str, list[dict]] = {}

    def run(name: str, generate) -> None:
        records[name] = generate()

    with torch.inference_mode():
        times = interleaved(
            {
                "Meta SAM2AutomaticMaskGenerator.generate": lambda: run(
                    "Meta", lambda: theirs.generate(image)
                ),
                "ours AutomaskGenerator.generate": lambda: run(
                    "ours", lambda: generator.generate(image, predictor=our_pred)
                ),
            },
            repeats,
            warmup=0,
        )
    names = list(times)
    print(
        f"segment everything, hiera_t without the encoder, {h}x{w} image, 256 points, "
        f"pred_iou_thresh {thresholds[0]}, stability_score_thresh {thresholds[1]} "
        f"(masks: Meta {len(records['Meta'])}, ours {len(records['ours'])}, {same_records(records)})"
    )
    print(row(names[0], times[names[0]], None, "s"))
    print(row(names[1], times[names[1]], times[names[0]], "s"))


def same_records(records: dict[str, list[dict]]) -> str:
    """Whether both generators returned the same records (``assert_same_records``), in words."""
    from tests.support.sa1b_records import assert_same_records

    try:
        assert_same_records(records["ours"], records["Meta"])
    except AssertionError as error:
        return f"records differ: {error}"
    return "the same records"


def thresholds_pair(text: str) -> tuple[float, float]:
    """``"IOU,STABILITY"`` -> two floats (an argparse type)."""
    try:
        iou, stability = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected IOU,STABILITY (two numbers), got {text!r}") from None
    return iou, stability


def _peak_memory_child(size: str, impl: str, dtype: str) -> None:
    """In a fresh process: peak resident memory of one encoder call above the loaded model."""
    ref = reference_model(size)
    model: torch.nn.Module = ref if impl == "Meta" else ours_from(ref)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    model = model.to(torch_dtype)
    x = torch.randn(1, 3, 1024, 1024).to(torch_dtype)
    run = model.forward_image if impl == "Meta" else model.encode_image  # type: ignore[operator]
    with torch.inference_mode():
        run(x)  # warm-up: lazy initialisation, allocator pools
        rss = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        run(x)
        print(json.dumps({"peak_mib": (_status_kib("VmHWM") - rss) / 1024}))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


MEMORY_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
"""glibc maps every block from 64 KiB up on its own and unmaps it when freed, so the resident
peak follows the live tensors: without it, what the warm-up call left in malloc's free lists
decides how much of the measured call's memory is new (peaks varied 1.5x between runs)."""


def bench_memory(sizes: list[str], threads: int | None) -> None:
    print("peak memory of one 1024x1024 encoder call above the loaded model (fresh process each)")
    for size in sizes:
        for dtype in ("fp32", "bf16"):
            peaks = {}
            for impl in ("Meta", "ours"):
                cmd = [sys.executable, __file__, "--memory-child", f"{size},{impl},{dtype}"]
                if threads:
                    cmd += ["--threads", str(threads)]
                out = subprocess.run(
                    cmd, capture_output=True, text=True, check=True, cwd=ROOT, env=MEMORY_ENV
                )
                peaks[impl] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
            print(
                f"  hiera_{size} {dtype}: Meta {peaks['Meta']:7.0f} MiB   ours {peaks['ours']:7.0f} MiB   "
                f"(ours / Meta {peaks['ours'] / max(peaks['Meta'], 1):.2f})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--models", default="t,b+", help="encoder sizes to time, from t and b+ (default: t,b+)"
    )
    parser.add_argument("--skip-encoder", action="store_true", help="no encoder timing (and no peak memory)")
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory measurement")
    parser.add_argument("--skip-automask", action="store_true", help="no segment-everything timing")
    parser.add_argument(
        "--automask-thresholds",
        type=thresholds_pair,
        default=(0.5, 0.0),
        help="segment-everything's pred_iou_thresh,stability_score_thresh (default 0.5,0.0: random "
        "weights predict IoU near 0.5 and unstable masks, so SAM 2's 0.8,0.95 would upscale nothing)",
    )
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        _peak_memory_child(*args.memory_child.split(","))
        return
    sizes = [s for s in args.models.split(",") if s]
    for s in sizes:
        if s not in SUFFIX:
            parser.error(f"--models takes t and b+, got {s!r}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {load:.1f}")
    bench_prompt(repeats=10 if args.quick else 40)
    if not args.skip_automask:
        bench_automask(repeats=1 if args.quick else 2, thresholds=args.automask_thresholds)
    if not args.skip_encoder:
        for size in sizes:
            bench_encoder(size, repeats=1 if args.quick else 3)
    if not args.skip_memory and not args.skip_encoder:
        bench_memory(sizes, args.threads)


if __name__ == "__main__":
    main()
