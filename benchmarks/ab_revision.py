"""One SAM 2.1 click with an earlier revision's modules against the working tree's, in one process.

For changes worth a fraction of a millisecond, which this machine's run-to-run
drift (about 10%) hides between separate runs: the named modules' functions
and methods are loaded from ``git show REV:path`` and swapped in and out of
the live ones around ``Sam2Predictor.predict`` (one positive point on the
768x1024 image of ``bench_sam2``, hiera_t, random weights), the two versions
alternating call by call. Prints whether their outputs differ, each version's
median and the paired median gain.

Only functions and methods are swapped (module constants, classes' other
attributes and new names stay the working tree's), so it suits changes
inside function bodies.

    python benchmarks/ab_revision.py --rev c4566f3 backend.model.sam2.mask_upscaling [module ...]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_sam2 import POINT_XY, hiera_t_on_an_image  # noqa: E402

Swap = tuple[object, str, object, object]
"""(owner, attribute, working tree's object, revision's object)."""


def revision_module(name: str, rev: str) -> types.ModuleType:
    """Module ``name`` as it was at ``rev``, executed under a private name in its package."""
    live = importlib.import_module(name)
    path = name.replace(".", "/") + ".py"
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    old = types.ModuleType(f"{name}_at_{rev}")
    old.__package__ = live.__package__
    sys.modules[old.__name__] = old
    exec(compile(source, f"{rev}:{path}", "exec"), old.__dict__)
    return old


def swaps_for(name: str, rev: str) -> list[Swap]:
    """Every place the live module's functions and methods are reachable, paired with the old ones."""
    live = importlib.import_module(name)
    old = revision_module(name, rev)
    importers = [m for n, m in list(sys.modules.items()) if n.startswith("backend")]
    swaps: list[Swap] = []
    for attr, was in vars(old).items():
        now = vars(live).get(attr)
        if isinstance(was, types.FunctionType) and isinstance(now, types.FunctionType):
            swaps += [(m, a, now, was) for m in importers for a, o in list(vars(m).items()) if o is now]
        elif isinstance(was, type) and isinstance(now, type):
            for method, fn in vars(was).items():
                current = vars(now).get(method)
                if isinstance(fn, types.FunctionType) and isinstance(current, types.FunctionType):
                    swaps.append((now, method, current, fn))
    return swaps


def use(swaps: list[Swap], version: str) -> None:
    """Install the working tree's (``"new"``) or the revision's (``"old"``) objects."""
    for owner, attr, new, old in swaps:
        setattr(owner, attr, new if version == "new" else old)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("modules", nargs="+", help="dotted module names, e.g. backend.model.transformer")
    parser.add_argument("--rev", default="HEAD", help="the earlier revision (default HEAD)")
    parser.add_argument("--pairs", type=int, default=150)
    args = parser.parse_args()
    _, predictor, _ = hiera_t_on_an_image()
    swaps = [s for name in args.modules for s in swaps_for(name, args.rev)]
    coords, labels = np.array([POINT_XY]), np.array([1])

    def click():
        return predictor.predict(point_coords=coords, point_labels=labels, stability=False)

    outputs = {}
    for version in ("old", "new"):
        use(swaps, version)
        outputs[version] = click()
    old, new = outputs["old"], outputs["new"]
    print(
        f"{len(swaps)} objects swapped; masks differ in {int((old.masks != new.masks).sum())} pixels, "
        f"scores by {float(np.abs(old.scores - new.scores).max()):.2e}, "
        f"low-res logits by {float(np.abs(old.low_res_logits - new.low_res_logits).max()):.2e}"
    )
    times: dict[str, list[float]] = {"old": [], "new": []}
    with torch.inference_mode():
        for i in range(args.pairs + 10):
            for version in ("old", "new") if i % 2 else ("new", "old"):
                use(swaps, version)
                start = time.perf_counter()
                click()
                if i >= 10:  # the first pairs warm up
                    times[version].append(time.perf_counter() - start)
    use(swaps, "new")
    for version, label in (("old", f"at {args.rev}"), ("new", "working tree")):
        print(f"  {label:<14} median {statistics.median(times[version]) * 1e3:7.3f} ms")
    gains = [a - b for a, b in zip(times["old"], times["new"], strict=True)]
    print(f"  paired median gain of the working tree: {statistics.median(gains) * 1e3:.3f} ms a click")


if __name__ == "__main__":
    main()
