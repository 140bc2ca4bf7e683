"""A word on a SAM 3 model: every instance shown, picked and kept on its own; SamWidget's handlers driven directly.

``ConceptClient`` passes images and clicks to the real in-process model and
answers text prompts as the server answers concepts (one object per instance,
best score first, those above the threshold), with fixed rectangles of the
scene. The last test uses the real in-process tiny SAM 3 (random weights:
its instances are arbitrary, so it tests structure, not quality).
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from backend.api.answers import ObjectMasks
from backend.api.errors import InvalidInput
from backend.client.base import SamClientBase
from tests.widget.conftest import RecordingClient, scene, shown_image_pixels
from tests.widget.test_sam_widget import controls, key, overlay, wait_until
from widget.drawing import instance_color
from widget.events import CONCEPT_GESTURES
from widget.sam_widget import SamWidget
from widget.state import CONCEPT_SCORE

SAM3_PROMPTS = ["points", "box", "mask", "text", "exemplars"]
RECTANGLES = [(20, 30, 80, 90), (120, 40, 190, 100), (250, 150, 330, 240), (40, 200, 100, 280)]
"""``(x1, y1, x2, y2)`` of the instances the fake model finds, in the order of SCORES."""
SCORES = [0.93, 0.81, 0.62, 0.34]


def rectangle(x1: int, y1: int, x2: int, y2: int, size: tuple[int, int] = (300, 400)) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


class ConceptClient(RecordingClient):
    """A SAM 3 server as the widget sees it: ``exemplars`` among the prompts, a word finds every instance."""

    listing: list[dict[str, Any]] = [
        {"name": "sam3", "family": "sam3", "ready": True, "prompts": SAM3_PROMPTS}
    ]
    widget: SamWidget | None = None

    def __init__(self, inner: SamClientBase) -> None:
        super().__init__(inner)
        self.busy_seen: list[dict[str, Any]] = []
        self.model_calls = 0

    def models(self) -> list[dict[str, Any]]:
        self.model_calls += 1
        return self.listing

    def add_image(self, image: Any, *, model: str | None = None, **kwargs: Any) -> Any:
        return super().add_image(image, **kwargs)  # the inner model answers whatever model is named

    def predict(self, image_id: str, prompt: Any = None, **kwargs: Any) -> list[ObjectMasks]:
        kwargs.pop("model", None)
        if not kwargs.get("text") and not kwargs.get("exemplars"):
            return super().predict(image_id, **kwargs)
        assert not {"points", "labels", "box", "mask_input"} & set(kwargs), kwargs
        self.predict_calls.append(dict(kwargs, image_id=image_id))
        if self.widget is not None:
            w = self.widget
            self.busy_seen.append({"busy": w.busy, "status": w.status, "kind": w.status_kind, **controls(w)})
        threshold = kwargs.get("threshold", 0.5)
        return [
            ObjectMasks(
                masks=rectangle(*box)[None],
                scores=np.asarray([score], dtype=np.float32),
                stability_scores=np.asarray([1.0], dtype=np.float32),
                labels=[kwargs.get("text") or "exemplar"],
                box=np.asarray(box, dtype=np.float32),
            )
            for box, score in zip(RECTANGLES, SCORES, strict=True)
            if score > threshold
        ]


@pytest.fixture
def concept_client(local_client: SamClientBase) -> ConceptClient:
    return ConceptClient(local_client)


def concept_widget(client: ConceptClient, **kwargs: Any) -> SamWidget:
    kwargs.setdefault("max_canvas_size", (200, 200))
    w = SamWidget(scene(), client, **kwargs)
    client.widget = w
    w.wait_ready(120)
    return w


def instance_buttons(w: SamWidget) -> list[tuple[str, bool]]:
    """``(text, pressed)`` of each instance button a person sees."""
    tb = w.toolbar
    if tb.instances.layout.display == "none":
        return []
    return [(b.description, b.value) for b in tb.instance_buttons]


def test_a_word_shows_every_instance_each_in_its_own_colour_with_its_score(
    concept_client: ConceptClient,
) -> None:
    w = concept_widget(concept_client)
    tb = w.toolbar
    assert w.answers_concepts and tb.threshold.layout.display is None  # the slider shows on SAM 3
    assert tb.text.placeholder == "name the objects, press Enter" and "every instance" in tb.find.tooltip
    for gesture, effect in CONCEPT_GESTURES:  # the legend lists the keys that act on instances
        assert html.escape(gesture) in tb.legend.value and html.escape(effect) in tb.legend.value
    tb.text.value = "cat"
    call = concept_client.predict_calls[-1]
    assert call["text"] == "cat" and call["threshold"] == 0.5 and "exemplars" not in call
    # busy while the model runs: what is asked, every control off
    during = concept_client.busy_seen[-1]
    assert during["busy"] and during["kind"] == "busy"
    assert during["status"] == 'finding every instance of "cat" (threshold 0.5)…'
    assert not any(during[name] for name in ("accept", "undo", "clear", "text"))
    # three instances above 0.5, best first, one button each, none picked
    assert [c.raw_score for c in w.candidates] == pytest.approx(SCORES[:3])
    assert re.fullmatch(
        r'3 instances of "cat" \(threshold 0\.5\) in \d+ ms · press their buttons \(keys 1-9\) to pick the ones '
        r"to keep, then accept; or accept all",
        w.status,
    )
    assert instance_buttons(w) == [("1: 0.93", False), ("2: 0.81", False), ("3: 0.62", False)]
    assert [b.layout.border_left for b in tb.instance_buttons] == [
        "6px solid #e6194b",
        "6px solid #3cb44b",
        "6px solid #ffe119",
    ]
    assert controls(w)["candidates"] == [] and controls(w)["accept"] is False
    assert not tb.accept_all.disabled and tb.accept_all.layout.display is None
    assert w.picked == [] and w.candidate_color is None
    assert w.instance_colors == [instance_color(i) for i in range(3)]
    # the overlay shows each instance in its colour
    frame = overlay(w)
    for i, box in enumerate(RECTANGLES[:3]):
        shown = shown_image_pixels(rectangle(*box), scale=w.scale, canvas_size=w.canvas_size)
        colour = np.all(frame[..., :3] == instance_color(i), axis=-1) & (frame[..., 3] > 0)
        np.testing.assert_array_equal(colour, shown)


def test_pick_accept_then_accept_all_keeps_each_instance_as_its_own_mask(
    concept_client: ConceptClient, tmp_path: Path
) -> None:
    w = concept_widget(concept_client, labels=["object", "cat"])
    w.toolbar.text.value = "Cat"  # typed, Enter
    assert w.toolbar.label.value == "cat"  # the label that matches the word (case aside) is chosen
    w.toolbar.instance_buttons[1].value = True  # a person presses button 2
    assert w.picked == [1] and controls(w)["accept"] is True
    assert w.status == "3 instances, 1 picked (2): accept keeps them"
    key(w, "3")
    assert w.picked == [1, 2] and instance_buttons(w)[2] == ("3: 0.62", True)
    key(w, "3")  # again: unpicked
    assert w.picked == [1]
    w.toolbar.accept.click()
    [kept] = w.masks
    assert kept.label == "cat" and kept.score == pytest.approx(0.81)
    assert kept.raw_scores == {CONCEPT_SCORE: pytest.approx(0.81)}
    np.testing.assert_array_equal(kept.mask, rectangle(*RECTANGLES[1]))
    # the others stay shown, renumbered, none picked
    assert instance_buttons(w) == [("1: 0.93", False), ("2: 0.62", False)]
    assert w.status == 'kept 1 instance as "cat" · kept: 1 mask · 2 instances left: pick more, or accept all'
    assert w.toolbar.text.value == "Cat" and controls(w)["kept"] == "kept: 1 mask"
    w.toolbar.find.click()  # the same word again: the answer is already shown (no duplicates)
    assert len(concept_client.predict_calls) == 1
    w.toolbar.accept_all.click()
    assert [round(m.score, 2) for m in w.masks] == [0.81, 0.93, 0.62]
    assert w.status == 'kept 2 instances as "cat" · kept: 3 masks · click on the next object, or type a word'
    assert w.candidates == [] and instance_buttons(w) == [] and w.toolbar.text.value == ""
    assert w.toolbar.accept_all.layout.display == "none"
    # export: one annotation per kept instance, with its raw SAM 3 score
    coco = w.to_coco()
    assert [a["concept_score"] for a in coco["annotations"]] == pytest.approx([0.81, 0.93, 0.62])
    assert [a["bbox"] for a in coco["annotations"]] == [
        [120.0, 40.0, 70.0, 60.0],
        [20.0, 30.0, 60.0, 60.0],
        [250.0, 150.0, 80.0, 90.0],
    ]
    assert {a["category_id"] for a in coco["annotations"]} == {2}
    png = np.asarray(Image.open(io.BytesIO(w.save_png(tmp_path / "m.png").read_bytes())))
    assert sorted(np.unique(png)) == [0, 1, 2, 3]
    back = SamWidget(scene(), concept_client, max_canvas_size=(200, 200))
    back.load_masks(json.loads(json.dumps(coco)))
    assert [m.raw_scores for m in back.masks] == [m.raw_scores for m in w.masks]


def test_accept_without_a_pick_says_what_to_do_and_enter_and_shift_enter_keep_instances(
    concept_client: ConceptClient,
) -> None:
    w = concept_widget(concept_client)
    w.set_text("cat")
    key(w, "Enter")
    assert w.status_kind == "error" and "no instance is picked" in w.status and "accept all" in w.status
    with pytest.raises(InvalidInput, match="no instance is picked"):
        w.accept()
    with pytest.raises(InvalidInput, match="pick them with toggle"):
        w.select(1)
    w.picked = [0, 2]  # the trait is settable
    assert instance_buttons(w) == [("1: 0.93", True), ("2: 0.81", False), ("3: 0.62", True)]
    with pytest.raises(InvalidInput, match="instance 8 does not exist"):
        w.picked = [7]
    assert w.picked == [0, 2] and w.current.picked == {0, 2}
    last = w.accept("object")
    assert last.score == pytest.approx(0.62) and len(w.masks) == 2
    handle = {"type": "keydown", "key": "Enter", "shiftKey": True}
    w.handle_event(handle)
    assert len(w.masks) == 3 and w.candidates == []
    with pytest.raises(InvalidInput, match="no mask to accept"):
        w.accept_all()


def test_nothing_above_the_threshold_says_so_and_a_lower_threshold_finds_them(
    concept_client: ConceptClient,
) -> None:
    w = concept_widget(concept_client, threshold=0.95)
    assert w.toolbar.threshold.value == 0.95
    w.toolbar.text.value = "cat"  # no error: an empty answer is an answer
    assert w.candidates == [] and w.status_kind == "info"
    assert re.fullmatch(
        r'no instance of "cat" scored above the threshold 0\.95 \(in \d+ ms\) · lower the threshold '
        r"\(the slider, or w\.threshold = 0\.75\) and press find again",
        w.status,
    )
    w.toolbar.threshold.value = 0.3  # the slider
    assert w.threshold == 0.3 and w.status == "threshold 0.3: press find to ask again with it"
    w.toolbar.find.click()
    assert concept_client.predict_calls[-1]["threshold"] == 0.3
    assert len(w.candidates) == 4 and w.status.startswith('4 instances of "cat" (threshold 0.3)')
    w.threshold = 0.7
    w.set_text("cat")  # same word, another threshold: asked again
    assert len(w.candidates) == 2 and len(concept_client.predict_calls) == 3
    with pytest.raises(InvalidInput, match=r"threshold must lie in \[0, 1\]"):
        w.threshold = 1.5
    with pytest.raises(InvalidInput, match=r"threshold must lie in \[0, 1\]"):
        SamWidget(scene(), concept_client, threshold=-0.1)


def test_clicks_after_a_word_start_a_new_object_with_ranked_candidates(concept_client: ConceptClient) -> None:
    w = concept_widget(concept_client)
    w.set_text("cat")
    w.add_point(200, 150)
    call = concept_client.predict_calls[-1]
    assert call["points"] == [[200.0, 150.0]] and "text" not in call and call["mask_input"] is None
    assert len(w.candidates) == 3 and not w.current.is_concept and instance_buttons(w) == []
    assert len(controls(w)["candidates"]) == 3 and w.status.startswith("3 masks in")
    key(w, "2")
    assert w.selected == 1
    key(w, "5")  # keys 4-9 pick instances only: nothing happens here
    assert w.selected == 1 and w.status_kind == "info"
    key(w, "z", ctrl=True)  # undo: the instances again, as they were
    assert len(instance_buttons(w)) == 3 and w.current.is_concept


def test_a_drawn_box_is_sent_as_an_example_of_the_word(concept_client: ConceptClient) -> None:
    w = concept_widget(concept_client)
    w.set_box([20, 30, 80, 90])
    assert len(w.candidates) == 3  # a box alone: ranked candidates for one object, as on any model
    w.set_text("cat")
    call = concept_client.predict_calls[-1]
    assert call["exemplars"] == [{"box": [20.0, 30.0, 80.0, 90.0], "positive": True}]
    assert len(w.candidates) == 3 and w.current.box is not None


def test_a_word_typed_while_the_embedding_runs_is_a_concept_once_it_is_ready(
    local_client: SamClientBase,
) -> None:
    client = ConceptClient(local_client)
    client.hold = True
    w = SamWidget(scene(), client, max_canvas_size=(200, 200))
    w.toolbar.text.value = "cat"
    assert w.status.startswith("computing embedding") and not client.predict_calls
    client.release.set()
    w.wait_ready(120)
    wait_until(lambda: w.candidates)
    assert client.predict_calls[-1]["threshold"] == 0.5 and len(w.candidates) == 3
    assert w.current.is_concept and w.toolbar.threshold.layout.display is None


def test_other_models_keep_the_text_prompt_as_it_was(client: RecordingClient) -> None:
    w = SamWidget(scene(), client, max_canvas_size=(200, 200))
    w.wait_ready(120)
    assert not w.answers_concepts and w.toolbar.threshold.layout.display == "none"
    assert "Shift+Enter" not in w.toolbar.legend.value
    assert w.toolbar.accept_all.layout.display == "none" and w.toolbar.instances.layout.display == "none"
    w.add_point(200, 150)
    kept = w.accept_all()  # on ranked candidates: the shown one
    assert len(kept) == 1 and len(w.masks) == 1 and kept[0].predicted_iou is not None


def test_the_model_list_is_asked_once_and_an_unreadable_one_falls_back(local_client: SamClientBase) -> None:
    client = ConceptClient(local_client)
    w = concept_widget(client)
    for _ in range(3):
        assert w.answers_concepts
    assert client.model_calls == 1

    class Silent(ConceptClient):
        def models(self) -> list[dict[str, Any]]:
            raise ConnectionError("no /v1/models")

    silent = Silent(local_client)
    w = concept_widget(silent)
    assert not w.answers_concepts
    w.set_text("cat")  # the answer's boxes say these are instances: each is shown
    assert len(w.candidates) == 3 and w.current.is_concept and "threshold" not in silent.predict_calls[-1]

    class Named(ConceptClient):
        listing = [{"name": "sam2", "family": "sam2", "prompts": ["points", "box"]}, *ConceptClient.listing]

    assert concept_widget(Named(local_client), model="sam3").answers_concepts
    assert not concept_widget(Named(local_client)).answers_concepts  # the server's first model


@pytest.fixture(scope="module")
def sam3_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SamClientBase]:
    """The in-process server with the tiny random SAM 3 (no download)."""
    pytest.importorskip("transformers", minversion="5")
    from backend.inference.sam3 import load_sam3
    from backend.serving.config import ServerConfig
    from backend.serving.local_client import LocalSamClient
    from backend.serving.service import SamService
    from tests.inference.sam3.tiny_sam3 import save_tiny_sam3

    folder = tmp_path_factory.mktemp("sam3") / "tiny-sam3"
    save_tiny_sam3(folder)
    config = ServerConfig(
        model=("sam3-tiny", load_sam3(folder)), device="cpu", cache_dtype="float32", plugins=False
    )
    service = SamService(config).start()
    client = LocalSamClient.from_service(service)
    yield client
    client.close()


def test_the_tiny_sam3_through_the_widget(sam3_client: SamClientBase) -> None:
    from tests.inference.sam3.tiny_sam3 import NUM_QUERIES

    w = SamWidget(scene(), sam3_client, model="sam3-tiny", max_canvas_size=(200, 200), threshold=0.0)
    w.wait_ready(120)
    assert w.answers_concepts
    w.set_text("cat")
    found = w.candidates
    assert len(found) == NUM_QUERIES and w.status.startswith(f'{NUM_QUERIES} instances of "cat" (threshold 0')
    scores = [c.raw_score for c in found]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert all(c.mask.shape == (300, 400) and c.box is not None for c in found)
    w.toggle(3)
    w.toggle(0)
    kept = w.accept()
    assert len(w.masks) == 2 and kept.mask is found[3].mask  # best first: instance 1, then 4
    assert w.masks[0].mask is found[0].mask and len(w.candidates) == NUM_QUERIES - 2
    w.accept_all()
    assert len(w.masks) == NUM_QUERIES and w.candidates == []
    coco = w.to_coco()
    assert len(coco["annotations"]) == NUM_QUERIES
    assert sorted(a["concept_score"] for a in coco["annotations"]) == pytest.approx(sorted(scores))
    # random weights score about 0.25: the default threshold finds none, and says what to do
    w.threshold = 0.5
    w.set_text("cat")
    assert w.candidates == [] and "lower the threshold" in w.status
    # clicks on SAM 3: three ranked candidates for one object, as before
    w.add_point(200, 150)
    assert len(w.candidates) == 3 and not w.current.is_concept
