"""SamClient: the model server's HTTP API as Python calls (no torch needed).

Example::

    client = SamClient("http://127.0.0.1:9090", token="...")
    info = client.add_image("photo.jpg")        # uploads only if the server lacks it
    [obj] = client.predict(info.image_id, points=[[120, 80]], labels=[1])
    obj.best                                     # HxW bool, the top-ranked mask

Connection errors (server not reachable, connection reset) are retried with
exponential backoff; every API call is idempotent (uploading the same image
twice computes once, a prediction has no side effect besides a new
``logits_id``), so a retried request that already reached the server is
harmless. Timeouts and HTTP errors are not retried. Server errors raise
:class:`SamServerError` with the server's status, code and message; what
goes wrong before any request (a missing file, bytes that are no image)
raises a local error instead: :class:`ImageFileNotFound` (also a
``FileNotFoundError``) or :class:`~backend.api.errors.InvalidImage`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.errors import InvalidInput, SamServerError
from backend.api.priority import Priority, parse_priority
from backend.api.prompt import Prompt, prompt_fields
from backend.client.base import ImageSource, SamClientBase


class ImageFileNotFound(InvalidInput, FileNotFoundError):
    """A local image path with no file behind it; raised before any request is sent.

    Both a :class:`~backend.api.errors.SamError` (code ``invalid_input``) and a
    ``FileNotFoundError``, so either ``except`` catches it.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(f"no image file at {path}: give the path of an existing image file")
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.args[0])


def read_image_path(image: ImageSource) -> ImageSource:
    """A path becomes the file's bytes; anything else is returned as it is.

    Raises:
        ImageFileNotFound: The path names no file.
    """
    if not isinstance(image, (str, Path)):
        return image
    path = Path(image).expanduser()
    if not path.is_file():
        raise ImageFileNotFound(path)
    return path.read_bytes()


def _upload_payload(image: ImageSource) -> tuple[bytes, np.ndarray]:
    """The bytes to upload and the decoded ``HxWx3`` uint8 pixels of an image source."""
    from backend.formats.images import decode_image, encode_png, load_image

    image = read_image_path(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        payload = bytes(image)
        return payload, decode_image(payload)
    pixels = load_image(image)
    return encode_png(pixels), pixels


class SamClient(SamClientBase):
    """Client of one ``sam-server``.

    Args:
        url: Base URL, e.g. ``http://127.0.0.1:9090``.
        token: Access token, sent as ``Authorization: Bearer <token>``.
        timeout: Seconds to wait for each answer (an upload computes the
            embedding first, which can take seconds on a CPU).
        retries: Extra attempts after a connection error.
        backoff: First retry delay in seconds, doubled each attempt.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.25,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = requests.Session()
        """The pooled HTTP session (add proxies, adapters or headers here)."""
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    def __enter__(self) -> SamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- transport
    def _request(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> requests.Response:
        """One API call with retries on connection errors; raises :class:`SamServerError`."""
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
                break
            except requests.ConnectionError as exc:
                if attempt == self.retries:
                    raise SamServerError(
                        503, "unreachable", f"cannot reach the model server at {self.url}: {exc}"
                    ) from exc
                time.sleep(self.backoff * 2**attempt)
            except requests.Timeout as exc:
                raise SamServerError(
                    504, "timeout", f"no answer from {self.url} within {self.timeout} s"
                ) from exc
        if response.status_code not in ok:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: requests.Response) -> SamServerError:
        try:
            body = response.json()
            return SamServerError(response.status_code, str(body["error"]), str(body["detail"]))
        except (ValueError, KeyError, TypeError):
            return SamServerError(response.status_code, "http_error", response.text[:500] or response.reason)

    # ------------------------------------------------------------------- API
    def add_image(
        self, image: ImageSource, *, model: str | None = None, priority: Priority | str = Priority.INTERACTIVE
    ) -> ImageInfo:
        """Register an image; uploads only when the server does not hold it yet.

        The pixels are decoded here to compute the ``image_id`` the server
        would give them; encoded files are uploaded as they are, arrays and
        PIL images as lossless PNG.

        Args:
            image: A path, encoded bytes, an ``HxWx3`` uint8 RGB array or a PIL image.
            model: The served model whose embedding to compute (``?model=``; default: the server's first).
            priority: ``bulk`` queues the encoding behind interactive work
                (``POST /v1/images?priority=bulk``).

        Raises:
            InvalidInput: An unknown ``priority`` (nothing was sent).
            ImageFileNotFound: No file at the given path (nothing was sent).
            InvalidImage: The image cannot be decoded (decoded here; nothing was sent).
            PayloadTooLarge: More pixels than the client's decoder accepts (nothing was sent).
            SamServerError: The server's error, or the server cannot be reached.
        """
        from backend.formats.images import compute_image_id

        lane = parse_priority(priority)
        payload, pixels = _upload_payload(image)
        image_id = compute_image_id(pixels)
        chosen = {} if model is None else {"model": model}
        response = self._request("GET", f"/v1/images/{image_id}", ok=(200, 404), params=chosen)
        if response.status_code == 404:
            query = chosen if lane is Priority.INTERACTIVE else {**chosen, "priority": lane.value}
            response = self._request(
                "POST",
                "/v1/images",
                params=query,
                data=payload,
                headers={"Content-Type": "application/octet-stream"},
            )
        body = response.json()
        return ImageInfo(image_id=body["image_id"], width=int(body["width"]), height=int(body["height"]))

    def predict(
        self, image_id: str, prompt: Prompt | None = None, *, model: str | None = None, **fields: Any
    ) -> list[ObjectMasks]:
        """Ranked masks per object (see :meth:`SamClientBase.predict`); the server validates the prompt."""
        from backend.formats.mask_codecs import from_coco_rle

        if prompt is not None and fields:
            raise InvalidInput(f"give a Prompt or its fields as keywords, not both (got {sorted(fields)})")
        body = prompt.fields() if prompt is not None else prompt_fields(fields)
        body.update(image_id=image_id, format="coco_rle")
        if model is not None:
            body["model"] = model
        answer = self._request("POST", "/v1/predict", json=body).json()
        objects = []
        for obj in answer["objects"]:
            candidates = obj["masks"]
            objects.append(
                ObjectMasks(
                    masks=np.stack([from_coco_rle(m["segmentation"]) for m in candidates]),
                    scores=np.asarray([m["score"] for m in candidates], dtype=np.float32),
                    stability_scores=np.asarray([m["stability_score"] for m in candidates], dtype=np.float32),
                    logits_id=obj.get("logits_id"),
                    labels=list(obj.get("labels", [])),
                    box=None if obj.get("box") is None else np.asarray(obj["box"], dtype=np.float32),
                )
            )
        return objects

    def automask(self, image_id: str, *, model: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """Segment everything: SA-1B records, ``segmentation`` as COCO RLE."""
        body = {"image_id": image_id, **params, **({} if model is None else {"model": model})}
        return self._request("POST", "/v1/automask", json=body).json()["records"]

    def models(self) -> list[dict[str, Any]]:
        """The loaded model(s)."""
        return self._request("GET", "/v1/models").json()["models"]

    def ready(self) -> bool:
        """True when the server answers and its model is loaded."""
        try:
            return self._request("GET", "/ready", ok=(200, 503)).status_code == 200
        except SamServerError as exc:
            if exc.code in ("unreachable", "timeout"):
                return False
            raise
