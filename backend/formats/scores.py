"""What a mask's score means where people read it.

SAM's mask decoder predicts the IoU of each candidate with the object the
prompt meant. It ranks the candidates, but it is a regression output, not a
probability: it can be slightly above 1 or below 0. Wherever a score is
shown or exported as a probability (Label Studio's prediction score and its
percent, the widget's labels, COCO ``score``), it goes through
:func:`as_probability`; the raw value stays available as ``predicted_iou``.
"""

from __future__ import annotations

import math


def as_probability(predicted_iou: float) -> float:
    """The predicted IoU clipped to ``[0, 1]`` (NaN becomes 0).

    Args:
        predicted_iou: The decoder's IoU prediction (unitless, may leave ``[0, 1]``).

    Returns:
        A float in ``[0, 1]`` that keeps the order of the inputs (ties at the ends).
    """
    value = float(predicted_iou)
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))
