"""SAM 2's image encoder: the Hiera trunk, then the FPN neck, minus the ``scalp`` coarsest levels.

Parameter names are those of Meta's ``ImageEncoder`` (``trunk.*``, ``neck.*``).
"""

from __future__ import annotations

from torch import Tensor, nn

from .fpn_neck import FpnNeck
from .hiera import Hiera


class Sam2ImageEncoder(nn.Module):
    """``Bx3xSxS`` normalised image -> FPN maps ``Bxd_modelx(S/4)x(S/4)``, ``.../8``, ``.../16``.

    (For the official configurations: three levels at strides 4, 8 and 16;
    the stride-32 level only feeds the stride-16 one and is dropped.)
    """

    def __init__(self, *, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if trunk.channel_list != neck.backbone_channel_list:
            raise ValueError(
                f"trunk widths {trunk.channel_list} do not match the neck's {neck.backbone_channel_list}"
            )
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, x: Tensor, post: dict[int, nn.Module] | None = None) -> list[Tensor]:
        """``x``: ``Bx3xSxS`` -> the neck's levels, highest resolution first.

        ``post`` is passed to :meth:`FpnNeck.forward` (projections of some levels).
        """
        levels = self.neck(self.trunk(x), post)
        return levels[: len(levels) - self.scalp] if self.scalp > 0 else levels
