"""State shared by all requests of one plugin instance.

label-studio-ml 2.x builds a new model object for every request; what must
outlive a request (the model-server client, the image fetcher, the tokens
Label Studio sent in ``/setup``, recently fetched images, the prompts behind
the masks we returned) lives in one :class:`PluginRuntime`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import requests

from backend.api.answers import ImageInfo
from backend.api.errors import InvalidInput, SamError, ServiceUnavailable
from backend.api.priority import Priority
from backend.byte_lru import ByteBoundedLRU
from backend.client.base import SamClientBase
from backend.client.bound import ModelBoundClient
from sam_plugin.concepts import ConceptTextStore
from sam_plugin.image_fetcher import TaskImageFetcher
from sam_plugin.interactive_sessions import SessionStore
from sam_plugin.settings import PluginSettings

_MODEL_VERSION_TTL_S = 30.0
_MAX_CACHED_IMAGE_BYTES = 16 * 1024 * 1024
"""Largest downloaded task image kept (larger ones are downloaded again when asked for)."""
_IMAGE_CACHE_BYTES = 256 * 1024 * 1024
"""Budget of the downloaded task images kept."""
_INFO_BYTES = 256
"""Bytes counted per remembered image answer (an id and a size)."""
_INFO_CACHE_BYTES = 1024 * _INFO_BYTES
_PROMPT_CACHE_BYTES = 16 * 1024 * 1024
"""Budget of the prompts remembered for returned masks (read back by ``fit()``)."""


def rle_fingerprint(rle: list[int]) -> str:
    """Short hash of a brush RLE, to recognise a mask we returned earlier."""
    return hashlib.sha256(json.dumps(rle, separators=(",", ":")).encode()).hexdigest()[:32]


class PluginRuntime:
    """The long-lived parts of the plugin.

    Args:
        client: The model server (remote ``SamClient`` or in-process).
        settings: Plugin settings.
        fetcher: Task image fetcher; built from ``settings`` when ``None``.
    """

    def __init__(
        self, client: SamClientBase, settings: PluginSettings, fetcher: TaskImageFetcher | None = None
    ) -> None:
        self.client = client
        self.settings = settings
        self.fetcher = fetcher or TaskImageFetcher(
            label_studio_url=settings.label_studio_url,
            api_key=settings.label_studio_api_key,
            allowed_hosts=settings.allowed_hosts,
            timeout_s=settings.fetch_timeout_s,
            max_bytes=settings.max_image_bytes,
        )
        self.project_tokens: dict[str, str] = {}
        self.project_models: dict[str, str] = {}
        """Models named in projects' "Extra params" (``{"model": ...}``), as ``/setup`` sent them."""
        self.images: ByteBoundedLRU[bytes] = ByteBoundedLRU(_IMAGE_CACHE_BYTES)
        self.infos: ByteBoundedLRU[ImageInfo] = ByteBoundedLRU(_INFO_CACHE_BYTES)
        self.prompts: ByteBoundedLRU[dict[str, Any]] = ByteBoundedLRU(_PROMPT_CACHE_BYTES)
        self.sessions = SessionStore()
        self._entries: dict[str | None, tuple[float, dict[str, Any]]] = {}
        self._served_names: list[str] = []
        self.concept_texts = ConceptTextStore()
        """The concept each annotator last typed on a task (a smart box on SAM 3 goes with it)."""
        self._version_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sam-plugin-setup")

    def model_for(self, project_id: str | None) -> str | None:
        """The model that serves a project: its "Extra params", else ``SAM_PLUGIN_PROJECT_MODELS``,
        else ``SAM_PLUGIN_MODEL``, else None (the model server's default)."""
        key = project_id or ""
        settings = self.settings
        return self.project_models.get(key) or settings.project_models.get(key) or settings.model

    def model_names(self) -> list[str]:
        """The model names left whole in error messages (:func:`~sam_plugin.blueprint.error_response`):
        those the model server last listed and those the operator's settings name, not the
        ones a project's Extra params chose (anyone who may edit a project could choose any)."""
        configured = [self.settings.model, *self.settings.project_models.values()]
        return [*self._served_names, *(name for name in configured if name)]

    def client_for(self, project_id: str | None) -> SamClientBase:
        """The model server client, bound to the project's model."""
        return ModelBoundClient(self.client, self.model_for(project_id))

    def model_version(self, model: str | None = None, *, timeout_s: float | None = None) -> str:
        """``sam-<model name>`` of the model that serves requests naming ``model``, cached for a few seconds.

        Args:
            model: A served model's name; None: the model server's default.
            timeout_s: Give up after this long (``/setup`` must answer within
                Label Studio's 3 s); ``None`` waits for the client's own timeout.

        Raises:
            ServiceUnavailable: The model server is down or too slow.
            InvalidInput: The model server does not serve ``model``.
        """
        return f"sam-{self.model_entry(model, timeout_s=timeout_s).get('name', 'unknown')}"

    def model_versions(self, *, timeout_s: float | None = None) -> list[str]:
        """``sam-<name>`` of every served model, first the one projects get without a model of
        their own (``SAM_PLUGIN_MODEL`` when the server serves it, else the server's default);
        see :meth:`model_version`."""
        default = self.model_version(None, timeout_s=timeout_s)  # also refreshes the served names
        if self.settings.model in self._served_names:
            default = f"sam-{self.settings.model}"
        others = (f"sam-{name}" for name in self._served_names)
        return [default, *(version for version in others if version != default)]

    def answers_concepts(self, model: str | None = None, *, timeout_s: float | None = None) -> bool | None:
        """Whether the model answers concept prompts (SAM 3: text and exemplar boxes find every instance).

        Read from ``GET /v1/models`` (a model answers concepts when its
        ``prompts`` list ``exemplars``), cached like :meth:`model_version`.

        Returns:
            True or False; None while the model server is still loading the
            model (its prompt kinds are not known yet).

        Raises:
            ServiceUnavailable: The model server is down or too slow, or failed to load the model.
            InvalidInput: The model server does not serve ``model``.
        """
        entry = self.model_entry(model, timeout_s=timeout_s, loaded=True)
        require_loaded_or_loading(entry)
        prompts = entry.get("prompts")
        if isinstance(prompts, list):
            return "exemplars" in prompts
        return None if entry.get("ready") is False else False

    def model_entry(
        self, model: str | None = None, *, timeout_s: float | None = None, loaded: bool = False
    ) -> dict[str, Any]:
        """The model server's ``/v1/models`` entry of ``model`` (None: its default), cached for a few seconds.

        Args:
            model: A served model's name; None: the model server's default (its first).
            timeout_s: See :meth:`model_version`.
            loaded: Ask again, past the cache, while the cached entry is of a model
                still loading (``ready`` false: it lacks the model's facts, family and prompts).

        Raises:
            ServiceUnavailable: The model server is down or too slow.
            InvalidInput: The model server does not serve ``model``.
        """
        with self._version_lock:
            cached = self._entries.get(model)
            if (
                cached is not None
                and time.monotonic() - cached[0] < _MODEL_VERSION_TTL_S
                and not (loaded and cached[1].get("ready") is False)
            ):
                return cached[1]
        future = self._pool.submit(self.client.models)
        try:
            models = future.result(timeout=timeout_s)
        except FutureTimeout:
            raise ServiceUnavailable(
                f"the model server did not answer within {timeout_s:g} s; check that sam-server is running"
            ) from None
        except Exception as exc:
            mapped = as_model_server_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        names = [str(m.get("name", "unknown")) for m in models]
        self._served_names = names
        if model is not None and model not in names:
            raise InvalidInput(
                f"the model server does not serve {model!r} (it serves {', '.join(names) or 'nothing'}); "
                "fix the project's model (Extra params, SAM_PLUGIN_PROJECT_MODELS or SAM_PLUGIN_MODEL) "
                "or start sam-server with --model " + model
            )
        entry: dict[str, Any] = {"name": "unknown"}
        if models:
            entry = dict(models[names.index(model)] if model is not None else models[0])
        with self._version_lock:
            self._entries[model] = (time.monotonic(), entry)
        return entry

    def image_bytes(self, reference: str, *, task_id: int | None, project_id: str | None) -> bytes:
        """The encoded task image, downloaded once per recent reference."""
        key = f"{task_id}|{reference}"
        data = self.images.get(key)
        if data is None:
            token = self.project_tokens.get(project_id or "")
            data = self.fetcher.fetch(reference, task_id=task_id, fallback_token=token)
            if len(data) <= _MAX_CACHED_IMAGE_BYTES:
                self.images.put(key, data, len(data))
        return data

    def add_image(
        self,
        data: bytes,
        *,
        model: str | None = None,
        refresh: bool = False,
        priority: Priority = Priority.INTERACTIVE,
    ) -> ImageInfo:
        """Register image bytes with the model server; the answer is remembered.

        Args:
            data: Encoded image bytes.
            model: The served model that encodes it (None: the server's default).
            refresh: Ask the server again (after it answered 404 for the id:
                it restarted and lost its cache), uploading when needed.
            priority: The encoding's lane on the server (``BULK`` for batch work).
        """
        key = f"{model or ''}|{hashlib.sha256(data).hexdigest()}"
        info = None if refresh else self.infos.get(key)
        if info is not None:
            return info
        try:
            info = self.client.add_image(data, model=model, priority=priority)
        except Exception as exc:
            mapped = as_model_server_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        self.infos.put(key, info, _INFO_BYTES)
        return info

    def remember_prompt(self, task_id: Any, rle: list[int], record: dict[str, Any]) -> None:
        """Remember which prompt produced a returned mask (read back by ``fit()``)."""
        key = f"{task_id}|{rle_fingerprint(rle)}"
        self.prompts.put(key, record, len(json.dumps(record, default=str)) + len(key))

    def recall_prompt(self, task_id: Any, rle: list[int]) -> dict[str, Any] | None:
        """The prompt that produced this exact mask, if this process returned it."""
        return self.prompts.get(f"{task_id}|{rle_fingerprint(rle)}")


def require_loaded_or_loading(entry: dict[str, Any]) -> None:
    """Raise for a ``/v1/models`` entry of a model the server failed to load.

    Raises:
        ServiceUnavailable: The entry has an ``error`` (the message gives it).
    """
    if entry.get("error"):
        raise ServiceUnavailable(
            f"the model server failed to load {entry.get('name')!r}: {entry['error']} "
            "(fix the model and restart sam-server, or pick another model for the project)"
        )


def as_model_server_error(exc: Exception) -> Exception:
    """Map a client failure to a :class:`~backend.api.errors.SamError` with a clear message.

    ``SamError`` subclasses pass through; network errors (``requests``
    exceptions, ``ConnectionError``, ``TimeoutError``) become
    :class:`ServiceUnavailable`; anything else is returned unchanged (a bug:
    the caller re-raises it).
    """
    if isinstance(exc, SamError):
        return exc
    if isinstance(exc, (requests.RequestException, ConnectionError, TimeoutError)):
        return ServiceUnavailable(
            f"the model server cannot be reached ({type(exc).__name__}: {exc}); "
            "start sam-server or check --model-server, then retry"
        )
    return exc
