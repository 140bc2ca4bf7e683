"""``sam-annotate``: masks for a folder of images, as COCO JSON or SA-1B JSON per image.

Examples::

    sam-annotate photos/ --text cat --text dog --out pets.json
    sam-annotate photos/ --everything --format sa1b --out masks/
    sam-annotate photos/ --model sam3 --concept cat --concept "red car" --out pets.json
    sam-annotate photos/ --text cat --ray --ray-address auto

One mode per job: ``--everything``, ``--text`` (CLIP ranks segment-everything
masks; SAM 1 and SAM 2.1) or ``--concept`` (every instance SAM 3 finds; SAM 3
only). Giving two of them is refused: they ask different models different
questions, so a job answers one.

Each finished image is stored at once in a work folder (default
``<out>.work``); running the same command again skips finished images, also
after Ctrl-C (which exits with status 130 and says so). The final file(s)
are written atomically when every image is done; the work folder is then
deleted, unless some images could not be read (a rerun retries them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.annotate.annotator import DEFAULT_CONCEPT_THRESHOLD, AnnotateSettings, check_model_fits
from backend.annotate.outputs import sa1b_path, write_coco, write_sa1b
from backend.annotate.work_dir import WorkDir, list_images
from backend.api.answers import lower_thresholds
from backend.api.errors import InvalidInput, SamError
from backend.api.segment_everything import (
    MODEL_DEFAULT_NAMES,
    PARAM_NAMES,
    SegmentEverythingParams,
    param_range,
)
from backend.cli_help import at_least, checked_number, fraction, new_parser

EXIT_INTERRUPTED = 130

_EXAMPLES = """examples:
  sam-annotate photos/ --text cat --text dog --out pets.json
  sam-annotate photos/ --everything --format sa1b --out masks/
  sam-annotate photos/ --model sam3 --concept cat --concept "red car" --out pets.json
  sam-annotate photos/ --text cat --ray --ray-address auto

One mode per job: --everything, --text (CLIP ranks segment-everything masks;
SAM 1 and SAM 2.1 models) or --concept (every instance SAM 3 finds; SAM 3 only).

Finished images are kept in the work folder: after Ctrl-C or a crash, run the
same command again to resume. The folder is deleted once the output is written."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = new_parser(
        "sam-annotate",
        "Masks for a folder of images (segment-everything, text prompts, or SAM 3 concepts), as COCO JSON "
        "or SA-1B JSON per image.",
        epilog=_EXAMPLES,
    )
    parser.add_argument("images_dir", type=Path, help="folder of images (searched recursively)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--text", action="append", help="text prompt; repeat for several categories")
    mode.add_argument("--everything", action="store_true", help="keep every segment-everything mask")
    mode.add_argument(
        "--concept",
        action="append",
        metavar="PHRASE",
        help="SAM 3 concept prompt (needs --model sam3 or a SAM 3 folder): every instance of the phrase, "
        "one category per concept; repeat for several (not with --text or --everything: one mode per job)",
    )
    parser.add_argument(
        "--format", choices=("coco", "sa1b"), default="coco", help="COCO JSON file or SA-1B JSON per image"
    )
    parser.add_argument(
        "--out", type=Path, help="output file (default: annotations.json) or folder (sa1b, default: sa1b/)"
    )
    parser.add_argument(
        "--work-dir", type=Path, help="where finished images are kept for resuming (default: <out>.work)"
    )
    parser.add_argument(
        "--model",
        default="demo",
        help="model name (demo, vit_b, vit_l, vit_h, vit_t, sam2.1_hiera_t/s/b+/l, sam3), checkpoint file, "
        "or SAM 3 folder",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--top-k", type=at_least(1), default=1, help="masks kept per text prompt and image")
    parser.add_argument(
        "--clip-model", default="ViT-B/32", help="CLIP model name or checkpoint path (text mode)"
    )
    parser.add_argument("--clip-root", help="folder of the CLIP weights (default: ~/.cache/clip)")
    parser.add_argument(
        "--concept-threshold",
        type=fraction,
        default=DEFAULT_CONCEPT_THRESHOLD,
        help="SAM 3 keeps the instances scoring above this, in [0, 1] (concept mode)",
    )
    _add_segment_everything_flags(parser)
    parser.add_argument("--ray", action="store_true", help="run on Ray (one model replica per GPU)")
    parser.add_argument(
        "--ray-address", help="Ray cluster address (default: a local cluster, or RAY_ADDRESS)"
    )
    parser.add_argument(
        "--workers", type=at_least(1), help="Ray model replicas (default: one per GPU, else 1)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _add_segment_everything_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per segment-everything parameter, all from its one definition.

    ``--points-per-side`` and so on: the field's description as help, its
    default shown in the help, and a type that refuses values out of the
    field's range with the HTTP API's message. The flags default to ``None``
    so that only the values given override the model's (see :func:`_settings`).
    """
    for name in PARAM_NAMES:
        field = SegmentEverythingParams.model_fields[name]
        bounds = param_range(name)
        text = _help_phrase(str(field.description))
        if name not in MODEL_DEFAULT_NAMES:  # those say in the description: the model's
            text += f" (default: {field.default})"
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=checked_number(bounds.kind, bounds.problem),
            help=text.replace("%", "%%"),
        )


def _help_phrase(description: str) -> str:
    """``Point prompts per decoder call.`` -> ``point prompts per decoder call``, like the other flags."""
    text = description.rstrip(".")
    return text[0].lower() + text[1:] if text[1:2].islower() else text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 done, 1 some images unreadable, 2 bad input, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except SamError as error:
        print(f"sam-annotate: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nsam-annotate: interrupted: run the same command again to resume "
            f"(finished images are kept in {_work_path(args)})",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _out_path(args: argparse.Namespace) -> Path:
    return args.out or Path("annotations.json" if args.format == "coco" else "sa1b")


def _work_path(args: argparse.Namespace) -> Path:
    out = _out_path(args)
    return args.work_dir or out.with_name(out.name + ".work")


def _run(args: argparse.Namespace) -> int:
    """Annotate the pending images, write the output, then delete the work folder (all done)."""
    settings = _settings(args)
    check_model_fits(settings)
    if settings.texts:
        _check_clip(settings)
    out = _out_path(args)
    names = list_images(args.images_dir)
    _check_out(args.format, out, names)
    work = WorkDir(_work_path(args), fingerprint=settings.fingerprint())
    failed = _annotate(args, settings, work, names)
    done = [name for name in names if work.is_done(name)]
    _write_output(args.format, out, work, done, settings)
    print(f"sam-annotate: {len(done)} of {len(names)} images annotated -> {out}", file=sys.stderr)
    if done and (args.everything or settings.concepts) and not any(work.load(n)["annotations"] for n in done):
        _say_nothing_passed(settings)
    if failed:
        return 1
    work.remove()
    return 0


def _check_out(output_format: str, out: Path, names: list[str]) -> None:
    """Refuse an ``--out`` the output cannot be written to, before any image is annotated.

    Raises:
        InvalidInput: COCO into a folder, SA-1B into a file, or two images whose
            SA-1B files would be one (``a.png`` and ``a.jpg`` both give ``a.json``).
    """
    parent = out.absolute().parent
    if parent.exists() and not parent.is_dir():
        raise InvalidInput(f"--out {out}: {parent} is a file, not a folder")
    if output_format == "coco":
        if out.is_dir():
            raise InvalidInput(
                f"--out {out} is a folder; the COCO output is one file, e.g. --out {out / 'annotations.json'}"
            )
        return
    if out.exists() and not out.is_dir():
        raise InvalidInput(
            f"--out {out} is a file; the SA-1B output is a folder of JSON files, e.g. --out {out.with_suffix('')}_sa1b"
        )
    seen: dict[Path, str] = {}
    for name in names:
        path = sa1b_path(out, name)
        if path in seen:
            raise InvalidInput(
                f"{seen[path]} and {name} would both be written to {path}: rename one of them, "
                "or use --format coco (one file for all images)"
            )
        seen[path] = name


def _say_nothing_passed(settings: AnnotateSettings) -> None:
    """Segment-everything or SAM 3 kept nothing: name the thresholds used and how to lower them."""
    if settings.concepts:
        print(
            f"sam-annotate: no instance scored above --concept-threshold {settings.concept_threshold}: "
            "lower it to keep less certain ones, e.g. --concept-threshold 0.3",
            file=sys.stderr,
        )
        return
    lower_iou, lower_stability = lower_thresholds(settings.automask)
    print(
        f"sam-annotate: no mask passed the filters (--pred-iou-thresh {settings.automask['pred_iou_thresh']}, "
        f"--stability-score-thresh {settings.automask['stability_score_thresh']}): lower them, "
        f"e.g. --pred-iou-thresh {lower_iou:g} --stability-score-thresh {lower_stability:g}",
        file=sys.stderr,
    )


def _settings(args: argparse.Namespace) -> AnnotateSettings:
    """The job's settings: the flags given, the model's segment-everything thresholds for the rest."""
    from backend.hub import automask_defaults_for

    given = {name: getattr(args, name) for name in PARAM_NAMES if getattr(args, name) is not None}
    if args.concept and given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise InvalidInput(
            f"{flags}: segment-everything settings (--everything, --text); --concept uses SAM 3's detector, "
            "whose one setting is --concept-threshold"
        )
    automask = {**automask_defaults_for(args.model), **given}
    return AnnotateSettings(
        model=args.model,
        texts=tuple(args.text or ()),
        top_k=args.top_k,
        device=args.device,
        clip_model=args.clip_model,
        clip_root=args.clip_root,
        automask=automask,
        concepts=tuple(c.strip() for c in args.concept or ()),
        concept_threshold=args.concept_threshold,
    )


def _annotate(
    args: argparse.Namespace, settings: AnnotateSettings, work: WorkDir, names: list[str]
) -> dict[str, str]:
    """Annotate the images without a stored result, storing each as it finishes.

    Returns:
        The unreadable images and why.
    """
    from tqdm import tqdm

    pending = work.pending(names)
    failed: dict[str, str] = {}
    with tqdm(
        total=len(names), initial=len(names) - len(pending), unit="image", disable=args.no_progress
    ) as bar:

        def on_result(name: str, result: dict[str, Any]) -> None:
            work.save(name, result)
            bar.update(1)

        def on_error(name: str, reason: str) -> None:
            failed[name] = reason
            tqdm.write(f"sam-annotate: skipped {name}: {reason}", file=sys.stderr)

        if args.ray:
            from backend.annotate.runners import run_on_ray

            run_on_ray(
                args.images_dir,
                pending,
                settings,
                on_result=on_result,
                on_error=on_error,
                address=args.ray_address,
                workers=args.workers,
            )
        else:
            from backend.annotate.runners import run_local

            run_local(args.images_dir, pending, settings, on_result=on_result, on_error=on_error)
    return failed


def _write_output(
    output_format: str, out: Path, work: WorkDir, done: list[str], settings: AnnotateSettings
) -> None:
    """The COCO file, or one SA-1B file per image, from the stored results."""
    if output_format == "coco":
        write_coco(out, (work.load(name) for name in done), settings.categories)
    else:
        for name in done:
            write_sa1b(out, work.load(name))


def _check_clip(settings: AnnotateSettings) -> None:
    """Fail before any work when CLIP or its weights are missing."""
    from backend.inference.text import TextPrompter

    TextPrompter(clip_model=settings.clip_model, download_root=settings.clip_root).check_weights()


if __name__ == "__main__":
    sys.exit(main())
