"""The multi-layer perceptron of SAM 2 (Meta's ``sam2_utils.MLP`` layout: ``layers.0 .. layers.N-1``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .plain_modules import is_plain, linear


class MLP(nn.Module):
    """``num_layers`` linear layers with ``activation`` in between, optionally a final sigmoid.

    Used with GELU in the Hiera blocks (``... x C`` tokens) and with ReLU for
    the decoder's hypernetwork, IoU and object-score heads (a few tokens).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        *,
        activation: type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        hidden = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip([input_dim, *hidden], [*hidden, output_dim], strict=True)
        )
        self.sigmoid_output = sigmoid_output
        self.act = activation()

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``... x input_dim`` -> ``... x output_dim``."""
        # The activation may run in place on the fresh output of a stock linear
        # layer when nothing records autograd and it is a stock module itself.
        act_in_place = not torch.is_grad_enabled() and type(self.act) in (nn.GELU, nn.ReLU)
        act_in_place = act_in_place and is_plain(self.act, type(self.act))
        for i, layer in enumerate(self.layers):
            x = linear(layer, x)
            if i < self.num_layers - 1:
                if act_in_place and is_plain(layer, nn.Linear):
                    x = _activate_(self.act, x)
                else:
                    x = self.act(x)
        if self.sigmoid_output:
            x = torch.sigmoid(x)
        return x


def _activate_(act: nn.Module, x: Tensor) -> Tensor:
    """The stock GELU / ReLU ``act`` applied in place on ``x``."""
    if isinstance(act, nn.GELU):
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    return torch.relu_(x)
