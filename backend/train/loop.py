"""The training loop: batches, optimiser, schedule, checkpoints, progress.

Every random choice of step ``s`` (which images, which masks, which
prompts) comes from generators seeded with ``(seed, s)``, so a run that is
interrupted and resumed from its last checkpoint replays exactly the steps an
uninterrupted run would have taken. The training state (model, optimiser,
scheduler, step, epoch, torch RNG state) is written atomically every
``checkpoint_every`` steps, and when ``should_stop`` asks the run to stop (the
CLI's Ctrl-C / SIGTERM): then at the step just finished, so the next run
resumes exactly there. The model alone (our checkpoint format, loadable with
``backend.hub.load_model(path)``) is written at the end.

The loop serves every trainable family (SAM, MobileSAM, SAM 2.1) through the
network's :class:`~backend.train.adapters.TrainingAdapter`: the model-input
frame, the image features (cached with a frozen encoder) and the decoder call
are the family's; batches, prompts, losses, optimiser and checkpoints are
shared.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from backend.api.errors import InvalidInput
from backend.train.adapters import TrainingAdapter, training_adapter
from backend.train.checkpointing import load_training_state, save_model, save_training_state
from backend.train.datasets import MaskDataset
from backend.train.embedding_cache import EmbeddingCache
from backend.train.simulation import RoundsResult, RoundsSettings, field_name, interactive_rounds

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from backend.model import Sam
    from backend.model.sam2 import Sam2

AmpMode = Literal["auto", "bf16", "fp16", "off"]


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """Everything that shapes a run (stored in its checkpoints).

    Attributes:
        steps: Optimiser steps.
        images_per_batch: Images per micro-batch.
        masks_per_image: Objects sampled per image (with replacement when an
            image has fewer).
        accumulate: Micro-batches per optimiser step (gradient accumulation).
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up length, in steps.
        decay_steps: Steps after which the learning rate is multiplied by
            ``decay_factor``.
        decay_factor: Step-decay multiplier.
        grad_clip: Largest gradient norm (0 disables clipping).
        freeze_encoder: Train only the prompt encoder and mask decoder, with
            image embeddings computed once and cached on disk (SAM 2.1: the
            decoder's ``conv_s0`` / ``conv_s1`` and ``no_mem_embed``, which
            compute the cached features, stay frozen too).
        amp: Mixed precision on GPU: ``auto`` (bf16 where supported, else
            fp16), ``bf16``, ``fp16`` or ``off``. CPU always runs float32.
        seed: Seed of every random choice.
        checkpoint_every: Steps between training-state checkpoints.
        rounds: Prompt simulation.
    """

    steps: int = 1000
    images_per_batch: int = 4
    masks_per_image: int = 4
    accumulate: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.1
    warmup_steps: int = 100
    decay_steps: tuple[int, ...] = ()
    decay_factor: float = 0.1
    grad_clip: float = 1.0
    freeze_encoder: bool = False
    amp: AmpMode = "auto"
    seed: int = 0
    checkpoint_every: int = 100
    rounds: RoundsSettings = field(default_factory=RoundsSettings)

    def check(self, names: Mapping[str, str] | None = None) -> None:
        """Raises InvalidInput on impossible values.

        Args:
            names: What messages call each field (the CLI passes its flags,
                e.g. ``images_per_batch`` -> ``--batch``); default the field names.
        """
        for name in ("steps", "images_per_batch", "masks_per_image", "accumulate", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{field_name(name, names)} must be >= 1, got {getattr(self, name)}")
        if not (0 < self.lr < math.inf):
            raise InvalidInput(
                f"{field_name('lr', names)} (learning rate) must be > 0 and finite, got {self.lr}"
            )
        for name in ("weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not (0 <= value < math.inf):
                raise InvalidInput(f"{field_name(name, names)} must be >= 0 and finite, got {value}")
        if self.warmup_steps < 0:
            raise InvalidInput(f"{field_name('warmup_steps', names)} must be >= 0, got {self.warmup_steps}")
        if any(step < 1 for step in self.decay_steps) or list(self.decay_steps) != sorted(
            set(self.decay_steps)
        ):
            raise InvalidInput(
                f"{field_name('decay_steps', names)} must be increasing steps >= 1, got {list(self.decay_steps)}"
            )
        if not 0 < self.decay_factor <= 1:
            raise InvalidInput(
                f"{field_name('decay_factor', names)} must be in (0, 1], got {self.decay_factor}"
            )
        if not 0 <= self.seed < 2**32:
            raise InvalidInput(f"{field_name('seed', names)} must be in [0, 2^32), got {self.seed}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise InvalidInput(
                f"{field_name('amp', names)} must be auto, bf16, fp16 or off, got {self.amp!r}"
            )
        self.rounds.check(names)

    def to_dict(self) -> dict[str, Any]:
        """Plain form stored in checkpoints."""
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """Summary of a finished run.

    Attributes:
        step: Steps done (``settings.steps`` unless stopped).
        resumed_from: Step the run resumed from (0 for a fresh run).
        losses: Loss of each step run in this call (a step whose images held no object at the
            model's input size has none).
        first_ious: Top-ranked 1-prompt IoU of each step run in this call.
        seconds: Wall-clock seconds of this call.
        stopped: The run was asked to stop before its last step: its training
            state is saved at ``step`` and no model was written.
    """

    step: int
    resumed_from: int
    losses: list[float]
    first_ious: list[float]
    seconds: float
    stopped: bool = False


def learning_rate_factor(step: int, settings: TrainSettings) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then step decay."""
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    return settings.decay_factor ** sum(step >= s for s in settings.decay_steps)


def train(
    sam: Sam | Sam2,
    data: MaskDataset,
    settings: TrainSettings,
    *,
    out: str | Path,
    state_path: str | Path,
    resume: bool = True,
    embedding_cache: EmbeddingCache | None = None,
    progress: bool = True,
    progress_label: str = "train",
    meta: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    setting_names: Mapping[str, str] | None = None,
) -> TrainResult:
    """Trains ``sam`` in place and writes the result to ``out``.

    Args:
        sam: The network (SAM, MobileSAM or SAM 2.1), on the device to train on.
        data: Images with masks (already at any resolution; resized here).
        settings: The run's settings.
        out: Where the final model checkpoint goes.
        state_path: Where the training state goes (and is resumed from).
        resume: Continue from ``state_path`` when it exists.
        embedding_cache: Disk cache of image embeddings; required with
            ``settings.freeze_encoder``.
        progress: Show a tqdm progress bar.
        progress_label: The bar's title.
        meta: Extra information stored in the final checkpoint's metadata,
            and in the training state: a state written with other ``meta``
            (another base model or dataset) is refused on resume.
        should_stop: Asked before every step; when it answers True the
            training state is saved at the current step and the run returns
            (``TrainResult.stopped``) without writing ``out``.
        setting_names: What messages call settings and ``meta`` keys (the CLI's flags).

    Returns:
        A summary of the run.
    """
    settings.check()
    if settings.freeze_encoder and embedding_cache is None:
        raise InvalidInput("freeze_encoder needs an embedding cache directory")
    run = _Run(
        sam,
        data,
        settings,
        state_path=Path(state_path),
        embedding_cache=embedding_cache,
        identity=meta,
        setting_names=setting_names,
    )
    if resume and run.state_path.exists():
        run.resume()
        if run.step > settings.steps:
            raise InvalidInput(
                f"the training state {run.state_path} is at step {run.step}, past the {settings.steps} steps "
                "asked for: ask for at least as many steps, or --restart"
            )
    bar = _progress_bar(progress, settings.steps, run.step, progress_label)
    while run.step < settings.steps:
        if should_stop is not None and should_stop():
            run.save_state()
            bar.close()
            return run.result(stopped=True)
        run.one_step()
        bar.update(1)
        bar.set_postfix(loss=f"{_mean_tail(run.losses):.3f}", mIoU=f"{_mean_tail(run.first_ious):.3f}")
        if run.step % settings.checkpoint_every == 0 or run.step == settings.steps:
            run.save_state()
    bar.close()
    result = run.result()
    if run.step > run.resumed_from and not run.losses:
        raise InvalidInput(
            f"nothing was trained: no image of the dataset holds an object at the model's "
            f"{run.adapter.image_size}-pixel input (every mask vanishes when the image is resized); no model was written"
        )
    _require_finite_weights(sam, settings)
    save_model(out, sam=sam, meta=_final_meta(result, settings, meta))
    return result


def _require_finite_weights(sam: Sam | Sam2, settings: TrainSettings) -> None:
    """Refuse to write a model whose training diverged.

    Raises:
        InvalidInput: Some weight is NaN or infinite.
    """
    broken = [name for name, param in sam.named_parameters() if not torch.isfinite(param).all()]
    if broken:
        raise InvalidInput(
            f"training diverged: {len(broken)} weight tensors hold NaN or infinite values (e.g. {broken[0]}); "
            f"no model was written. Lower the learning rate (it was {settings.lr:g}) and train again with --restart"
        )


class _Run:
    """One call of :func:`train`: the optimiser, schedule and mixed precision, the step reached, the losses.

    Building it puts ``sam`` in training mode (the image encoder frozen and
    in eval mode with ``settings.freeze_encoder``).
    """

    def __init__(
        self,
        sam: Sam | Sam2,
        data: MaskDataset,
        settings: TrainSettings,
        *,
        state_path: Path,
        embedding_cache: EmbeddingCache | None,
        identity: dict[str, Any] | None = None,
        setting_names: Mapping[str, str] | None = None,
    ) -> None:
        self.started = time.monotonic()
        self.identity = identity
        self.setting_names = setting_names
        """What a refused resume's message calls settings (the CLI's flags)."""
        self.sam, self.data, self.settings = sam, data, settings
        self.state_path = state_path
        self.embedding_cache = embedding_cache
        self.adapter = training_adapter(sam)
        sam.train()
        if settings.freeze_encoder:
            self.adapter.freeze_encoder()
        self.params = [p for p in sam.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: learning_rate_factor(s, settings)
        )
        self.autocast, self.scaler = _mixed_precision(settings.amp, next(sam.parameters()).device)
        self.order = _SampleOrder(len(data), settings.seed)
        self.step = self.resumed_from = 0
        self.losses: list[float] = []
        self.first_ious: list[float] = []
        self.warned_empty: set[str] = set()
        """Keys of the images already reported as holding no object at the model's input size."""

    def resume(self) -> None:
        """Continue from the training state at ``state_path``."""
        self.step = self.resumed_from = load_training_state(
            self.state_path,
            sam=self.sam,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            settings=self.settings,
            run=self.identity,
            scaler=self.scaler,
            names=self.setting_names,
        )

    def one_step(self) -> None:
        """One optimiser step over ``settings.accumulate`` micro-batches, all seeded with ``(seed, step)``."""
        settings = self.settings
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + self.step)
        loss_sum = iou_sum = 0.0
        trained = False
        for micro in range(settings.accumulate):
            result = self._micro_batch(micro, generator)
            if result is None:  # no object left in these images at the model's input size
                continue
            self.scaler.scale(result.loss / settings.accumulate).backward()
            loss_sum += float(result.loss.detach()) / settings.accumulate
            iou_sum += float(result.first_iou.detach()) / settings.accumulate
            trained = True
        if trained:
            if settings.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, settings.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.losses.append(loss_sum)
            self.first_ious.append(iou_sum)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1

    def _micro_batch(self, micro: int, generator: torch.Generator) -> RoundsResult | None:
        """Loss of micro-batch ``micro`` of the current step (the rounds' result, not yet
        backpropagated); None when its images hold no object at the model's input size."""
        settings, data = self.settings, self.data
        first = (self.step * settings.accumulate + micro) * settings.images_per_batch
        indices = [self.order(first + j) for j in range(settings.images_per_batch)]
        adapter = self.adapter
        batch = _make_batch(data, indices, adapter, settings.masks_per_image, generator, self.warned_empty)
        if batch is None:
            return None
        images, targets, owners = batch
        with self.autocast():
            if self.embedding_cache is not None and settings.freeze_encoder:
                features = self.embedding_cache.features(adapter, images, [data[i].key for i in indices])
            else:
                features = adapter.encode(images)
            per_object = tuple(part[owners] for part in features)
            return interactive_rounds(adapter, per_object, targets, settings.rounds, generator)

    def save_state(self) -> None:
        """Write the training state at the current step (atomically)."""
        settings = self.settings
        epoch = (self.step * settings.accumulate * settings.images_per_batch) // len(self.data)
        save_training_state(
            self.state_path,
            sam=self.sam,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            settings=settings,
            step=self.step,
            epoch=epoch,
            run=self.identity,
            scaler=self.scaler,
        )

    def result(self, *, stopped: bool = False) -> TrainResult:
        """The summary of this call so far."""
        return TrainResult(
            step=self.step,
            resumed_from=self.resumed_from,
            losses=self.losses,
            first_ious=self.first_ious,
            seconds=time.monotonic() - self.started,
            stopped=stopped,
        )


def _final_meta(result: TrainResult, settings: TrainSettings, meta: dict[str, Any] | None) -> dict[str, Any]:
    """Metadata of the finished model's checkpoint: the run's settings and final numbers, plus ``meta``."""
    return {
        "step": result.step,
        "train_settings": settings.to_dict(),
        "train_seconds_this_call": round(result.seconds, 1),
        "final_loss": round(_mean_tail(result.losses), 4) if result.losses else None,
        "final_first_click_iou": round(_mean_tail(result.first_ious), 4) if result.first_ious else None,
        **(meta or {}),
    }


class _SampleOrder:
    """Global sample number -> dataset index: one seeded permutation per epoch."""

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self._epoch = -1
        self._permutation: np.ndarray = np.arange(0)

    def __call__(self, number: int) -> int:
        epoch, position = divmod(number, self.length)
        if epoch != self._epoch:
            self._permutation = np.random.default_rng([self.seed, epoch]).permutation(self.length)
            self._epoch = epoch
        return int(self._permutation[position])


def _make_batch(
    data: MaskDataset,
    indices: list[int],
    adapter: TrainingAdapter,
    masks_per_image: int,
    generator: torch.Generator,
    warned: set[str],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Brings images to the family's model-input frame (:meth:`TrainingAdapter.model_input`);
    samples their objects.

    An image whose masks all vanish at the model's input size (objects smaller
    than a pixel there) gives no object; it is reported once (its key is added
    to ``warned``).

    Returns:
        ``(images Bx3xSxS float32 normalised, targets NxSxS bool, owners N int64)``
        where ``owners[i]`` is the batch image of object ``i``; None when no
        image of the batch gives an object.
    """
    size = adapter.image_size
    device = adapter.device
    images, targets, owners = [], [], []
    for slot, index in enumerate(indices):
        item = data[index]
        pixels, masks = adapter.model_input(item, device)
        images.append(pixels)
        h, w = masks.shape[1:]
        non_empty = [m for m in masks if m.any()]
        if not non_empty:
            if item.key not in warned:
                warned.add(item.key)
                log.warning(
                    "%s: no mask is left at the model's %d-pixel input (objects too small); it is skipped",
                    item.key,
                    size,
                )
            continue
        picks = torch.randint(len(non_empty), (masks_per_image,), generator=generator)
        chosen = np.stack([non_empty[int(i)] for i in picks])
        padded = np.zeros((masks_per_image, size, size), dtype=bool)
        padded[:, :h, :w] = chosen
        targets.append(torch.from_numpy(padded))
        owners += [slot] * masks_per_image
    if not targets:
        return None
    return (
        torch.stack(images),
        torch.cat(targets).to(device),
        torch.tensor(owners, dtype=torch.int64, device=device),
    )


def _mixed_precision(mode: AmpMode, device: torch.device) -> tuple[Any, Any]:
    """``(autocast context factory, grad scaler)`` for the device and mode."""
    if device.type != "cuda" or mode == "off":
        return (lambda: torch.autocast(device.type, enabled=False)), torch.amp.GradScaler(enabled=False)
    dtype = (
        torch.float16
        if mode == "fp16" or (mode == "auto" and not torch.cuda.is_bf16_supported())
        else torch.bfloat16
    )
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def _mean_tail(values: list[float], count: int = 20) -> float:
    tail = values[-count:]
    return sum(tail) / len(tail) if tail else math.nan


def _progress_bar(enabled: bool, total: int, initial: int, label: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=label, dynamic_ncols=True)
