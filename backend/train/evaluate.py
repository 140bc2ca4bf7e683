"""The paper's interactive point evaluation, measured through the predictor.

For every object: click its centre, then up to ``clicks - 1`` times click the
centre of the largest error region (see :mod:`backend.train.clicks`),
feeding back the previous low-res logits of the chosen mask. Two tracks run
separately: **top-ranked** keeps the candidate the model ranks first,
**oracle** keeps the candidate with the best IoU against the ground truth
(best of three). Reported per track: mIoU after each click and NoC@85 /
NoC@90, the mean number of clicks to reach that IoU (``clicks`` when never
reached).

Because it goes through :class:`~backend.inference.predictor.SamPredictor`
(resizing, coordinate transforms, upscaling, ranking), it measures what
users get.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from backend.api.errors import InvalidInput
from backend.train.clicks import corrective_click, first_click
from backend.train.datasets import MaskDataset
from backend.train.simulation import field_name

TRACKS: tuple[str, ...] = ("top", "oracle")
NOC_THRESHOLDS: tuple[float, ...] = (0.85, 0.90)


class PromptPredictor(Protocol):
    """The part of :class:`SamPredictor` the evaluation uses."""

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(
        self,
        *,
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
        multimask_output: bool = True,
    ) -> Any: ...


@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """How the evaluation clicks.

    Attributes:
        clicks: Clicks per object (N); NoC is capped at N.
        always_multimask: Ask for three candidates at every click (default:
            only at the first, single output afterwards as in training).
        max_objects: Objects evaluated per image (the first ones); 0 = all.
        min_area: Skip objects smaller than this many pixels.
    """

    clicks: int = 20
    always_multimask: bool = False
    max_objects: int = 0
    min_area: int = 1

    def check(self, names: Mapping[str, str] | None = None) -> None:
        """Raises InvalidInput on impossible values.

        Args:
            names: What messages call each field (the CLI passes its flags,
                e.g. ``--max-objects``); default the field names.
        """
        for name, least in (("clicks", 1), ("max_objects", 0), ("min_area", 1)):
            if getattr(self, name) < least:
                raise InvalidInput(f"{field_name(name, names)} must be >= {least}, got {getattr(self, name)}")


@dataclass
class EvalReport:
    """Per-object IoU curves of both tracks and their summaries.

    Attributes:
        clicks: N.
        ious: Track name -> ``objects x clicks`` float64 IoU after each click.
    """

    clicks: int
    ious: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        """Number of objects evaluated."""
        return len(next(iter(self.ious.values()), []))

    def miou(self, track: str, click: int) -> float:
        """Mean IoU after ``click`` clicks (1-based)."""
        return float(self.ious[track][:, click - 1].mean())

    def noc(self, track: str, threshold: float) -> float:
        """Mean clicks to reach ``threshold`` IoU, counting N where never reached."""
        reached = self.ious[track] >= threshold
        first = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, self.clicks)
        return float(first.mean())

    def to_dict(self) -> dict[str, Any]:
        """JSON form: per track, mIoU after every click and NoC@85/90."""
        return {
            "objects": self.objects,
            "clicks": self.clicks,
            "tracks": {
                track: {
                    "miou": [round(self.miou(track, c), 4) for c in range(1, self.clicks + 1)],
                    **{f"noc@{round(t * 100)}": round(self.noc(track, t), 3) for t in NOC_THRESHOLDS},
                }
                for track in self.ious
            },
        }

    def table(self) -> str:
        """Human-readable summary."""
        shown = sorted({1, 2, 3, 5, 10, self.clicks} & set(range(1, self.clicks + 1)))
        header = ["track"] + [f"mIoU@{c}" for c in shown] + [f"NoC@{round(t * 100)}" for t in NOC_THRESHOLDS]
        rows = [header]
        for track in self.ious:
            rows.append(
                [track]
                + [f"{self.miou(track, c):.3f}" for c in shown]
                + [f"{self.noc(track, t):.2f}" for t in NOC_THRESHOLDS]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
        return f"{self.objects} objects, {self.clicks} clicks (NoC capped at {self.clicks})\n" + "\n".join(
            lines
        )


def mask_iou(predicted: np.ndarray, target: np.ndarray) -> float:
    """IoU of two ``HxW`` bool masks (1.0 when both are empty)."""
    union = np.logical_or(predicted, target).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, target).sum() / union)


def evaluate(
    predictor: PromptPredictor,
    data: MaskDataset,
    settings: EvalSettings | None = None,
    *,
    progress: bool = False,
) -> EvalReport:
    """Runs the click simulation on every object of ``data``.

    Args:
        predictor: A predictor over the model to evaluate.
        data: Images and ground-truth masks (original resolution).
        settings: Number of clicks and object selection.
        progress: Show a tqdm bar over images.

    Returns:
        The IoU curves of both tracks.
    """
    from tqdm import tqdm

    settings = settings or EvalSettings()
    settings.check()
    curves: dict[str, list[list[float]]] = {track: [] for track in TRACKS}
    for index in tqdm(range(len(data)), desc="eval", disable=not progress, dynamic_ncols=True):
        item = data[index]
        targets = [m for m in item.masks if int(m.sum()) >= settings.min_area]
        if settings.max_objects:
            targets = targets[: settings.max_objects]
        if not targets:
            continue
        predictor.set_image(item.image)
        for target in targets:
            for track in TRACKS:
                curves[track].append(click_session(predictor, target, track, settings))
    if not curves["top"]:
        raise InvalidInput(
            f"the dataset holds no object of at least {settings.min_area} pixels to evaluate; "
            "check the annotations, or lower the smallest object area"
        )
    return EvalReport(
        clicks=settings.clicks, ious={t: np.asarray(v, dtype=np.float64) for t, v in curves.items()}
    )


def click_session(
    predictor: PromptPredictor, target: np.ndarray, track: str, settings: EvalSettings
) -> list[float]:
    """IoU after each of ``settings.clicks`` clicks on one object.

    Args:
        predictor: Holding the object's image.
        target: ``HxW`` bool ground truth.
        track: ``"top"`` (model's first-ranked candidate) or ``"oracle"``.
        settings: Number of clicks and output mode.

    Returns:
        ``clicks`` IoU values; once a prediction is exact, it is repeated.
    """
    click = first_click(target)
    if click is None:
        raise InvalidInput("cannot evaluate an empty mask")
    coords: list[list[int]] = []
    labels: list[int] = []
    mask_input = None
    ious: list[float] = []
    while len(ious) < settings.clicks:
        if click is None:
            ious.append(ious[-1])
            continue
        coords.append([click.x, click.y])
        labels.append(int(click.positive))
        output = predictor.predict(
            point_coords=np.asarray(coords, dtype=np.float64),
            point_labels=np.asarray(labels, dtype=np.int64),
            mask_input=mask_input,
            multimask_output=settings.always_multimask or len(coords) == 1,
        )
        candidates = output.masks[0]
        scores = [mask_iou(m, target) for m in candidates]
        chosen = int(np.argmax(scores)) if track == "oracle" else 0
        predicted = candidates[chosen]
        ious.append(scores[chosen])
        mask_input = output.low_res_logits[0, chosen][None]
        click = corrective_click(predicted, target)
    return ious
