"""What SAM 3 keeps per image, and the tracker's view of it.

One ViT pass per image feeds both heads: the detector's FPN neck output is
what transformers calls ``vision_embeds`` (``Sam3Model.get_vision_features``),
and the tracker's image embeddings are built from the same ViT tokens with the
tracker's own neck, as transformers' ``Sam3VideoModel`` does for video frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import Sam3TrackerModel


@dataclass(frozen=True)
class Sam3ImageFeatures:
    """One image's SAM 3 vision features (batch 1): computed once, reused by every prompt.

    With the full-size network (input S = 1008, patch 14, E = S / 14 = 72):

    Attributes:
        backbone: ``1xTxC`` ViT output tokens, row-major over the ``ExE`` patch
            grid (T = E^2 = 5184, C = 1024); the tracker's neck starts here.
        fpn_hidden_states: The detector neck's maps, ``1xDxHixWi`` for sides
            ``4E, 2E, E, E/2`` (D = 256): transformers' ``vision_embeds.fpn_hidden_states``.
        fpn_position_encoding: Sine position encodings of the same shapes.
    """

    backbone: torch.Tensor
    fpn_hidden_states: tuple[torch.Tensor, ...]
    fpn_position_encoding: tuple[torch.Tensor, ...]

    @classmethod
    def from_vision_output(cls, output: Any) -> Sam3ImageFeatures:
        """Keep the tensors of ``Sam3Model.get_vision_features``'s output."""
        return cls(
            backbone=output.last_hidden_state,
            fpn_hidden_states=tuple(output.fpn_hidden_states),
            fpn_position_encoding=tuple(output.fpn_position_encoding),
        )

    def to_vision_embeds(self) -> Any:
        """transformers' ``Sam3VisionEncoderOutput``, for ``Sam3Model(vision_embeds=...)``."""
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        return Sam3VisionEncoderOutput(
            last_hidden_state=self.backbone,
            fpn_hidden_states=self.fpn_hidden_states,
            fpn_position_encoding=self.fpn_position_encoding,
        )

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Every tensor held, backbone first."""
        return (self.backbone, *self.fpn_hidden_states, *self.fpn_position_encoding)

    @property
    def nbytes(self) -> int:
        """Bytes held (for byte-bounded caches): about 250 MB in float32 at full size."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Sam3ImageFeatures:
        """The same features on ``device`` (and in ``dtype``, when given)."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype or t.dtype)

        return Sam3ImageFeatures(
            backbone=move(self.backbone),
            fpn_hidden_states=tuple(move(t) for t in self.fpn_hidden_states),
            fpn_position_encoding=tuple(move(t) for t in self.fpn_position_encoding),
        )


def tracker_image_embeddings(tracker: Sam3TrackerModel, backbone: torch.Tensor) -> list[torch.Tensor]:
    """The tracker's image embeddings from the ViT tokens, without running the ViT again.

    Equal to ``tracker.get_image_embeddings(pixel_values)`` when the tracker's
    backbone is the one that made ``backbone`` (``tests/inference/sam3`` checks it):
    the tracker's FPN neck, the mask decoder's projections of the two
    high-resolution levels, the no-memory embedding on the last level.

    Args:
        tracker: transformers' ``Sam3TrackerModel``.
        backbone: ``BxTxC`` ViT output tokens (``Sam3ImageFeatures.backbone``).

    Returns:
        Maps ``BxD'xHixWi``, high resolution first, one per
        ``tracker.backbone_feature_sizes`` entry (sides ``4E, 2E, E``); the
        last one is the image embedding the mask decoder attends to.
    """
    batch = backbone.shape[0]
    height, width = tracker.prompt_encoder.image_embedding_size
    spatial = backbone.view(batch, height, width, -1).permute(0, 3, 1, 2)
    maps, _ = tracker.vision_encoder.neck(spatial)
    maps = list(maps)
    maps[0] = tracker.mask_decoder.conv_s0(maps[0])
    maps[1] = tracker.mask_decoder.conv_s1(maps[1])
    maps[-1] = maps[-1] + tracker.no_memory_embedding.view(1, -1, 1, 1)
    return maps[: len(tracker.backbone_feature_sizes)]
