"""Batch pre-annotation (a predict request without context).

Three modes, chosen with ``SAM_PREANNOTATE``:

* ``automask``: segment everything; every region gets the same label
  (``SAM_AUTOMASK_LABEL`` or the first output label).
* ``text``: one CLIP text prompt per label of the output control, or per
  value of the task field ``SAM_TEXT_FIELD`` (a list or a comma-separated
  string) for teams importing text-prompted masks.
* ``concepts`` (SAM 3): every label of the output control is a concept
  (its text, or its ``SAM_CONCEPTS`` prompt and threshold); every instance
  found becomes a region with that label.
"""

from __future__ import annotations

import logging
from typing import Any

from backend.api.answers import empty_automask_note
from backend.api.errors import InvalidInput
from backend.client.base import SamClientBase
from backend.formats.mask_codecs import from_coco_rle
from sam_plugin.concepts import instances
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


def concept_regions(
    client: SamClientBase, image_id: str, config: SamLabelConfig, settings: PluginSettings
) -> list[dict[str, Any]]:
    """Every instance of every output label, one region (or one polygon per contour) each, best score first.

    Each label is asked as a concept (:meth:`PluginSettings.concept_for`: its
    ``SAM_CONCEPTS`` prompt and threshold, else its own text and
    ``SAM_CONCEPT_THRESHOLD``); the regions carry the label, the instance's
    score and the prompt in ``meta.text``.

    Raises:
        InvalidInput: The output control has no labels to use as concepts.
    """
    if not config.output.labels:
        raise InvalidInput(
            f'SAM_PREANNOTATE=concepts uses the labels of <{config.output.tag} name="{config.output.name}"> '
            'as concepts, and it has none: add <Label value="..."/> tags to it'
        )
    unknown = sorted(set(settings.concepts) - set(config.output.labels))
    if unknown:
        logger.warning(
            "SAM_CONCEPTS names %s, which <%s name=%r> does not have (its labels: %s)",
            unknown,
            config.output.tag,
            config.output.name,
            ", ".join(config.output.labels),
        )
    found = []
    for label in config.output.labels:
        text, threshold = settings.concept_for(label)
        objects = client.predict(image_id, text=text, threshold=threshold)
        record = {"points": [], "point_labels": [], "boxes": [], "text": text, "exemplars": []}
        found += instances(objects, label=label, prompt=record, concept=text)
    found.sort(key=lambda obj: obj.score, reverse=True)  # stable: a label's instances keep their order
    regions: list[dict[str, Any]] = []
    for obj in found:
        regions += mask_regions(
            config, obj.mask, score=obj.score, label=obj.label, extra={"meta": {"text": [obj.concept]}}
        )
    return regions
