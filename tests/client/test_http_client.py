"""SamClient against a real sam-server process: uploads, masks, errors, retries."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from PIL import Image

from backend.api.errors import InvalidImage, InvalidInput, SamServerError
from backend.client.http_client import ImageFileNotFound, SamClient
from backend.inference.predictor import SamPredictor
from tests.serving.server_process import REPO, ServerProcess, free_port
from tests.serving.tiny_model import build_tiny_sam, picture, png_bytes, save_tiny_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    process = ServerProcess(
        "--model", str(checkpoint), "--device", "cpu", "--no-plugins", env={"SAM_LOG_LEVEL": "WARNING"}
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def client(server) -> Iterator[SamClient]:
    with SamClient(server.url, timeout=30) as c:
        yield c


def _upload_count(server: ServerProcess) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    prefix = 'sam_http_requests_total{method="POST",route="/v1/images",status="200"} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def test_add_image_uploads_only_when_the_server_lacks_it(server, client, tmp_path):
    pixels = picture(seed=11)
    path = tmp_path / "pic.png"
    Image.fromarray(pixels).save(path)
    before = _upload_count(server)
    first = client.add_image(path)
    assert _upload_count(server) == before + 1
    for source in (pixels, Image.fromarray(pixels), png_bytes(pixels), str(path)):
        assert client.add_image(source) == first
    assert _upload_count(server) == before + 1
    assert (first.width, first.height) == (80, 60)


def test_bulk_priority_uploads_with_the_bulk_query_and_bad_values_send_nothing(server, client, monkeypatch):
    sent: list[tuple[str, str, object]] = []
    request = client.session.request

    def recording(method: str, url: str, **kwargs: object) -> requests.Response:
        sent.append((method, url, kwargs.get("params")))
        return request(method, url, **kwargs)

    monkeypatch.setattr(client.session, "request", recording)
    info = client.add_image(picture(seed=23), priority="bulk")
    assert sent[-1] == ("POST", f"{server.url}/v1/images", {"priority": "bulk"})
    assert client.add_image(picture(seed=23)) == info, "the same picture is held, whatever its lane"
    sent.clear()
    with pytest.raises(InvalidInput, match="priority must be"):
        client.add_image(picture(seed=24), priority="urgent")
    assert sent == []


def test_predict_returns_numpy_masks_equal_to_predictor(client):
    info = client.add_image(picture())
    points, labels, box = [[30.0, 22.0], [60.0, 50.0]], [1, 0], [5.0, 5.0, 60.0, 45.0]
    [obj] = client.predict(info.image_id, points=np.array(points), labels=np.array(labels), box=box)
    predictor = SamPredictor(build_tiny_sam())
    predictor.set_image(picture())
    expected = predictor.predict(point_coords=points, point_labels=labels, box=box)
    assert obj.masks.dtype == bool and obj.masks.shape == (3, 60, 80)
    np.testing.assert_array_equal(obj.masks, expected.masks[0])
    np.testing.assert_allclose(obj.scores, expected.scores[0], atol=1e-6)
    np.testing.assert_array_equal(obj.best, expected.masks[0, 0])
    [refined] = client.predict(
        info.image_id, points=points, labels=labels, mask_input=obj.logits_id, multimask=False
    )
    assert refined.masks.shape == (1, 60, 80)


def test_server_errors_carry_status_code_and_message(client):
    info = client.add_image(picture())
    with pytest.raises(SamServerError) as bad:
        client.predict(info.image_id, points=[[1, 1], [2, 2]], labels=[1])
    assert bad.value.status == 400 and bad.value.code == "invalid_input" and "labels" in bad.value.detail
    with pytest.raises(SamServerError) as missing:
        client.predict("0" * 64, box=[0, 0, 5, 5])
    assert missing.value.status == 404 and "POST /v1/images" in str(missing.value)
    assert client.ready() and client.models()[0]["image_size"] == 128


def test_local_problems_raise_local_errors_without_contacting_a_server(tmp_path):
    nobody = SamClient(f"http://127.0.0.1:{free_port()}", retries=0, timeout=2)  # would be "unreachable"
    with pytest.raises(FileNotFoundError) as no_file:
        nobody.add_image(tmp_path / "missing.jpg")
    assert isinstance(no_file.value, ImageFileNotFound) and not isinstance(no_file.value, SamServerError)
    assert str(tmp_path / "missing.jpg") in str(no_file.value) and no_file.value.code == "invalid_input"
    with pytest.raises(InvalidImage) as unreadable:
        nobody.add_image(b"not an image")
    assert not isinstance(unreadable.value, SamServerError)


def test_connection_errors_are_retried_with_backoff_then_reported(monkeypatch):
    client = SamClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01, timeout=2)
    sleeps: list[float] = []
    monkeypatch.setattr("backend.client.http_client.time.sleep", sleeps.append)
    with pytest.raises(SamServerError) as error:
        client.models()
    assert error.value.code == "unreachable" and error.value.status == 503
    assert sleeps == [0.01, 0.02]
    assert client.ready() is False


def test_http_client_imports_without_torch():
    code = (
        "import sys, backend.client.http_client, backend.serving.local_client; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO)},
    )
    assert out.stdout.strip() == "False", out.stderr
