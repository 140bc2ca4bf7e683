"""SamService without HTTP: computing once, micro-batching, stores, out-of-memory."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from backend.api.errors import InvalidInput, NotFound, PayloadTooLarge, ServiceUnavailable
from backend.serving.config import ServerConfig
from backend.serving.service import SamService
from tests.serving.tiny_model import make_config, picture, png_bytes


def _hold_worker(service: SamService) -> threading.Event:
    """Block the GPU worker until the returned event is set (work queues up meanwhile)."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(30)

    service.worker.submit(hold)
    assert started.wait(10)
    return release


def _wait_for_queue(service: SamService, depth: int) -> None:
    for _ in range(2000):
        if service.queue_depth() >= depth:
            return
        threading.Event().wait(0.005)
    raise AssertionError(f"queue never reached {depth}")


def test_concurrent_add_image_of_one_picture_computes_once(service):
    data = png_bytes(picture())
    release = _hold_worker(service)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(service.add_image, data) for _ in range(8)]
        _wait_for_queue(service, 1)
        threading.Event().wait(0.2)  # every thread has reached the in-flight check by now
        release.set()
        infos = [f.result(timeout=30) for f in futures]
    assert len({i.image_id for i in infos}) == 1
    assert service.encoder_calls == 1


def test_add_image_accepts_array_and_bytes_alike(service):
    by_bytes = service.add_image(png_bytes(picture()))
    by_array = service.add_image(picture())
    assert by_bytes == by_array and service.encoder_calls == 1


def _concurrent_predicts(service: SamService, requests: list[dict]) -> list:
    release = _hold_worker(service)
    with ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(service.predict, **r) for r in requests]
        _wait_for_queue(service, len(requests))
        release.set()
        return [f.result(timeout=30) for f in futures]


def test_concurrent_predicts_share_one_decoder_call_and_match_unbatched(service):
    ids = [service.add_image(picture(seed=s)).image_id for s in range(3)]
    requests = [
        {"image_id": ids[i % 3], "points": [[5.0 + 7 * i, 9.0 + 3 * i]], "labels": [1]} for i in range(6)
    ]
    before = service.decoder_calls
    batched = _concurrent_predicts(service, requests)
    assert service.decoder_calls - before == 1
    for request, [obj] in zip(requests, batched, strict=True):
        [alone] = service.predict(**request)
        np.testing.assert_allclose(obj.scores, alone.scores, atol=1e-5)
        np.testing.assert_allclose(obj.stability_scores, alone.stability_scores, atol=1e-3)
        assert np.mean(obj.masks != alone.masks) < 1e-3


def test_different_prompt_shapes_are_separate_decoder_calls(service):
    image_id = service.add_image(picture()).image_id
    requests = [
        {"image_id": image_id, "points": [[10, 10]], "labels": [1]},
        {"image_id": image_id, "points": [[10, 10], [20, 20]], "labels": [1, 0]},
        {"image_id": image_id, "box": [1, 1, 30, 30]},
        {"image_id": image_id, "points": [[30, 10]], "labels": [1]},
    ]
    before = service.decoder_calls
    results = _concurrent_predicts(service, requests)
    assert service.decoder_calls - before == 3
    assert all(len(r) == 1 for r in results)


def test_max_batch_one_disables_batching(tiny_sam):
    service = SamService(make_config(tiny_sam, max_batch=1)).start()
    try:
        assert service.wait_ready(30)
        image_id = service.add_image(picture()).image_id
        requests = [{"image_id": image_id, "points": [[5 + i, 5]], "labels": [1]} for i in range(4)]
        before = service.decoder_calls
        _concurrent_predicts(service, requests)
        assert service.decoder_calls - before == 4
    finally:
        service.close()


def _auto_max_batch(model) -> int:
    service = SamService(make_config(model, max_batch=0)).start()
    try:
        assert service.wait_ready(60)
        return service.models()[0]["max_batch"]
    finally:
        service.close()


def test_auto_max_batch_on_cpu_batches_small_decoders_only(tiny_sam):
    from backend.model import SamConfig, ViTConfig, build_sam

    assert _auto_max_batch(tiny_sam) == 16
    # SAM's decoder (64x64 image tokens of width 256: 4 MiB per prompt) gets one prompt per call.
    sam_sized = SamConfig(vit=ViTConfig(embed_dim=32, depth=1, num_heads=2, global_attn_indexes=(0,)))
    assert _auto_max_batch(build_sam(sam_sized).eval()) == 1


def test_boxes_of_one_request_are_counted_against_max_batch(tiny_sam):
    service = SamService(make_config(tiny_sam, max_batch=3)).start()
    try:
        assert service.wait_ready(30)
        image_id = service.add_image(picture()).image_id
        box = [1, 1, 30, 30]
        requests = [{"image_id": image_id, "boxes": [box, box]} for _ in range(3)]
        before = service.decoder_calls
        results = _concurrent_predicts(service, requests)
        assert service.decoder_calls - before == 3  # 2 + 2 > 3: no two requests fit together
        assert all(len(r) == 2 for r in results)
    finally:
        service.close()


def test_encoder_out_of_memory_is_unavailable_then_next_works(service, monkeypatch):
    original = service.engine().predictor.compute_embedding
    calls = {"n": 0}

    def oom_once(pixels):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")
        return original(pixels)

    monkeypatch.setattr(service.engine().predictor, "compute_embedding", oom_once)
    with pytest.raises(ServiceUnavailable, match="GPU memory"):
        service.add_image(picture())
    assert service.add_image(picture()).width == 80


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_unknown_ids_and_evicted_pixels_say_how_to_fix(tiny_sam):
    service = SamService(make_config(tiny_sam, image_store_mb=1)).start()
    try:
        assert service.wait_ready(30)
        with pytest.raises(NotFound, match="POST /v1/images"):
            service.predict("0" * 64, points=[[1, 1]], labels=[1])
        image_id = service.add_image(_noise(400, 500, seed=1)).image_id  # 0.6 MB of pixels
        service.add_image(_noise(400, 500, seed=2))  # evicts the first's
        with pytest.raises(NotFound, match="upload the image again"):
            service.pixels_for(image_id)
        with pytest.raises(NotFound, match="logits_id"):
            service.predict(image_id, mask_input="missing")
    finally:
        service.close()


def test_text_with_boxes_or_mask_input_is_refused(service):
    image_id = service.add_image(picture()).image_id
    with pytest.raises(InvalidInput, match="text"):
        service.predict(image_id, text="a cat", boxes=[[0, 0, 5, 5]])


def test_model_that_fails_to_load_answers_unavailable(tmp_path):
    service = SamService(ServerConfig(model=str(tmp_path / "missing.pt"), plugins=False)).start()
    try:
        assert not service.wait_ready(60)
        with pytest.raises(ServiceUnavailable):
            service.add_image(picture())
        assert service.models()[0]["ready"] is False
    finally:
        service.close()


def test_evicted_embedding_is_recomputed_from_kept_pixels(tiny_sam):
    service = SamService(make_config(tiny_sam, cache_mb=0)).start()  # the cache holds nothing
    try:
        assert service.wait_ready(30)
        image_id = service.add_image(picture()).image_id
        [obj] = service.predict(image_id, points=[[10, 10]], labels=[1])
        assert obj.masks.shape == (3, 60, 80)
        assert service.encoder_calls == 2
    finally:
        service.close()


def test_upscaling_in_chunks_gives_the_same_masks(service, tiny_sam, monkeypatch):
    from backend.inference import mask_ops
    from backend.inference.predictor import SamPredictor

    boxes = [[1, 1, 30, 30], [10, 5, 70, 50], [0, 0, 80, 60]]
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(picture())
    for budget in ("UPSCALE_CHUNK_PIXELS", "CPU_UPSCALE_CHUNK_PIXELS"):
        monkeypatch.setattr(mask_ops, budget, 1 << 40)  # the reference: every object at once
    expected = predictor.predict(box=np.array(boxes, dtype=np.float64))
    for budget in ("UPSCALE_CHUNK_PIXELS", "CPU_UPSCALE_CHUNK_PIXELS"):
        monkeypatch.setattr(mask_ops, budget, 3 * 60 * 80)  # one object per chunk
    chunks: list[int] = []
    threshold = mask_ops.above_threshold
    monkeypatch.setattr(
        mask_ops, "above_threshold", lambda logits: chunks.append(len(logits)) or threshold(logits)
    )
    image_id = service.add_image(picture()).image_id
    objects = service.predict(image_id, boxes=boxes)
    assert chunks == [1, 1, 1]
    for i, obj in enumerate(objects):
        np.testing.assert_array_equal(obj.masks, expected.masks[i])
        np.testing.assert_allclose(obj.stability_scores, expected.stability_scores[i], atol=1e-6)


def test_answers_too_large_to_hold_are_refused(service, monkeypatch):
    from backend.api.errors import PayloadTooLarge

    monkeypatch.setattr("backend.serving.service.MAX_MASK_PIXELS", 2 * 3 * 60 * 80)
    image_id = service.add_image(picture()).image_id
    box = [1, 1, 30, 30]
    with pytest.raises(PayloadTooLarge, match="at most 2 boxes"):
        service.predict(image_id, boxes=[box, box, box])
    assert len(service.predict(image_id, boxes=[box, box])) == 2
    assert len(service.predict(image_id, boxes=[box, box, box], multimask=False)) == 3


def test_pixels_too_large_for_the_image_store_name_the_budget_not_upload_again(tiny_sam):
    """Uploading again can never help an image larger than --image-store-mb: the answer says
    which budget to raise (it said "upload the image again")."""
    service = SamService(make_config(tiny_sam, image_store_mb=1)).start()
    try:
        assert service.wait_ready(30)
        image_id = service.add_image(_noise(600, 800, seed=3)).image_id  # 1.4 MB of pixels
        with pytest.raises(PayloadTooLarge, match=r"1\.4 MiB\) are larger than .*\(--image-store-mb 1\)"):
            service.pixels_for(image_id)
        with pytest.raises(PayloadTooLarge, match="--image-store-mb"):
            service.automask(image_id, points_per_side=2)
        [obj] = service.predict(image_id, points=[[10, 10]], labels=[1])  # its embedding is enough here
        assert obj.masks.shape[-2:] == (600, 800)
    finally:
        service.close()


def test_an_oversized_image_whose_embedding_is_gone_is_404_so_that_clients_upload_again(tiny_sam):
    """Where an upload helps (the embedding evicted, or wanted from another model) the answer
    stays the 404 that the clients answer by uploading; only pixel users get the 413."""
    service = SamService(make_config(tiny_sam, image_store_mb=1, cache_mb=0)).start()
    try:
        assert service.wait_ready(30)
        pixels = _noise(600, 800, seed=3)
        image_id = service.add_image(pixels).image_id  # neither its pixels nor its embedding are kept
        with pytest.raises(NotFound, match="upload the image"):
            service.image_info(image_id)
        assert service.add_image(pixels).image_id == image_id  # what the clients then do
    finally:
        service.close()


def test_an_embedding_larger_than_the_cache_is_said_once_in_the_log(tiny_sam, caplog):
    service = SamService(make_config(tiny_sam, cache_mb=0)).start()
    try:
        assert service.wait_ready(30)
        with caplog.at_level("WARNING", logger="backend.serving.inflight_encodings"):
            for seed in (4, 5):
                image_id = service.add_image(_noise(40, 50, seed=seed)).image_id
                service.predict(image_id, points=[[10, 10]], labels=[1])
        said = [r.getMessage() for r in caplog.records if "larger than the embedding cache" in r.getMessage()]
        assert len(said) == 1 and "--cache-mb 0" in said[0] and "encodes the image again" in said[0]
    finally:
        service.close()
