"""Findings 3 and 4: small files must not cost gigabytes; concurrent requests share one memory budget.

Against a real ``sam-server`` on 127.0.0.1, the growth of its resident memory
is read from ``/proc`` (``VmHWM`` after resetting it through ``clear_refs``):

* every accepted upload (float32 and 16-bit TIFF, RGBA PNG, JPEG) peaks at
  about 4 bytes a pixel above idle, and afterwards holds only its pixels;
* a 693-byte JPEG announcing 7000x7000 pixels is refused and costs nothing;
* uploads decoding at once share ``--decode-budget-mb``;
* mask answers being built at once share ``--answer-budget-mb``, and one
  larger than the whole budget gets 413 saying how many boxes fit.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from PIL import Image

from tests.serving.server_process import ServerProcess

pytestmark = pytest.mark.slow
SIDE = 5000
PIXELS = SIDE * SIDE
MiB = 2**20
SLACK = 24 * MiB
"""Allocator and interpreter noise on top of the figures per pixel."""


def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _pattern(seed: int, side: int = SIDE) -> np.ndarray:
    """A compressible ``side x side`` uint8 picture (different per seed)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (side // 100, side // 100), dtype=np.uint8)
    return np.kron(small, np.ones((100, 100), dtype=np.uint8))


def _float_tiff(seed: int, side: int = SIDE) -> bytes:
    values = _pattern(seed, side).astype(np.float32) / 7.0
    return _save(Image.fromarray(values, "F"), "TIFF", compression="tiff_adobe_deflate")


def _uploads(side: int = SIDE) -> dict[str, bytes]:
    """One ``side x side`` picture in each format whose decoding the server must bound."""
    grey = _pattern(1, side)
    return {
        "float32 TIFF": _float_tiff(0, side),
        "16-bit TIFF": _save(
            Image.fromarray(grey.astype(np.uint16) * 257), "TIFF", compression="tiff_adobe_deflate"
        ),
        "RGBA PNG": _save(
            Image.fromarray(np.dstack([grey, grey, _pattern(2, side), _pattern(3, side)]), "RGBA"), "PNG"
        ),
        "JPEG": _save(
            Image.fromarray(np.dstack([grey, _pattern(4, side), _pattern(5, side)])), "JPEG", quality=70
        ),
    }


class Memory:
    """Resident memory of one process, from ``/proc``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def rss(self) -> int:
        with open(f"/proc/{self.pid}/statm") as statm:
            return int(statm.read().split()[1]) * 4096

    def peak(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            line = next(line for line in status if line.startswith("VmHWM"))
        return int(line.split()[1]) * 1024

    def reset_peak(self) -> int:
        """Start a new peak; returns the resident memory now."""
        time.sleep(0.3)  # the previous request's thread has let go of its objects
        with open(f"/proc/{self.pid}/clear_refs", "w") as clear:
            clear.write("5")
        return self.rss()


@pytest.fixture(scope="module")
def server(tiny_checkpoint) -> Iterator[tuple[ServerProcess, Memory]]:
    process = ServerProcess(
        *("--model", str(tiny_checkpoint), "--device", "cpu", "--no-plugins", "--threads", "8"),
        *("--decode-budget-mb", "120", "--answer-budget-mb", "64", "--max-body-mb", "200"),
    )
    process.start(timeout=120)
    assert process.process is not None
    # One small upload per format first: what a server allocates once (decoder
    # plugins, thread pools, the first embedding) is not held per image.
    for name, data in _uploads(side=300).items():
        assert requests.post(f"{process.url}/v1/images", data=data, timeout=60).status_code == 200, name
    yield process, Memory(process.process.pid)
    process.stop()


def _metric(url: str, budget: str, kind: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    match = re.search(rf'^sam_memory_budget_bytes\{{budget="{budget}",kind="{kind}"\}} (\S+)$', text, re.M)
    assert match, text
    return float(match.group(1))


def test_each_accepted_upload_peaks_at_about_4_bytes_a_pixel_and_then_holds_its_pixels(server):
    process, memory = server
    idle = memory.reset_peak()
    held = []
    for name, data in _uploads().items():
        before = memory.reset_peak()
        answer = requests.post(f"{process.url}/v1/images", data=data, timeout=300)
        assert answer.status_code == 200, (name, answer.text)
        assert (answer.json()["width"], answer.json()["height"]) == (SIDE, SIDE)
        growth = memory.peak() - before
        print(f"{name} ({len(data) / 1e3:.0f} kB): peak +{growth / MiB:.0f} MiB = {growth / PIXELS:.2f} B/px")
        assert growth <= 4.5 * PIXELS + SLACK, name
        held.append(3 * PIXELS)  # the decoded pixels stay in the image store
    # Allocator noise per upload, but far below one retained decode temporary (4 B/px).
    assert memory.rss() - idle <= sum(held) + SLACK * (1 + len(held))


def test_a_693_byte_jpeg_announcing_7000x7000_is_refused_and_costs_nothing(server):
    process, memory = server
    jpeg = _save(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    sof = jpeg.index(b"\xff\xc0")
    jpeg = jpeg[: sof + 5] + (7000).to_bytes(2, "big") * 2 + jpeg[sof + 9 :]
    scan = jpeg.index(b"\xff\xda")
    header_end = scan + 2 + int.from_bytes(jpeg[scan + 2 : scan + 4], "big")
    truncated = jpeg[:header_end] + b"\x00" * (691 - header_end) + b"\xff\xd9"
    assert len(truncated) == 693
    before = memory.reset_peak()
    answer = requests.post(f"{process.url}/v1/images", data=truncated, timeout=60)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_image"
    assert "truncated" in answer.json()["detail"]
    assert memory.peak() - before <= SLACK


def test_three_float_tiffs_at_once_decode_within_the_decode_budget(server):
    process, memory = server
    files = [_float_tiff(seed) for seed in (10, 11, 12)]
    before = memory.reset_peak()
    statuses: list[int] = []

    def upload(data: bytes) -> None:
        statuses.append(requests.post(f"{process.url}/v1/images", data=data, timeout=300).status_code)

    threads = [threading.Thread(target=upload, args=(data,)) for data in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    growth = memory.peak() - before
    print(f"3 float TIFFs at once: peak +{growth / MiB:.0f} MiB = {growth / PIXELS:.2f} B/px of one image")
    assert statuses == [200, 200, 200]
    assert _metric(process.url, "image decoding", "peak") <= 120 * MiB
    # three images held (3 bytes a pixel each) plus one decode in flight (about 1.5 more)
    assert growth <= (3 * 3 + 1.5) * PIXELS + 2 * SLACK


def test_mask_answers_built_at_once_stay_within_the_answer_budget_and_larger_ones_get_413(server):
    process, memory = server
    side = 2000  # one multimask box: 3 masks x 4 Mpx x 2 bytes = 24 MiB; two boxes fit 64 MiB
    image = _save(Image.fromarray(np.dstack([_pattern(20)[:side, :side]] * 3)), "PNG")
    image_id = requests.post(f"{process.url}/v1/images", data=image, timeout=120).json()["image_id"]
    box = [0, 0, side, side]
    too_big = requests.post(
        f"{process.url}/v1/predict", json={"image_id": image_id, "boxes": [box] * 3}, timeout=60
    )
    assert too_big.status_code == 413 and "at most 2 boxes" in too_big.json()["detail"]
    before = memory.reset_peak()
    statuses: list[int] = []

    def predict() -> None:
        body = {"image_id": image_id, "boxes": [box] * 2}
        statuses.append(requests.post(f"{process.url}/v1/predict", json=body, timeout=300).status_code)

    threads = [threading.Thread(target=predict) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    growth = memory.peak() - before
    print(f"4 x 2 boxes at once: peak +{growth / MiB:.0f} MiB (unbounded: about 4 x 46 MiB)")
    assert statuses == [200, 200, 200, 200]
    assert _metric(process.url, "mask answers", "peak") <= 64 * MiB
    # The answers held at once, plus the model thread's one upscaling chunk (one object's three
    # float32 logit maps, 4 B/px, upscaled one object at a time), plus noise; unbounded answers
    # alone would be 4 x 46 MiB.
    upscaling = 3 * side * side * 4
    assert growth <= 64 * MiB + upscaling + 2 * SLACK
