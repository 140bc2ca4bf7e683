"""What a person does on Label Studio's labeling page, in a real browser (Chromium via Playwright).

A real Label Studio 1.23 and the model server (plugin under ``/ls``, default
settings) run for the session (``labelstudio_env.py``). Each test makes the
gestures docs/labelstudio.md describes: Auto-Annotation on, the smart
keypoint or rectangle picked from the Auto-Detect pop-out, a click or a drag
on the image, a background click, accept, Submit, and Retrieve Predictions in
the data manager; on a SAM 3 project (the concepts server's tiny random SAM 3),
a concept typed in the TextArea and a smart box around an example. Then it
reads back what the page got and compares it, pixel for pixel, with the model
server's answer to the same prompt. Screenshots go
to ``$SAM_E2E_SCREENSHOTS`` (``docs/images`` for the docs) or the test's
temporary folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from backend.client.http_client import SamClient
from backend.formats.coordinates import ls_rect_to_box
from backend.formats.mask_codecs import from_brush_rle
from backend.formats.scores import as_probability
from sam_plugin.label_config import EXAMPLE_CONFIG
from tests.sam_plugin.e2e_model_server import PREDICT_LOG_PREFIX
from tests.sam_plugin.labeling_page import LabelingPage, chromium_path, log_in
from tests.sam_plugin.labelstudio_env import (
    CONCEPT_THRESHOLD,
    CONCEPTS_CONFIG,
    PASSWORD,
    SAM2_E2E,
    SAM3_E2E,
    USER,
    H,
    LabelStudio,
    W,
    shapes_png,
    touching_shapes_png,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(1200)]

CIRCLE = (70.0, 80.0)
"""Centre of the red circle of :func:`shapes_png`, in pixels."""
RECTANGLE_BOX = ((145.0, 25.0), (235.0, 95.0))
"""A box a little larger than the blue rectangle."""


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("SAM_E2E_SCREENSHOTS")
    folder = Path(target) if target else tmp_path_factory.mktemp("ls-ui-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser_page(label_studio: LabelStudio) -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.fail("Debian's chromium is not installed: run scripts/setup.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        log_in(page, label_studio.url, USER, PASSWORD)
        yield page
        browser.close()


def new_task_page(
    label_studio: LabelStudio, model_server: str, page: Any, title: str, image_png: bytes | None = None
) -> LabelingPage:
    """A fresh project (so no earlier object is being refined) open on its task, smart tools shown."""
    image = image_png or shapes_png()
    project = label_studio.new_project(title, EXAMPLE_CONFIG, image, f"{model_server}/ls", prelabel=False)
    labeling = LabelingPage(page, label_studio.url, project["id"], project["task"], (W, H)).open()
    labeling.auto_annotation()
    return labeling


def sent_pixels(region: dict[str, Any]) -> tuple[float, float]:
    """A keypoint the page sent, in pixels (Label Studio sends percent of the image size)."""
    return region["value"]["x"] * W / 100.0, region["value"]["y"] * H / 100.0


def the_region(exchange: dict[str, Any]) -> dict[str, Any]:
    answer = exchange["answer"]
    assert "errors" not in answer, answer
    [region] = answer["data"]["result"]
    assert region["type"] == "brushlabels"
    return region


def brush_mask(region: dict[str, Any]) -> np.ndarray:
    return from_brush_rle(region["value"]["rle"], region["original_height"], region["original_width"])


def server(model_server: str) -> tuple[SamClient, str]:
    client = SamClient(model_server)
    return client, client.add_image(shapes_png()).image_id


def test_a_smart_click_shows_the_model_servers_mask(
    label_studio: LabelStudio, model_server: str, browser_page: Any, shots: Path
) -> None:
    labeling = new_task_page(label_studio, model_server, browser_page, "UI click")
    labeling.pick_label("Object", nth=1)  # the KeyPointLabels' Object
    labeling.pick_smart_tool("key-point-tool")
    exchange = labeling.click(*CIRCLE)
    [click] = exchange["sent"]
    assert click["type"] == "keypointlabels" and click["value"]["keypointlabels"] == ["Object"]
    region = the_region(exchange)
    client, image_id = server(model_server)
    [expected] = client.predict(image_id, points=[sent_pixels(click)], labels=[1])
    np.testing.assert_array_equal(brush_mask(region), expected.best)
    assert region["score"] == pytest.approx(as_probability(float(expected.scores[0])))
    assert 0.0 <= region["score"] <= 1.0
    browser_page.get_by_text("1 suggestions").wait_for()
    browser_page.screenshot(path=str(shots / "labelstudio-smart-click.png"))


def test_a_project_on_sam2_gets_its_smart_click_answered_by_that_model(
    label_studio: LabelStudio, model_server: str, browser_page: Any, shots: Path
) -> None:
    """A project whose "Extra params" name the SAM 2.1 model (the server's second): the same
    gesture as above, answered with that model's mask, not the default model's."""
    project = label_studio.new_project(
        "UI SAM 2.1 click",
        EXAMPLE_CONFIG,
        shapes_png(),
        f"{model_server}/ls",
        prelabel=False,
        extra_params={"model": SAM2_E2E},
    )
    assert project["model_version"] == f"sam-{SAM2_E2E}"
    labeling = LabelingPage(browser_page, label_studio.url, project["id"], project["task"], (W, H)).open()
    labeling.auto_annotation()
    labeling.pick_label("Object", nth=1)  # the KeyPointLabels' Object
    labeling.pick_smart_tool("key-point-tool")
    exchange = labeling.click(*CIRCLE)
    [click] = exchange["sent"]
    region = the_region(exchange)
    client = SamClient(model_server)
    point = sent_pixels(click)
    [by_sam2] = client.predict(
        client.add_image(shapes_png(), model=SAM2_E2E).image_id, points=[point], labels=[1], model=SAM2_E2E
    )
    [by_default] = client.predict(client.add_image(shapes_png()).image_id, points=[point], labels=[1])
    assert by_sam2.best.any() and not np.array_equal(by_sam2.best, by_default.best)
    np.testing.assert_array_equal(brush_mask(region), by_sam2.best)
    assert region["score"] == pytest.approx(as_probability(float(by_sam2.scores[0])))
    browser_page.get_by_text("1 suggestions").wait_for()
    browser_page.screenshot(path=str(shots / "labelstudio-sam2-click.png"))


def test_a_background_click_refines_the_mask_and_excludes_its_point(
    label_studio: LabelStudio, model_server: str, browser_page: Any, shots: Path
) -> None:
    labeling = new_task_page(label_studio, model_server, browser_page, "UI refine", touching_shapes_png())
    labeling.pick_label("Object", nth=1)
    labeling.pick_smart_tool("key-point-tool")
    first = labeling.click(80.0, 90.0)  # on the disc
    first_mask = brush_mask(the_region(first))
    background = (160.0, 90.0)  # on the bar that touches it
    assert first_mask[int(background[1]), int(background[0])], "the first mask did not take the bar too"
    browser_page.screenshot(path=str(shots / "labelstudio-before-background-click.png"))
    labeling.pick_label("Background")
    second = labeling.click(*background)
    [click] = second["sent"]
    assert click["value"]["keypointlabels"] == ["Background"]  # the page sends it alone
    refined = brush_mask(the_region(second))
    x, y = sent_pixels(click)
    assert not refined[int(y), int(x)], "the background click's pixel is still in the mask"
    px, py = sent_pixels(first["sent"][0])
    assert refined[int(py), int(px)], "the positive click's pixel left the mask"
    assert the_region(second)["id"] == the_region(first)["id"]  # the same object, refined
    browser_page.get_by_text("1 suggestions").wait_for()
    browser_page.screenshot(path=str(shots / "labelstudio-background-click.png"))


def test_a_smart_rectangle_gives_the_model_servers_mask_and_accept_then_submit_saves_it(
    label_studio: LabelStudio, model_server: str, browser_page: Any, shots: Path
) -> None:
    labeling = new_task_page(label_studio, model_server, browser_page, "UI box")
    labeling.pick_label("Object", nth=2)  # the RectangleLabels' Object
    labeling.pick_smart_tool("rectangle-tool")
    exchange = labeling.drag(*RECTANGLE_BOX)
    [rectangle] = exchange["sent"]
    assert rectangle["type"] == "rectanglelabels"
    value = rectangle["value"]
    box = [
        value["x"] * W / 100.0,
        value["y"] * H / 100.0,
        (value["x"] + value["width"]) * W / 100.0,
        (value["y"] + value["height"]) * H / 100.0,
    ]
    region = the_region(exchange)
    client, image_id = server(model_server)
    [expected] = client.predict(image_id, box=box, multimask=False)
    np.testing.assert_array_equal(brush_mask(region), expected.best)
    browser_page.screenshot(path=str(shots / "labelstudio-smart-rectangle.png"))
    labeling.accept_suggestions()
    assert labeling.suggestions_shown() == 0
    labeling.submit()
    [annotation] = label_studio.call("GET", f"/api/tasks/{labeling.task}/annotations")
    brushes = [r for r in annotation["result"] if r["type"] == "brushlabels"]
    assert len(brushes) == 1
    np.testing.assert_array_equal(brush_mask(brushes[0]), expected.best)


def test_retrieve_predictions_stores_non_empty_regions_with_default_settings(
    label_studio: LabelStudio, model_server: str, browser_page: Any, shots: Path
) -> None:
    project = label_studio.new_project("UI batch", EXAMPLE_CONFIG, shapes_png(), f"{model_server}/ls")
    page = browser_page
    page.goto(f"{label_studio.url}/projects/{project['id']}/data")
    page.locator("input[type=checkbox]").nth(1).wait_for(timeout=60_000)  # the task's row is shown
    page.locator("input[type=checkbox]").first.check()  # the header box: every task
    menu_item = page.get_by_text("Retrieve Predictions", exact=True).locator("visible=true").first
    for _ in range(5):  # the menu ignores a click while the table is still settling
        page.locator("button[aria-label='Tasks Actions']").click()
        try:
            menu_item.wait_for(timeout=3000)
            break
        except PlaywrightTimeout:
            continue
    page.screenshot(path=str(shots / "labelstudio-actions-menu.png"))
    menu_item.click()
    page.get_by_text("Send the selected tasks to all ML backends", exact=False).wait_for()
    page.locator("button", has_text="OK").last.click()
    deadline = time.monotonic() + 300
    predictions: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not predictions:
        predictions = label_studio.call("GET", "/api/predictions", params={"task": project["task"]})
        time.sleep(2)
    assert predictions, "no prediction was stored"
    LabelingPage(page, label_studio.url, project["id"], project["task"], (W, H)).open()
    page.screenshot(path=str(shots / "labelstudio-predictions.png"))  # what the annotator starts from
    [prediction] = predictions
    assert prediction["result"], "default segment-everything stored no region"
    assert all(0.0 <= region["score"] <= 1.0 for region in prediction["result"])
    assert prediction["model_version"] == project["model_version"]


def forwarded_to_plugin(log: Path) -> dict[str, Any]:
    """The ``params.context`` of the last body Label Studio sent to the plugin's ``/predict`` (the server's log)."""
    bodies = [line.partition(PREDICT_LOG_PREFIX)[2] for line in log.read_text().splitlines()]
    return json.loads([body for body in bodies if body][-1])["params"]["context"]


def the_instances(answer: dict[str, Any], objects: list[Any]) -> list[float]:
    """Check the answer is every instance the server found, mask for mask, best first; returns their scores."""
    assert "errors" not in answer, answer
    regions = answer["data"]["result"]
    expected = [(o.best, as_probability(float(o.scores[0]))) for o in objects if o.best.any()]
    assert len(regions) == len(expected)
    for region, (mask, score) in zip(regions, expected, strict=True):
        assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Object"]
        np.testing.assert_array_equal(brush_mask(region), mask)
        assert region["score"] == pytest.approx(score)
        assert region["meta"] == {"text": ["cat"]}
    scores = [region["score"] for region in regions]
    assert scores == sorted(scores, reverse=True)
    return scores


def test_a_typed_concept_on_sam3_suggests_every_instance_and_a_smart_box_every_one_like_it(
    label_studio: LabelStudio, concepts_server: str, browser_page: Any, shots: Path, e2e_workdir: Path
) -> None:
    """A SAM 3 project: "cat" typed in the TextArea, Enter; then a smart box; accept each time, Submit.

    The page sends the TextArea's result alone (Label Studio forwards it to
    ``/ls/predict`` as the context), and shows every instance the model server
    finds above ``SAM_CONCEPT_THRESHOLD`` as a suggestion with its score; the
    box then brings every instance like it, with the concept typed before.
    """
    project = label_studio.new_project(
        "UI concept",
        CONCEPTS_CONFIG,
        shapes_png(),
        f"{concepts_server}/ls",
        prelabel=False,
        extra_params={"model": SAM3_E2E},
    )
    labeling = LabelingPage(browser_page, label_studio.url, project["id"], project["task"], (W, H)).open()
    labeling.auto_annotation()
    client = SamClient(concepts_server)
    image_id = client.add_image(shapes_png(), model=SAM3_E2E).image_id

    # 1. the concept typed in the TextArea, Enter: the page sends the TextArea's result alone
    typed = labeling.add_text("cat")
    [text] = typed["sent"]
    assert (
        text["type"] == "textarea" and text["from_name"] == "concept" and text["value"] == {"text": ["cat"]}
    )
    assert forwarded_to_plugin(e2e_workdir / "concepts-model-server.log") == {"result": [text]}
    cats = client.predict(image_id, text="cat", threshold=CONCEPT_THRESHOLD, model=SAM3_E2E)
    scores = the_instances(typed["answer"], cats)
    assert 2 <= len(scores) <= 8  # a handful, as CONCEPT_THRESHOLD is chosen
    browser_page.get_by_text(f"{len(scores)} suggestions").wait_for()
    assert labeling.suggestion_scores() == pytest.approx(scores)
    browser_page.screenshot(path=str(shots / "labelstudio-concept-text.png"))
    labeling.accept_suggestions()
    assert labeling.outliner_rows() == [("Object", f"{score:.2f}") for score in scores]
    assert labeling.region_scores("brushregion") == pytest.approx(scores)

    # 2. a smart box around the blue rectangle: an exemplar of the concept typed last
    labeling.pick_label("Object", nth=1)  # the RectangleLabels' Object
    labeling.pick_smart_tool("rectangle-tool")
    boxed = labeling.drag(*RECTANGLE_BOX)
    [rectangle] = boxed["sent"]
    assert rectangle["type"] == "rectanglelabels" and rectangle["value"]["rectanglelabels"] == ["Object"]
    assert forwarded_to_plugin(e2e_workdir / "concepts-model-server.log") == {"result": [rectangle]}
    value = rectangle["value"]
    box = ls_rect_to_box(value["x"], value["y"], value["width"], value["height"], W, H)
    like_it = client.predict(
        image_id,
        text="cat",
        exemplars=[{"box": box, "positive": True}],
        threshold=CONCEPT_THRESHOLD,
        model=SAM3_E2E,
    )
    more = the_instances(boxed["answer"], like_it)
    assert len(more) >= 1
    browser_page.get_by_text(f"{len(more)} suggestions").wait_for()
    assert labeling.suggestion_scores() == pytest.approx(more)
    browser_page.screenshot(path=str(shots / "labelstudio-concept-exemplar.png"))
    labeling.accept_suggestions()
    labeling.submit()
    [annotation] = label_studio.call("GET", f"/api/tasks/{labeling.task}/annotations")
    saved = annotation["result"]
    assert [r["value"]["text"] for r in saved if r["type"] == "textarea"] == [["cat"]]
    brushes = [r for r in saved if r["type"] == "brushlabels"]
    assert [r["score"] for r in brushes] == pytest.approx(scores + more)
    assert all(r["meta"] == {"text": ["cat"]} for r in brushes)
