"""Model core: ours vs Meta's reference (`segment_anything`), side by side, one process.

Both networks hold the same random vit_b weights (the reference's random init,
loaded into ours with ``strict=True``). Measured, median over repeats:

* image encoder at 1024x1024: reference fp32, ours fp32, ours bf16;
* prompt -> masks for one positive point on a 768x1024 (HxW) image:
  ``backend.inference.predictor.SamPredictor.predict`` vs
  ``segment_anything.SamPredictor.predict`` (prompt encoder, mask decoder and
  upscaling to the original size; the image embedding is set once, outside the
  timing), plus the bare network path for reference. Ours is timed twice:
  as called by default (also computing stability scores, which the
  reference's predictor does not) and with ``stability=False`` (the same
  outputs as the reference: masks, scores, low-res logits).

Not a test: it prints a table of times and ratios. ``--quick`` uses fewer repeats.

    python benchmarks/bench_model_core.py [--quick] [--threads N] [--skip-encoder]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.model import VIT_B, build_sam  # noqa: E402
from benchmarks.side_by_side import interleaved, row  # noqa: E402

IMAGE_HW = (768, 1024)
POINT_XY = (412.0, 300.0)


def reference_vit_b(seed: int = 0) -> torch.nn.Module:
    """Reference vit_b with random weights (relative/absolute positions randomised too)."""
    from segment_anything import sam_model_registry

    torch.manual_seed(seed)
    ref = sam_model_registry["vit_b"]()
    with torch.no_grad():
        for name, param in ref.named_parameters():
            if "rel_pos" in name or name.endswith("pos_embed"):
                param.normal_(0.0, 0.02)
    return ref.eval()


def bench_encoder(ours, ref, repeats: int) -> None:
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    ours_bf16 = build_sam(VIT_B)
    ours_bf16.load_state_dict(ours.state_dict())
    ours_bf16 = ours_bf16.to(torch.bfloat16).eval()
    xb = x.to(torch.bfloat16)
    with torch.inference_mode():
        r = ref.image_encoder(x)
        o = ours.image_encoder(x)
        b = ours_bf16.image_encoder(xb).float()
        scale = float(r.abs().max())
        print(
            f"  (max |ours fp32 - ref| / max |ref| = {float((o - r).abs().max()) / scale:.2e}; "
            f"bf16: {float((b - r).abs().max()) / scale:.2e})"
        )
        times = interleaved(
            {
                "reference fp32": lambda: ref.image_encoder(x),
                "ours fp32": lambda: ours.image_encoder(x),
                "ours bf16": lambda: ours_bf16.image_encoder(xb),
            },
            repeats,
            warmup=0,
        )
    base = times["reference fp32"]
    print("vit_b image encoder, 1x3x1024x1024 (speed-up vs reference fp32)")
    for name, ts in times.items():
        print(row(name, ts, None if name.startswith("reference") else base, "s"))


def bench_prompt(ours, ref, repeats: int) -> None:
    from segment_anything import SamPredictor as ReferencePredictor

    from backend.inference.predictor import SamPredictor

    h, w = IMAGE_HW
    with torch.inference_mode():
        embedding = ref.image_encoder(
            torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
        )
    ref_pred = ReferencePredictor(ref)
    # What ReferencePredictor.set_torch_image stores, without re-running the encoder.
    ref_pred.reset_image()
    ref_pred.features = embedding
    ref_pred.original_size = (h, w)
    ref_pred.input_size = ref_pred.transform.get_preprocess_shape(h, w, 1024)
    ref_pred.is_image_set = True
    our_pred = SamPredictor(ours)
    our_pred.set_embedding(embedding.clone(), original_size=(h, w))

    coords = np.array([POINT_XY])
    labels = np.array([1])
    ref_out = ref_pred.predict(point_coords=coords, point_labels=labels, multimask_output=True)
    our_out = our_pred.predict(point_coords=coords, point_labels=labels, multimask_output=True)
    ref_sorted = np.sort(ref_out[1])[::-1]
    print(f"  (scores ours {np.round(our_out.scores[0], 4)} ref {np.round(ref_sorted, 4)})")

    # The bare network path: prompt encoder + mask decoder + upscaling to the original size.
    pts_ref = torch.as_tensor(ref_pred.transform.apply_coords(coords, (h, w)), dtype=torch.float32)[None]
    lab = torch.as_tensor(labels)[None]
    input_size = tuple(ref_pred.input_size)

    def ref_network():
        sparse, dense = ref.prompt_encoder((pts_ref, lab), None, None)
        low, iou = ref.mask_decoder(embedding, ref.prompt_encoder.get_dense_pe(), sparse, dense, True)
        return ref.postprocess_masks(low, input_size, (h, w)) > 0

    cache = ours.prepare_decoder(embedding)

    def our_network():
        low, iou = ours.decode(cache, points=(pts_ref, lab), multimask_output=True)
        return ours.postprocess_masks(low, input_size, (h, w)) > 0

    with torch.inference_mode():
        times = interleaved(
            {
                "reference SamPredictor.predict": lambda: ref_pred.predict(
                    point_coords=coords, point_labels=labels, multimask_output=True
                ),
                "ours SamPredictor.predict": lambda: our_pred.predict(
                    point_coords=coords, point_labels=labels, multimask_output=True
                ),
                "ours predict(stability=False), the reference's outputs": lambda: our_pred.predict(
                    point_coords=coords, point_labels=labels, multimask_output=True, stability=False
                ),
                "reference network (prompt enc + dec + upscale)": ref_network,
                "ours network (prompt enc + dec + upscale)": our_network,
            },
            repeats,
            warmup=3,
        )
    print(f"prompt -> masks, one point, {h}x{w} image, 3 masks (speed-up vs reference)")
    names = list(times)
    print(row(names[0], times[names[0]], None, "ms"))
    for name in names[1:3]:
        print(row(name, times[name], times[names[0]], "ms"))
    print(row(names[3], times[names[3]], None, "ms"))
    print(row(names[4], times[names[4]], times[names[3]], "ms"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--skip-encoder", action="store_true", help="only the prompt -> masks part")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {load:.1f}")
    ref = reference_vit_b()
    ours = build_sam(VIT_B)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    bench_prompt(ours, ref, repeats=10 if args.quick else 50)
    if not args.skip_encoder:
        bench_encoder(ours, ref, repeats=1 if args.quick else 3)


if __name__ == "__main__":
    main()
