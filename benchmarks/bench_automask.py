"""Segment everything: ours vs Meta's SamAutomaticMaskGenerator, same weights, one run.

Each side runs in its own fresh subprocess so that peak memory (max RSS) is
measured separately; both load the same random ViT-B weights (saved once by
the parent) and segment the same 512x512 image with 256 points
(points_per_side=16) and the default thresholds. The child also reports the
image-encoder time, so the rest (decoding, filtering, upscaling, encoding) can
be compared on its own.

``--skip-encoder`` instead times everything after the image encoder (prompt
decoding, filtering, upscaling, NMS, encoding) in one process, alternating
ours and the reference several times on the same precomputed embedding: the
fairest comparison on a busy machine.

Usage::

    python benchmarks/bench_automask.py                      # defaults
    python benchmarks/bench_automask.py --pred-iou-thresh 0 --stability-score-thresh 0.5
    python benchmarks/bench_automask.py --skip-encoder --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _image(size: int):
    import numpy as np

    rng = np.random.default_rng(0)
    image = np.full((size, size, 3), 100, dtype=np.uint8)
    for _ in range(12):  # a few rectangles so that real weights would find objects
        x, y = rng.integers(0, size - 64, 2)
        w, h = rng.integers(32, 160, 2)
        image[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    return image


def _child(args: argparse.Namespace) -> None:
    import torch

    from backend.model import VIT_B, build_sam

    torch.set_num_threads(args.threads)
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    kwargs = dict(
        points_per_side=args.points_per_side,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
    )
    if args.child == "reference":
        from segment_anything import SamAutomaticMaskGenerator

        from tests.support.reference import build_reference_sam

        model = build_reference_sam(VIT_B)
        model.load_state_dict(state, strict=True)
        generator = SamAutomaticMaskGenerator(model.eval(), output_mode="coco_rle", **kwargs)
        run = generator.generate
    else:
        from backend.inference.automask import AutomaskGenerator

        model = build_sam(VIT_B)
        model.load_state_dict(state, strict=True)
        model.to(getattr(torch, args.ours_dtype))
        ours = AutomaskGenerator(model.eval(), **kwargs)
        run = ours.generate
    del state
    encoder_seconds = [0.0]
    forward = model.image_encoder.forward

    def timed_forward(*a, **k):
        start = time.perf_counter()
        out = forward(*a, **k)
        encoder_seconds[0] += time.perf_counter() - start
        return out

    model.image_encoder.forward = timed_forward
    image = _image(args.size)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with torch.no_grad():
        records = run(image)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "encoder_seconds": encoder_seconds[0],
                "masks": len(records),
                "peak_rss_mib": peak_kib / 1024,
                "rss_before_generate_mib": baseline_kib / 1024,
            }
        )
    )


def _skip_encoder(args: argparse.Namespace) -> None:
    """Alternate both generators on one fixed embedding; print the median times."""
    import statistics

    import torch
    from segment_anything import SamAutomaticMaskGenerator

    from backend.inference.automask import AutomaskGenerator
    from backend.inference.predictor import SamPredictor
    from backend.model import VIT_B, build_sam
    from tests.support.reference import build_reference_sam

    torch.set_num_threads(args.threads)
    reference = build_reference_sam(VIT_B, seed=0)
    ours = build_sam(VIT_B)
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.eval()
    image = _image(args.size)
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    kwargs = dict(
        points_per_side=args.points_per_side,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
    )
    theirs = SamAutomaticMaskGenerator(reference, output_mode="coco_rle", **kwargs)
    ref_predictor = theirs.predictor
    input_size = tuple(ref_predictor.transform.get_preprocess_shape(args.size, args.size, 1024))

    def reference_set_image(crop):  # the embedding is given: no encoder
        ref_predictor.features = embedding
        ref_predictor.original_size = crop.shape[:2]
        ref_predictor.input_size = input_size
        ref_predictor.is_image_set = True

    ref_predictor.set_image = reference_set_image
    generator = AutomaskGenerator(ours, **kwargs)
    predictor = SamPredictor(ours)
    predictor.set_embedding(embedding, original_size=(args.size, args.size))
    times: dict[str, list[float]] = {"reference": [], "ours": []}
    counts = {}
    with torch.no_grad():
        for _ in range(args.repeats):
            start = time.perf_counter()
            counts["reference"] = len(theirs.generate(image))
            times["reference"].append(time.perf_counter() - start)
            start = time.perf_counter()
            counts["ours"] = len(generator.generate(image, predictor=predictor))
            times["ours"].append(time.perf_counter() - start)
    print(
        f"segment everything without the image encoder, ViT-B random weights, {args.size}x{args.size}, "
        f"{args.points_per_side**2} points, {args.threads} threads, {args.repeats} alternating runs"
    )
    for name in ("reference", "ours"):
        runs = ", ".join(f"{t:.1f}" for t in times[name])
        print(
            f"{name:10} median {statistics.median(times[name]):7.2f} s  (runs {runs})  masks {counts[name]}"
        )
    ratio = statistics.median(times["reference"]) / statistics.median(times["ours"])
    print(f"speed-up (median): {ratio:.2f}x")


def _run_child(side: str, args: argparse.Namespace, weights: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        side,
        "--weights",
        weights,
        "--size",
        str(args.size),
        "--points-per-side",
        str(args.points_per_side),
        "--pred-iou-thresh",
        str(args.pred_iou_thresh),
        "--stability-score-thresh",
        str(args.stability_score_thresh),
        "--threads",
        str(args.threads),
        "--ours-dtype",
        args.ours_dtype,
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88)
    parser.add_argument("--stability-score-thresh", type=float, default=0.95)
    parser.add_argument(
        "--threads", type=int, default=int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    )
    parser.add_argument("--skip-encoder", action="store_true", help="time everything after the image encoder")
    parser.add_argument(
        "--ours-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="our network's dtype (end to end)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs with --skip-encoder")
    parser.add_argument("--child", choices=("ours", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    if args.skip_encoder:
        _skip_encoder(args)
        return

    import torch

    from backend.model import VIT_B
    from tests.support.reference import build_reference_sam

    with tempfile.TemporaryDirectory() as folder:
        weights = os.path.join(folder, "vit_b_random.pt")
        torch.save(build_reference_sam(VIT_B, seed=0).state_dict(), weights)
        results = {side: _run_child(side, args, weights) for side in ("reference", "ours")}
    ref, ours = results["reference"], results["ours"]
    print(
        f"segment everything, ViT-B random weights, {args.size}x{args.size}, {args.points_per_side**2} points, "
        f"{args.threads} threads, ours in {args.ours_dtype} (reference float32)"
    )
    print(
        f"{'':10} {'total s':>8} {'encoder s':>9} {'rest s':>8} {'masks':>6} {'peak RSS MiB':>13} {'RSS before MiB':>15}"
    )
    for name, r in (("reference", ref), ("ours", ours)):
        rest = r["seconds"] - r["encoder_seconds"]
        print(
            f"{name:10} {r['seconds']:8.2f} {r['encoder_seconds']:9.2f} {rest:8.2f} {r['masks']:6d} "
            f"{r['peak_rss_mib']:13.0f} {r['rss_before_generate_mib']:15.0f}"
        )
    rest_ref = ref["seconds"] - ref["encoder_seconds"]
    rest_ours = ours["seconds"] - ours["encoder_seconds"]
    print(
        f"speed-up total: {ref['seconds'] / ours['seconds']:.2f}x, without the image encoder: {rest_ref / max(rest_ours, 1e-9):.2f}x"
    )
    print(f"peak RSS ours / reference: {ours['peak_rss_mib'] / ref['peak_rss_mib']:.2f}")


if __name__ == "__main__":
    main()
