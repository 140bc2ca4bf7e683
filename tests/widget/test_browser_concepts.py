"""A word on SAM 3 in a real browser: JupyterLab + headless Chromium + a sam-server with a tiny SAM 3.

The sam-server serves a tiny random SAM 3 (``tests/inference/sam3/tiny_sam3.py``,
no download) from its folder; the notebook shows a ``SamWidget`` talking to
it through ``SamClient`` and writes the widget's state to ``state.json`` (and
the instances' masks to ``instances.npy``) whenever it changes. A person:

* sees the threshold slider (the model answers concepts);
* types "cat" and presses find: a busy status while it runs, then that no
  instance scored above 0.5 and how to lower the threshold (random weights
  score about 0.25);
* types 0.2 into the slider's readout and presses find again: eight
  instances, one button each with its score, each drawn on the canvas in
  its own colour with a numbered tag;
* presses instance 2's button (it is drawn outlined thick in its colour),
  then accept: one mask kept, seven buttons left; then accept all: eight
  masks kept, best first, each with its score and the label "cat".

Screenshots go to ``test-artifacts/`` (``widget-concepts-*.png``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.widget.browser_harness import (
    FRONTEND_PATHS,
    REPO,
    can_run_browser,
    canvas_pixels,
    chromium_page,
    jupyter_server,
    model_server,
    read_json,
    wait_for,
    write_notebook,
)
from tests.widget.conftest import shown_image_pixels
from tests.widget.test_browser import STATUS_PROBE, open_widget, statuses_since
from widget.drawing import PICKED_OUTLINE, instance_color, outline
from widget.events import CONCEPT_GESTURES

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ARTIFACTS = REPO / "test-artifacts"
IMAGE_SIZE = (600, 450)
MAX_CANVAS = (480, 360)

CONCEPT_NOTEBOOK = f"""
import json, os
import numpy as np
from backend.client.http_client import SamClient
from tests.widget.conftest import shapes_scene
from widget import SamWidget

w = SamWidget(shapes_scene({IMAGE_SIZE[1]}, {IMAGE_SIZE[0]}), SamClient(os.environ["SAM_URL"], os.environ["SAM_TOKEN"]),
              max_canvas_size={MAX_CANVAS}, labels=["object", "cat"])

def write_atomic(name, save):
    save(name + ".tmp")
    os.replace(name + ".tmp", name)

def dump(_=None):
    found = w.current.instances
    if found:
        write_atomic("instances.npy", lambda p: np.save(open(p, "wb"), np.stack([c.mask for c in found])))
    state = {{"image_id": w.image_id, "scale": w.scale, "canvas_size": list(w.canvas_size),
             "status": w.status, "status_kind": w.status_kind, "busy": w.busy, "threshold": w.threshold,
             "concepts": w.answers_concepts if w.image_id else None,
             "instances": [c.raw_score for c in found], "picked": list(w.picked),
             "colors": [list(c) for c in w.instance_colors],
             "masks": [{{"label": m.label, "score": m.score, **m.raw_scores}} for m in w.masks]}}
    write_atomic("state.json", lambda p: json.dump(state, open(p, "w")))

w.observe(dump, ["candidates", "status", "image_id", "picked", "masks", "busy", "threshold"])
dump()
w
"""


@pytest.fixture(scope="module")
def sam3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(url, token)`` of a sam-server on 127.0.0.1 serving a tiny random SAM 3 from its folder."""
    pytest.importorskip("transformers", minversion="5")
    from tests.inference.sam3.tiny_sam3 import save_tiny_sam3

    work = tmp_path_factory.mktemp("sam3-server")
    save_tiny_sam3(work / "tiny-sam3")
    with model_server(work, model=str(work / "tiny-sam3")) as server:
        yield server


@pytest.fixture
def jupyter(tmp_path: Path, sam3_server: tuple[str, str]) -> Iterator[tuple[str, Path]]:
    """``(URL template, notebook folder)`` of a Jupyter server with ``concepts.ipynb``."""
    if not can_run_browser():
        pytest.skip("needs /usr/bin/chromium and jupyterlab in this environment")
    root = tmp_path / "notebooks"
    root.mkdir()
    write_notebook(root / "concepts.ipynb", CONCEPT_NOTEBOOK)
    url, token = sam3_server
    with jupyter_server(root, tmp_path, sam_url=url, sam_token=token) as template:
        yield template, root


def instance_buttons(page: Any) -> list[tuple[str, bool]]:
    """``(text, pressed)`` of the instance buttons a person sees, in order."""
    script = (
        "() => [...document.querySelectorAll('.sam-instances button.sam-instance')]"
        ".filter(b => b.offsetParent !== null)"
        ".map(b => [b.textContent.trim(), b.classList.contains('mod-active')])"
    )
    return [(text, pressed) for text, pressed in page.evaluate(script)]


def test_a_person_finds_every_instance_of_a_word_picks_and_keeps_them(jupyter: tuple[str, Path]) -> None:
    url_template, root = jupyter
    url = url_template.format(path=FRONTEND_PATHS["jupyterlab"].format(name="concepts.ipynb"))
    ARTIFACTS.mkdir(exist_ok=True)
    state_file = root / "state.json"

    def state() -> dict[str, Any]:
        return read_json(state_file)

    with chromium_page() as page:
        _, _, ready = open_widget(page, url, "jupyterlab", state_file)
        output = page.locator(".jp-OutputArea-output .widget-vbox").first  # the SamWidget
        slider = page.locator(".widget-hslider", has_text="threshold")
        wait_for(lambda: slider.is_visible(), 30, "the threshold slider (the model answers concepts)")
        assert state()["concepts"] is True and state()["threshold"] == 0.5
        legend = page.locator(".sam-legend")
        wait_for(lambda: "Shift+Enter" in legend.inner_text(), 10, "the instance keys in the legend")
        for gesture, effect in CONCEPT_GESTURES:
            assert gesture in legend.inner_text() and effect in legend.inner_text()
        page.evaluate(STATUS_PROBE)

        # a word at the default threshold: busy, then "none above 0.5" and how to lower it
        field = page.locator(".widget-text input")
        field.fill("cat")
        page.get_by_role("button", name="find").click()
        wait_for(lambda: state()["status"].startswith("no instance of"), 60, "the empty answer")
        seen = wait_for(
            lambda: (s := statuses_since(page, 0)) and s[-1]["text"].strip().startswith("no instance") and s,
            20,
            "the empty answer on the page",
        )
        busy = [s for s in seen if "sam-status-busy" in s["kind"]]
        assert busy and busy[0]["text"].strip() == 'finding every instance of "cat" (threshold 0.5)…', seen
        assert busy[0]["spinner"] and busy[0]["text_disabled"] is True
        assert "lower the threshold (the slider, or w.threshold = 0.3)" in seen[-1]["text"]
        output.screenshot(path=str(ARTIFACTS / "widget-concepts-none.png"))

        # lower the threshold (type into the slider's readout) and press find again
        readout = slider.locator(".widget-readout")
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("0.2")
        page.keyboard.press("Enter")
        wait_for(
            lambda: state()["status"] == "threshold 0.2: press find to ask again with it",
            20,
            "the new threshold",
        )
        assert state()["threshold"] == pytest.approx(0.2)
        page.get_by_role("button", name="find").click()
        found = wait_for(
            lambda: (s := state())["instances"] and s["status"].startswith("8 instances") and s,
            60,
            "the instances",
        )
        count = len(found["instances"])
        assert count == 8  # the tiny SAM 3's queries, all scoring about 0.25
        assert re.match(r'8 instances of "cat" \(threshold 0\.2\) in \d+ ms', found["status"])
        texts = [f"{i + 1}: {score:.2f}" for i, score in enumerate(found["instances"])]
        wait_for(lambda: instance_buttons(page) == [(t, False) for t in texts], 20, "eight instance buttons")
        stripes = page.locator(".sam-instances button.sam-instance").evaluate_all(
            "bs => bs.map(b => getComputedStyle(b).borderLeftColor)"
        )
        assert stripes == ["rgb({}, {}, {})".format(*instance_color(i)) for i in range(count)]
        assert found["colors"] == [list(instance_color(i)) for i in range(count)]

        def colours_on_canvas() -> bool:
            rgb = canvas_pixels(page)[..., :3]
            # each tag alone is ~1000 pixels of its instance's colour (the tags never cover each other)
            return all(np.all(rgb == instance_color(i), axis=-1).sum() >= 500 for i in range(count))

        wait_for(colours_on_canvas, 20, "every instance's colour (its tag, its outline) on the canvas")
        output.screenshot(path=str(ARTIFACTS / "widget-concepts-found.png"))

        # pick instance 2: its button is pressed, its outline thick and opaque on top
        page.locator(".sam-instances button.sam-instance").nth(1).click()
        wait_for(lambda: state()["picked"] == [1], 20, "instance 2 picked")
        wait_for(lambda: instance_buttons(page)[1] == (texts[1], True), 10, "button 2 pressed")
        masks = np.load(root / "instances.npy")
        scale, canvas_size = ready["scale"], tuple(ready["canvas_size"])
        shown = shown_image_pixels(masks[1], scale=scale, canvas_size=canvas_size)
        ring = outline(shown, PICKED_OUTLINE)
        assert ring.sum() > 30

        def picked_outlined() -> bool:
            rgb = canvas_pixels(page)[..., :3]
            return bool(np.all(rgb[ring] == instance_color(1), axis=-1).mean() > 0.8)  # the tags cover some

        wait_for(picked_outlined, 20, "the picked instance outlined in its colour")
        output.screenshot(path=str(ARTIFACTS / "widget-concepts-picked.png"))

        # accept keeps it; the seven others stay, renumbered
        page.get_by_role("button", name=re.compile(r"accept$")).click()  # not "accept all"
        kept = wait_for(
            lambda: (s := state())["status"].startswith("kept 1 instance") and s, 20, "the kept instance"
        )
        assert kept["masks"][0]["label"] == "cat"  # the label that matches the word
        assert kept["masks"][0]["concept_score"] == pytest.approx(found["instances"][1], abs=1e-6)
        assert len(kept["masks"]) == 1
        assert kept["status"].startswith('kept 1 instance as "cat" · kept: 1 mask · 7 instances left')
        rest = [found["instances"][0], *found["instances"][2:]]
        wait_for(
            lambda: instance_buttons(page) == [(f"{i + 1}: {s:.2f}", False) for i, s in enumerate(rest)],
            20,
            "seven instance buttons",
        )
        wait_for(lambda: page.get_by_text("kept: 1 mask", exact=True).is_visible(), 10, "the kept count")

        # accept all keeps the seven others, each its own mask
        page.get_by_role("button", name="accept all").click()
        done = wait_for(
            lambda: (s := state())["status"].startswith("kept 7") and s, 20, "every instance kept"
        )
        assert len(done["masks"]) == count
        assert [m["concept_score"] for m in done["masks"]] == pytest.approx(
            [found["instances"][1], *rest], abs=1e-6
        )
        assert all(m["label"] == "cat" and 0.0 <= m["score"] <= 1.0 for m in done["masks"])
        assert done["instances"] == [] and done["status"].startswith(
            'kept 7 instances as "cat" · kept: 8 masks'
        )
        wait_for(lambda: instance_buttons(page) == [], 10, "no instance buttons")
        wait_for(lambda: page.get_by_text("kept: 8 masks", exact=True).is_visible(), 10, "the kept count")
        assert not page.get_by_role("button", name="accept all").is_visible()
        output.screenshot(path=str(ARTIFACTS / "widget-concepts-kept.png"))
        (ARTIFACTS / "widget-concepts-state.json").write_text(json.dumps(done, indent=1))
