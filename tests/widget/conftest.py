"""Fixtures for the widget tests: a real in-process model server and a synthetic scene.

The client is a :class:`LocalSamClient` over the demo model when
``backend/hub/packaged_weights/sam_demo.pt`` exists, else over a tiny randomly initialised
SAM (same code path, random answers).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.priority import Priority
from backend.client.base import ImageSource, SamClientBase
from backend.formats.coordinates import canvas_to_image

DEMO_WEIGHTS = Path(__file__).resolve().parents[2] / "backend" / "hub" / "packaged_weights" / "sam_demo.pt"


def tiny_sam() -> Any:
    """A randomly initialised SAM small enough for CPU tests (256-pixel input)."""
    import torch

    from backend.model import SamConfig, ViTConfig, build_sam

    torch.manual_seed(0)
    config = SamConfig(
        vit=ViTConfig(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4),
        image_size=256,
        decoder_mlp_dim=64,
        decoder_num_heads=2,
    )
    return build_sam(config).eval()


@pytest.fixture(scope="session")
def local_client() -> Iterator[SamClientBase]:
    """The in-process model server shared by all widget tests."""
    from backend.serving.local_client import LocalSamClient

    model = "demo" if DEMO_WEIGHTS.is_file() else tiny_sam()
    client = LocalSamClient(model, device="cpu")
    yield client
    client.close()


class RecordingClient(SamClientBase):
    """Passes every call to a real client and records the ``predict`` calls.

    ``add_image`` waits for ``release`` when ``hold`` is set, so tests can act
    while the embedding is still being computed.
    """

    def __init__(self, inner: SamClientBase) -> None:
        self.inner = inner
        self.predict_calls: list[dict[str, Any]] = []
        self.answers: list[ObjectMasks] = []
        self.hold = False
        self.release = threading.Event()

    def add_image(
        self, image: ImageSource, *, model: str | None = None, priority: Priority | str = Priority.INTERACTIVE
    ) -> ImageInfo:
        if self.hold:
            self.release.wait(60)
        return self.inner.add_image(image, model=model, priority=priority)

    def predict(self, image_id: str, prompt: Any = None, **kwargs: Any) -> list[ObjectMasks]:
        fields = {name: value for name, value in kwargs.items() if name != "model"}
        sent = prompt.fields() if prompt is not None else fields
        # mask_input None: the widget sent none (no refinement)
        self.predict_calls.append({"mask_input": None, **sent, "image_id": image_id})
        answers = self.inner.predict(image_id, prompt, **kwargs)
        self.answers.extend(answers[:1])
        return answers

    def automask(self, image_id: str, **params: Any) -> list[dict[str, Any]]:
        return self.inner.automask(image_id, **params)

    def models(self) -> list[dict[str, Any]]:
        return self.inner.models()

    def ready(self) -> bool:
        return self.inner.ready()


@pytest.fixture
def client(local_client: SamClientBase) -> RecordingClient:
    """A recording wrapper around the shared in-process client."""
    return RecordingClient(local_client)


def shown_image_pixels(mask: np.ndarray, *, scale: float, canvas_size: tuple[int, int]) -> np.ndarray:
    """``canvas_height x canvas_width`` bool: ``mask`` at the image pixel under each canvas pixel's centre."""
    cols = [
        min(int(canvas_to_image(i + 0.5, 0.0, scale)[0]), mask.shape[1] - 1) for i in range(canvas_size[0])
    ]
    rows = [
        min(int(canvas_to_image(0.0, j + 0.5, scale)[1]), mask.shape[0] - 1) for j in range(canvas_size[1])
    ]
    return mask[np.ix_(rows, cols)]


def scene(height: int = 300, width: int = 400) -> np.ndarray:
    """``HxWx3`` uint8: grey background with a bright rectangle in the middle."""
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    image[height // 3 : 2 * height // 3, width * 3 // 8 : width * 3 // 4] = (230, 220, 200)
    return image


def shapes_scene(height: int = 450, width: int = 600) -> np.ndarray:
    """``HxWx3`` uint8: a blue car-like box, a yellow disc and a red square on a grey-blue gradient."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = 110 + 40 * yy // height
    image[..., 1] = 120 + 40 * yy // height
    image[..., 2] = 140 + 30 * xx // width
    image[int(height * 0.45) : int(height * 0.75), int(width * 0.08) : int(width * 0.45)] = (25, 60, 200)
    disc = (xx - width * 0.68) ** 2 + (yy - height * 0.35) ** 2 < (min(height, width) * 0.16) ** 2
    image[disc] = (240, 200, 40)
    image[int(height * 0.62) : int(height * 0.88), int(width * 0.6) : int(width * 0.85)] = (200, 50, 40)
    return image


@pytest.fixture
def make_widget(client: RecordingClient) -> Any:
    """Factory: ``make_widget(image=None, **kwargs)`` -> a ready SamWidget on the recording client."""
    from widget import SamWidget

    def make(image: np.ndarray | None = None, *, wait: bool = True, **kwargs: Any) -> SamWidget:
        kwargs.setdefault("max_canvas_size", (200, 200))
        w = SamWidget(scene() if image is None else image, client, **kwargs)
        if wait:
            w.wait_ready(120)
        return w

    return make
