"""Pre-compute the embeddings of every task image of a Label Studio project.

The model server caches an embedding per image; registering every task image
once ahead of labeling makes the first click on any task fast. Tasks are
listed with ``label_studio_sdk``; images are downloaded with the plugin's
:class:`~sam_plugin.image_fetcher.TaskImageFetcher` (same allowlist rules).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from backend.api.errors import InvalidInput, SamError
from backend.api.priority import Priority
from backend.client.base import SamClientBase
from sam_plugin.image_fetcher import TaskImageFetcher
from sam_plugin.label_config import parse_label_config

logger = logging.getLogger(__name__)


@dataclass
class PrecomputeReport:
    """Counts of one precompute run.

    Attributes:
        done: Images registered with the model server.
        failed: Tasks whose image could not be fetched or registered.
        errors: ``(task id, message)`` for each failure.
    """

    done: int = 0
    failed: int = 0
    errors: list[tuple[Any, str]] | None = None


def project_tasks(
    label_studio_url: str, api_key: str, project_id: int
) -> tuple[str, Iterator[dict[str, Any]]]:
    """The project's image data key and an iterator over its tasks (``{"id", "data"}``)."""
    from label_studio_sdk import LabelStudio

    ls = LabelStudio(base_url=label_studio_url, api_key=api_key)
    project = ls.projects.get(id=project_id)
    image_key = parse_label_config(project.label_config).image_key

    def tasks() -> Iterator[dict[str, Any]]:
        task: Any
        for task in ls.tasks.list(project=project_id, fields="all"):
            yield {"id": task.id, "data": task.data or {}}

    return image_key, tasks()


def precompute(
    tasks: Iterable[dict[str, Any]],
    *,
    image_key: str,
    client: SamClientBase,
    fetcher: TaskImageFetcher,
    total: int | None = None,
    progress: bool = True,
) -> PrecomputeReport:
    """Register every task image with the model server, with a progress bar.

    A task that fails is counted and logged; the run goes on.

    Args:
        tasks: Label Studio tasks (``{"id", "data"}``).
        image_key: Task data key of the image URL.
        client: The model server.
        fetcher: Downloads task images.
        total: Number of tasks, for the progress bar.
        progress: Show a tqdm progress bar.
    """
    from tqdm import tqdm

    report = PrecomputeReport(errors=[])
    for task in tqdm(tasks, total=total, disable=not progress, desc="embeddings", unit="image"):
        reference = (task.get("data") or {}).get(image_key)
        try:
            if not isinstance(reference, str):
                raise InvalidInput(f"no image URL in data.{image_key}")
            client.add_image(fetcher.fetch(reference, task_id=task.get("id")), priority=Priority.BULK)
            report.done += 1
        except (SamError, OSError) as exc:
            report.failed += 1
            report.errors.append((task.get("id"), str(exc)))  # type: ignore[union-attr]
            logger.warning("task %s: %s", task.get("id"), exc)
    return report
