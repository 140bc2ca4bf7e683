"""The decoders' last copy: mask planes from sub-pixel order into image order, two ways.

``sub_pixels_to_image`` (``backend/model/sub_pixels.py``) moves each
horizontally adjacent pair of values as one integer word; the plain way is
the single-value permutation it replaced. Both run alternately on the same
``B x M x 16hw`` planes (SAM's sizes: h = w = 64, M = 3 masks; B = 1 for a
click, 8 for a batch of boxes), with the planes contiguous as the batched
product leaves them and strided as the single-prompt product leaves them.
The outputs are checked to be identical. Not a test: it prints a table.

    python benchmarks/bench_sub_pixels.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.model.sub_pixels import sub_pixels_to_image  # noqa: E402
from benchmarks.side_by_side import interleaved, row  # noqa: E402

GRID = (64, 64)


def single_values(planes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The plain permutation: each value moved on its own."""
    h, w = size
    b, m = planes.shape[:2]
    image = planes.reshape(b, m, h, w, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
    return image.reshape(b, m, 4 * h, 4 * w)


def bench(batch: int, dtype: torch.dtype, strided: bool, repeats: int) -> None:
    h, w = GRID
    masks = 3
    if strided:  # what tokens_times_weights(...).T leaves for one prompt: 16hw x M, transposed
        planes = torch.randn(16 * h * w, batch * masks).to(dtype).T.reshape(batch, masks, -1)
    else:
        planes = torch.randn(batch, masks, 16 * h * w).to(dtype)
    assert torch.equal(sub_pixels_to_image(planes, GRID), single_values(planes, GRID))
    times = interleaved(
        {
            "single values (permute)": lambda: single_values(planes, GRID),
            "pairs as words (sub_pixels_to_image)": lambda: sub_pixels_to_image(planes, GRID),
        },
        repeats,
        warmup=3,
    )
    layout = "strided" if strided else "contiguous"
    print(f"{batch} x {masks} x {4 * h}x{4 * w} {str(dtype).removeprefix('torch.')}, {layout} planes")
    names = list(times)
    print(row(names[0], times[names[0]], None, "ms"))
    print(row(names[1], times[names[1]], times[names[0]], "ms"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    with torch.inference_mode():
        bench(1, torch.float32, strided=True, repeats=args.repeats)
        bench(1, torch.float32, strided=False, repeats=args.repeats)
        bench(8, torch.float32, strided=False, repeats=args.repeats)
        bench(1, torch.bfloat16, strided=False, repeats=args.repeats)


if __name__ == "__main__":
    main()
