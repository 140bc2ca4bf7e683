"""The ``Sam`` module (image encoder + prompt encoder + mask decoder) and ``build_sam``."""

from __future__ import annotations

from collections.abc import Hashable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SamConfig
from .image_encoder import ImageEncoderViT
from .mask_decoder import DecodedCandidates, DecoderImageCache, MaskDecoder
from .memo import module_reads
from .pixels import normalize_and_pad
from .prompt_encoder import PromptEncoder
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer
from .upsampling import upsample_bilinear_integer


class Sam(nn.Module):
    """Segment Anything: its three parts plus pixel normalisation.

    The state-dict layout is that of the official checkpoints
    (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``; the pixel
    mean/std buffers are not saved).
    """

    pixel_mean: Tensor
    pixel_std: Tensor

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: ImageEncoderViT | TinyViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53),
        pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375),
        config: SamConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self._pixel_mean = tuple(pixel_mean)
        self._pixel_std = tuple(pixel_std)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the network weights."""
        return self.mask_decoder.iou_token.weight.dtype

    @property
    def image_size(self) -> int:
        """Side of the square model input in pixels (1024 for the official models)."""
        return self.image_encoder.img_size

    def preprocess(self, x: Tensor) -> Tensor:
        """Normalise a (B)x3xHxW RGB image on the 0..255 scale and zero-pad it to
        ``image_size`` x ``image_size`` (bottom/right). Returns the weights' dtype
        (see :func:`~backend.model.pixels.normalize_and_pad`)."""
        return normalize_and_pad(
            x, pixel_mean=self._pixel_mean, pixel_std=self._pixel_std, size=self.image_size, dtype=self.dtype
        )

    def postprocess_masks(
        self, masks: Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> Tensor:
        """Upscale BxCxLxL low-res logits to the padded input size, crop the padding
        (``input_size``, the resized image before padding, as (H, W)) and resize to
        ``original_size`` (H, W), bilinearly -- the reference's arithmetic.

        When the model input is a whole multiple of ``L`` (every SAM
        configuration) and no gradient is needed, only the cropped corner is
        upscaled, by :func:`~backend.model.upsampling.upsample_bilinear_integer`;
        the second resize is skipped when it would be the identity. Values
        equal the reference's up to float32 rounding.
        """
        side = self.image_size
        batch, channels, low_h, low_w = masks.shape
        factor = side // low_h
        planes = masks.reshape(batch * channels, low_h, low_w)
        if factor * low_h == side == factor * low_w and not (torch.is_grad_enabled() and masks.requires_grad):
            planes = upsample_bilinear_integer(planes, factor, input_size[0], input_size[1])
        else:
            planes = F.interpolate(planes[:, None], (side, side), mode="bilinear", align_corners=False)
            planes = planes[:, 0, : input_size[0], : input_size[1]]
        if tuple(original_size) != tuple(planes.shape[-2:]):
            planes = F.interpolate(
                planes[:, None], tuple(original_size), mode="bilinear", align_corners=False
            )[:, 0]
        return planes.unflatten(0, (batch, channels))  # a view: the crop is not copied

    def encode_image(self, images: Tensor) -> Tensor:
        """Image embeddings ``BxCxhxw`` of preprocessed ``Bx3xSxS`` images."""
        return self.image_encoder(images)

    def prepare_decoder(self, image_embeddings: Tensor) -> DecoderImageCache:
        """Prompt-independent decoder work for one image (1xCxhxw embedding); pass
        the result to :meth:`decode` for every prompt on that image."""
        return self.mask_decoder.precompute(
            image_embeddings, self.prompt_encoder.get_dense_pe(), self.prompt_encoder.no_mask_embed.weight
        )

    def decoder_cache_inputs(self) -> tuple[Hashable, list[Tensor]]:
        """What :meth:`prepare_decoder`'s result depends on besides the embedding, as
        :func:`~backend.model.memo.module_reads` gives it: the prompt encoder's position
        encoding and "no mask" embedding, and the modules of the first block's image-side
        projections."""
        pe = self.prompt_encoder
        first = self.mask_decoder.transformer.first_layer_projection_modules()
        return module_reads(pe.pe_layer, pe.no_mask_embed, *first)

    def decode(
        self,
        cache: DecoderImageCache,
        points: tuple[Tensor, Tensor] | None = None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Prompts -> low-res mask logits ``BxMx(4h)x(4w)`` and IoU predictions ``BxM``.

        Args:
            cache: from :meth:`prepare_decoder`.
            points: (BxNx2 coordinates (x, y) in model-input pixels, BxN labels
                1 = positive, 0 = negative, -1 = padding).
            boxes: Bx4 (x1, y1, x2, y2) in model-input pixels, one object per box.
            mask_input: Bx1x(4h)x(4w) logits of a previous prediction.
            multimask_output: M = 3 (masks 1..3) if True, else M = 1 (mask 0).
        """
        sparse, dense = self.prompt_encoder(points, boxes, mask_input)
        return self.mask_decoder.forward_cached(
            cache, sparse, dense if mask_input is not None else None, multimask_output
        )

    def decode_above(
        self, cache: DecoderImageCache, points: tuple[Tensor, Tensor], min_iou: float | None
    ) -> DecodedCandidates:
        """Point prompts -> the multimask candidates whose predicted IoU is above ``min_iou``.

        Only those candidates are upscaled to low-res logits (see
        :meth:`MaskDecoder.forward_cached_above`); ``points`` as in :meth:`decode`.
        """
        sparse, _ = self.prompt_encoder(points, None, None)
        return self.mask_decoder.forward_cached_above(cache, sparse, min_iou)

    @torch.no_grad()
    def forward(self, batched_input: list[dict], multimask_output: bool) -> list[dict[str, Tensor]]:
        """Reference-compatible end-to-end call (see ``segment_anything.Sam.forward``)."""
        images = torch.stack([self.preprocess(x["image"]) for x in batched_input], dim=0)
        embeddings = self.image_encoder(images)
        outputs = []
        for record, emb in zip(batched_input, embeddings, strict=True):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            sparse, dense = self.prompt_encoder(points, record.get("boxes"), record.get("mask_inputs"))
            low_res, iou = self.mask_decoder(
                emb.unsqueeze(0), self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output
            )
            masks = self.postprocess_masks(low_res, record["image"].shape[-2:], record["original_size"])
            outputs.append(
                {"masks": masks > self.mask_threshold, "iou_predictions": iou, "low_res_logits": low_res}
            )
        return outputs


def build_sam(config: SamConfig) -> Sam:
    """Build an (untrained, eval-mode) SAM network from its configuration."""
    c = config
    if c.image_size % 16:
        raise ValueError(f"image_size must be a multiple of 16, got {c.image_size}")
    encoder: ImageEncoderViT | TinyViT
    if c.encoder == "vit":
        v = c.vit
        encoder = ImageEncoderViT(
            img_size=c.image_size,
            patch_size=v.patch_size,
            embed_dim=v.embed_dim,
            depth=v.depth,
            num_heads=v.num_heads,
            mlp_ratio=v.mlp_ratio,
            out_chans=c.prompt_embed_dim,
            window_size=v.window_size,
            global_attn_indexes=tuple(v.global_attn_indexes),
        )
    elif c.encoder == "tiny_vit":
        t = c.tiny_vit
        encoder = TinyViT(
            img_size=c.image_size,
            num_classes=t.num_classes,
            embed_dims=tuple(t.embed_dims),
            depths=tuple(t.depths),
            num_heads=tuple(t.num_heads),
            window_sizes=tuple(t.window_sizes),
            mlp_ratio=t.mlp_ratio,
            mbconv_expand_ratio=t.mbconv_expand_ratio,
            local_conv_size=t.local_conv_size,
            out_chans=c.prompt_embed_dim,
        )
    else:
        raise ValueError(f"unknown encoder kind {c.encoder!r}; expected 'vit' or 'tiny_vit'")
    grid = c.embedding_size
    sam = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=c.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(c.image_size, c.image_size),
            mask_in_chans=c.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=c.prompt_embed_dim,
            transformer=TwoWayTransformer(
                depth=c.decoder_depth,
                embedding_dim=c.prompt_embed_dim,
                num_heads=c.decoder_num_heads,
                mlp_dim=c.decoder_mlp_dim,
            ),
            num_multimask_outputs=c.num_multimask_outputs,
            iou_head_depth=c.iou_head_depth,
            iou_head_hidden_dim=c.iou_head_hidden_dim,
        ),
        pixel_mean=c.pixel_mean,
        pixel_std=c.pixel_std,
        config=c,
    )
    return sam.eval()
