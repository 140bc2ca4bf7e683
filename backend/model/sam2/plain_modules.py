"""When a fast path may read a submodule's weights instead of calling it.

The fast paths of the SAM 2.1 network compute several layers at once (a
linear layer as a oneDNN 1x1 convolution, two 1x1 convolutions folded into
one, attention projections folded into the prompt tokens). They may do so
only for a submodule that is exactly the stock layer, with no forward hooks:
an adapter (LoRA), a quantised layer, a parametrisation or a hook changes
the layer's class or adds a hook, and then the fast path calls the
submodule instead (or falls back to the reference path), so that what was
added takes effect.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_impl

from ..token_products import linear_on_tokens


def _global_hooks() -> bool:
    """Whether hooks registered for every module (``register_module_forward_hook``) exist."""
    return bool(
        getattr(module_impl, "_global_forward_hooks", None)
        or getattr(module_impl, "_global_forward_pre_hooks", None)
    )


def is_plain(module: nn.Module, cls: type[nn.Module]) -> bool:
    """``module`` is exactly ``cls`` (not a subclass, not parametrised) and has no forward hooks."""
    return (
        type(module) is cls
        and not module._forward_hooks
        and not module._forward_pre_hooks
        and not _global_hooks()
    )


def all_plain(modules: dict[nn.Module, type[nn.Module]]) -> bool:
    """:func:`is_plain` for every ``module: class`` pair."""
    return all(is_plain(m, cls) for m, cls in modules.items())


def linear(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` for a linear layer on ``... x K`` tokens, as a many-token product
    (:func:`~backend.model.token_products.linear_on_tokens`) when the layer is a plain
    ``nn.Linear``. Returns ``... x R``."""
    if isinstance(module, nn.Linear) and is_plain(module, nn.Linear):
        return linear_on_tokens(x, module.weight, module.bias)
    return module(x)


def conv1x1_as_linear(module: nn.Module) -> tuple[Tensor, Tensor | None] | None:
    """``(weight RxK, bias R)`` of a plain 1x1, stride-1, ungrouped ``nn.Conv2d``; None otherwise."""
    if not (isinstance(module, nn.Conv2d) and is_plain(module, nn.Conv2d)):
        return None
    if module.kernel_size != (1, 1) or module.stride != (1, 1) or module.groups != 1:
        return None
    if module.padding not in ((0, 0), "valid"):
        return None
    return module.weight.flatten(1), module.bias


def inference_only(*tensors: Tensor) -> bool:
    """True when no autograd graph is being recorded for ``tensors`` (in-place work is safe)."""
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
