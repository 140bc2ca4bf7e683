"""Checkpoint files: our format, the official plain state dicts, strict loading.

Our format (training output, the demo model) is one ``torch.save`` of::

    {"format": "sam-server/1", "family": "sam", "config": SamConfig.to_dict(), "model": state_dict, "meta": {...}}

so a file says which network it holds: ``family`` is ``"sam"`` (SAM, MobileSAM:
a :class:`SamConfig`) or ``"sam2.1"`` (a SAM 2.1 image network: a
:class:`Sam2Config`, e.g. a fine-tuned ``sam2.1_hiera_t``). Files written
before the field existed have no ``family``: their configuration's layout
says which (a ``hiera`` trunk is SAM 2.1, anything else SAM). Official files (Meta's SAM,
MobileSAM) are plain state dicts and carry no configuration: the model
record supplies it. Everything is read with ``torch.load(weights_only=True)``, which
refuses pickled code; :func:`save_checkpoint` therefore checks that ``meta``
holds only what such loading accepts (dicts, lists, tuples, numbers,
strings, ``None``, tensors) before writing anything.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from backend.api.errors import InvalidInput
from backend.atomic_files import atomic_open
from backend.model.config import SamConfig
from backend.model.sam2.config import Sam2Config

CHECKPOINT_FORMAT = "sam-server/1"
_SHOWN_KEYS = 10

CONFIG_TYPES: dict[str, type[SamConfig] | type[Sam2Config]] = {"sam": SamConfig, "sam2.1": Sam2Config}
"""The ``family`` field of our format -> the configuration class it holds (the family names of
``backend.hub.records``)."""


def save_checkpoint(
    path: str | Path,
    *,
    model_state: dict[str, torch.Tensor],
    config: SamConfig | Sam2Config,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint in our format, atomically.

    The file is written to a temporary file in the same folder, flushed to
    disk and then renamed over ``path``: readers see the old file or the
    complete new one, never a partial one.

    Args:
        path: Destination file; missing parent folders are created.
        model_state: The network's ``state_dict()`` (CPU tensors are best).
        config: The configuration that ``build_sam`` (a :class:`SamConfig`) or
            ``build_sam2`` (a :class:`Sam2Config`) turns into this network; it
            sets the file's ``family``.
        meta: Free-form metadata (training step, metrics, data, ...).

    Raises:
        InvalidInput: ``model_state`` is not a dict of tensors, or ``meta``
            holds values that ``weights_only`` loading would refuse.
    """
    if not isinstance(model_state, dict) or not all(
        isinstance(v, torch.Tensor) for v in model_state.values()
    ):
        raise InvalidInput("model_state must be a state dict (str -> tensor), e.g. model.state_dict()")
    meta = dict(meta or {})
    _check_weights_only_loadable(meta)
    family = family_of_config(config)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "family": family,
        "config": config.to_dict(),
        "model": model_state,
        "meta": meta,
    }
    with atomic_open(path, "wb") as stream:
        save_interruptibly(payload, stream)


def save_interruptibly(obj: Any, stream: Any) -> None:
    """``torch.save(obj, stream)``, letting Ctrl-C during the write surface as ``KeyboardInterrupt``.

    torch's zip writer, interrupted, fails again while closing and raises a
    ``RuntimeError`` ("unexpected pos ...") in place of the interrupt, which
    would skip the callers' clean stop; the interrupt is raised instead.
    """
    try:
        torch.save(obj, stream)
    except RuntimeError as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise exc.__context__ from None
        raise


_REPLACE = (
    "replace it (an official model downloaded into the cache: delete the file, and it is downloaded again)"
)
"""What to do about an unreadable checkpoint file."""


def load_checkpoint(
    path: str | Path, *, mmap: bool = False
) -> tuple[SamConfig | Sam2Config | None, dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint of ours or an official state dict, on the CPU.

    Args:
        path: A ``.pt`` / ``.pth`` file.
        mmap: Map the tensors' data instead of reading it (for looking at the keys
            and shapes only; the files ``torch.save`` has written since PyTorch 1.6).

    Returns:
        ``(config, state_dict, meta)``: ``config`` is a :class:`SamConfig` or
        a :class:`Sam2Config` (the file's family) for our format, ``None`` for
        plain state dicts (official files); ``meta`` is ``{}`` for them.

    Raises:
        InvalidInput: Missing, unreadable, truncated or unrecognised file.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"no checkpoint file at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        refused = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        if not refused:
            raise InvalidInput(
                f"cannot read checkpoint {path}: it is not a torch file or is corrupt; {_REPLACE}"
            ) from exc
        raise InvalidInput(
            f"{path} holds pickled objects that safe loading (weights_only=True) refuses ({refused[0]}). "
            "Re-save it as a plain state dict: torch.save(model.state_dict(), path)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - random or truncated bytes fail anywhere inside torch.load
        raise InvalidInput(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}); the file may be truncated or "
            f"corrupt; {_REPLACE}"
        ) from exc
    if isinstance(obj, dict) and "format" in obj:
        return _unpack_ours(obj, path)
    if _is_state_dict(obj):
        return None, obj, {}
    for key in ("model", "state_dict"):  # common wrappers of fine-tuned checkpoints
        if isinstance(obj, dict) and _is_state_dict(obj.get(key)):
            return None, obj[key], {}
    raise InvalidInput(
        f"{path} is neither a sam-server checkpoint nor a state dict of tensors; "
        "save one with backend.hub.save_checkpoint or torch.save(model.state_dict(), path)"
    )


def load_state_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load weights requiring exactly the model's keys and shapes.

    Args:
        model: The network to fill.
        state_dict: Weights for it (dtypes are converted on copy).

    Raises:
        InvalidInput: Naming up to ten missing, unexpected and mis-shaped keys
            each, with their counts.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mis_shaped = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or mis_shaped:
        parts = [
            f"{len(keys)} {label}: {', '.join(keys[:_SHOWN_KEYS])}{', ...' if len(keys) > _SHOWN_KEYS else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("with another shape", mis_shaped),
            )
            if keys
        ]
        hint = ""
        if unexpected and all(k.startswith("module.") for k in unexpected):
            hint = " (keys start with 'module.': strip that DataParallel prefix before loading)"
        raise InvalidInput(
            "the checkpoint does not fit this network configuration; keys " + "; ".join(parts) + hint
        )
    model.load_state_dict(state_dict, strict=True)


def family_of_config(config: SamConfig | Sam2Config) -> str:
    """The ``family`` field written for ``config`` (``"sam"`` or ``"sam2.1"``).

    Raises:
        InvalidInput: ``config`` is neither configuration class.
    """
    for family, config_type in CONFIG_TYPES.items():
        if type(config) is config_type:
            return family
    raise InvalidInput(
        f"config must be a SamConfig or a Sam2Config (what build_sam / build_sam2 take), "
        f"got {type(config).__name__}"
    )


def _unpack_ours(
    obj: dict[str, Any], path: Path
) -> tuple[SamConfig | Sam2Config, dict[str, torch.Tensor], dict[str, Any]]:
    if obj["format"] != CHECKPOINT_FORMAT:
        raise InvalidInput(
            f"{path} has checkpoint format {obj['format']!r}; this version reads {CHECKPOINT_FORMAT!r}"
        )
    if not _is_state_dict(obj.get("model")) or not isinstance(obj.get("config"), dict):
        raise InvalidInput(
            f"{path} is a damaged {CHECKPOINT_FORMAT} checkpoint: 'model' or 'config' is missing"
        )
    family = obj.get("family") or ("sam2.1" if "hiera" in obj["config"] else "sam")
    config_type = CONFIG_TYPES.get(family) if isinstance(family, str) else None
    if config_type is None:
        raise InvalidInput(
            f"{path} holds a model of family {family!r}; this version reads {', '.join(map(repr, CONFIG_TYPES))}"
        )
    try:
        config = config_type.from_dict(obj["config"])
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{path} holds a configuration this version cannot read: {exc}") from exc
    return config, obj["model"], dict(obj.get("meta") or {})


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _check_weights_only_loadable(meta: dict[str, Any]) -> None:
    """Round-trip ``meta`` without its tensors through ``weights_only`` loading."""
    buf = io.BytesIO()
    torch.save(_without_tensors(meta), buf)
    buf.seek(0)
    try:
        torch.load(buf, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InvalidInput(
            f"checkpoint meta holds a value that safe loading refuses ({exc}); "
            "keep meta to dicts, lists, tuples, numbers, strings, None and tensors "
            "(convert numpy values with .item() or .tolist())"
        ) from exc


def _without_tensors(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return None
    if type(value) is dict:
        return {k: _without_tensors(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_without_tensors(v) for v in value)
    return value
