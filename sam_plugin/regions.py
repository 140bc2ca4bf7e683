"""Masks -> Label Studio regions of the config's output control."""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.formats.scores import as_probability
from sam_plugin.label_config import SamLabelConfig


def output_label(config: SamLabelConfig, label: str | None) -> str | None:
    """The output control's label for a prompt label.

    The prompt's label when the output control has it; else the output label
    whose ``alias`` equals it; else the first output label (the prompt tags
    may use their own names, as in Label Studio's SAM example); ``None``
    when the output control has no labels.
    """
    labels = config.output.labels
    if label is not None:
        if label in labels:
            return label
        for value, alias in config.output.aliases.items():
            if alias == label:
                return value
    return labels[0] if labels else label


def mask_regions(
    config: SamLabelConfig,
    mask: np.ndarray,
    *,
    score: float,
    label: str | None,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The Label Studio regions for one mask, from the output control's converter
    (one brush region, or one polygon per contour).

    Args:
        config: Parsed labeling config (output control and image names).
        mask: ``HxW`` bool, original-image pixels.
        score: Predicted IoU; the region's score is :func:`as_probability` of it (Label Studio shows it as a percent).
        label: Prompt label, mapped with :func:`output_label`.
        extra: Extra keys merged into every region (e.g. ``meta``).
    """
    regions = config.output_converter.from_mask(
        mask,
        from_name=config.output.name,
        to_name=config.image_name,
        label=output_label(config, label),
        score=as_probability(score),
    )
    if extra:
        for region in regions:
            region.update(extra)
    return regions


def prediction(regions: list[dict[str, Any]], model_version: str) -> dict[str, Any]:
    """One Label Studio prediction: the regions, their mean score, the model version."""
    scores = [float(r["score"]) for r in regions if "score" in r]
    return {
        "result": regions,
        "score": float(np.mean(scores)) if scores else 0.0,
        "model_version": model_version,
    }
