"""Training checkpoints on top of :mod:`backend.hub.checkpoint_files` (atomic writes).

Two kinds of file, both in our checkpoint format (family + model config +
state dict + metadata; a SAM 2.1 network is written with its ``Sam2Config``
and loads back as ``Sam2``):

* the **model** (:func:`save_model`): what ``backend.hub.load_model``
  and the server load;
* the **training state** (:func:`save_training_state`): the model plus, in
  the metadata, the optimiser and scheduler states, the step, the epoch, the
  run's settings and the torch RNG state, so an interrupted run resumes at
  the same step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from backend.api.errors import InvalidInput
from backend.train.simulation import field_name

if TYPE_CHECKING:
    from backend.model import Sam, SamConfig
    from backend.model.sam2 import Sam2, Sam2Config
    from backend.train.loop import TrainSettings


def save_model(path: str | Path, *, sam: Sam | Sam2, meta: dict[str, Any]) -> None:
    """Writes the model alone (config + weights + ``meta``), atomically."""
    from backend.hub import save_checkpoint

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model_state=_cpu_state(sam), config=model_config(sam), meta=meta)


def save_training_state(
    path: str | Path,
    *,
    sam: Sam | Sam2,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    settings: TrainSettings,
    step: int,
    epoch: int,
    run: dict[str, Any] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Writes everything needed to resume after ``step`` steps, atomically; ``run`` says what the
    run trains (base model, data, image count), checked on resume."""
    from backend.hub import save_checkpoint

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "kind": "training-state",
        "step": step,
        "epoch": epoch,
        "train_settings": settings.to_dict(),
        "run": run or {},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},  # fp16's loss scale; {} when off
        "torch_rng": torch.get_rng_state(),
    }
    save_checkpoint(path, model_state=_cpu_state(sam), config=model_config(sam), meta=meta)


def load_training_state(
    path: str | Path,
    *,
    sam: Sam | Sam2,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    settings: TrainSettings,
    run: dict[str, Any] | None = None,
    scaler: torch.amp.GradScaler | None = None,
    names: Mapping[str, str] | None = None,
) -> int:
    """Restores model, optimiser, scheduler and RNG from a training state.

    Returns:
        The step to continue from.

    Raises:
        InvalidInput: When the file is not a training state of this model,
            these settings and this ``run`` (base model, data; a state of a
            run that trained something else would otherwise be continued, or
            taken as finished, on other data) (say ``--restart`` to start over).
            Its message calls settings and run keys by ``names`` (the CLI's flags).
    """
    from backend.hub import load_checkpoint, load_state_strict

    config, state, meta = load_checkpoint(path)
    if meta.get("kind") != "training-state":
        raise InvalidInput(f"{path} is not a training state; pass another --state path or --restart")
    if config is not None and config != sam.config:
        raise InvalidInput(
            f"{path} was trained with another model configuration; use --restart to start over"
        )
    stored_settings = _steps_aside(meta.get("train_settings") or {})
    if stored_settings != _steps_aside(settings.to_dict()):
        raise InvalidInput(
            f"{path} was written with other training settings "
            f"({_differences(stored_settings, _steps_aside(settings.to_dict()), names)}); "
            "use the same options to resume or --restart"
        )
    stored_run = meta.get("run") or {}
    if stored_run and run and stored_run != run:
        raise InvalidInput(
            f"{path} is the state of a run that trained something else ({_differences(stored_run, run, names)}); "
            "use --restart to start over from the base, or another --out (or --state) to keep that run"
        )
    load_state_strict(sam, state)
    optimizer.load_state_dict(meta["optimizer"])
    scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(meta["torch_rng"])
    return int(meta["step"])


RESUMABLE_CHANGES = ("steps", "checkpoint_every")
"""Settings a resumed run may change: how far it trains and how often it saves (every step's
work is seeded by the seed and the step number, and the learning rate depends on the step,
so a run extended from a saved state takes the same steps as one started with the longer count)."""


def _steps_aside(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without :data:`RESUMABLE_CHANGES`."""
    return {key: value for key, value in settings.items() if key not in RESUMABLE_CHANGES}


def _differences(stored: dict[str, Any], now: dict[str, Any], names: Mapping[str, str] | None) -> str:
    """``"<name> <stored> there, <now> now"`` for each key whose values differ, the key called
    by ``names`` (the CLI's flags); changed annotations are said in words, not as hashes."""
    keys = sorted(key for key in set(stored) | set(now) if stored.get(key) != now.get(key))
    return ", ".join(
        "the annotations changed since"
        if key == "annotations"
        else f"{field_name(key, names)} {stored.get(key)!r} there, {now.get(key)!r} now"
        for key in keys
    )


def model_config(sam: Sam | Sam2) -> SamConfig | Sam2Config:
    """The network's configuration (checkpoints need it): a ``SamConfig`` or a ``Sam2Config``."""
    if sam.config is None:
        raise InvalidInput("the model carries no SamConfig; build it with backend.model.build_sam(config)")
    return sam.config


def _cpu_state(sam: Sam | Sam2) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in sam.state_dict().items()}
