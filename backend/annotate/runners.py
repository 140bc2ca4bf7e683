"""Run an annotation job over pending images: in this process, or on a Ray cluster.

Both runners hand each finished image's result to ``on_result`` in the
driver process, which stores it (so a job stopped at any point resumes
without redoing finished images) and advances the progress bar. Images that
cannot be read are reported through ``on_error`` and retried on the next run.

On Ray, Ray Data maps the image list over a pool of actors, each holding one
model replica: one actor per GPU (``num_gpus=1``) when the cluster has GPUs,
else CPU actors. Workers read the images from ``images_dir``, so on a
multi-machine cluster it must be on storage every node sees at the same path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backend.annotate.annotator import AnnotateSettings, Annotator
from backend.api.errors import InvalidInput, PayloadTooLarge

ResultCallback = Callable[[str, dict[str, Any]], None]
ErrorCallback = Callable[[str, str], None]
#: Per-image errors that skip the image instead of stopping the job (OSError: a file that
#: cannot be read, e.g. permission denied or removed since the folder was listed).
IMAGE_ERRORS = (InvalidInput, PayloadTooLarge, OSError)


def run_local(
    images_dir: str | Path,
    pending: Sequence[str],
    settings: AnnotateSettings,
    *,
    on_result: ResultCallback,
    on_error: ErrorCallback,
) -> None:
    """Annotate ``pending`` images (paths relative to ``images_dir``) in this process."""
    if not pending:
        return
    annotator = Annotator(settings)
    for name in pending:
        try:
            result = annotator.annotate(Path(images_dir) / name, file_name=name)
        except IMAGE_ERRORS as error:
            on_error(name, str(error))
            continue
        on_result(name, result)


class _RayAnnotator:
    """Ray Data callable class: one model replica per actor, one image per batch row."""

    def __init__(self, settings: AnnotateSettings, images_dir: str) -> None:
        self.annotator = Annotator(settings)
        self.images_dir = Path(images_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results, errors = [], []
        for name in batch["file_name"]:
            try:
                result = self.annotator.annotate(self.images_dir / str(name), file_name=str(name))
                results.append(json.dumps(result))
                errors.append("")
            except IMAGE_ERRORS as error:
                results.append("")
                errors.append(str(error) or type(error).__name__)
        return {
            "file_name": batch["file_name"],
            "result": np.array(results, dtype=object),
            "error": np.array(errors, dtype=object),
        }


def run_on_ray(
    images_dir: str | Path,
    pending: Sequence[str],
    settings: AnnotateSettings,
    *,
    on_result: ResultCallback,
    on_error: ErrorCallback,
    address: str | None = None,
    workers: int | None = None,
) -> None:
    """Annotate ``pending`` images on Ray (the running session, or one started/joined at ``address``).

    Args:
        images_dir: Folder of the images, visible to every worker.
        pending: Image paths relative to ``images_dir``.
        settings: The job's settings.
        on_result: Called in the driver with each finished image.
        on_error: Called in the driver with each unreadable image and why.
        address: Ray cluster address (``"auto"``, ``"ray://host:10001"``);
            None starts a local cluster unless one is already initialised.
        workers: Model replicas; default one per GPU, or 1 without GPUs.
    """
    if not pending:
        return
    try:
        import ray
    except ImportError as error:
        raise InvalidInput("--ray needs Ray Data: pip install 'ray[data]' (or sam-server[ray])") from error
    if not ray.is_initialized():
        runtime_env = None
        if address is None:  # a local cluster: workers import this very source tree, installed or not
            source_root = str(Path(__file__).resolve().parents[2])
            runtime_env = {
                "env_vars": {
                    "PYTHONPATH": os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")]))
                }
            }
        ray.init(address=address, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    replicas = workers or max(1, gpus)
    dataset = ray.data.from_items(
        [{"file_name": name} for name in pending], override_num_blocks=min(len(pending), 64)
    )
    annotated = dataset.map_batches(
        _RayAnnotator,
        fn_constructor_kwargs={"settings": settings, "images_dir": str(images_dir)},
        batch_size=1,
        num_gpus=1 if gpus else 0,
        num_cpus=1,
        concurrency=replicas,
    )
    for row in annotated.iter_rows():
        name = str(row["file_name"])
        if row["error"]:
            on_error(name, str(row["error"]))
        else:
            on_result(name, json.loads(row["result"]))
