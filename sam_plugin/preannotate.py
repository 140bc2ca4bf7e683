"""Batch pre-annotation (a predict request without context).

Two modes, chosen with ``SAM_PREANNOTATE``:

* ``automask``: segment everything; every region gets the same label
  (``SAM_AUTOMASK_LABEL`` or the first output label).
* ``text``: one CLIP text prompt per label of the output control, or per
  value of the task field ``SAM_TEXT_FIELD`` (a list or a comma-separated
  string) for teams importing text-prompted masks.
"""

from __future__ import annotations

import logging
from typing import Any

from backend.api.answers import empty_automask_note
from backend.client.base import SamClientBase
from backend.formats.mask_codecs import from_coco_rle
from sam_plugin.label_config import SamLabelConfig
from sam_plugin.regions import mask_regions
from sam_plugin.settings import PluginSettings

logger = logging.getLogger(__name__)

MAX_AUTOMASK_REGIONS = 100
"""Segment-everything regions kept per task (highest predicted IoU first)."""


def automask_regions(
    client: SamClientBase, image_id: str, config: SamLabelConfig, settings: PluginSettings
) -> list[dict[str, Any]]:
    """Segment-everything regions for one image, best predicted IoU first."""
    records = client.automask(image_id, **settings.automask_params)
    if not records:
        logger.warning(
            "image %s: %s (SAM_AUTOMASK_PARAMS)", image_id[:12], empty_automask_note(settings.automask_params)
        )
    records = [r for r in records if float(r.get("predicted_iou", 0.0)) >= settings.automask_min_score]
    records.sort(key=lambda r: float(r.get("predicted_iou", 0.0)), reverse=True)
    label = settings.automask_label or (config.output.labels[0] if config.output.labels else None)
    regions: list[dict[str, Any]] = []
    for record in records[:MAX_AUTOMASK_REGIONS]:
        mask = from_coco_rle(record["segmentation"])
        regions += mask_regions(config, mask, score=float(record.get("predicted_iou", 0.0)), label=label)
    return regions


def text_prompts(task: dict[str, Any], config: SamLabelConfig, settings: PluginSettings) -> list[str]:
    """The text prompts for a task: the values of ``text_field`` if the task has it, else the label names."""
    if settings.text_field:
        value = (task.get("data") or {}).get(settings.text_field)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [str(part).strip() for part in value if str(part).strip()]
    return list(config.output.labels)


def text_regions(
    client: SamClientBase,
    image_id: str,
    task: dict[str, Any],
    config: SamLabelConfig,
    settings: PluginSettings,
) -> list[dict[str, Any]]:
    """One region per text prompt (the best CLIP-ranked mask), labelled with the text.

    The text is kept in the region's ``meta.text`` so an annotator sees which
    prompt produced it even when it is not one of the output labels.
    """
    regions: list[dict[str, Any]] = []
    for text in text_prompts(task, config, settings):
        objects = client.predict(image_id, text=text, multimask=False)
        for obj in objects[:1]:
            if len(obj.scores) == 0:
                continue
            regions += mask_regions(
                config, obj.best, score=float(obj.scores[0]), label=text, extra={"meta": {"text": [text]}}
            )
    return regions
