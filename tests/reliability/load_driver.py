"""Concurrent clients against a running model server, with per-request correctness checks.

Shared by ``tests/reliability/test_load.py`` (asserts zero errors and no
cross-talk) and ``benchmarks/bench_load.py`` (prints p50 / p99).

Every client thread loops until a deadline: upload one of the workload's
images (``POST /v1/images``), check the returned ``image_id`` and size, then
send one of that image's prompts (``POST /v1/predict``) and compare the masks
with the answer the in-process service gave for the same image and prompt.
Images have different sizes, so an answer meant for another image cannot
pass.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
from pycocotools import mask as mask_utils

from backend.formats.images import compute_image_id, encode_png

MAX_DIFFERENT_PIXELS = 0.005
"""Batched and single decoder calls may round differently: allowed fraction of flipped pixels."""


@dataclass(frozen=True)
class WorkItem:
    """One image and the prompts the clients send for it."""

    png: bytes
    image_id: str
    width: int
    height: int
    prompts: tuple[dict[str, Any], ...]


@dataclass
class LoadResult:
    """What the clients saw."""

    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"images": [], "predict": []})
    errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies_ms.values())

    def percentiles(self, kind: str) -> tuple[float, float]:
        """(p50, p99) latency of one request kind, in milliseconds."""
        values = np.asarray(self.latencies_ms[kind])
        return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def make_workload(n_images: int, *, seed: int = 0) -> list[WorkItem]:
    """``n_images`` distinct pictures of distinct sizes, each with point, box and mixed prompts."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_images):
        height, width = 40 + 3 * i, 56 + 5 * i
        pixels = (rng.random((height, width, 3)) * 90).astype(np.uint8)
        y0, x0 = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        pixels[y0 : y0 + height // 3, x0 : x0 + width // 3] = rng.integers(150, 255, 3, dtype=np.uint8)
        cx, cy = x0 + width // 6, y0 + height // 6
        prompts = (
            {"points": [[cx, cy]], "labels": [1]},
            {"box": [x0, y0, x0 + width // 3, y0 + height // 3]},
            {
                "points": [[cx, cy], [width - 2, height - 2]],
                "labels": [1, 0],
                "box": [1, 1, width - 1, height - 1],
            },
        )
        items.append(
            WorkItem(
                png=encode_png(pixels),
                image_id=compute_image_id(pixels),
                width=width,
                height=height,
                prompts=prompts,
            )
        )
    return items


def expected_masks(model_path: Path, workload: list[WorkItem]) -> dict[tuple[int, int], np.ndarray]:
    """``(image index, prompt index) -> KxHxW`` bool masks from the in-process service (no batching)."""
    from backend.serving.config import ServerConfig
    from backend.serving.service import SamService

    service = SamService(
        ServerConfig(model=str(model_path), device="cpu", cache_dtype="float32", max_batch=1, plugins=False)
    ).start()
    try:
        if not service.wait_ready(120):
            raise RuntimeError("the in-process reference service did not load the model")
        expected = {}
        for i, item in enumerate(workload):
            info = service.add_image(item.png)
            for j, prompt in enumerate(item.prompts):
                expected[(i, j)] = service.predict(info.image_id, **prompt)[0].masks
        return expected
    finally:
        service.close()


def _decode(answer: dict[str, Any]) -> np.ndarray:
    masks = [
        mask_utils.decode({"size": m["segmentation"]["size"], "counts": m["segmentation"]["counts"].encode()})
        for m in answer["objects"][0]["masks"]
    ]
    return np.stack(masks).astype(bool)


def run_load(
    url: str,
    workload: list[WorkItem],
    expected: dict[tuple[int, int], np.ndarray],
    *,
    clients: int = 16,
    duration_s: float = 20.0,
    token: str | None = None,
    seed: int = 0,
) -> LoadResult:
    """Run ``clients`` threads for ``duration_s`` seconds; every answer is checked."""
    result = LoadResult()
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def timed(session: requests.Session, kind: str, **kwargs: Any) -> requests.Response | None:
        start = time.perf_counter()
        try:
            response = session.post(f"{url}/v1/{kind}", timeout=60, headers=headers, **kwargs)
        except requests.RequestException as exc:
            with lock:
                result.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        elapsed = (time.perf_counter() - start) * 1000.0
        with lock:
            result.latencies_ms[kind].append(elapsed)
            if response.status_code != 200:
                result.errors.append(f"{kind}: HTTP {response.status_code} {response.text[:200]}")
                return None
        return response

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        with requests.Session() as session:
            while time.monotonic() < deadline:
                i = rng.randrange(len(workload))
                item = workload[i]
                uploaded = timed(session, "images", data=item.png)
                if uploaded is None:
                    continue
                info = uploaded.json()
                if (info["image_id"], info["width"], info["height"]) != (
                    item.image_id,
                    item.width,
                    item.height,
                ):
                    with lock:
                        result.mismatches.append(f"client {index}: upload of image {i} answered {info}")
                    continue
                for _ in range(3):
                    j = rng.randrange(len(item.prompts))
                    answered = timed(session, "predict", json={"image_id": item.image_id, **item.prompts[j]})
                    if answered is None:
                        continue
                    masks = _decode(answered.json())
                    want = expected[(i, j)]
                    problem = None
                    if masks.shape != want.shape:
                        problem = f"shape {masks.shape} instead of {want.shape}"
                    else:
                        flipped = float((masks != want).mean())
                        if flipped > MAX_DIFFERENT_PIXELS:
                            problem = f"{flipped:.1%} of the pixels differ from the expected masks"
                    with lock:
                        result.checked += 1
                        if problem:
                            result.mismatches.append(f"client {index}, image {i}, prompt {j}: {problem}")

    threads = [threading.Thread(target=client, args=(k,), name=f"load-client-{k}") for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration_s + 120)
    return result


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux ``/proc``), parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def process_tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total
