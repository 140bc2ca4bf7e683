"""LocalSamClient: the :class:`SamClientBase` interface over an in-process model.

For a notebook that has the GPU itself: no HTTP, the same return values and
the same errors as :class:`~backend.client.http_client.SamClient` (every
error the server would answer is a
:class:`~backend.client.http_client.SamServerError` carrying its status and
code; a path with no file is an
:class:`~backend.client.http_client.ImageFileNotFound`, as there). torch and
the model are imported when the client is created, not when this module is
imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.errors import SamError, SamServerError
from backend.api.priority import Priority, parse_priority
from backend.api.prompt import Prompt
from backend.client.base import ImageSource, SamClientBase
from backend.client.http_client import read_image_path

if TYPE_CHECKING:
    from backend.serving.service import SamService

T = TypeVar("T")


def _call(fn: Callable[[], T]) -> T:
    """Run ``fn``; a :class:`SamError` becomes the :class:`SamServerError` a server would send."""
    try:
        return fn()
    except SamServerError:
        raise
    except SamError as exc:
        raise SamServerError(exc.status, exc.code, exc.detail) from exc


class LocalSamClient(SamClientBase):
    """In-process client: loads the model and serves it from this process.

    Args:
        model: Registry name (``demo``, ``vit_b``...), checkpoint path, or a
            built ``Sam`` module.
        device: ``auto`` (cuda, mps, cpu) or a torch device string.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        cache_mb: Embedding cache budget, MiB.
        max_pixels: Largest accepted image, pixels.
        load_timeout: Seconds to wait for the model to load.
    """

    def __init__(
        self,
        model: Any = "demo",
        *,
        device: str = "auto",
        dtype: str = "float32",
        cache_mb: int = 1024,
        max_pixels: int = 50_000_000,
        load_timeout: float | None = None,
    ) -> None:
        from backend.serving.config import ServerConfig
        from backend.serving.service import SamService

        config = ServerConfig(
            model=model, device=device, dtype=dtype, cache_mb=cache_mb, max_pixels=max_pixels, plugins=False
        )
        self._service = SamService(config).start()
        self._owns_service = True
        if not self._service.wait_ready(load_timeout):
            self._service.close()
            error = self._service.load_error
            if isinstance(error, SamError):
                raise SamServerError(error.status, error.code, error.detail) from error
            _call(self._service.require_ready)

    @classmethod
    def from_service(cls, service: SamService) -> LocalSamClient:
        """A client over an existing (started) service, e.g. the server's own for plugins."""
        client = cls.__new__(cls)
        client._service = service
        client._owns_service = False
        return client

    @property
    def service(self) -> SamService:
        """The in-process service."""
        return self._service

    def close(self) -> None:
        """Stop the model worker (only if this client started it)."""
        if self._owns_service:
            self._service.close()

    def add_image(
        self, image: ImageSource, *, model: str | None = None, priority: Priority | str = Priority.INTERACTIVE
    ) -> ImageInfo:
        """Register an image; its embedding is computed once and cached.

        Args:
            image: A path, encoded bytes, an ``HxWx3`` uint8 RGB array or a PIL image.
            model: The served model whose embedding to compute (default: the first).
            priority: ``bulk`` queues the encoding behind interactive work.

        Raises:
            InvalidInput: An unknown ``priority``.
            ImageFileNotFound: No file at the given path.
            SamServerError: What the server would answer (unreadable image, too many pixels...).
        """
        from backend.formats.images import load_image

        lane = parse_priority(priority)
        source = read_image_path(image)

        def add() -> ImageInfo:
            if isinstance(source, (bytes, bytearray, memoryview)):
                return self._service.add_image(bytes(source), model=model, priority=lane)
            pixels = load_image(source, max_pixels=self._service.config.max_pixels)
            return self._service.add_image(pixels, model=model, priority=lane)

        return _call(add)

    def predict(
        self, image_id: str, prompt: Prompt | None = None, *, model: str | None = None, **fields: Any
    ) -> list[ObjectMasks]:
        """Ranked masks per object (see :meth:`SamClientBase.predict`)."""
        return _call(lambda: self._service.predict(image_id, Prompt.of(prompt, **fields), model=model))

    def automask(self, image_id: str, *, model: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """Segment everything: SA-1B records, ``segmentation`` as COCO RLE."""
        from backend.serving.responses import to_jsonable

        return _call(lambda: to_jsonable(self._service.automask(image_id, model=model, **params)))

    def models(self) -> list[dict[str, Any]]:
        """The served models."""
        return self._service.models()

    def ready(self) -> bool:
        """True once the model is loaded."""
        return self._service.ready()
