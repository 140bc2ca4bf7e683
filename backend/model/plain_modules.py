"""When a fast path may read a submodule's parameters instead of calling it.

The CPU fast paths (:mod:`backend.model.token_products`, the folded
attention, the one-product mask upscaling) read ``weight`` and ``bias``
directly. That equals calling the submodule only while it is the class it
was built as, with no hook and no parametrization. A LoRA wrapper, a
quantised ``Linear``, a forward hook or a pruning parametrization put in its
place must take effect, so every fast path asks :func:`calls_are_plain`
first and otherwise calls the submodules.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.modules import module as torch_module
from torch.nn.utils import parametrize

from .common import LayerNorm2d
from .token_products import linear_on_tokens

_PLAIN_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.LayerNorm,
    LayerNorm2d,
    nn.GELU,
)
"""Classes whose forward the fast paths reproduce from their parameters (exact types, not subclasses)."""


def _global_hooks_set() -> bool:
    """Whether any process-wide forward hook is registered (``nn.modules.module.register_module_forward_hook``)."""
    return bool(
        getattr(torch_module, "_global_forward_hooks", None)
        or getattr(torch_module, "_global_forward_pre_hooks", None)
    )


def calls_are_plain(*modules: nn.Module) -> bool:
    """True when calling each module is exactly its own class's forward on its own parameters.

    False for a subclass or another class in its place (an adapter, a
    quantised layer), a forward or pre-forward hook on it or process-wide,
    and a parametrization (e.g. pruning, weight norm).
    """
    if _global_hooks_set():
        return False
    for module in modules:
        if type(module) not in _PLAIN_TYPES:
            return False
        if module._forward_hooks or module._forward_pre_hooks or parametrize.is_parametrized(module):
            return False
    return True


def apply_linear(layer: nn.Module, tokens: Tensor) -> Tensor:
    """``layer(tokens)`` for ``... x K`` tokens: the token product when ``layer`` is a plain ``Linear``."""
    if calls_are_plain(layer):
        linear: nn.Linear = layer  # type: ignore[assignment]
        return linear_on_tokens(tokens, linear.weight, linear.bias)
    return layer(tokens)


def projection_of_zeros(layer: nn.Module, features: int, like: Tensor) -> Tensor:
    """``layer`` applied to a zero vector of ``features`` (a plain ``Linear``'s bias), in ``like``'s dtype."""
    bias = getattr(layer, "bias", None)
    if calls_are_plain(layer) and isinstance(bias, Tensor):
        return bias.to(like.dtype)
    return layer(like.new_zeros(features)).to(like.dtype)
