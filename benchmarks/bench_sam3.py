"""SAM 3 on this CPU: time per image for the first concept and for each further one.

SAM 3 runs through Hugging Face transformers (``backend.inference.sam3``); its
weights are gated, so both networks here hold random weights, which time the
same as trained ones (the work does not depend on the values):

* ``tiny``: the test suite's tiny configuration (112 px input, 2 ViT layers);
* ``full``: the released architecture, ``Sam3Config()`` / ``Sam3TrackerConfig()``
  defaults (1008 px input, 32-layer ViT, 24-layer CLIP text encoder; 852M
  parameters, 3.4 GB in float32), built in memory, not downloaded.

The tokenizer is the tests' letter-level CLIP tokenizer (the real vocabulary is
in the gated repository); every phrase is padded to 32 tokens either way, so
the text encoder does the same work. Rows, medians over repeats, on a
768x1024 (HxW) image:

* first concept: ``set_image`` (ViT + FPN neck, once per image) then
  ``predict_concept`` (text encoder, DETR encoder/decoder, mask head,
  transformers' post-processing);
* further concept, new phrase: the cached vision features, the text encoder runs;
* further concept, phrase seen before: the text encoder's output is cached too;
* the same with two exemplar boxes (one positive, one negative);
* a concept keeping 10 instances (8 for tiny: threshold set below that score): the masks
  are upsampled to the image size (with random weights no instance passes 0.5);
* first click (the tracker's neck runs once on the cached ViT tokens) and further clicks.

    python benchmarks/bench_sam3.py [--size tiny|full|both] [--repeats N] [--threads N] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.inference.sam3 import Sam3Models, Sam3Predictor  # noqa: E402

IMAGE_HW = (768, 1024)
POINT = [[412.0, 300.0]]
EXEMPLARS = [([100.0, 120.0, 300.0, 330.0], True), ([600.0, 400.0, 800.0, 700.0], False)]
PHRASES = ["dog", "red car", "bus", "tree", "person", "bike", "sky", "road", "cup", "lamp", "door"]


def tiny_models(dtype: torch.dtype) -> Sam3Models:
    """The tests' tiny SAM 3 with random weights, saved in the Hub's layout and loaded by ``load_sam3``."""
    from backend.inference.sam3 import load_sam3
    from tests.inference.sam3.tiny_sam3 import save_tiny_sam3

    with tempfile.TemporaryDirectory() as folder:
        save_tiny_sam3(Path(folder))
        models = load_sam3(folder, dtype=dtype)
    models.source = "tiny (random weights)"
    return models


def full_models(dtype: torch.dtype) -> Sam3Models:
    """The released architecture with random weights (Sam3Config / Sam3TrackerConfig defaults)."""
    from transformers import (
        Sam3Config,
        Sam3ImageProcessor,
        Sam3Model,
        Sam3Processor,
        Sam3TrackerConfig,
        Sam3TrackerModel,
    )

    from tests.inference.sam3.tiny_sam3 import tiny_processor

    torch.manual_seed(0)
    detector = Sam3Model(Sam3Config())
    tracker = Sam3TrackerModel(Sam3TrackerConfig())
    processor = Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=tiny_processor().tokenizer)
    return _assemble(detector, tracker, processor, dtype, "full size (random weights)")


def _assemble(detector, tracker, processor, dtype: torch.dtype, source: str) -> Sam3Models:
    """What ``load_sam3`` returns: both heads in eval mode, one shared ViT."""
    from transformers import Sam3TrackerProcessor

    tracker.vision_encoder.backbone = detector.vision_encoder.backbone
    gc.collect()
    return Sam3Models(
        detector=detector.to(dtype).eval(),
        processor=processor,
        tracker=tracker.to(dtype).eval(),
        tracker_processor=Sam3TrackerProcessor(image_processor=processor.image_processor),
        source=source,
    )


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall seconds of one call, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(models: Sam3Models, repeats: int) -> list[tuple[str, float, str]]:
    """Rows of (name, median wall seconds, instances returned)."""
    image = np.random.default_rng(0).integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
    predictor = Sam3Predictor(models)
    predictor.set_image(image)
    ranked = sorted((i.score for i in predictor.predict_concept("cat", threshold=0.0)), reverse=True)
    keep = min(10, len(ranked))
    keep_threshold = float(np.nextafter(np.float32(ranked[keep - 1]), np.float32(0)))
    print(f"    features per image: {predictor.embedding.nbytes / 2**20:.1f} MiB")
    rows: dict[str, list[tuple[float, object]]] = {}
    for repeat in range(repeats):
        first, new = PHRASES[2 * repeat % len(PHRASES)], PHRASES[(2 * repeat + 1) % len(PHRASES)]
        predictor = Sam3Predictor(models)  # empty phrase cache
        encode, _ = timed(lambda p=predictor: p.set_image(image))
        concept, found = timed(lambda p=predictor, text=first: p.predict_concept(text))
        rows.setdefault("first concept on an image (total)", []).append((encode + concept, found))
        rows.setdefault("  of which set_image (ViT + neck)", []).append((encode, None))
        steps: dict[str, Callable[[], object]] = {
            "further concept, new phrase": lambda p=predictor, text=new: p.predict_concept(text),
            "further concept, phrase seen before": lambda p=predictor, text=first: p.predict_concept(text),
            "  the same + 2 exemplar boxes": lambda p=predictor, text=first: p.predict_concept(
                text, EXEMPLARS
            ),
            f"  the same keeping {keep} instances": lambda p=predictor: p.predict_concept(
                "cat", threshold=keep_threshold
            ),
            "first click (tracker neck once)": lambda p=predictor: p.predict(
                point_coords=POINT, point_labels=[1]
            ),
            "further click": lambda p=predictor: p.predict(point_coords=POINT, point_labels=[1]),
        }
        predictor.predict_concept("cat")  # untimed: "cat" is a phrase seen before in the keep row
        for name, step in steps.items():
            rows.setdefault(name, []).append(timed(step))
    return [
        (name, statistics.median(t for t, _ in runs), _instances([r for _, r in runs]))
        for name, runs in rows.items()
    ]


def _instances(results: list[object]) -> str:
    counts = sorted({len(r) for r in results if isinstance(r, list)})
    return "/".join(str(c) for c in counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("tiny", "full", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, "
        f"{args.dtype}, image {IMAGE_HW[0]}x{IMAGE_HW[1]} (HxW), median of {args.repeats}"
    )
    builders = {"tiny": tiny_models, "full": full_models}
    for size in ("tiny", "full") if args.size == "both" else (args.size,):
        start = time.perf_counter()
        models = builders[size](dtype)
        print(f"\n{models.source}: built in {time.perf_counter() - start:.0f} s")
        rows = run(models, args.repeats)
        print(f"  {'':<40} {'median':>10}    instances")
        for name, seconds, instances in rows:
            print(f"  {name:<40} {seconds * 1000:7.1f} ms    {instances}")
        del models
        gc.collect()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak resident memory: {peak:.1f} GiB")


if __name__ == "__main__":
    main()
