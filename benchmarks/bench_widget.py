"""Click-to-overlay latency of the notebook widget, with a cached embedding.

For each image size the embedding is computed once, then every click is
timed on the Python side and split into:

* server: ``client.predict`` (prompt -> three ranked masks at the original
  size), through ``LocalSamClient`` (in process) or ``SamClient`` (``--url``);
* draw: everything the widget does after the answer: state update, overlay
  at canvas size and its PNG encoding (also timed alone: "overlay png"),
  prompt layer, comm messages (canvas commands sent to a recorder; overlay
  PNG + commands size reported).

The browser's PNG decode and composite are not included (a few ms in
Chromium for a 1-megapixel overlay).

``--browser`` measures what a person waits for instead: click-to-mask in the
real widget, in JupyterLab in headless Chromium, against a ``sam-server``
with the demo model (both started on 127.0.0.1 as the browser tests do). Each
click starts a new object (Escape first); the time runs from the browser's
``mousedown`` on the canvas to the first animation frame whose canvas shows
the new mask's outline (a fixed magenta palette, so its pixels are known).
The model server's share is the latency the widget reports for the click.

Usage::

    python benchmarks/bench_widget.py                     # random ViT-T weights (official decoder size)
    python benchmarks/bench_widget.py --model demo        # a registry name or checkpoint path
    python benchmarks/bench_widget.py --url http://127.0.0.1:9090 --token T
    python benchmarks/bench_widget.py --browser --clicks 12   # click-to-mask in JupyterLab + Chromium
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.api.answers import ImageInfo, ObjectMasks  # noqa: E402
from backend.api.priority import Priority  # noqa: E402
from backend.client.base import ImageSource, SamClientBase  # noqa: E402


class TimedClient(SamClientBase):
    """Delegates to a real client and keeps the wall time of the last ``predict``."""

    def __init__(self, inner: SamClientBase) -> None:
        self.inner = inner
        self.last_predict_s = 0.0

    def add_image(
        self, image: ImageSource, *, model: str | None = None, priority: Priority | str = Priority.INTERACTIVE
    ) -> ImageInfo:
        return self.inner.add_image(image, model=model, priority=priority)

    def predict(self, image_id: str, prompt: Any = None, **kwargs: Any) -> list[ObjectMasks]:
        start = time.perf_counter()
        answers = self.inner.predict(image_id, prompt, **kwargs)
        self.last_predict_s = time.perf_counter() - start
        return answers

    def automask(self, image_id: str, **params: Any) -> list[dict[str, Any]]:
        return self.inner.automask(image_id, **params)

    def models(self) -> list[dict[str, Any]]:
        return self.inner.models()

    def ready(self) -> bool:
        return self.inner.ready()


def make_client(args: argparse.Namespace) -> SamClientBase:
    """The client under test: HTTP (``--url``) or in-process."""
    if args.url:
        from backend.client.http_client import SamClient

        return SamClient(args.url, args.token)
    import torch

    from backend.serving.local_client import LocalSamClient

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.model:
        return LocalSamClient(args.model, device=args.device)
    from backend.model import VIT_T, build_sam

    torch.manual_seed(0)
    return LocalSamClient(build_sam(VIT_T).eval(), device=args.device)


def scene(size: int) -> np.ndarray:
    """``size x size`` RGB test picture: a few bright shapes on a gradient."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([x * 120, y * 120, (x + y) * 60], axis=-1)
    image[int(size * 0.2) : int(size * 0.5), int(size * 0.3) : int(size * 0.7)] = (230, 200, 40)
    image[(x - 0.7) ** 2 + (y - 0.7) ** 2 < 0.02] = (40, 180, 230)
    return image.astype(np.uint8)


def record_messages() -> list[int]:
    """Replace the ipycanvas comm ``send`` by a recorder of message sizes (bytes of all buffers)."""
    from ipycanvas.canvas import _CANVAS_MANAGER

    sizes: list[int] = []

    def send(content: Any, buffers: list[Any] | None = None) -> None:
        sizes.append(sum(memoryview(b).nbytes for b in buffers or []))

    _CANVAS_MANAGER.send = send
    return sizes


def bench_size(client: TimedClient, size: int, *, clicks: int, max_canvas: tuple[int, int]) -> dict[str, Any]:
    from widget import SamWidget
    from widget.drawing import MaskLayer, overlay_png

    start = time.perf_counter()
    w = SamWidget(scene(size), client, max_canvas_size=max_canvas)
    w.wait_ready(None)
    embed_s = time.perf_counter() - start
    sizes = record_messages()
    rng = np.random.default_rng(0)
    server, draw, total, overlay, msg = [], [], [], [], []
    for i in range(clicks + 2):
        if i % 3 == 0:
            w.clear()  # a fresh object every third click; the others refine
        x, y = rng.uniform(0.05, 0.95, size=2) * size
        del sizes[:]
        t0 = time.perf_counter()
        w.add_point(x, y, positive=True)
        elapsed = time.perf_counter() - t0
        if i < 2:
            continue  # warm-up
        total.append(elapsed * 1000)
        server.append(client.last_predict_s * 1000)
        draw.append((elapsed - client.last_predict_s) * 1000)
        msg.append(sum(sizes) + len(w.overlay.value))
        chosen = w.current.chosen
        if chosen is None:
            raise RuntimeError("the model returned no candidate")
        t1 = time.perf_counter()
        overlay_png(w.view.grid, layers=[MaskLayer(chosen.mask, (255, 0, 255), outline=2)], opacity=0.5)
        overlay.append((time.perf_counter() - t1) * 1000)
    return {
        "size": size,
        "canvas": w.canvas_size,
        "embed_s": embed_s,
        "server_ms": statistics.median(server),
        "draw_ms": statistics.median(draw),
        "total_ms": statistics.median(total),
        "total_p90_ms": float(np.percentile(total, 90)),
        "overlay_ms": statistics.median(overlay),
        "message_kb": statistics.median(msg) / 1024,
    }


BROWSER_NOTEBOOK = """
import json, os
from backend.client.http_client import SamClient
from tests.widget.conftest import shapes_scene
from widget import SamWidget

w = SamWidget(shapes_scene({height}, {width}), SamClient(os.environ["SAM_URL"], os.environ["SAM_TOKEN"]),
              max_canvas_size=({canvas_w}, {canvas_h}), palette=["#ff00ff"])

def dump(_=None):
    state = {{"image_id": w.image_id, "latency_ms": w.latency_ms, "status": w.status, "busy": w.busy}}
    json.dump(state, open("state.tmp", "w"))
    os.replace("state.tmp", "state.json")

w.observe(dump, ["image_id", "status", "busy"])
dump()
w
"""

CLICK_TO_MASK_PROBE = """canvasSelector => {
    const canvas = document.querySelector(canvasSelector);
    const ctx = canvas.getContext('2d');
    window.__outlinePixels = () => {
        const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] === 255 && d[i + 1] === 0 && d[i + 2] === 255) n++;
        return n;
    };
    window.__arm = () => {
        window.__clickToMask = null;
        canvas.addEventListener('mousedown', () => {
            const start = performance.now();
            const poll = () => {
                if (window.__outlinePixels() >= 20) window.__clickToMask = performance.now() - start;
                else requestAnimationFrame(poll);
            };
            requestAnimationFrame(poll);
        }, {once: true, capture: true});
    };
}"""


BROWSER_TARGETS = [
    (0.25, 0.6),
    (0.68, 0.35),
    (0.72, 0.75),
    (0.5, 0.12),
    (0.2, 0.55),
    (0.66, 0.3),
    (0.78, 0.8),
]
"""Click points as fractions of the canvas: the car, ball and box of ``shapes_scene``, and the background."""


def bench_browser(args: argparse.Namespace) -> None:
    """Click-to-mask p50 in the real widget (JupyterLab + Chromium + sam-server with the demo model)."""
    import json
    import tempfile

    from tests.widget.browser_harness import (
        CANVAS,
        can_run_browser,
        chromium_page,
        jupyter_server,
        model_server,
        read_json,
        run_notebook,
        wait_for,
        write_notebook,
    )

    if not can_run_browser():
        raise SystemExit("--browser needs /usr/bin/chromium and jupyterlab in this environment")
    width, height = args.browser_image
    work = Path(tempfile.mkdtemp(prefix="bench-widget-"))
    root = work / "notebooks"
    root.mkdir()
    code = BROWSER_NOTEBOOK.format(
        width=width, height=height, canvas_w=args.max_canvas[0], canvas_h=args.max_canvas[1]
    )
    write_notebook(root / "bench.ipynb", code)
    times, server = [], []
    with (
        model_server(work) as (url, token),
        jupyter_server(root, work, sam_url=url, sam_token=token) as template,
    ):
        with chromium_page() as page:
            page.goto(template.format(path="lab/tree/bench.ipynb"))
            run_notebook(page, "jupyterlab")
            canvas = page.wait_for_selector(CANVAS, timeout=180_000)
            canvas.scroll_into_view_if_needed()
            wait_for(lambda: read_json(root / "state.json")["image_id"], 180, "the embedding")
            rect = canvas.bounding_box()
            page.evaluate(CLICK_TO_MASK_PROBE, CANVAS)
            for i in range(args.clicks + 2):
                fx, fy = BROWSER_TARGETS[i % len(BROWSER_TARGETS)]
                page.mouse.move(rect["x"] + 5, rect["y"] + 5)
                page.keyboard.press("Escape")  # a new object each time
                page.wait_for_function("() => window.__outlinePixels() === 0", timeout=30_000)
                page.evaluate("window.__arm()")
                page.mouse.click(rect["x"] + fx * rect["width"], rect["y"] + fy * rect["height"])
                ms = page.wait_for_function("() => window.__clickToMask", timeout=120_000).json_value()
                state = wait_for(
                    lambda: (s := read_json(root / "state.json"))["status"].startswith("3 masks") and s,
                    30,
                    "the answer",
                )
                if i >= 2:  # warm-up
                    times.append(float(ms))
                    server.append(float(state["latency_ms"]))
                print(
                    f"click {i + 1:2d} at ({fx:.2f}, {fy:.2f}): {ms:7.1f} ms (server {state['latency_ms']:.0f} ms)"
                )
    print(
        json.dumps(
            {
                "clicks": len(times),
                "image": [width, height],
                "canvas": [int(rect["width"]), int(rect["height"])],
            }
        )
    )
    print(
        f"click-to-mask in the browser: p50 {statistics.median(times):.0f} ms, p90 {np.percentile(times, 90):.0f} ms, "
        f"min {min(times):.0f} ms, max {max(times):.0f} ms; client.predict (HTTP) p50 {statistics.median(server):.0f} ms"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model", default=None, help="registry name or checkpoint (default: random ViT-T weights)"
    )
    p.add_argument("--url", default=None, help="time a running sam-server instead of an in-process model")
    p.add_argument("--token", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch intra-op threads of the in-process model (0: torch's default)",
    )
    p.add_argument("--clicks", type=int, default=15)
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--max-canvas", type=int, nargs=2, default=[960, 720], metavar=("W", "H"))
    p.add_argument(
        "--browser",
        action="store_true",
        help="click-to-mask in JupyterLab + headless Chromium against a sam-server with the demo model",
    )
    p.add_argument("--browser-image", type=int, nargs=2, default=[1024, 768], metavar=("W", "H"))
    args = p.parse_args()
    if args.browser:
        bench_browser(args)
        return
    client = TimedClient(make_client(args))
    print(
        f"{'image':>10} {'canvas':>10} {'embed s':>8} {'server':>8} {'draw':>7} {'(overlay png)':>14} "
        f"{'total':>7} {'p90':>7} {'msg KiB':>8}"
    )
    for size in args.sizes:
        r = bench_size(client, size, clicks=args.clicks, max_canvas=tuple(args.max_canvas))
        canvas = f"{r['canvas'][0]}x{r['canvas'][1]}"
        print(
            f"{size:>5}x{size:<4} {canvas:>10} {r['embed_s']:8.1f} {r['server_ms']:8.1f} {r['draw_ms']:7.1f} "
            f"{r['overlay_ms']:14.1f} {r['total_ms']:7.1f} {r['total_p90_ms']:7.1f} "
            f"{r['message_kb']:8.1f}"
        )
    print("times in ms, medians over", args.clicks, "clicks; target: total <= 150 ms at 1024x1024")


if __name__ == "__main__":
    main()
