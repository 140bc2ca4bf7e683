"""The training state's edges: fp16's loss scale resumes, a diverged run writes no model, and
Ctrl-C during a checkpoint write surfaces as the interrupt (the CLI's clean stop)."""

from __future__ import annotations

import io
import math

import pytest
import torch

from backend.api.errors import InvalidInput
from backend.hub import checkpoint_files
from backend.hub.checkpoint_files import save_interruptibly
from backend.train.checkpointing import load_training_state, save_training_state
from backend.train.loop import _require_finite_weights

from .conftest import quick_settings


def _optimiser(sam) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    optimizer = torch.optim.AdamW(sam.parameters(), lr=1e-4)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


def test_the_loss_scale_of_fp16_training_is_part_of_the_state(tiny_sam, tmp_path):
    settings = quick_settings()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaler.scale(torch.ones(()))  # the scale exists once used
    scaler.update(new_scale=512.0)  # what overflows would have brought it down to
    optimizer, scheduler = _optimiser(tiny_sam)
    path = tmp_path / "state.pt"
    save_training_state(
        path,
        sam=tiny_sam,
        optimizer=optimizer,
        scheduler=scheduler,
        settings=settings,
        step=3,
        epoch=0,
        scaler=scaler,
    )
    resumed = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    optimizer, scheduler = _optimiser(tiny_sam)
    step = load_training_state(
        path, sam=tiny_sam, optimizer=optimizer, scheduler=scheduler, settings=settings, scaler=resumed
    )
    assert step == 3 and resumed.get_scale() == 512.0


def test_a_diverged_model_is_refused_with_what_to_do(tiny_sam):
    with torch.no_grad():
        next(tiny_sam.mask_decoder.parameters()).fill_(math.nan)
    with pytest.raises(InvalidInput, match="training diverged: 1 weight tensors .* Lower the learning rate"):
        _require_finite_weights(tiny_sam, quick_settings())


def test_ctrl_c_while_torch_writes_a_file_is_raised_as_the_interrupt(monkeypatch):
    def interrupted_write(obj, stream):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:  # torch's zip writer then fails while closing
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None

    def broken_write(obj, stream):
        raise RuntimeError("disk trouble")

    monkeypatch.setattr(checkpoint_files.torch, "save", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        save_interruptibly({}, io.BytesIO())
    monkeypatch.setattr(checkpoint_files.torch, "save", broken_write)
    with pytest.raises(RuntimeError, match="disk trouble"):
        save_interruptibly({}, io.BytesIO())
