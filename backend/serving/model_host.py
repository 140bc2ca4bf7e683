"""One served model: loaded on the model thread, then answered through its engine.

The service keeps one :class:`ModelHost` per model it serves. A host that
failed to load keeps the reason, and every request for that model reports it
(one line in the log; the traceback only at ``--log-level DEBUG``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from backend.api.errors import SamError, ServiceUnavailable
from backend.inference.engine import ModelEngine
from backend.public_detail import public_detail
from backend.serving.config import ServerConfig
from backend.serving.model_loading import load_engine, model_label

log = logging.getLogger(__name__)


class ModelHost:
    """Loads one model and holds its engine.

    Args:
        spec: A registry name, a checkpoint path, or a built network.
        config: Device, dtype and cache dtype.
    """

    def __init__(self, spec: Any, config: ServerConfig) -> None:
        self.spec = spec
        self.name = model_label(spec)
        self._config = config
        self._engine: ModelEngine | None = None
        self._load_error: BaseException | None = None
        self._settled = threading.Event()
        self._defaults_before_load: dict[str, float] | None = None

    @property
    def load_error(self) -> BaseException | None:
        """Why the model failed to load, or None."""
        return self._load_error

    def ready(self) -> bool:
        """True once the model is loaded."""
        return self._engine is not None

    def wait_settled(self, timeout: float | None = None) -> bool:
        """Block until loading succeeded or failed; True if loaded."""
        self._settled.wait(timeout)
        return self.ready()

    def load(self) -> None:
        """Load the model (runs on the model thread); a failure is kept, not raised."""
        try:
            engine = load_engine(self.spec, self._config)
            log.info("model %s loaded on %s (%s)", self.name, engine.device, engine.dtype)
            self._engine = engine
        except BaseException as exc:  # noqa: BLE001 - reported by every later request
            log.error("cannot load model %s: %s", self.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            self._load_error = exc
        finally:
            self._settled.set()

    @property
    def engine(self) -> ModelEngine:
        """The loaded engine.

        Raises:
            ServiceUnavailable: Still loading, or the load error (503 errors as they are).
        """
        if self._engine is not None:
            return self._engine
        if self._load_error is not None:
            if isinstance(self._load_error, SamError) and self._load_error.status == 503:
                raise self._load_error
            raise ServiceUnavailable(f"the model {self.name!r} failed to load: {self._load_error}")
        raise ServiceUnavailable(f"the model {self.name!r} is still loading; retry in a few seconds")

    def info(self) -> dict[str, Any]:
        """Name, readiness, segment-everything defaults and, once loaded, the engine's facts;
        for a model that failed to load, ``error``: why (so that a client can tell it from
        one still loading).

        Before loading, the defaults are the record's, or for a path its family's
        (read once from the file's keys).
        """
        from backend.hub import automask_defaults_for

        if self._engine is None:
            if self._defaults_before_load is None:
                self._defaults_before_load = automask_defaults_for(self.spec)
            entry = {"name": self.name, "ready": False, "automask_defaults": dict(self._defaults_before_load)}
            if self._load_error is not None:
                entry["error"] = public_detail(str(self._load_error), keep=[self.name])
            return entry
        return {
            "name": self.name,
            "ready": True,
            "automask_defaults": dict(self._engine.facts.automask_defaults),
            **self._engine.info(),
        }
