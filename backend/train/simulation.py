"""One training forward pass: the paper's interactive prompting rounds.

For every object the first round uses a point inside the mask or a noisy
box and asks for three candidates (ambiguity-aware); each later round adds
a corrective point from the error region of the previous prediction (except
for ``rounds_without_point`` rounds, one of them the last) and feeds the
previous low-res logits back as the mask prompt, asking for a single mask.
The loss of every round is averaged.

Everything happens in the model-input frame of the network's family
(``S = image_size``; :mod:`backend.train.adapters`), and the network is
called through its family's adapter: the rounds are the same for SAM and
SAM 2.1. A family whose decoder has an object-score head (SAM 2.1) also
learns that every target is present (:data:`OBJECT_SCORE_WEIGHT`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from backend.api.errors import InvalidInput
from backend.train.adapters import Prompts, training_adapter
from backend.train.losses import sam_loss
from backend.train.prompts import error_points, noisy_boxes, sample_points

OBJECT_SCORE_WEIGHT = 1.0
"""Weight of the object-score loss (binary cross-entropy towards "present"; SAM 2's training
uses 1) for decoders that predict one."""


@dataclass(frozen=True, kw_only=True)
class RoundsSettings:
    """How prompts are simulated.

    Attributes:
        rounds: Decoder calls per object (the paper uses 11).
        rounds_without_point: Rounds that add no new point, only the previous
            mask (the paper uses 2: one at random and the last).
        box_probability: Chance that a batch starts from noisy boxes instead
            of points.
        focal_weight: Weight of the focal loss (paper: 20).
        dice_weight: Weight of the dice loss (paper: 1).
    """

    rounds: int = 11
    rounds_without_point: int = 2
    box_probability: float = 0.5
    focal_weight: float = 20.0
    dice_weight: float = 1.0

    def check(self, names: Mapping[str, str] | None = None) -> None:
        """Raises InvalidInput on impossible values.

        Args:
            names: What messages call each field (the CLI passes its flags,
                e.g. ``--rounds-without-point``); default the field names.
        """
        rounds = field_name("rounds", names)
        if self.rounds < 1:
            raise InvalidInput(f"{rounds} must be >= 1, got {self.rounds}")
        if not 0 <= self.rounds_without_point <= max(self.rounds - 1, 0):
            raise InvalidInput(
                f"{field_name('rounds_without_point', names)} must be between 0 and {rounds} - 1 = "
                f"{self.rounds - 1}, got {self.rounds_without_point}"
            )
        if self.focal_weight < 0 or self.dice_weight < 0 or self.focal_weight + self.dice_weight == 0:
            raise InvalidInput(
                f"{field_name('focal_weight', names)} and {field_name('dice_weight', names)} "
                "must be >= 0 and not both 0"
            )
        if not 0.0 <= self.box_probability <= 1.0:
            raise InvalidInput(
                f"{field_name('box_probability', names)} must be in [0, 1], got {self.box_probability}"
            )


def field_name(field: str, names: Mapping[str, str] | None) -> str:
    """What an error message calls a settings field: ``names[field]`` (a CLI flag), else the field."""
    return (names or {}).get(field, field)


@dataclass(frozen=True)
class RoundsResult:
    """Outcome of one batch.

    Attributes:
        loss: Scalar, mean over rounds of mask + IoU loss.
        first_iou: Scalar, mean IoU after the first prompt of the candidate
            ranked first by the IoU head (what a user sees).
        last_iou: Scalar, mean IoU after the last round.
    """

    loss: torch.Tensor
    first_iou: torch.Tensor
    last_iou: torch.Tensor


def rounds_without_point(settings: RoundsSettings, generator: torch.Generator) -> set[int]:
    """Indices of the rounds that add no point: the last one plus random middle ones."""
    if settings.rounds_without_point == 0:
        return set()
    chosen = {settings.rounds - 1}
    middle = torch.randperm(max(settings.rounds - 2, 0), generator=generator) + 1
    chosen.update(int(i) for i in middle[: settings.rounds_without_point - 1])
    return chosen


def interactive_rounds(
    network: Any,
    embeddings: torch.Tensor | tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    settings: RoundsSettings,
    generator: torch.Generator,
) -> RoundsResult:
    """Runs the prompting rounds for a batch of objects and returns the loss.

    Args:
        network: The network (a ``Sam`` or ``Sam2``; its prompt encoder and
            mask decoder are used), or its
            :class:`~backend.train.adapters.TrainingAdapter`.
        embeddings: The image features of each object's image, one row per
            object: SAM's ``NxCxExE`` embedding, or the family's feature
            tuple (SAM 2.1: ``Sam2ImageFeatures``).
        targets: ``NxSxS`` bool ground-truth masks in the model-input frame,
            each non-empty.
        settings: Number of rounds and first-prompt mix.
        generator: CPU generator driving every random choice.

    Returns:
        The loss and progress figures.
    """
    n, size = targets.shape[0], targets.shape[-1]
    device = targets.device
    rows = torch.arange(n, device=device)
    use_box = bool(torch.rand((), generator=generator) < settings.box_probability)
    boxes = noisy_boxes(targets.cpu(), generator).to(device) if use_box else None
    coords = torch.zeros((n, 0, 2), device=device)
    labels = torch.zeros((n, 0), dtype=torch.int64, device=device)
    if not use_box:
        first, _ = sample_points(targets.cpu(), generator)
        coords, labels = first[:, None].to(device), torch.ones((n, 1), dtype=torch.int64, device=device)
    skip = rounds_without_point(settings, generator)
    features = (embeddings,) if isinstance(embeddings, torch.Tensor) else tuple(embeddings)
    decode = training_adapter(network).decoder(features)
    mask_input: torch.Tensor | None = None
    previous: torch.Tensor | None = None
    total = torch.zeros((), device=device)
    first_iou = last_iou = torch.zeros((), device=device)
    for index in range(settings.rounds):
        if previous is not None and index not in skip:
            point, label = error_points(previous.cpu(), targets.cpu(), generator)
            coords = torch.cat([coords, point[:, None].to(device)], dim=1)
            labels = torch.cat([labels, label[:, None].to(device)], dim=1)
        decoded = decode(Prompts(coords, labels, boxes), mask_input, index == 0)
        low_res, iou_pred = decoded.low_res, decoded.iou_pred
        logits = F.interpolate(low_res.float(), size=(size, size), mode="bilinear", align_corners=False)
        loss = sam_loss(
            logits, iou_pred, targets, focal_weight=settings.focal_weight, dice_weight=settings.dice_weight
        )
        total = total + loss.total
        if decoded.object_score_logits is not None:
            scores = decoded.object_score_logits.float()
            present = F.binary_cross_entropy_with_logits(scores, torch.ones_like(scores))
            total = total + OBJECT_SCORE_WEIGHT * present
        if index == 0:
            ranked_first = iou_pred.detach().argmax(dim=1)
            first_iou = loss.actual_iou[rows, ranked_first].mean()
        last_iou = loss.actual_iou[rows, loss.best].mean()
        mask_input = low_res[rows, loss.best][:, None].detach()
        previous = logits[rows, loss.best].detach() > 0
    return RoundsResult(loss=total / settings.rounds, first_iou=first_iou, last_iou=last_iou)
