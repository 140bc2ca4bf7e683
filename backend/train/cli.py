"""``sam-train`` and ``sam-eval``.

Examples::

    # the shipped demo model, from scratch on generated scenes (three stages, ~2.5 h on one CPU core)
    sam-train --demo --out backend/hub/packaged_weights/sam_demo.pt

    # fine-tune ViT-B's prompt encoder and mask decoder on a COCO dataset
    sam-train --data annotations.json --images images/ --base vit_b --freeze-encoder --out my_sam.pt

    # the same for SAM 2.1 (its features cached; the result loads as SAM 2.1)
    sam-train --data annotations.json --images images/ --base sam2.1_hiera_t --freeze-encoder --out my_sam2.pt

    # the paper's interactive metrics
    sam-eval --model my_sam.pt --data annotations.json --images images/ --clicks 20
    sam-eval --model demo --scenes 100 --clicks 5 --json

``sam-train`` keeps a training state (``--state``), written every
``--checkpoint-every`` steps and when Ctrl-C or SIGTERM stops it: the first
signal lets the current step finish, saves the state at that step and exits
with status 130 (SIGINT) or 143 (SIGTERM); the same command then resumes at
exactly that step. A second signal stops at once, back to the last periodic
save. ``--restart`` starts over.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.api.errors import InvalidInput, SamError
from backend.cli_help import at_least, new_parser, non_negative_float, path_or_name
from backend.train.stopping import StopRequest

if TYPE_CHECKING:
    from backend.model import Sam
    from backend.model.sam2 import Sam2
    from backend.train.datasets import MaskDataset
    from backend.train.loop import TrainSettings

EXIT_INTERRUPTED = 130

TRAIN_FLAGS = {
    "steps": "--steps",
    "images_per_batch": "--batch",
    "masks_per_image": "--masks-per-image",
    "accumulate": "--accumulate",
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "warmup_steps": "--warmup",
    "decay_steps": "--decay-steps",
    "decay_factor": "--decay-factor",
    "freeze_encoder": "--freeze-encoder",
    "amp": "--amp",
    "seed": "--seed",
    "checkpoint_every": "--checkpoint-every",
    "rounds": "--rounds",
    "rounds_without_point": "--rounds-without-point",
    "box_probability": "--box-probability",
}
"""Training settings field -> the ``sam-train`` flag that sets it (error messages name the flag)."""

EVAL_FLAGS = {
    "clicks": "--clicks",
    "always_multimask": "--always-multimask",
    "max_objects": "--max-objects",
    "min_area": "--min-area",
}
"""Evaluation settings field -> the ``sam-eval`` flag that sets it."""


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``sam-train``; returns the exit status."""
    args = _train_parser().parse_args(argv)
    try:
        return _train(args)
    except SamError as error:
        print(f"sam-train: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\nsam-train: interrupted: run the same command again to resume from the last saved training "
            "state (saved every --checkpoint-every steps; before the first save, it starts over)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def eval_main(argv: list[str] | None = None) -> int:
    """Entry point of ``sam-eval``; returns the exit status."""
    args = _eval_parser().parse_args(argv)
    try:
        return _eval(args)
    except SamError as error:
        print(f"sam-eval: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nsam-eval: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


_TRAIN_EXAMPLES = """examples:
  sam-train --demo --out backend/hub/packaged_weights/sam_demo.pt
  sam-train --data annotations.json --images images/ --base vit_b --freeze-encoder --out my_sam.pt
  sam-train --data annotations.json --images images/ --base sam2.1_hiera_t --freeze-encoder --out my_sam2.pt

Ctrl-C (or SIGTERM) finishes the current step, saves the training state at that
step and exits; the same command resumes there. A second Ctrl-C stops at once."""

_EVAL_EXAMPLES = """examples:
  sam-eval --model my_sam.pt --data annotations.json --images images/ --clicks 20
  sam-eval --model demo --scenes 100 --clicks 5 --json"""


def _train_parser() -> argparse.ArgumentParser:
    parser = new_parser("sam-train", "Train or fine-tune a SAM model.", epilog=_TRAIN_EXAMPLES)
    _add_train_inputs(parser)
    _add_optimiser_options(parser)
    _add_prompting_and_run_options(parser)
    _add_runtime_options(parser)
    return parser


def _add_train_inputs(parser: argparse.ArgumentParser) -> None:
    """What to train on, from which model, and where the model, state and embeddings go."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--demo",
        action="store_true",
        help="train the shipped demo model from scratch (fixed three-stage recipe)",
    )
    source.add_argument("--data", help="COCO JSON, SA-1B folder, or Label Studio fit() folder")
    source.add_argument("--scenes", type=at_least(1), metavar="N", help="train on N generated scenes")
    parser.add_argument("--images", help="image folder of a COCO JSON (default: images/ next to it)")
    parser.add_argument(
        "--base",
        help="start from this model: a SAM, MobileSAM or SAM 2.1 registry name or checkpoint path",
    )
    parser.add_argument("--out", required=True, help="where the trained model is written")
    parser.add_argument(
        "--state",
        help="training-state file (default: runs/<out name>/state.pt; --demo keeps one per stage there)",
    )
    parser.add_argument("--restart", action="store_true", help="ignore an existing training state")
    parser.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="train prompt encoder + mask decoder only (image features computed once and cached)",
    )
    parser.add_argument(
        "--cache-dir", help="embedding cache for --freeze-encoder (default: runs/<out name>/embeddings)"
    )


def _add_optimiser_options(parser: argparse.ArgumentParser) -> None:
    """Batches, learning rate and its schedule."""
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps")
    parser.add_argument("--batch", type=int, default=4, help="images per micro-batch")
    parser.add_argument("--masks-per-image", type=int, default=4, help="objects sampled per image")
    parser.add_argument("--accumulate", type=int, default=1, help="micro-batches per optimiser step")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (AdamW)")
    parser.add_argument("--weight-decay", type=non_negative_float, default=0.1, help="AdamW weight decay")
    parser.add_argument("--warmup", type=at_least(0), default=100, help="linear warm-up steps")
    parser.add_argument(
        "--decay-steps",
        type=at_least(0),
        nargs="*",
        default=[],
        help="steps where the lr is multiplied by --decay-factor (default: none)",
    )
    parser.add_argument(
        "--decay-factor",
        type=non_negative_float,
        default=0.1,
        help="learning-rate multiplier at each decay step",
    )


def _add_prompting_and_run_options(parser: argparse.ArgumentParser) -> None:
    """Prompt simulation, mixed precision, seed and how often the state is saved."""
    parser.add_argument("--rounds", type=int, default=11, help="prompting rounds per object (paper: 11)")
    parser.add_argument(
        "--rounds-without-point",
        type=int,
        default=2,
        help="rounds adding no point, at most --rounds - 1 (paper: 2)",
    )
    parser.add_argument("--box-probability", type=float, default=0.5, help="chance a batch starts from boxes")
    parser.add_argument(
        "--amp", choices=("auto", "bf16", "fp16", "off"), default="auto", help="mixed precision on GPU"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument(
        "--checkpoint-every", type=int, default=100, help="steps between saves of the training state"
    )


def _eval_parser() -> argparse.ArgumentParser:
    parser = new_parser("sam-eval", "The SAM paper's interactive point evaluation.", epilog=_EVAL_EXAMPLES)
    parser.add_argument("--model", default="demo", help="registry name or checkpoint path")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="COCO JSON, SA-1B folder, or Label Studio fit() folder")
    source.add_argument(
        "--scenes", type=at_least(1), metavar="N", help="evaluate on N held-out generated scenes"
    )
    parser.add_argument("--images", help="image folder of a COCO JSON (default: images/ next to it)")
    parser.add_argument(
        "--scene-seed", type=int, help="first seed of the generated scenes (default: the held-out range)"
    )
    parser.add_argument("--clicks", type=int, default=20, help="clicks per object (NoC cap)")
    parser.add_argument("--always-multimask", action="store_true", help="three candidates at every click")
    parser.add_argument("--max-objects", type=int, default=0, help="objects per image (0 = all)")
    parser.add_argument("--min-area", type=int, default=1, help="skip smaller objects (pixels)")
    parser.add_argument(
        "--limit", type=at_least(0), default=0, help="evaluate only the first N images (0 = all)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_runtime_options(parser)
    return parser


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:1"
    )
    parser.add_argument(
        "--threads", type=at_least(0), default=0, help="CPU threads for torch (0 = torch's default)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _setup_torch(args: argparse.Namespace) -> str:
    """Set torch's threads; the device ``--device`` names, checked against this machine."""
    import torch

    from backend.hub.devices import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    return pick_device(args.device)


def _check_writable(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written, before any training (it is written last).

    Raises:
        InvalidInput: ``out`` is a folder, or its folder cannot be created or written.
    """
    if out.is_dir():
        raise InvalidInput(f"--out {out} is a folder; give the model file to write, e.g. {out / 'my_sam.pt'}")
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{out.name}.", suffix=".probe"):
            pass  # the model is written the same way: a temporary file in that folder, then renamed
    except OSError as exc:
        raise InvalidInput(f"--out {out}: cannot write there ({exc.strerror or exc})") from None


def _train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    run_dir = Path("runs") / out.stem
    if args.demo:
        return _train_demo(args, out=out, run_dir=run_dir)
    return _train_model(args, out=out, run_dir=run_dir)


def _train_demo(args: argparse.Namespace, *, out: Path, run_dir: Path) -> int:
    """``--demo``: the demo model's three-stage recipe, stage states under ``run_dir``."""
    from backend.train import demo

    _check_writable(out)
    device = _setup_torch(args)
    with StopRequest() as stop:
        result = demo.train_demo_model(
            out,
            run_dir,
            device=device,
            resume=not args.restart,
            progress=not args.no_progress,
            should_stop=stop.is_set,
        )
    if result.stopped:
        return _report_stop(stop, result.step, run_dir)
    print(f"trained the demo model ({result.seconds:.0f} s in this call); written to {out}")
    return 0


def _train_model(args: argparse.Namespace, *, out: Path, run_dir: Path) -> int:
    """``--data`` or ``--scenes`` from ``--base``: check the flags, load, train (resuming), write."""
    from backend.train.adapters import training_adapter
    from backend.train.embedding_cache import EmbeddingCache, frozen_encoder_digest
    from backend.train.loop import train

    settings = _train_settings(args)
    settings.check(TRAIN_FLAGS)  # before loading anything
    _check_writable(out)
    state = Path(args.state) if args.state else run_dir / "state.pt"
    device = _setup_torch(args)
    sam = _load_base(args.base).to(device)
    data = _open_data(args, first_seed=0)
    cache = None
    if settings.freeze_encoder:
        cache = EmbeddingCache(
            args.cache_dir or run_dir / "embeddings",
            encoder_name=frozen_encoder_digest(training_adapter(sam)),
        )
    print(
        f"sam-train: training to step {settings.steps}, state in {state}; "
        "Ctrl-C saves the state at the current step and stops",
        file=sys.stderr,
        flush=True,
    )
    with StopRequest() as stop:
        result = train(
            sam,
            data,
            settings,
            out=out,
            state_path=state,
            resume=not args.restart,
            embedding_cache=cache,
            progress=not args.no_progress,
            meta=_run_identity(args, images=len(data)),
            should_stop=stop.is_set,
            setting_names={**TRAIN_FLAGS, "base": "--base", "data": "--data"},
        )
    if result.stopped:
        return _report_stop(stop, result.step, state)
    ran = result.step - result.resumed_from
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    print(
        f"trained to step {result.step} ({ran} step{'' if ran == 1 else 's'} in this call{resumed}, "
        f"{result.seconds:.0f} s); "
        f"model written to {out}"
    )
    return 0


def _run_identity(args: argparse.Namespace, *, images: int) -> dict[str, Any]:
    """What a run trains, stored with its state and its model: the base and the data (paths
    resolved, so that another spelling of the same file resumes), the image count and the
    annotations' fingerprint (:func:`~backend.train.datasets.dataset_fingerprint`)."""
    from backend.train.datasets import dataset_fingerprint

    if args.data is None:
        return {"base": path_or_name(str(args.base)), "data": f"scenes:{args.scenes}", "images": images}
    return {
        "base": path_or_name(str(args.base)),
        "data": path_or_name(args.data),
        "images": images,
        "annotations": dataset_fingerprint(args.data),
    }


def _report_stop(stop: StopRequest, step: int, saved_in: Path) -> int:
    """Say where a stopped run's state is and how to resume it; the exit status of the signal."""
    print(
        f"sam-train: interrupted at step {step}; the training state is saved in {saved_in}: "
        f"run the same command again to resume at step {step}",
        file=sys.stderr,
    )
    return stop.exit_status


def _train_settings(args: argparse.Namespace) -> TrainSettings:
    """The training settings the flags ask for."""
    from backend.train.loop import TrainSettings
    from backend.train.simulation import RoundsSettings

    return TrainSettings(
        steps=args.steps,
        images_per_batch=args.batch,
        masks_per_image=args.masks_per_image,
        accumulate=args.accumulate,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup,
        decay_steps=tuple(args.decay_steps),
        decay_factor=args.decay_factor,
        freeze_encoder=args.freeze_encoder,
        amp=args.amp,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        rounds=RoundsSettings(
            rounds=args.rounds,
            rounds_without_point=args.rounds_without_point,
            box_probability=args.box_probability,
        ),
    )


def _load_base(base: str | None) -> Sam | Sam2:
    """The network named by ``--base`` (any family training supports: ``backend.train.adapters``)."""
    if not base:
        raise InvalidInput(
            "say which model to start from with --base (e.g. vit_b, demo, sam2.1_hiera_t, or a checkpoint path)"
        )
    from backend.hub import load_model
    from backend.train.adapters import training_adapter

    network = load_model(base)
    training_adapter(network)  # refuses a family training does not support, saying which it does
    return network


def _open_data(args: argparse.Namespace, *, first_seed: int) -> MaskDataset:
    """The dataset named by ``--data``/``--images``, or ``--scenes`` generated scenes from ``first_seed``."""
    from backend.train import demo
    from backend.train.datasets import GeneratedScenes, open_dataset

    if args.scenes is not None:
        return GeneratedScenes(args.scenes, first_seed=first_seed, settings=demo.DEMO_SCENES)
    return open_dataset(args.data, image_dir=args.images)


def _eval(args: argparse.Namespace) -> int:
    import torch

    from backend.hub import load_model
    from backend.inference.families import predictor_for
    from backend.train.demo import HELDOUT_FIRST_SEED
    from backend.train.evaluate import EvalSettings, evaluate

    settings = EvalSettings(
        clicks=args.clicks,
        always_multimask=args.always_multimask,
        max_objects=args.max_objects,
        min_area=args.min_area,
    )
    settings.check(EVAL_FLAGS)  # before loading anything
    device = _setup_torch(args)
    data = _open_data(args, first_seed=HELDOUT_FIRST_SEED if args.scene_seed is None else args.scene_seed)
    if args.limit:
        data = _First(data, args.limit)
    sam = load_model(args.model, device=device)
    sam.eval()
    with torch.inference_mode():
        report = evaluate(predictor_for(sam), data, settings, progress=not args.no_progress and not args.json)
    if args.json:
        print(json.dumps({"model": args.model, **report.to_dict()}, indent=2))
    else:
        print(f"model {args.model}")
        print(report.table())
    return 0


class _First:
    """The first ``count`` items of a dataset."""

    def __init__(self, data: MaskDataset, count: int) -> None:
        self.data = data
        self.count = min(count, len(data))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):  # noqa: ANN204 - same item type as the wrapped dataset
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.data[index]
