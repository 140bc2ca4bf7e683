"""What SAM 2.1 computes once per image: the image embedding and the high-resolution features."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Sam2ImageFeatures(NamedTuple):
    """One image's encoder output, everything the decoder needs (Meta's predictor ``_features``).

    Attributes:
        image_embed: ``BxCxhxw`` stride-16 embedding (C = 256, h = w = 64 at
            1024 px), ``no_mem_embed`` already added.
        feat_s0: ``BxC/8x4hx4w`` stride-4 features, through the decoder's ``conv_s0``.
        feat_s1: ``BxC/4x2hx2w`` stride-8 features, through the decoder's ``conv_s1``.
    """

    image_embed: Tensor
    feat_s0: Tensor
    feat_s1: Tensor

    @property
    def high_res_feats(self) -> tuple[Tensor, Tensor]:
        """``(feat_s0, feat_s1)``, the decoder's ``high_res_features``."""
        return self.feat_s0, self.feat_s1

    @property
    def nbytes(self) -> int:
        """Bytes held by the three tensors (about 16 MiB per image at 1024 px in float32)."""
        return sum(t.numel() * t.element_size() for t in self)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Sam2ImageFeatures:
        """The same features on ``device`` / in ``dtype``."""
        return Sam2ImageFeatures(*(t.to(device=device, dtype=dtype) for t in self))

    def select(self, index: int) -> Sam2ImageFeatures:
        """Image ``index`` of a batch, as a batch of one."""
        return Sam2ImageFeatures(*(t[index : index + 1] for t in self))
