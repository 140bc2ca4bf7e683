"""GPU checks (issue 18): correctness, speed and serving on one CUDA device, in one run.

Random weights in the official layouts (no downloads): the reference packages
(`segment_anything` for vit_b / vit_h, `mobile_sam` for vit_t) are built with a
fixed seed and ours loads their state dict with ``strict=True``
(``tests/model/test_equivalence.make_pair``). Every check is fenced: an error
is recorded in the report and the run goes on; ``--budget-s`` skips the checks
that no longer fit, with a note. The report (``gpu_check.json`` and
``gpu_check.md`` under ``--out``) is rewritten after every check, so a run
stopped from outside keeps what it measured.

Checks, in order (``--dry-run`` lists them):

1. correctness: ours vs the reference in fp32 on the GPU (TF32 off), with the
   equivalence tests' comparisons and tolerances; ours in bf16 / fp16 vs ours
   in fp32 (mask IoU >= 0.98); SAM 2.1 hiera_t against Meta's ``sam2`` (features, one point's masks, the
   encoders' speed in fp32 and bf16; skipped where ``sam2`` is not installed);
2. speed, ours next to the reference on the same GPU: encoder images/s at
   batch 1 and 8 (fp32, bf16; bf16 + ``torch.compile`` last, as it is the
   slowest to prepare), prompt -> three masks latency, segment everything on
   one 1024x1024 image; peak GPU memory of each (``max_memory_allocated``
   after a reset);
3. the server: requests/s with 1, 4 and 16 clients, micro-batching on
   (``--max-batch 16``) and off (``--max-batch 1``), driven as
   ``benchmarks/bench_server.py`` does.

Targets (H100 / H200), printed as pass / fail: vit_h >= 30 images/s in bf16;
prompt -> masks <= 5 ms; micro-batching >= 2x at 16 clients.

On the GPU machine, from the repository root (about 7 minutes on one H200)::

    python3 benchmarks/gpu_check.py --out gpu-results --budget-s 420

It needs the server and test extras besides torch: flask, waitress, pydantic,
pycocotools, segment-anything, mobilesam-mirror (and timm), and for the SAM 2.1
check sam2 1.1.0 with hydra-core, omegaconf, antlr4-python3-runtime, iopath
(build sam2's wheel with ``SAM2_BUILD_CUDA=0 pip wheel --no-deps sam2==1.1.0``);
an image without them gets them as wheels (``pip download --no-deps ...``
elsewhere, ``pip install --no-index`` there). ``meta.packages`` in the report says what was
found; ``--only NAME,...`` reruns single checks. On a CPU, the same code at
tiny sizes, in under a minute::

    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu-dry
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.model import VIT_B, VIT_H, VIT_T, SamConfig  # noqa: E402

MIB = 1024 * 1024
REPORT_NAME = "gpu_check"
MIN_IOU = 0.98  # bf16 / fp16 masks against our fp32 masks
HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PACKAGES = ("segment_anything", "mobile_sam", "timm", "flask", "gunicorn", "pydantic", "pycocotools", "cv2")
# Random weights predict IoUs near 0 and logits within +-1 (stability 0), so
# Meta's thresholds (0.88 / 0.95) would keep nothing; these keep about half of
# the candidates, as a trained model's would.
AUTOMASK_THRESHOLDS = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
Row = dict[str, Any]
M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True, kw_only=True)
class Profile:
    """Sizes of one run: the full GPU run or the CPU dry run.

    Attributes:
        device: Torch device of the checks.
        configs: Model name -> network configuration.
        equivalence_rel: Tolerance of the fp32 comparisons (relative to max |reference|).
        batches: Encoder batch sizes.
        warmup: Untimed calls before timing.
        repeats: Timed encoder calls per measurement.
        prompt_repeats: Timed prompt -> masks calls per variant.
        image_side: Side of the square test image, in pixels.
        automask_points: Points per side of the segment-everything grid.
        server_weights: ``bench_server.model_path`` kind.
        server_clients: Concurrency levels.
        server_seconds: Seconds per level and server, in ``server_rounds`` windows.
        server_rounds: Alternating windows per level.
    """

    device: str
    configs: dict[str, SamConfig]
    equivalence_rel: float
    batches: tuple[int, ...]
    warmup: int
    repeats: int
    prompt_repeats: int
    image_side: int
    automask_points: int
    server_weights: str
    server_clients: tuple[int, ...]
    server_seconds: float
    server_rounds: int


def full_profile(device: str) -> Profile:
    """The GPU run: official sizes."""
    from tests.model.test_equivalence import FULL_REL

    return Profile(
        device=device,
        configs={"vit_b": VIT_B, "vit_h": VIT_H, "vit_t": VIT_T},
        equivalence_rel=FULL_REL,
        batches=(1, 8),
        warmup=3,
        repeats=10,
        prompt_repeats=100,
        image_side=1024,
        automask_points=32,
        server_weights="vit_b_decoder",
        server_clients=(1, 4, 16),
        server_seconds=6.0,
        server_rounds=3,
    )


def dry_profile() -> Profile:
    """The CPU smoke run: the tests' tiny networks, one of everything."""
    from tests.model.test_equivalence import TINY_REL, tiny_tinyvit_config
    from tests.support.reference import tiny_vit_config

    tiny = tiny_vit_config()
    return Profile(
        device="cpu",
        configs={"vit_b": tiny, "vit_h": tiny, "vit_t": tiny_tinyvit_config()},
        equivalence_rel=TINY_REL,
        batches=(1, 2),
        warmup=1,
        repeats=2,
        prompt_repeats=3,
        image_side=256,
        automask_points=4,
        server_weights="tiny",
        server_clients=(1,),
        server_seconds=1.0,
        server_rounds=1,
    )


@dataclass
class Context:
    """What the checks share: sizes, the time budget, models, earlier results."""

    profile: Profile
    budget_s: float
    dry_run: bool
    started: float = field(default_factory=time.monotonic)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    pairs: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return self.profile.device

    def left_s(self) -> float:
        """Seconds left of the budget."""
        return self.budget_s - (time.monotonic() - self.started)

    def pair(self, name: str) -> tuple[Any, Any]:
        """(ours, reference) in fp32 on the CPU with the same random weights, built once
        (typed ``Any``: torch types submodule attributes as ``Tensor | Module``)."""
        if name not in self.pairs:
            from tests.model.test_equivalence import make_pair

            self.pairs[name] = make_pair(self.profile.configs[name], seed=0)
        return self.pairs[name]


@dataclass(frozen=True)
class Check:
    """One fenced check: ``run(ctx)`` returns ``status``, ``headline`` and ``rows``.

    ``needs_s``: the least budget left (on an H200) for the check to start.
    """

    name: str
    summary: str
    run: Callable[[Context], dict[str, Any]]
    needs_s: float
    in_dry_run: bool = False


# ---------------------------------------------------------------------------- helpers


def on_device(module: M, device: str, dtype: torch.dtype = torch.float32) -> M:
    """A copy of ``module`` on ``device`` in ``dtype``; the CPU master is untouched.

    Call it outside inference mode: the prompt encoder's positional-grid cache
    reads its buffer's version counter, which inference tensors lack.
    """
    return copy.deepcopy(module).to(device=device, dtype=dtype).eval()


def to_device(value: Any, device: str) -> Any:
    """Tensors inside nested tuples / dicts moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    return value


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def gpu_memory(device: str) -> Iterator[dict[str, float]]:
    """Fills ``resident_mib`` (allocated on entry) and ``peak_mib`` (the most
    allocated inside, after a reset on entry); stays empty on a CPU."""
    figures: dict[str, float] = {}
    if not device.startswith("cuda"):
        yield figures
        return
    free_device_memory()
    figures["resident_mib"] = torch.cuda.memory_allocated() / MIB
    torch.cuda.reset_peak_memory_stats()
    yield figures
    torch.cuda.synchronize()
    figures["peak_mib"] = torch.cuda.max_memory_allocated() / MIB


def seconds_per_call(fn: Callable[[], object], device: str, *, warmup: int, repeats: int) -> float:
    """Mean time of ``repeats`` back-to-back calls after ``warmup`` calls
    (CUDA events around the loop on a GPU, so queued work is counted)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    if not device.startswith("cuda"):
        begin = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - begin) / repeats
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0 / repeats


@contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for matrix products and convolutions (the fp32 comparisons)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref|: the measure of ``test_equivalence.assert_close``."""
    if ours.shape != ref.shape:
        raise ValueError(f"shapes differ: ours {tuple(ours.shape)}, reference {tuple(ref.shape)}")
    if ref.numel() == 0:
        return 0.0
    scale = max(float(ref.abs().max()), 1e-6)
    return float((ours.float() - ref.float()).abs().max()) / scale


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks ``...xHxW`` (1 where both are empty)."""
    inter = (a & b).sum((-2, -1)).double()
    union = (a | b).sum((-2, -1)).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def sample_image(side: int, height: int | None = None) -> Any:
    """``side x side`` (or ``height x side``) uint8 RGB with a few rectangles (bench_automask's)."""
    from benchmarks.bench_automask import _image

    return _image(side)[: height or side]


def fenced_row(fn: Callable[[], Row], **labels: Any) -> Row:
    """``labels`` plus ``fn()``'s figures, or plus ``error`` when it raised."""
    try:
        return {**labels, **fn()}
    except Exception as exc:  # noqa: BLE001 - one row's failure is recorded, the others go on
        free_device_memory()
        return {**labels, "error": f"{type(exc).__name__}: {exc}"[:500]}


def rows_status(rows: list[Row]) -> str:
    """``done``, ``partial`` (some rows failed or were skipped), ``error`` (all
    failed) or ``skipped`` (all skipped for the budget)."""
    failed, skipped = sum("error" in r for r in rows), sum("skipped" in r for r in rows)
    if skipped == len(rows):
        return "skipped"
    return "error" if failed == len(rows) else ("partial" if failed or skipped else "done")


def add_ratios(rows: list[Row], baseline: list[Row], key: str, to: str, faster: str = "lower") -> None:
    """``to`` in each row: the matching ``baseline`` row's ``key`` over this row's
    (``faster="lower"``, for times) or the inverse (for rates). Rows match on
    ``batch`` when they have one."""
    base = {r.get("batch"): r[key] for r in baseline if key in r}
    for row in rows:
        if key in row and row.get("batch") in base:
            ratio = base[row.get("batch")] / row[key]
            row[to] = ratio if faster == "lower" else 1.0 / ratio


# ---------------------------------------------------------------------------- correctness


def check_equivalence(ctx: Context, name: str) -> dict[str, Any]:
    """fp32 on the device: image encoder, prompt encoder and decoder (plain and cached
    paths, 3 masks and 1) against the reference, as tests/model/test_equivalence does."""
    from tests.model.test_equivalence import _embedding, _image, _prompts, _reference_decode

    ours_cpu, ref_cpu = ctx.pair(name)
    config, device = ctx.profile.configs[name], ctx.device
    ours, ref = on_device(ours_cpu, device), on_device(ref_cpu, device)
    errors: dict[str, float] = {}
    with exact_fp32(), torch.inference_mode():
        x = _image(config).to(device)
        errors["image encoder"] = relative_error(ours.image_encoder(x), ref.image_encoder(x))
        embedding = _embedding(config).to(device)
        pe = ours.prompt_encoder.get_dense_pe()
        cache = ours.prepare_decoder(embedding)
        for case, prompt in _prompts(config.image_size).items():
            prompt = to_device(prompt, device)
            for multimask in (True, False):
                r_sparse, r_dense, r_masks, r_iou = _reference_decode(ref, embedding, prompt, multimask)
                sparse, dense = ours.prompt_encoder(**prompt)
                masks, iou = ours.mask_decoder(embedding, pe, sparse, dense, multimask)
                c_masks, c_iou = ours.decode(
                    cache, prompt["points"], prompt["boxes"], prompt["masks"], multimask
                )
                key = f"{case}, {3 if multimask else 1} mask(s)"
                errors[f"{key}: prompt encoder"] = max(
                    relative_error(sparse, r_sparse), relative_error(dense, r_dense)
                )
                errors[f"{key}: decoder"] = max(relative_error(masks, r_masks), relative_error(iou, r_iou))
                errors[f"{key}: cached decoder"] = max(
                    relative_error(c_masks, r_masks), relative_error(c_iou, r_iou)
                )
    tol = ctx.profile.equivalence_rel
    over = [k for k, v in errors.items() if v > tol]
    rows = []
    for part in ("image encoder", "prompt encoder", "decoder", "cached decoder"):
        mine = {k: v for k, v in errors.items() if k == part or k.endswith(f": {part}")}
        worst = max(mine, key=mine.__getitem__)
        rows.append(
            {"part": part, "max_relative_error": mine[worst], "worst": worst, "comparisons": len(mine)}
        )
    worst = max(errors, key=errors.__getitem__)
    return {
        "status": "fail" if over else "pass",
        "headline": f"max relative error {errors[worst]:.2e} ({worst}), tolerance {tol:g}: "
        f"{len(over)} of {len(errors)} comparisons over",
        "tolerance": tol,
        "over_tolerance": over,
        "errors": errors,
        "rows": rows,
    }


def check_sam2(ctx: Context) -> dict[str, Any]:
    """SAM 2.1 hiera_t on the device against Meta's ``sam2`` (same random weights): the image
    features and the masks of one point in fp32, then both encoders' speed in fp32 and bf16.

    ``skipped`` when ``sam2`` is not installed where this runs (it is a test-only
    dependency; install it with ``SAM2_BUILD_CUDA=0``).
    """
    if importlib.util.find_spec("sam2") is None:
        return {"status": "skipped", "headline": "Meta's sam2 package is not installed here"}
    from backend.inference.sam2_predictor import Sam2Predictor
    from tests.model.sam2.reference import build_reference, ours_from, reference_features, reference_predictor

    side, device = ctx.profile.image_side, ctx.device
    reference = build_reference("sam2.1_hiera_t", image_size=side, seed=0)
    ours = ours_from(reference, side)
    ours_dev, ref_dev = on_device(ours, device), on_device(reference, device)
    image = sample_image(side, side * 3 // 4)
    errors: dict[str, float] = {}
    with exact_fp32(), torch.inference_mode():
        x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
        mine = ours_dev.encode_image(x)
        theirs = reference_features(ref_dev, x)
        for label, a, b in zip(
            ("feat_s0", "feat_s1", "image_embed"),
            (mine.feat_s0, mine.feat_s1, mine.image_embed),
            theirs,
            strict=True,
        ):
            errors[f"features {label}"] = relative_error(a, b)
        predictor, meta = Sam2Predictor(ours_dev), reference_predictor(ref_dev)
        predictor.set_image(image)
        meta.set_image(image)
        point = {"point_coords": [[side * 0.4, side * 0.3]], "point_labels": [1]}
        out = predictor.predict(**point, stability=False)
        masks, scores, _ = meta.predict(**point, multimask_output=True)
        order = np.argsort(-scores, kind="stable")
        iou = mask_iou(torch.from_numpy(out.masks[0]), torch.from_numpy(masks[order].astype(bool)))
        errors["point scores"] = relative_error(
            torch.from_numpy(out.scores[0]), torch.from_numpy(scores[order])
        )
    rows: list[Row] = [{"part": k, "max_relative_error": v} for k, v in errors.items()]
    rows.append({"part": "point masks, IoU with the reference (lowest of 3)", "value": float(iou.min())})
    for dtype in (torch.float32, torch.bfloat16):
        ours_s, ref_s = sam2_encoder_seconds(ctx, ours, reference, dtype)
        free_device_memory()  # the device copies are gone with the call
        rows.append(
            {
                "part": f"hiera_t encoder {str(dtype).removeprefix('torch.')}",
                "ours_s": ours_s,
                "reference_s": ref_s,
                "speedup": ref_s / ours_s,
            }
        )
    tol = ctx.profile.equivalence_rel
    over = [k for k, v in errors.items() if v > tol]
    worst = max(errors, key=errors.__getitem__)
    failed = bool(over) or float(iou.min()) < 0.98
    return {
        "status": "fail" if failed else "pass",
        "headline": f"max relative error {errors[worst]:.2e} ({worst}), tolerance {tol:g}; point masks IoU "
        f">= {float(iou.min()):.3f}; encoder speed-up fp32 {rows[-2]['speedup']:.2f}x, bf16 {rows[-1]['speedup']:.2f}x",
        "errors": errors,
        "rows": rows,
    }


def sam2_encoder_seconds(ctx: Context, ours: Any, reference: Any, dtype: torch.dtype) -> tuple[float, float]:
    """Seconds per image-encoder call of ours and of the reference, in ``dtype`` on the device."""
    device, side = ctx.device, ctx.profile.image_side
    mine, theirs = on_device(ours, device, dtype), on_device(reference, device, dtype)
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    timing = {"warmup": ctx.profile.warmup, "repeats": ctx.profile.repeats}
    with torch.inference_mode():
        ours_s = seconds_per_call(lambda: mine.encode_image(x), device, **timing)
        ref_s = seconds_per_call(lambda: theirs.forward_image(x), device, **timing)
    return ours_s, ref_s


def predictor_masks(model: Any, image: Any, prompts: dict[str, dict[str, Any]]) -> torch.Tensor:
    """``PxKxHxW`` bool masks, in the decoder's order (not ranked), one prompt each.

    Args:
        model: Our ``Sam`` on its device and dtype.
        image: ``HxWx3`` uint8 RGB.
        prompts: ``SamPredictor.predict`` keyword arguments (point_coords,
            point_labels, box) in original pixels, one object each.
    """
    from backend.inference.predictor import SamPredictor

    predictor = SamPredictor(model)
    predictor.set_image(image)

    def tensor(value: Any, dtype: torch.dtype) -> torch.Tensor | None:
        return None if value is None else torch.tensor([value], dtype=dtype, device=predictor.device)

    out = []
    with torch.inference_mode():
        for p in prompts.values():
            low_res, _ = predictor.predict_torch(
                tensor(p.get("point_coords"), torch.float32),
                tensor(p.get("point_labels"), torch.int64),
                tensor(p.get("box"), torch.float32),
                sort=False,
            )
            out.append(predictor.upscale_logits(low_res.float())[0] > 0)
    return torch.stack(out)


def check_half_precision(ctx: Context, name: str) -> dict[str, Any]:
    """Ours in bf16 and fp16, end to end (image -> 3 masks): mask IoU against ours in fp32."""
    from tests.inference.test_predictor import _prompts

    ours_cpu, _ = ctx.pair(name)
    image = sample_image(ctx.profile.image_side)
    prompts = _prompts(*image.shape[:2])
    reference = predictor_masks(on_device(ours_cpu, ctx.device), image, prompts)

    def compare(dtype: torch.dtype) -> Row:
        ious = mask_iou(predictor_masks(on_device(ours_cpu, ctx.device, dtype), image, prompts), reference)
        return {"min_iou": float(ious.min()), "mean_iou": float(ious.mean()), "masks": ious.numel()}

    rows = [fenced_row(partial(compare, dtype), dtype=label) for label, dtype in HALF_DTYPES.items()]
    status = "pass" if all(r.get("min_iou", 0.0) >= MIN_IOU for r in rows) else "fail"
    least = ", ".join(
        f"{r['dtype']} {r['min_iou']:.4f}" if "min_iou" in r else f"{r['dtype']} error" for r in rows
    )
    return {
        "status": "error" if rows_status(rows) == "error" else status,
        "headline": f"least mask IoU vs fp32: {least} (need >= {MIN_IOU})",
        "rows": rows,
    }


# ---------------------------------------------------------------------------- speed


ENCODER_VARIANTS = (
    ("reference fp32", 1, torch.float32),  # index into ctx.pair(): 0 ours, 1 reference
    ("reference bf16", 1, torch.bfloat16),
    ("ours fp32", 0, torch.float32),
    ("ours bf16", 0, torch.bfloat16),
)


def encoder_figures(
    ctx: Context, encoder: Any, dtype: torch.dtype, batch: int, *, compiled: bool = False
) -> Row:
    """Images/s of one encoder at one batch size; its peak memory includes its weights.

    With ``compiled``, the module runs under ``torch.compile`` and the first
    call (the compilation) is timed as ``compile_s``.
    """
    side = encoder.img_size
    with gpu_memory(ctx.device) as memory:
        model = on_device(encoder, ctx.device, dtype)
        x = torch.randn(batch, 3, side, side, device=ctx.device, dtype=dtype)
        extra: Row = {}
        with torch.inference_mode():
            if compiled:
                eager = model(x)
                model = torch.compile(model, dynamic=False)
                begin = time.perf_counter()
                first = model(x)
                synchronize(ctx.device)
                extra = {
                    "compile_s": time.perf_counter() - begin,
                    "rel_diff_vs_eager": relative_error(first, eager),
                }
            p = ctx.profile
            seconds = seconds_per_call(lambda: model(x), ctx.device, warmup=p.warmup, repeats=p.repeats)
    return {"images_per_s": batch / seconds, "ms_per_batch": 1e3 * seconds, **memory, **extra}


def reference_fp32_rows(ctx: Context, name: str) -> list[Row]:
    rows = ctx.results.get(f"encoder_speed_{name}", {}).get("rows", [])
    return [r for r in rows if r.get("variant") == "reference fp32"]


def best_headline(rows: list[Row]) -> str:
    measured = [r for r in rows if "images_per_s" in r]
    if not measured:
        return "nothing measured"
    best = max(measured, key=lambda r: r["images_per_s"])
    return f"best of ours: {best['images_per_s']:.1f} images/s ({best['variant']}, batch {best['batch']})"


def check_encoder_speed(ctx: Context, name: str) -> dict[str, Any]:
    """Encoder images/s at each batch size: the reference and ours, fp32 and bf16."""
    pair = ctx.pair(name)
    rows = [
        fenced_row(
            partial(encoder_figures, ctx, pair[side].image_encoder, dtype, batch), batch=batch, variant=label
        )
        for batch in ctx.profile.batches
        for label, side, dtype in ENCODER_VARIANTS
    ]
    baseline = [r for r in rows if r["variant"] == "reference fp32"]
    add_ratios(rows, baseline, "images_per_s", "x_reference_fp32", faster="higher")
    ours = [r for r in rows if r["variant"].startswith("ours")]
    return {"status": rows_status(rows), "headline": best_headline(ours), "rows": rows}


def check_encoder_compile(ctx: Context, name: str) -> dict[str, Any]:
    """Ours in bf16 under ``torch.compile``, at each batch size while the budget lasts
    (a batch size starts only with 30 s plus 1.5x the longest compilation so far left)."""
    encoder = ctx.pair(name)[0].image_encoder
    rows: list[Row] = []
    try:
        for batch in ctx.profile.batches:
            labels = {"batch": batch, "variant": "ours bf16 + compile"}
            longest = max((r.get("compile_s", 0.0) for r in rows), default=0.0)
            if not ctx.dry_run and ctx.left_s() < 30 + 1.5 * longest:
                rows.append({**labels, "skipped": f"budget: {ctx.left_s():.0f} s left"})
                continue
            figures = partial(encoder_figures, ctx, encoder, torch.bfloat16, batch, compiled=True)
            rows.append(fenced_row(figures, **labels))
    finally:
        torch._dynamo.reset()
    add_ratios(rows, reference_fp32_rows(ctx, name), "images_per_s", "x_reference_fp32", faster="higher")
    return {"status": rows_status(rows), "headline": best_headline(rows), "rows": rows}


def check_prompt_latency(ctx: Context) -> dict[str, Any]:
    """One point -> 3 masks on a 768x1024 image with vit_b (every SAM 1 size has the same
    decoder): ``SamPredictor.predict`` of ours (fp32, bf16) and of the reference,
    interleaved. Each call returns the masks on the host: wall time is what a caller sees."""
    import numpy as np
    from segment_anything import SamPredictor as ReferencePredictor

    from backend.inference.predictor import SamPredictor
    from benchmarks.bench_model_core import IMAGE_HW, POINT_XY, interleaved

    ours_cpu, ref_cpu = ctx.pair("vit_b")
    image = sample_image(IMAGE_HW[1], IMAGE_HW[0])
    point: dict[str, Any] = {"point_coords": np.array([POINT_XY]), "point_labels": np.array([1])}
    reference = ReferencePredictor(on_device(ref_cpu, ctx.device))
    ours32 = SamPredictor(on_device(ours_cpu, ctx.device))
    ours16 = SamPredictor(on_device(ours_cpu, ctx.device, torch.bfloat16))
    for predictor in (reference, ours32, ours16):
        predictor.set_image(image)
    calls: dict[str, Callable[[], Any]] = {
        "reference fp32": lambda: reference.predict(**point),
        "ours fp32": lambda: ours32.predict(**point),
        "ours fp32, stability=False": lambda: ours32.predict(**point, stability=False),
        "ours bf16": lambda: ours16.predict(**point),
    }
    rows = []
    with torch.inference_mode():
        times = interleaved(calls, ctx.profile.prompt_repeats, warmup=ctx.profile.warmup)
        for label, fn in calls.items():
            with gpu_memory(ctx.device) as memory:
                fn()
            wall = sorted(times[label].wall)
            p90 = wall[round(0.9 * (len(wall) - 1))]
            rows.append(
                {"variant": label, "p50_ms": 1e3 * statistics.median(wall), "p90_ms": 1e3 * p90, **memory}
            )
        ref_masks, ref_scores, _ = reference.predict(**point)
        ours_best = ours32.predict(**point).masks[0, 0]
    add_ratios(rows, rows[:1], "p50_ms", "x_reference")
    agreement = float(
        mask_iou(torch.from_numpy(ours_best), torch.from_numpy(ref_masks[int(np.argmax(ref_scores))]))
    )
    return {
        "status": "done",
        "headline": f"ours fp32 p50 {rows[1]['p50_ms']:.2f} ms, reference {rows[0]['p50_ms']:.2f} ms; "
        f"best-mask IoU ours vs reference {agreement:.4f}",
        "rows": rows,
    }


def automask_figures(ctx: Context, make: Callable[[], Callable[[Any], list]], image: Any) -> Row:
    """Best of two timed segment-everything runs after one warm-up; peak memory includes the weights."""
    with gpu_memory(ctx.device) as memory:
        generate = make()
        generate(image)
        runs = []
        for _ in range(2):
            begin = time.perf_counter()
            masks = len(generate(image))
            synchronize(ctx.device)
            runs.append(time.perf_counter() - begin)
    return {"seconds": min(runs), "masks": masks, **memory}


def check_automask(ctx: Context, name: str) -> dict[str, Any]:
    """Segment everything on one square image, encoder included: ours (fp32, bf16)
    vs ``SamAutomaticMaskGenerator``, the same grid and thresholds."""
    from segment_anything import SamAutomaticMaskGenerator

    from backend.inference.automask import AutomaskGenerator

    ours_cpu, ref_cpu = ctx.pair(name)
    image = sample_image(ctx.profile.image_side)
    options: dict[str, Any] = {"points_per_side": ctx.profile.automask_points, **AUTOMASK_THRESHOLDS}
    makers: dict[str, Callable[[], Callable[[Any], list]]] = {
        "reference fp32": lambda: (
            SamAutomaticMaskGenerator(
                on_device(ref_cpu, ctx.device), output_mode="coco_rle", **options
            ).generate
        ),
        "ours fp32": lambda: AutomaskGenerator(on_device(ours_cpu, ctx.device), **options).generate,
        "ours bf16": lambda: (
            AutomaskGenerator(on_device(ours_cpu, ctx.device, torch.bfloat16), **options).generate
        ),
    }
    rows = [
        fenced_row(partial(automask_figures, ctx, make, image), variant=label)
        for label, make in makers.items()
    ]
    add_ratios(rows, rows[:1], "seconds", "x_reference")
    side, points = ctx.profile.image_side, options["points_per_side"] ** 2
    times = ", ".join(f"{r['variant']} {r['seconds']:.2f} s" for r in rows if "seconds" in r)
    return {"status": rows_status(rows), "headline": f"{side}x{side}, {points} points: {times}", "rows": rows}


# ---------------------------------------------------------------------------- server


def make_server(path: str, device: str, max_batch: int) -> Any:
    """A ``sam-server`` as ``bench_server.start_server`` makes it, but keeping this
    process's PYTHONPATH (packages carried to the device as wheels live there)."""
    from tests.serving.server_process import ServerProcess

    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    threads = "1" if device == "cpu" else "4"
    args = (
        "--model",
        path,
        "--device",
        device,
        "--no-plugins",
        "--threads",
        "32",
        "--max-batch",
        str(max_batch),
    )
    env = {"SAM_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    return ServerProcess(*args, env={**env, "PYTHONPATH": pythonpath})


def check_server(ctx: Context) -> dict[str, Any]:
    """Requests/s per concurrency level with micro-batching on and off: two servers,
    alternating windows (``bench_server.report_throughput``'s loop, which prints only)."""
    from backend.client.http_client import SamClient
    from benchmarks.bench_server import model_path, picture, throughput

    p = ctx.profile
    modes = {"on": 16, "off": 1}
    rps = dict.fromkeys(((mode, c) for mode in modes for c in p.server_clients), 0.0)
    served: dict[str, Row] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = model_path(Path(tmp), p.server_weights)
        servers = {mode: make_server(path, ctx.device, size) for mode, size in modes.items()}
        try:
            with ThreadPoolExecutor(len(servers)) as pool:
                list(pool.map(lambda s: s.start(timeout=300), servers.values()))
            image_ids = {}
            for mode, server in servers.items():
                client = SamClient(server.url, timeout=300)
                info = client.models()[0]
                served[mode] = {k: info.get(k) for k in ("name", "device", "dtype", "max_batch")}
                image_ids[mode] = [
                    client.add_image(picture(s)).image_id for s in range(max(p.server_clients))
                ]
                throughput(server, 2, 1.0, image_ids[mode])  # warm-up
            window = p.server_seconds / p.server_rounds
            for clients in p.server_clients:
                for _ in range(p.server_rounds):
                    for mode, server in servers.items():
                        rps[(mode, clients)] += (
                            throughput(server, clients, window, image_ids[mode]) / p.server_rounds
                        )
        finally:
            for server in servers.values():
                server.stop()
    rows = [
        {
            "clients": c,
            "rps_on": rps[("on", c)],
            "rps_off": rps[("off", c)],
            "ratio": rps[("on", c)] / rps[("off", c)],
        }
        for c in p.server_clients
    ]
    last = rows[-1]
    return {
        "status": "done",
        "headline": f"micro-batching on / off at {last['clients']} clients: {last['ratio']:.2f}x",
        "weights": p.server_weights,
        "servers": served,
        "rows": rows,
    }


# ---------------------------------------------------------------------------- the run


def per_model(
    kind: str,
    run: Callable[..., dict[str, Any]],
    summary: str,
    needs: dict[str, float],
    dry: tuple[str, ...],
) -> list[Check]:
    """One check per model: ``{kind}_{model}``, needing ``needs[model]`` seconds."""
    return [
        Check(f"{kind}_{m}", f"{m}: {summary}", partial(run, name=m), s, m in dry) for m, s in needs.items()
    ]


def all_checks() -> list[Check]:
    """Every check, in running order: correctness, then the measures with a target,
    then the others; torch.compile (slowest to prepare, most likely to crash) last."""
    return [
        *per_model(
            "equivalence",
            check_equivalence,
            "fp32 vs the reference, encoder + prompts + decoder",
            {"vit_b": 20, "vit_h": 45, "vit_t": 15},
            ("vit_b",),
        ),
        Check(
            "equivalence_sam2",
            "SAM 2.1 hiera_t vs Meta's sam2: features, point masks, encoder speed",
            check_sam2,
            60,
            True,
        ),
        *per_model(
            "half_precision",
            check_half_precision,
            f"bf16 / fp16 masks vs ours fp32, IoU >= {MIN_IOU}",
            {"vit_b": 10, "vit_h": 20, "vit_t": 10},
            ("vit_b",),
        ),
        *per_model(
            "encoder_speed",
            check_encoder_speed,
            "encoder images/s, batch 1 and 8, reference and ours, fp32 and bf16",
            {"vit_b": 25, "vit_h": 50},
            ("vit_b",),
        ),
        Check(
            "prompt_latency",
            "one point -> 3 masks, ours vs the reference predictor",
            check_prompt_latency,
            15,
            True,
        ),
        Check(
            "server_throughput",
            "requests/s at 1, 4, 16 clients, micro-batching on / off",
            check_server,
            70,
            True,
        ),
        *per_model(
            "automask",
            check_automask,
            "segment everything on one image, ours vs SamAutomaticMaskGenerator",
            {"vit_b": 25, "vit_h": 30},
            ("vit_b",),
        ),
        *per_model(
            "encoder_compile",
            check_encoder_compile,
            "encoder in bf16 + torch.compile, batch 1 and 8",
            {"vit_h": 150, "vit_b": 90},
            (),
        ),
    ]


def run_check(check: Check, ctx: Context) -> dict[str, Any]:
    """Run one check fenced: an error or a budget skip becomes the entry's status."""
    entry: dict[str, Any] = {"name": check.name, "summary": check.summary}
    left = ctx.left_s()
    if not ctx.dry_run and left < check.needs_s:
        budget = f"{max(left, 0):.0f} s left of {ctx.budget_s:.0f} s, needs about {check.needs_s:.0f} s"
        return {**entry, "status": "skipped", "headline": f"budget: {budget}"}
    begin = time.monotonic()
    try:
        entry.update(check.run(ctx))
    except Exception as exc:  # noqa: BLE001 - recorded; the next check runs
        entry.update(status="error", headline=f"{type(exc).__name__}: {exc}"[:300])
        entry["traceback"] = traceback.format_exc(limit=-6)
    finally:
        entry["seconds"] = time.monotonic() - begin
        free_device_memory()
    return entry


def evaluate_targets(ctx: Context) -> list[Row]:
    """The issue's targets from the results so far (``pass`` None: not measured)."""

    def rows(name: str) -> list[Row]:
        return ctx.results.get(name, {}).get("rows", [])

    bf16 = [
        r
        for name in ("encoder_speed_vit_h", "encoder_compile_vit_h")
        for r in rows(name)
        if r["variant"].startswith("ours bf16") and "images_per_s" in r
    ]
    best = max(bf16, key=lambda r: r["images_per_s"], default=None)
    prompt = next((r for r in rows("prompt_latency") if r["variant"] == "ours fp32"), None)
    server = max(rows("server_throughput"), key=lambda r: r["clients"], default=None)
    targets = [
        target("vit_h encoder in bf16", ">= 30 images/s", best, "images_per_s", 30.0, "variant"),
        target("prompt -> 3 masks, ours fp32 p50", "<= 5 ms", prompt, "p50_ms", -5.0, "variant"),
        target("micro-batching on / off", ">= 2x at 16 clients", server, "ratio", 2.0, "clients"),
    ]
    if ctx.dry_run:
        for t in targets:
            t.update({"pass": None, "detail": "dry run: CPU, tiny sizes, not comparable"})
    return targets


def target(name: str, goal: str, row: Row | None, key: str, bound: float, detail: str) -> Row:
    """A target met when ``row[key] >= bound`` (``bound`` > 0) or ``row[key] <= -bound``."""
    value = None if row is None else row[key]
    met = None if value is None else (value >= bound if bound > 0 else value <= -bound)
    where = (
        None
        if row is None
        else f"{detail} {row[detail]}" + (f", batch {row['batch']}" if "batch" in row else "")
    )
    return {"target": name, "goal": goal, "value": value, "pass": met, "detail": where}


def environment(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """Where and how the run happened."""
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "mode": "dry run (CPU, tiny sizes)" if ctx.dry_run else "full",
        "device": ctx.device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "packages": {name: importlib.util.find_spec(name) is not None for name in PACKAGES},
    }
    if ctx.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(ctx.device)
        meta.update(gpu=props.name, gpu_memory_gib=props.total_memory / 1024**3, cuda=torch.version.cuda)
        meta.update(
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32
        )
    try:
        git = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        meta["commit"] = git.stdout.strip() or None
    except OSError:
        meta["commit"] = None
    return meta


def cell(value: Any) -> str:
    """One markdown table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if 0 < abs(value) < 1e-2 else f"{value:.4g}"
    return str(value).replace("|", "/")


def table(rows: list[Row]) -> list[str]:
    """Markdown table of dicts; the columns are the union of their keys."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return lines + ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: targets, one line per check, then each check's rows."""
    meta = report["meta"]
    lines = [f"# GPU check: {meta.get('gpu', meta['device'])}", ""]
    lines += [
        f"{meta['mode']}; torch {meta['torch']}; commit {meta['commit']}; started {meta['started']}",
        "",
    ]
    lines += ["## Targets", "", *table(report["targets"]), "", "## Checks", ""]
    summary = [{k: c.get(k) for k in ("name", "status", "seconds", "headline")} for c in report["checks"]]
    lines += table(summary)
    for check in report["checks"]:
        if check.get("rows"):
            lines += ["", f"### {check['name']}", "", check["summary"], "", *table(check["rows"])]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{REPORT_NAME}.json").write_text(json.dumps(report, indent=2, default=str))
    (out / f"{REPORT_NAME}.md").write_text(markdown(report))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {REPORT_NAME}.json and .md")
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="skip checks that no longer fit (seconds)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the checks; run the small ones on the CPU"
    )
    parser.add_argument("--only", default="", help="comma-separated check names (default: all)")
    parser.add_argument("--device", default="cuda", help="CUDA device of the full run")
    return parser.parse_args(argv)


def select_checks(only: str) -> list[Check]:
    checks = all_checks()
    if not only:
        return checks
    wanted = set(only.split(","))
    unknown = wanted - {c.name for c in checks}
    if unknown:
        raise SystemExit(f"unknown checks {sorted(unknown)}; --dry-run lists them")
    return [c for c in checks if c.name in wanted]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks = select_checks(args.only)
    if args.dry_run:
        print("checks, in running order (* also in --dry-run, at tiny sizes on the CPU):")
        for check in checks:
            print(f"  {'*' if check.in_dry_run else ' '} {check.name:<24} {check.summary}")
        checks = [c for c in checks if c.in_dry_run]
        profile = dry_profile()
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: --dry-run runs the CPU smoke test")
    else:
        profile = full_profile(args.device)
    ctx = Context(profile=profile, budget_s=args.budget_s, dry_run=args.dry_run)
    report: dict[str, Any] = {"meta": environment(ctx, args), "checks": [], "targets": []}
    for check in checks:
        entry = run_check(check, ctx)
        ctx.results[check.name] = entry
        report["checks"].append(entry)
        report["targets"] = evaluate_targets(ctx)
        report["meta"]["elapsed_s"] = time.monotonic() - ctx.started
        write_report(report, args.out)
        print(
            f"[{report['meta']['elapsed_s']:6.1f} s] {check.name}: {entry['status']} - {entry['headline']}",
            flush=True,
        )
    for t in report["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
        print(f"target {t['target']} {t['goal']}: {verdict} (value {cell(t['value'])}; {t['detail']})")
    print(f"report: {args.out / REPORT_NAME}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
