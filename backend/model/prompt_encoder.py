"""SAM's prompt encoder: points, boxes and dense mask prompts -> embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d
from .memo import MemoOnWeights


class PromptEncoder(nn.Module):
    """Encodes prompts for the mask decoder.

    Sparse prompts (points and box corners) become ``BxNxC`` tokens: a random
    Fourier positional encoding of the location plus a learned embedding of the
    kind (negative point, positive point, box top-left, box bottom-right; the
    padding point, label -1, gets only the "not a point" embedding). A dense
    ``Bx1x(4h)x(4w)`` mask prompt is downscaled to ``BxCxhxw``; without one, the
    learned "no mask" embedding is broadcast.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # negative/positive point + 2 box corners
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the embedding grid, ``1xCxhxw`` (memoised)."""
        return self.pe_layer.grid(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``points``: BxNx2 (x, y) in model-input pixels; ``labels``: BxN (1, 0, -1)."""
        points = points + 0.5  # centre of the pixel
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        pe = self.pe_layer.forward_with_coords(points, self.input_image_size)
        dtype = pe.dtype
        is_pad = (labels == -1).unsqueeze(-1)
        is_neg = (labels == 0).unsqueeze(-1).to(dtype)
        is_pos = (labels == 1).unsqueeze(-1).to(dtype)
        emb = torch.where(is_pad, self.not_a_point_embed.weight, pe)
        negative, positive = self._point_embedding(0), self._point_embedding(1)
        return emb + is_neg * negative + is_pos * positive

    def _point_embedding(self, index: int) -> torch.Tensor:
        """1xC learned embedding: 0 background click, 1 foreground click, 2 and 3 box corners."""
        embedding: nn.Embedding = self.point_embeddings[index]  # type: ignore[assignment]
        return embedding.weight

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``boxes``: Bx4 (x1, y1, x2, y2) in model-input pixels -> Bx2xC."""
        coords = (boxes + 0.5).reshape(-1, 2, 2)
        pe = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        corners = torch.cat([self._point_embedding(2), self._point_embedding(3)], dim=0)
        return pe + corners

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """``masks``: Bx1x(4h)x(4w) logits -> BxCxhxw."""
        return self.mask_downscaling(masks.to(self.no_mask_embed.weight.dtype))

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns sparse ``BxNxC`` and dense ``BxCxhxw`` embeddings.

        Without a mask prompt the dense embedding is an expanded view (no copy).
        """
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        weight = self.no_mask_embed.weight
        parts = []
        if points is not None:
            parts.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            parts.append(self.embed_boxes(boxes))
        if not parts:
            sparse = weight.new_empty(bs, 0, self.embed_dim)
        elif len(parts) == 1:
            sparse = parts[0]
        else:
            sparse = torch.cat(parts, dim=1)
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (``sin``/``cos`` features).

    Encodings are computed in at least float32 (coordinates up to 1024 need
    more precision than bf16 has) and returned in the buffer's dtype.
    """

    positional_encoding_gaussian_matrix: torch.Tensor

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))
        self._grid_memo: MemoOnWeights[torch.Tensor] = MemoOnWeights()

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords`` in [0, 1]^2, shape ...x2 -> ...xC."""
        gauss = self.positional_encoding_gaussian_matrix
        compute = torch.promote_types(gauss.dtype, torch.float32)
        coords = (2 * coords.to(compute) - 1) @ gauss.to(compute)
        coords = (2 * math.pi) * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).to(gauss.dtype)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of an ``h x w`` grid of cell centres, ``Cxhxw``."""
        h, w = size
        gauss = self.positional_encoding_gaussian_matrix
        compute = torch.promote_types(gauss.dtype, torch.float32)
        y = (torch.arange(h, device=gauss.device, dtype=compute) + 0.5) / h
        x = (torch.arange(w, device=gauss.device, dtype=compute) + 0.5) / w
        grid = torch.stack([x.expand(h, w), y[:, None].expand(h, w)], dim=-1)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def grid(self, size: tuple[int, int]) -> torch.Tensor:
        """``forward(size)``, memoised per size and the buffer's values (:class:`MemoOnWeights`)."""
        return self._grid_memo.get(
            tuple(size), (self.positional_encoding_gaussian_matrix,), lambda: self.forward(size)
        )

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """``coords_input``: BxNx2 pixel (x, y) in an image of ``image_size`` (h, w) -> BxNxC."""
        coords = coords_input.to(torch.promote_types(coords_input.dtype, torch.float32))
        size = coords.new_tensor([image_size[1], image_size[0]])
        return self._pe_encoding(coords / size)
