"""Several boxes in one ``predict``: decoder calls and full-size masks a few objects at a time.

* On a CPU both predictors decode a batch of boxes ``prompts_per_decoder_call()``
  at a time (one at full size in float32, see ``backend/inference/predictor.py``).
  This times ``predict(box=<8 boxes>)`` with one call for all and by that rule,
  on the same predictor, alternating, for SAM vit_b and SAM 2.1 hiera_t with
  random weights on a 768x1024 image, and counts the mask pixels that differ.
* The masks are brought to full size a few objects at a time
  (``upscale_in_chunks``). For 20 boxes on a 3000x4000 photo (the small test
  network, so that the upscaling dominates) this gives the peak memory above
  the loaded model (``ru_maxrss``, default malloc settings) and the time of
  one cold ``predict``, all objects at once against in chunks, each in a
  fresh process.

Not a test: it prints tables.

    python benchmarks/bench_boxes.py [--boxes 8] [--repeats 8]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.inference.predictor import SamPredictor  # noqa: E402
from backend.inference.sam2_predictor import Sam2Predictor  # noqa: E402
from backend.model import build_sam  # noqa: E402
from backend.model.config import VIT_B  # noqa: E402
from backend.model.sam2 import build_sam2, sam2_config  # noqa: E402
from benchmarks.side_by_side import interleaved, row  # noqa: E402

IMAGE_HW = (768, 1024)


def random_boxes(count: int) -> np.ndarray:
    """``count x 4`` XYXY boxes of 150x120 pixels inside the image."""
    rng = np.random.default_rng(0)
    x0, y0 = rng.uniform(0, IMAGE_HW[1] - 150, count), rng.uniform(0, IMAGE_HW[0] - 120, count)
    return np.stack([x0, y0, x0 + 150, y0 + 120], axis=1)


def bench(name: str, predictor: SamPredictor | Sam2Predictor, boxes: np.ndarray, repeats: int) -> None:
    image = np.random.default_rng(1).integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
    predictor.set_image(image)
    rule = predictor.prompts_per_decoder_call()

    def one_call() -> object:
        predictor.prompts_per_decoder_call = lambda: 1 << 30  # type: ignore[method-assign]
        try:
            return predictor.predict(box=boxes, stability=False)
        finally:
            del predictor.prompts_per_decoder_call

    def by_rule() -> object:
        return predictor.predict(box=boxes, stability=False)

    differ = int((one_call().masks != by_rule().masks).sum())  # type: ignore[attr-defined]
    with torch.inference_mode():
        times = interleaved({"one call": one_call, f"{rule} a call (the rule)": by_rule}, repeats, warmup=2)
    names = list(times)
    print(f"{name}: {len(boxes)} boxes, {IMAGE_HW[0]}x{IMAGE_HW[1]} image ({differ} mask pixels differ)")
    print(row(names[0], times[names[0]], None, "ms"))
    print(row(names[1], times[names[1]], times[names[0]], "ms"))


def _upscale_child(at_once: bool) -> None:
    """Prints ``<peak MiB above the loaded model> <seconds>`` of one 20-box ``predict``."""
    from backend.inference import mask_ops
    from tests.support.reference import tiny_vit_config

    if at_once:
        mask_ops.CPU_UPSCALE_CHUNK_PIXELS = 1 << 40
    torch.manual_seed(0)
    predictor = SamPredictor(build_sam(tiny_vit_config()).eval())
    predictor.set_image(np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    rng = np.random.default_rng(1)
    x0, y0 = rng.uniform(0, 3500, 20), rng.uniform(0, 2500, 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    predictor.predict(box=np.stack([x0, y0, x0 + 400, y0 + 400], axis=1))
    seconds = time.perf_counter() - start
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, seconds)


def bench_upscale_memory() -> None:
    print("20 boxes, 3000x4000 image, SamPredictor.predict (small test network; fresh process each)")
    for label, flag in (
        ("all objects at once", "--_at-once"),
        ("in chunks (upscale_in_chunks)", "--_chunks"),
    ):
        child = subprocess.run([sys.executable, __file__, flag], capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"{label} failed:\n{child.stderr}")
        out = child.stdout.split()
        print(f"  {label:<32} peak +{float(out[-2]):6.0f} MiB   {float(out[-1]):6.2f} s (one cold call)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--_at-once", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_chunks", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._at_once or args._chunks:
        _upscale_child(at_once=args._at_once)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    boxes = random_boxes(args.boxes)
    torch.manual_seed(0)
    bench("SAM vit_b", SamPredictor(build_sam(VIT_B).eval()), boxes, args.repeats)
    torch.manual_seed(0)
    bench(
        "SAM 2.1 hiera_t",
        Sam2Predictor(build_sam2(sam2_config("sam2.1_hiera_t")).eval()),
        boxes,
        args.repeats,
    )
    bench_upscale_memory()


if __name__ == "__main__":
    main()
