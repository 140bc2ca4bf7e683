"""Label Studio's labeling page, driven as a person drives it (Playwright, Debian's Chromium).

Every method is one gesture: turn on Auto-Annotation, open the Auto-Detect
pop-out and pick a smart tool, pick a label, click or drag on the image,
type a text in the TextArea and press Enter, accept the suggestion, submit.
Image positions are given in image pixels and turned into screen positions
from the image canvas's box on the page.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from playwright.sync_api import Page, Response

INTERACTIVE_PATH = "/interactive-annotating"
"""What the page calls on Label Studio for a smart tool (Label Studio then calls the ML backend)."""


def chromium_path() -> str | None:
    """Debian's Chromium, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def log_in(page: Page, url: str, user: str, password: str) -> None:
    """Log in through Label Studio's login form."""
    page.goto(f"{url}/user/login/")
    page.fill("input[name=email]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


class LabelingPage:
    """One task open on the labeling page.

    Args:
        page: A logged-in Playwright page.
        url: Label Studio's URL.
        project: Project id.
        task: Task id.
        image_size: ``(width, height)`` of the task image in pixels.
    """

    def __init__(self, page: Page, url: str, project: int, task: int, image_size: tuple[int, int]) -> None:
        self.page = page
        self.url = url
        self.project = project
        self.task = task
        self.image_size = image_size

    def open(self) -> LabelingPage:
        """Open the task and wait until its image is drawn."""
        self.page.goto(f"{self.url}/projects/{self.project}/data?task={self.task}")
        self.page.get_by_text("Auto-Annotation").wait_for(timeout=60_000)
        self.image_canvas().wait_for(timeout=60_000)
        self.page.wait_for_load_state("networkidle")
        return self

    def image_canvas(self) -> Any:
        """The canvas layer the image is drawn in (the first one is the whole stage)."""
        return self.page.locator("canvas").nth(1)

    def auto_annotation(self) -> None:
        """Turn on the Auto-Annotation switch in the bottom bar (it shows the smart tools)."""
        switch = self.page.get_by_test_id("bottombar-auto-annotation-toggle")
        if not switch.is_checked():
            self.page.get_by_text("Auto-Annotation").click()
        self.page.locator("button.lsf-tool_smart").first.wait_for()

    def pick_label(self, text: str, nth: int = 0) -> None:
        """Click a label button under the image (``nth`` among buttons with the same text)."""
        self.page.get_by_text(text, exact=True).nth(nth).click()

    def pick_smart_tool(self, tool: str) -> None:
        """Open the Auto-Detect pop-out and pick ``tool`` (``key-point-tool``, ``rectangle-tool``).

        The pop-out opens on hover over the Auto-Detect button in the tool bar.
        """
        self.page.locator("button.lsf-tool_smart:not([aria-label])").hover()
        choices = self.page.locator(".lsf-toolbar__smart > div")
        for index in range(choices.count()):
            if choices.nth(index).locator(f"button[aria-label={tool}]").count():
                choices.nth(index).dispatch_event("click")
                return
        raise AssertionError(f"no smart tool {tool} in the Auto-Detect pop-out")

    def screen_point(self, x: float, y: float) -> tuple[float, float]:
        """Screen position of image pixel ``(x, y)``."""
        box = self.image_canvas().bounding_box()
        assert box is not None, "the image canvas is not on screen"
        width, height = self.image_size
        return box["x"] + box["width"] * x / width, box["y"] + box["height"] * y / height

    def click(self, x: float, y: float) -> dict[str, Any]:
        """Click image pixel ``(x, y)`` with the current tool; returns the smart request and its answer."""
        with self.page.expect_response(lambda r: INTERACTIVE_PATH in r.url, timeout=120_000) as answer:
            self.page.mouse.click(*self.screen_point(x, y))
        return self._exchange(answer.value)

    def drag(self, start: tuple[float, float], end: tuple[float, float]) -> dict[str, Any]:
        """Drag from image pixel ``start`` to ``end`` (a box); returns the smart request and its answer."""
        with self.page.expect_response(lambda r: INTERACTIVE_PATH in r.url, timeout=120_000) as answer:
            self.page.mouse.move(*self.screen_point(*start))
            self.page.mouse.down()
            self.page.mouse.move(*self.screen_point(*end), steps=8)
            self.page.mouse.up()
        return self._exchange(answer.value)

    def add_text(self, text: str, nth: int = 0) -> dict[str, Any]:
        """Type ``text`` in a one-row TextArea and press Enter; returns the smart request and its answer.

        Enter submits the TextArea's form, which adds the text as the
        TextArea's result (a one-row TextArea has no Add button). With
        Auto-Annotation on, the TextArea is a smart control (``smart`` is on
        by default), so the page sends the result alone to the ML backend,
        as it does for a smart keypoint or rectangle.
        """
        field = self.page.get_by_test_id("textarea-input").nth(nth)
        field.click()
        field.press_sequentially(text)
        with self.page.expect_response(lambda r: INTERACTIVE_PATH in r.url, timeout=120_000) as answer:
            field.press("Enter")
        return self._exchange(answer.value)

    def suggestion_scores(self) -> list[float | None]:
        """Scores of the pending suggestions, in the order they came (Label Studio's store, ``window.Htx``)."""
        return self.page.evaluate(
            "() => Array.from(window.Htx.annotationStore.selected.suggestions.values())"
            ".map(r => r.score ?? null)"
        )

    def region_scores(self, kind: str) -> list[float | None]:
        """Scores of the annotation's regions of one kind (e.g. ``brushregion``), in order (Label Studio's store)."""
        return self.page.evaluate(
            "kind => window.Htx.annotationStore.selected.regions"
            ".filter(r => r.type === kind).map(r => r.score ?? null)",
            kind,
        )

    def outliner_rows(self) -> list[tuple[str, str]]:
        """The rows of the region list in the side panel, top down: ``(label, score as shown or "")``.

        Only the rows drawn: the list is virtual and scrolls past about 7 rows.
        """
        return [
            (
                row.locator(".lsf-outliner-item__title").inner_text().strip(),
                " ".join(row.locator(".lsf-outliner-item__control_type_score").all_inner_texts()).strip(),
            )
            for row in self.page.locator(".lsf-outliner-item").all()
        ]

    @staticmethod
    def _exchange(response: Response) -> dict[str, Any]:
        sent = json.loads(response.request.post_data or "{}")
        return {"sent": sent["context"]["result"], "answer": response.json()}

    def suggestions_shown(self) -> int:
        """How many suggestions the bottom bar says are waiting (0 when none)."""
        label = self.page.locator("text=/\\d+ suggestions?/")
        if label.count() == 0:
            return 0
        return int(label.first.inner_text().split()[0])

    def accept_suggestions(self) -> None:
        """Click the accept (tick) button of the pending suggestions."""
        self.page.locator(".lsf-auto-accept__action_type_accept").click()
        self.page.locator(".lsf-auto-accept__action_type_accept").wait_for(state="detached")

    def reject_suggestions(self) -> None:
        """Click the reject (cross) button of the pending suggestions."""
        self.page.locator(".lsf-auto-accept__action_type_reject").click()
        self.page.locator(".lsf-auto-accept__action_type_reject").wait_for(state="detached")

    def regions(self) -> list[str]:
        """Texts of the region list in the side panel."""
        return self.page.locator(
            ".lsf-outliner-item__title, [class*=outliner] [class*=title]"
        ).all_inner_texts()

    def submit(self) -> None:
        """Press Submit and wait until Label Studio saved the annotation."""
        with self.page.expect_response(
            lambda r: "/annotations" in r.url and r.request.method == "POST", timeout=60_000
        ):
            self.page.get_by_role("button", name="Submit").click()
