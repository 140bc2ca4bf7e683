"""SAM 2's prompt encoder: SAM's, with box corners also accepted as labelled points.

The layout and the arithmetic are SAM's (:class:`backend.model.PromptEncoder`).
SAM 2's predictors pass a box as two points labelled 2 (top-left) and 3
(bottom-right), ahead of the clicks and always followed by the padding point;
this encoder embeds those labels with the box-corner embeddings.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ..prompt_encoder import PromptEncoder

POINT_LABELS = {-1: "padding", 0: "negative", 1: "positive", 2: "box top-left", 3: "box bottom-right"}
"""The point labels SAM 2's prompt encoder understands."""


class Sam2PromptEncoder(PromptEncoder):
    """Points (labels -1..3), boxes and mask prompts -> sparse ``BxNxC`` and dense ``BxCxhxw`` embeddings."""

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``points``: ``BxNx2`` ``(x, y)`` in model-input pixels; ``labels``: ``BxN`` in -1..3.

        With ``pad`` a padding point (label -1) is appended. Returns ``Bx(N+pad)xC``.
        """
        points = points + 0.5  # centre of the pixel
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        pe = self.pe_layer.forward_with_coords(points, self.input_image_size)
        emb = torch.where((labels == -1).unsqueeze(-1), self.not_a_point_embed.weight, pe)
        for label in range(4):
            is_label = (labels == label).unsqueeze(-1).to(emb.dtype)
            emb = emb + is_label * cast(nn.Embedding, self.point_embeddings[label]).weight
        return emb
