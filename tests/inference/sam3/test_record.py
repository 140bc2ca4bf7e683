"""The SAM 3 record: what /v1/models will say, readable without torch or transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backend.inference.sam3 import ANSWER_INSTANCES, ANSWER_RANKED_MASKS, SAM3

ROOT = Path(__file__).resolve().parents[3]


def test_record_names_the_gated_hub_weights_and_their_licence():
    data = SAM3.to_dict()
    assert data["name"] == "sam3" and data["family"] == "sam3"
    assert data["hub_repo"] == "facebook/sam3" and data["gated"] is True
    assert data["licence"] == "SAM License (Meta), gated"
    assert data["extra"] == "sam3" and data["image_size"] == 1008


def test_record_states_which_prompts_give_which_answer():
    assert SAM3.prompt_kinds == {
        "text": ANSWER_INSTANCES,
        "exemplars": ANSWER_INSTANCES,
        "points": ANSWER_RANKED_MASKS,
        "box": ANSWER_RANKED_MASKS,
        "boxes": ANSWER_RANKED_MASKS,
        "mask": ANSWER_RANKED_MASKS,
    }


def test_the_record_and_the_model_registry_use_the_apis_prompt_kinds():
    """The same names the server checks requests against and lists in /v1/models."""
    from backend.hub import MODELS

    assert set(SAM3.prompt_kinds) == set(MODELS["sam3"].prompt_kinds)


def test_reading_the_record_imports_neither_torch_nor_transformers():
    code = (
        "import sys\n"
        "from backend.inference.sam3 import SAM3\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
