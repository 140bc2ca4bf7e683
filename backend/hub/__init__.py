"""Where models come from: records, weights files, checkpoint formats, loading.

``records`` (names -> configuration + weights record, pure data) <- ``downloads``
(a name or path -> a local, verified file) <- ``loading`` (``load_model``), which
also uses ``checkpoint_files`` (our format, the official state dicts, strict
loading), ``devices`` and ``dtypes``. Imports go one way only: no module here
imports a module that imports it.
"""

from backend.hub.checkpoint_files import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    load_state_strict,
    save_checkpoint,
)
from backend.hub.devices import pick_device
from backend.hub.downloads import CACHE_ENV, default_cache_dir, download_weights, resolve_weights
from backend.hub.dtypes import parse_dtype
from backend.hub.loading import automask_defaults_for, infer_config, load_model
from backend.hub.records import (
    META_AUTOMASK_DEFAULTS,
    MODELS,
    PACKAGED_WEIGHTS,
    ModelRecord,
    get_record,
    list_models,
    register,
)

__all__ = [
    "CACHE_ENV",
    "CHECKPOINT_FORMAT",
    "META_AUTOMASK_DEFAULTS",
    "MODELS",
    "PACKAGED_WEIGHTS",
    "ModelRecord",
    "automask_defaults_for",
    "default_cache_dir",
    "download_weights",
    "get_record",
    "infer_config",
    "list_models",
    "load_checkpoint",
    "load_model",
    "load_state_strict",
    "parse_dtype",
    "pick_device",
    "register",
    "resolve_weights",
    "save_checkpoint",
]
