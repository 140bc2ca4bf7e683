"""Segment-everything thresholds for a model, calibrated on generated held-out scenes.

Runs the generator over a grid of ``pred_iou_thresh`` x ``stability_score_thresh``
on held-out scenes (the demo model's, ``backend.train.demo.heldout_scenes``)
and reports, for each pair, the recall (objects matched by a mask with
IoU >= 0.5), the precision (masks that match an object) and the masks per
image. The registry's ``automask_defaults`` of the demo model come from this
table: ``python benchmarks/calibrate_automask.py --scenes 40``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.formats.mask_codecs import from_coco_rle  # noqa: E402
from backend.hub import load_model  # noqa: E402
from backend.inference.automask import AutomaskGenerator  # noqa: E402
from backend.train.demo import heldout_scenes  # noqa: E402


def match_counts(masks: list[np.ndarray], targets: np.ndarray, min_iou: float = 0.5) -> tuple[int, int]:
    """``(objects found, masks that match an object)`` at ``min_iou``."""
    if not masks or len(targets) == 0:
        return 0, 0
    pred = np.stack(masks).reshape(len(masks), -1).astype(np.float32)
    true = targets.reshape(len(targets), -1).astype(np.float32)
    inter = pred @ true.T
    union = pred.sum(1, keepdims=True) + true.sum(1) - inter
    iou = inter / np.maximum(union, 1)
    return int((iou.max(0) >= min_iou).sum()), int((iou.max(1) >= min_iou).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--iou", type=float, nargs="+", default=[0.0, 0.5, 0.6, 0.7, 0.8, 0.88])
    parser.add_argument("--stability", type=float, nargs="+", default=[0.0, 0.7, 0.8, 0.85, 0.9, 0.95])
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    scenes = heldout_scenes(args.scenes)
    items = [scenes[i] for i in range(len(scenes))]
    print(
        "| pred_iou_thresh | stability_score_thresh | recall | precision | masks/image |\n|---|---|---|---|---|"
    )
    for iou, stability in itertools.product(args.iou, args.stability):
        generator = AutomaskGenerator(model, pred_iou_thresh=iou, stability_score_thresh=stability)
        found = objects = matching = produced = 0
        for item in items:
            records = generator.generate(item.image)
            masks = [from_coco_rle(r["segmentation"]) for r in records]
            hit, good = match_counts(masks, item.masks)
            found, objects = found + hit, objects + len(item.masks)
            matching, produced = matching + good, produced + len(masks)
        precision = matching / produced if produced else float("nan")
        print(
            f"| {iou:g} | {stability:g} | {found / objects:.3f} | {precision:.3f} | {produced / len(items):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
