"""Faults: out of GPU memory, client timeouts, a disk that fills up.

The model server killed and restarted under a Label Studio batch is in
``test_restart_during_batch.py``.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from werkzeug.serving import make_server

from backend.api.errors import SamError
from backend.client.http_client import SamClient
from backend.formats.images import encode_png
from tests.serving.tiny_model import picture, png_bytes

CUDA_OOM_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity)"


def _fail_once(target: Any, name: str, error: BaseException, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace ``target.name`` by a wrapper that raises ``error`` on its first call only."""
    original = getattr(target, name)
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)
    return calls


# --------------------------------------------------------------- out of memory
@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError(CUDA_OOM_MESSAGE),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
            "can't allocate memory: you tried to allocate 1 bytes. "
            "Error code 12 (Cannot allocate memory); out of memory"
        ),
    ],
    ids=["cuda", "cpu"],
)
def test_out_of_memory_in_the_decoder_answers_503_and_the_next_request_works(make_app, monkeypatch, error):
    app = make_app(mount_plugin=False)
    http = app.test_client()
    service = app.extensions["sam_service"]
    image_id = http.post("/v1/images", data=png_bytes(picture(seed=3))).get_json()["image_id"]
    body = {"image_id": image_id, "points": [[20, 15]], "labels": [1]}
    before = http.post("/v1/predict", json=body).get_json()
    calls = _fail_once(service.engine().predictor, "predict_torch", error, monkeypatch)
    failed = http.post("/v1/predict", json=body)
    assert failed.status_code == 503, failed.get_data(as_text=True)
    assert failed.get_json()["error"] == "unavailable" and "memory" in failed.get_json()["detail"]
    after = http.post("/v1/predict", json=body)
    assert after.status_code == 200
    assert [m["segmentation"] for m in after.get_json()["objects"][0]["masks"]] == [
        m["segmentation"] for m in before["objects"][0]["masks"]
    ]
    assert calls[0] == 2


def test_out_of_memory_in_the_encoder_answers_503_and_a_retry_computes_the_embedding(make_app, monkeypatch):
    app = make_app(mount_plugin=False)
    http = app.test_client()
    service = app.extensions["sam_service"]
    calls = _fail_once(
        service.engine().predictor,
        "compute_embedding",
        torch.cuda.OutOfMemoryError(CUDA_OOM_MESSAGE),
        monkeypatch,
    )
    image = png_bytes(picture(seed=4))
    failed = http.post("/v1/images", data=image)
    assert failed.status_code == 503 and failed.get_json()["error"] == "unavailable"
    retried = http.post("/v1/images", data=image)
    assert retried.status_code == 200, retried.get_data(as_text=True)
    image_id = retried.get_json()["image_id"]
    assert http.get(f"/v1/images/{image_id}").status_code == 200
    assert http.post("/v1/predict", json={"image_id": image_id, "box": [5, 5, 40, 30]}).status_code == 200
    assert calls[0] == 2


# ------------------------------------------------------ client-side timeouts
@pytest.fixture
def served_app(make_app):
    """The tiny-model app behind a threaded WSGI server on 127.0.0.1 (stopped after the test)."""
    app = make_app(mount_plugin=False)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_an_upload_that_times_out_on_the_client_and_is_retried_computes_once(served_app, monkeypatch):
    app, url = served_app
    service = app.extensions["sam_service"]
    original = service.engine().predictor.compute_embedding
    encodes: list[float] = []

    def slow_encoder(pixels: np.ndarray) -> torch.Tensor:
        encodes.append(time.monotonic())
        time.sleep(1.5)
        return original(pixels)

    monkeypatch.setattr(service.engine().predictor, "compute_embedding", slow_encoder)
    pixels = picture(seed=6)
    impatient = SamClient(url, timeout=0.3, retries=0)
    with pytest.raises(SamError) as info:
        impatient.add_image(pixels)
    assert info.value.status == 504  # the client gave up; the server keeps working on it
    patient = SamClient(url, timeout=30)
    first = patient.add_image(pixels)  # the retry joins the computation in flight or hits the cache
    second = patient.add_image(encode_png(pixels))
    assert first.image_id == second.image_id
    deadline = time.monotonic() + 10
    while service.queue_depth() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(encodes) == 1
    a = patient.predict(first.image_id, points=[[30, 20]], labels=[1])
    b = patient.predict(first.image_id, points=[[30, 20]], labels=[1])
    np.testing.assert_array_equal(a[0].masks, b[0].masks)  # predict is idempotent
    assert len(encodes) == 1
    impatient.close()
    patient.close()


# -------------------------------------------------------------- full disk
class _DiskFull:
    """``os.fdopen`` replacement whose files accept ``budget`` bytes, then raise ENOSPC."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.original = os.fdopen
        self.raised = 0

    def __call__(self, fd: int, *args: Any, **kwargs: Any) -> Any:
        handle = self.original(fd, *args, **kwargs)
        outer = self
        real_write = handle.write

        def write(data: Any) -> int:
            size = memoryview(data).nbytes
            if size > outer.budget:
                real_write(bytes(memoryview(data).cast("B")[: outer.budget]))
                outer.budget = 0
                outer.raised += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            outer.budget -= size
            return real_write(data)

        handle.write = write
        return handle


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_full_disk_while_saving_a_training_checkpoint_keeps_the_previous_file(tmp_path, monkeypatch):
    from backend.hub import load_checkpoint
    from backend.train.checkpointing import save_model
    from tests.serving.tiny_model import build_tiny_sam

    sam = build_tiny_sam(seed=1)
    path = tmp_path / "ckpt" / "model.pt"
    save_model(path, sam=sam, meta={"step": 1})
    before = _snapshot(path.parent)
    disk = _DiskFull(budget=10_000)
    monkeypatch.setattr(os, "fdopen", disk)
    with torch.no_grad():
        for p in sam.parameters():
            p.add_(1.0)
    with pytest.raises(Exception) as info:
        save_model(path, sam=sam, meta={"step": 2})
    monkeypatch.setattr(os, "fdopen", disk.original)
    assert disk.raised >= 1, info.value  # torch.save reports the ENOSPC as a RuntimeError
    assert _snapshot(path.parent) == before  # same files, same bytes, no temporary left behind
    _, state, meta = load_checkpoint(path)
    assert meta["step"] == 1


def test_a_full_disk_during_fit_keeps_the_previous_annotation(make_app, tmp_path, monkeypatch):
    from backend.formats.images import encode_png as png
    from sam_plugin.label_config import EXAMPLE_CONFIG
    from sam_plugin.settings import PluginSettings

    dataset = tmp_path / "dataset"
    http = make_app(plugin_settings=PluginSettings(preannotate="off", dataset_dir=dataset)).test_client()
    pixels = picture(seed=8)
    image = "data:image/png;base64," + __import__("base64").b64encode(png(pixels)).decode()

    def event(action: str, rle_rows: tuple[int, int]) -> dict[str, Any]:
        from backend.formats.mask_codecs import to_brush_rle

        mask = np.zeros(pixels.shape[:2], bool)
        mask[rle_rows[0] : rle_rows[1], 10:30] = True
        region = {
            "type": "brushlabels",
            "from_name": "mask",
            "to_name": "image",
            "original_width": 80,
            "original_height": 60,
            "value": {"format": "rle", "rle": to_brush_rle(mask), "brushlabels": ["Object"]},
        }
        return {
            "action": action,
            "annotation": {"id": 7, "result": [region]},
            "task": {"id": 3, "data": {"image": image}},
            "project": {"id": 1, "label_config": EXAMPLE_CONFIG},
        }

    created = http.post("/ls/webhook", json=event("ANNOTATION_CREATED", (5, 20)))
    assert created.status_code == 201, created.get_data(as_text=True)
    before = _snapshot(dataset)
    assert any(name.startswith("annotations/") for name in before)
    disk = _DiskFull(budget=0)
    monkeypatch.setattr(os, "fdopen", disk)
    updated = http.post("/ls/webhook", json=event("ANNOTATION_UPDATED", (25, 50)))
    monkeypatch.setattr(os, "fdopen", disk.original)
    assert disk.raised >= 1
    assert updated.status_code == 503, updated.get_data(
        as_text=True
    )  # Label Studio shows why it was not stored
    assert "No space left" in updated.get_json()["detail"]
    assert _snapshot(dataset) == before
    stored = http.post("/ls/webhook", json=event("ANNOTATION_UPDATED", (25, 50)))  # disk has room again
    assert stored.status_code == 201
    assert _snapshot(dataset) != before
