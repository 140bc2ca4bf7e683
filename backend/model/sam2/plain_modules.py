"""SAM 2.1's uses of :mod:`backend.model.plain_modules` (when a fast path may read a submodule's
weights instead of calling it), for the layer kinds that only SAM 2.1's fast paths fold.

The fast paths compute several layers at once (a linear layer as a oneDNN
1x1 convolution, two 1x1 convolutions folded into one, attention projections
folded into the prompt tokens). They do so only for a submodule that is
exactly the layer it was built as, with no forward hook: an adapter (LoRA), a
quantised layer, a parametrisation or a hook changes the layer's class or
adds a hook, and then the fast path calls the submodule instead (or falls
back to the reference path), so that what was added takes effect.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..plain_modules import apply_linear, calls_are_plain

linear = apply_linear
"""``layer(tokens)``, as a many-token product when ``layer`` is a plain ``nn.Linear``."""


def is_plain(module: nn.Module, cls: type[nn.Module]) -> bool:
    """``module`` is exactly ``cls`` (not a subclass, not parametrised) and no forward hook applies to it.

    Like :func:`backend.model.plain_modules.calls_are_plain`, for any class
    (the attention blocks whose methods the folded path calls directly).
    """
    return (
        type(module) is cls
        and not module._forward_hooks
        and not module._forward_pre_hooks
        and calls_are_plain()  # no process-wide hooks
    )


def all_plain(modules: dict[nn.Module, type[nn.Module]]) -> bool:
    """:func:`is_plain` for every ``module: class`` pair."""
    return all(is_plain(m, cls) for m, cls in modules.items())


def conv1x1_as_linear(module: nn.Module) -> tuple[Tensor, Tensor | None] | None:
    """``(weight RxK, bias R)`` of a plain 1x1, stride-1, ungrouped ``nn.Conv2d``; None otherwise."""
    if not (isinstance(module, nn.Conv2d) and is_plain(module, nn.Conv2d)):
        return None
    if module.kernel_size != (1, 1) or module.stride != (1, 1) or module.groups != 1:
        return None
    if module.padding not in ((0, 0), "valid"):
        return None
    return module.weight.flatten(1), module.bias
