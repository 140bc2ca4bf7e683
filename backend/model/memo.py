"""Values computed from a model's weights, kept until those weights (or the modules holding them) change."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T")


class WeightValues:
    """Copies of some weight tensors, to tell later whether any of them changed.

    Compared by value (with dtype, device and shape), so that a change is seen
    however it was made: in place (an optimiser step, ``load_state_dict``,
    ``param.data.copy_``, which no version counter sees), by replacing the
    tensor, or inside ``torch.inference_mode()``, whose tensors have no version
    counter at all. Meant for small sets (a few hundred thousand values:
    comparing them costs tens of microseconds).
    """

    def __init__(self, tensors: Iterable[Tensor]) -> None:
        with torch.inference_mode(False), torch.no_grad():
            self._copies = tuple(tensor.detach().clone() for tensor in tensors)

    def match(self, tensors: Sequence[Tensor]) -> bool:
        """Whether ``tensors`` are, one for one, the kept dtypes, devices, shapes and values."""
        return len(tensors) == len(self._copies) and all(
            a.dtype == b.dtype and a.device == b.device and a.shape == b.shape and torch.equal(a, b)
            for a, b in zip(self._copies, tensors, strict=True)
        )


class MemoOnWeights(Generic[T]):
    """Holds ``compute()``'s result while its key and its input weights stay the same.

    The result is made outside inference mode, without autograd and with
    autocast off (so one call under ``torch.autocast`` does not leave a
    lower-precision value for every later call), so that it also serves calls
    made later in any of those modes.
    """

    def __init__(self) -> None:
        self._entry: tuple[Hashable, WeightValues, T] | None = None

    def get(self, key: Hashable, weights: Sequence[Tensor], compute: Callable[[], T]) -> T:
        """``compute()``, or the value it gave for an equal ``key`` and equal ``weights``.

        Args:
            key: Whatever else the result depends on (a grid size, the
                structure of the modules ``compute`` calls).
            weights: The weight tensors ``compute`` reads (see :class:`WeightValues`).
            compute: Makes the result.
        """
        entry = self._entry  # one read: another thread may replace it meanwhile
        if entry is not None and entry[0] == key and entry[1].match(weights):
            return entry[2]
        with torch.inference_mode(False), torch.no_grad():
            value = _without_autocast(_autocast_device_types(weights), compute)
        self._entry = (key, WeightValues(weights), value)
        return value


def module_reads(*modules: nn.Module) -> tuple[Hashable, list[Tensor]]:
    """What a computation that calls ``modules`` depends on, as :meth:`MemoOnWeights.get`'s
    ``key`` and ``weights``: each submodule's name, type and number of forward hooks
    (an adapter put in, a hook added), and every parameter and buffer."""
    structure: list[Hashable] = []
    weights: list[Tensor] = []
    for module in modules:
        for name, sub in module.named_modules():
            structure.append((name, type(sub), len(sub._forward_hooks), len(sub._forward_pre_hooks)))
        weights.extend(module.parameters())
        weights.extend(module.buffers())
    return tuple(structure), weights


def _autocast_device_types(weights: Sequence[Tensor]) -> list[str]:
    """The device types of ``weights`` (and the CPU) on which autocast exists (not ``meta``;
    before torch 2.4, which cannot say, only the CPU and CUDA)."""
    types = {"cpu", *(w.device.type for w in weights)}
    available = getattr(torch.amp, "is_autocast_available", None)
    return sorted(t for t in types if (available(t) if available is not None else t in ("cpu", "cuda")))


def _without_autocast(device_types: list[str], compute: Callable[[], T]) -> T:
    """``compute()`` with autocast disabled on each of ``device_types``."""
    if not device_types:
        return compute()
    with torch.autocast(device_types[0], enabled=False):
        return _without_autocast(device_types[1:], compute)
