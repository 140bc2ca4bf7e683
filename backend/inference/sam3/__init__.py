"""SAM 3 through Hugging Face transformers: concept prompts (every instance) and clicks (ranked masks).

``load_sam3(source)`` -> :class:`Sam3Models`; ``Sam3Predictor(models)``:
``set_image`` once, then ``predict_concept(text, exemplar_boxes)`` and
``predict(point_coords=..., box=...)``. ``SAM3`` is the registry record.

Names are re-exported lazily, so that importing the record (``SAM3``) needs neither torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .concepts import ConceptInstance, ConceptPrompt, ExemplarBox, check_concept_prompt
    from .features import Sam3ImageFeatures, tracker_image_embeddings
    from .loading import Sam3Models, load_sam3
    from .predictor import Sam3Predictor
    from .record import (
        ANSWER_INSTANCES,
        ANSWER_RANKED_MASKS,
        SAM3,
        Sam3Record,
    )

_EXPORTS = {
    "ConceptInstance": "concepts",
    "ConceptPrompt": "concepts",
    "ExemplarBox": "concepts",
    "check_concept_prompt": "concepts",
    "Sam3ImageFeatures": "features",
    "tracker_image_embeddings": "features",
    "Sam3Models": "loading",
    "load_sam3": "loading",
    "Sam3Predictor": "predictor",
    "ANSWER_INSTANCES": "record",
    "ANSWER_RANKED_MASKS": "record",
    "SAM3": "record",
    "Sam3Record": "record",
}

__all__ = [
    "ANSWER_INSTANCES",
    "ANSWER_RANKED_MASKS",
    "ConceptInstance",
    "ConceptPrompt",
    "ExemplarBox",
    "SAM3",
    "Sam3ImageFeatures",
    "Sam3Models",
    "Sam3Predictor",
    "Sam3Record",
    "check_concept_prompt",
    "load_sam3",
    "tracker_image_embeddings",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
