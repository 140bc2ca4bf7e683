"""Click-to-mask time on Label Studio's labeling page, measured in Chromium as a person clicks.

Each smart click is timed from the mouse click to the moment the page shows
the mask as a pending suggestion ("1 suggestions" in the bottom bar), which
covers Label Studio's round trip, the plugin and the model server. The
clicks alternate between the objects of a generated picture, so each one is
a new object (a fresh decode, the embedding cached after the first).

Starts its own Label Studio (``.venv-ls``) and model server (demo model), or
uses running ones::

    python benchmarks/bench_labelstudio_ui.py --clicks 12
    python benchmarks/bench_labelstudio_ui.py --label-studio http://127.0.0.1:8080 --model-server http://127.0.0.1:9090
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam_plugin.label_config import EXAMPLE_CONFIG  # noqa: E402
from tests.sam_plugin.labeling_page import LabelingPage, chromium_path, log_in  # noqa: E402
from tests.sam_plugin.labelstudio_env import (  # noqa: E402
    PASSWORD,
    USER,
    H,
    LabelStudio,
    W,
    shapes_png,
    start_label_studio,
    start_model_server,
)

TARGETS = [(70.0, 80.0), (190.0, 60.0), (250.0, 160.0)]
"""Pixels on the red disc, the blue rectangle and the green triangle of ``shapes_png``."""


@contextlib.contextmanager
def servers(label_studio_url: str | None, model_server_url: str | None) -> Iterator[tuple[LabelStudio, str]]:
    """Running Label Studio and model server: the given ones, or new ones stopped on exit."""
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ls-")))
        if label_studio_url:
            label_studio = LabelStudio(label_studio_url)
        else:
            label_studio = stack.enter_context(contextlib.contextmanager(start_label_studio)(workdir))
        if model_server_url:
            model_server = model_server_url
        else:
            model_server = stack.enter_context(
                contextlib.contextmanager(start_model_server)(workdir, label_studio)
            )
        yield label_studio, model_server


def measure(label_studio: LabelStudio, model_server: str, clicks: int) -> list[float]:
    """Seconds from each click to the shown suggestion."""
    from playwright.sync_api import sync_playwright

    project = label_studio.new_project(
        "bench clicks", EXAMPLE_CONFIG, shapes_png(), f"{model_server}/ls", prelabel=False
    )
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        log_in(page, label_studio.url, USER, PASSWORD)
        labeling = LabelingPage(page, label_studio.url, project["id"], project["task"], (W, H)).open()
        labeling.auto_annotation()
        for index in range(clicks + 1):  # the first click also computes the embedding: not counted
            x, y = TARGETS[index % len(TARGETS)]
            labeling.pick_label("Object", nth=1)  # rejecting a suggestion clears the label
            labeling.pick_smart_tool("key-point-tool")
            start = time.perf_counter()
            exchange = labeling.click(x + index % 5, y)
            page.get_by_text("1 suggestions").wait_for()
            elapsed = time.perf_counter() - start
            assert "errors" not in exchange["answer"], exchange["answer"]
            if index:
                times.append(elapsed)
            labeling.reject_suggestions()  # an accepted mask would catch the next click on its object
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=12, help="timed clicks (after one warm-up click)")
    parser.add_argument(
        "--label-studio", help="URL of a running Label Studio (user and token of labelstudio_env)"
    )
    parser.add_argument("--model-server", help="URL of a running model server with the plugin under /ls")
    args = parser.parse_args()
    with servers(args.label_studio, args.model_server) as (label_studio, model_server):
        times = measure(label_studio, model_server, args.clicks)
    ms = sorted(t * 1000 for t in times)
    print(
        f"click -> suggestion shown, {len(ms)} clicks: p50 {statistics.median(ms):.0f} ms, "
        f"p90 {ms[int(0.9 * (len(ms) - 1))]:.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms"
    )


if __name__ == "__main__":
    main()
