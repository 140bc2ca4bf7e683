"""SAM's mask decoder: two-way transformer, upscaling, hypernetwork masks, IoU head."""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLP, LayerNorm2d
from .plain_modules import calls_are_plain
from .sub_pixels import masks_from_sub_pixels
from .token_products import tokens_times_weights
from .transformer import TwoWayTransformer


class DecoderImageCache(NamedTuple):
    """Prompt-independent decoder inputs of one image, from :meth:`MaskDecoder.precompute`.

    Attributes:
        keys: 1xNxC image tokens with the "no mask" dense embedding added.
        key_pe: 1xNxC positional encoding of the image tokens.
        first_projections: the first two-way block's image-side projections of ``keys``.
        image_embeddings: 1xCxhxw, as given (used when a mask prompt is present).
    """

    keys: Tensor
    key_pe: Tensor
    first_projections: tuple[Tensor, Tensor, Tensor]
    image_embeddings: Tensor


class DecodedCandidates(NamedTuple):
    """Candidates kept by :meth:`MaskDecoder.forward_cached_above` (K of them).

    Attributes:
        low_res: Kx(4h)x(4w) mask logits.
        iou: K predicted IoU.
        prompt: K index of the prompt each candidate answers.
        candidate: K multimask output index (0..2, unsorted) within its prompt.
    """

    low_res: Tensor
    iou: Tensor
    prompt: Tensor
    candidate: Tensor


class MaskDecoder(nn.Module):
    """Predicts ``num_multimask_outputs + 1`` masks and their IoU from image and prompt embeddings.

    Mask 0 is the single-mask output; masks ``1..num_multimask_outputs`` are the
    multimask (ambiguity-aware) outputs.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """Predict masks.

        Args:
            image_embeddings: 1xCxhxw (shared by all prompts, broadcast without
                copying) or BxCxhxw (embedding ``i`` goes with prompt ``i``).
            image_pe: 1xCxhxw positional encoding of the embedding grid.
            sparse_prompt_embeddings: BxTxC point / box tokens.
            dense_prompt_embeddings: (1|B)xCxhxw mask-prompt embeddings.
            multimask_output: return masks 1..3 (True) or mask 0 only (False).

        Returns:
            Low-res mask logits Bx(3|1)x(4h)x(4w) and IoU predictions Bx(3|1).
        """
        keys = (image_embeddings + dense_prompt_embeddings).flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        size = _grid_size(image_embeddings)
        return self._decode(keys, key_pe, None, sparse_prompt_embeddings, multimask_output, size)

    def precompute(
        self, image_embeddings: Tensor, image_pe: Tensor, no_mask_embedding: Tensor
    ) -> DecoderImageCache:
        """Prompt-independent work for one image (pure function of its inputs).

        Args:
            image_embeddings: 1xCxhxw.
            image_pe: 1xCxhxw (``PromptEncoder.get_dense_pe()``).
            no_mask_embedding: the dense embedding used when no mask prompt is
                given: ``PromptEncoder.no_mask_embed.weight`` (1xC) or any tensor
                broadcastable to ``image_embeddings``.
        """
        if no_mask_embedding.dim() == 2:
            no_mask_embedding = no_mask_embedding.reshape(1, -1, 1, 1)
        keys = (image_embeddings + no_mask_embedding).flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        first = self.transformer.first_layer_projections(keys, key_pe)
        return DecoderImageCache(keys, key_pe, first, image_embeddings)  # type: ignore[arg-type]

    def forward_cached(
        self,
        cache: DecoderImageCache,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor | None,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """As :meth:`forward` with the image side from :meth:`precompute`.

        ``dense_prompt_embeddings`` is ``None`` for "no mask prompt" (the cached
        keys already hold the "no mask" embedding) or the BxCxhxw embedding of
        a mask prompt.
        """
        if dense_prompt_embeddings is None:
            return self._decode(
                cache.keys,
                cache.key_pe,
                cache.first_projections or None,
                sparse_prompt_embeddings,
                multimask_output,
                _grid_size(cache.image_embeddings),
            )
        keys = (cache.image_embeddings + dense_prompt_embeddings).flatten(2).transpose(1, 2)
        size = _grid_size(cache.image_embeddings)
        return self._decode(keys, cache.key_pe, None, sparse_prompt_embeddings, multimask_output, size)

    def forward_cached_above(
        self, cache: DecoderImageCache, sparse_prompt_embeddings: Tensor, min_iou: float | None
    ) -> DecodedCandidates:
        """Multimask decoding that upscales only the candidates whose predicted IoU passes.

        The IoU head reads the transformer's tokens only, so candidates are
        filtered before the costly ``output_upscaling``; prompts with no
        passing candidate skip it entirely. Same values as :meth:`forward_cached`
        for the candidates kept.

        Args:
            cache: from :meth:`precompute` (no mask prompt).
            sparse_prompt_embeddings: BxTxC point / box tokens.
            min_iou: keep candidates with predicted IoU strictly above this;
                ``None`` keeps all.

        Returns:
            The kept candidates, prompt-major, in mask order 1..3 per prompt.
        """
        mask_ids = list(range(1, self.num_mask_tokens))
        hs, src = self._transformer(
            cache.keys, cache.key_pe, cache.first_projections or None, sparse_prompt_embeddings, mask_ids
        )
        iou = self._iou(hs, mask_ids)
        keep = iou > min_iou if min_iou is not None else torch.ones_like(iou, dtype=torch.bool)
        prompts = torch.nonzero(keep.any(dim=1)).flatten()  # may be empty: upscaling 0 prompts is fine
        hyper_in = self._hyper_in(hs[prompts], mask_ids)
        masks = self.upscale_masks(src[prompts], hyper_in, _grid_size(cache.image_embeddings))
        kept = keep[prompts]
        prompt_index, candidate = torch.nonzero(kept, as_tuple=True)
        return DecodedCandidates(
            low_res=masks[kept], iou=iou[keep], prompt=prompts[prompt_index], candidate=candidate
        )

    def _decode(
        self,
        keys: Tensor,
        key_pe: Tensor,
        first_projections: tuple[Tensor, Tensor, Tensor] | None,
        sparse: Tensor,
        multimask_output: bool,
        size: tuple[int, int],
    ) -> tuple[Tensor, Tensor]:
        mask_ids = list(range(1, self.num_mask_tokens)) if multimask_output else [0]
        hs, src = self._transformer(keys, key_pe, first_projections, sparse, mask_ids)
        masks = self.upscale_masks(src, self._hyper_in(hs, mask_ids), size)
        return masks, self._iou(hs, mask_ids)

    def _transformer(
        self,
        keys: Tensor,
        key_pe: Tensor,
        first_projections: tuple[Tensor, Tensor, Tensor] | None,
        sparse: Tensor,
        mask_ids: list[int],
    ) -> tuple[Tensor, Tensor]:
        """Output tokens (IoU token, then the ``mask_ids`` mask tokens) and image tokens."""
        b = sparse.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat(
            [output_tokens.unsqueeze(0).expand(b, -1, -1), sparse.to(output_tokens.dtype)], dim=1
        )
        # Only the IoU token and the mask tokens that are returned are needed after the transformer.
        needed = [0] + [1 + i for i in mask_ids]
        return self.transformer.forward_tokens(keys, key_pe, tokens, first_projections, needed)

    def _hyper_in(self, hs: Tensor, mask_ids: list[int]) -> Tensor:
        """BxMxC/8 hypernetwork weights of the returned masks."""
        return torch.stack(
            [self.output_hypernetworks_mlps[i](hs[:, 1 + j]) for j, i in enumerate(mask_ids)], dim=1
        )

    def _iou(self, hs: Tensor, mask_ids: list[int]) -> Tensor:
        """BxM predicted IoU of the returned masks."""
        return self.iou_prediction_head(hs[:, 0])[:, mask_ids[0] : mask_ids[-1] + 1]

    def _upscaling_layers(self) -> tuple[nn.ConvTranspose2d, LayerNorm2d, nn.ConvTranspose2d]:
        """The two transposed convolutions of ``output_upscaling`` and the norm between them."""
        up1, norm, _, up2, _ = self.output_upscaling
        return up1, norm, up2  # type: ignore[return-value]

    def upscale_masks(self, src: Tensor, hyper_in: Tensor, size: tuple[int, int]) -> Tensor:
        """``output_upscaling`` of the image tokens ``src`` (Bx(hw)xC) and the product
        with the hypernetwork weights ``hyper_in`` (BxMxC/8): BxMx(4h)x(4w) logits.

        Each stride-2, 2x2 transposed convolution is one product of the tokens
        (one row per input pixel, channels last) with the kernel laid out as
        ``(di, dj, out channel) x in channel``: row ``p``, columns ``(di, dj)``
        is output pixel ``(2 row(p) + di, 2 col(p) + dj)``. The rows stay in
        input order through both stages; :func:`~backend.model.sub_pixels.masks_from_sub_pixels`
        takes the product with the hypernetwork weights and puts the pixels in place.
        """
        h, w = size
        B, N, C = src.shape
        M = hyper_in.shape[1]
        needs_grad = torch.is_grad_enabled() and (src.requires_grad or hyper_in.requires_grad)
        if needs_grad or not calls_are_plain(*self.output_upscaling):
            # The reference path: autograd-friendly (the fast one works in place), and it
            # calls the layers, so replaced or hooked ones take effect.
            up = self.output_upscaling(src.transpose(1, 2).reshape(B, C, h, w))
            return (hyper_in @ up.flatten(2)).view(B, M, 4 * h, 4 * w)
        up1, ln, up2 = self._upscaling_layers()
        c1, c2 = up1.out_channels, up2.out_channels
        kernel1 = up1.weight.permute(2, 3, 1, 0).reshape(4 * c1, C)
        y = tokens_times_weights(src.reshape(B * N, C), kernel1, cast(Tensor, up1.bias).repeat(4))
        y = torch.ops.aten.gelu_(F.layer_norm(y.view(-1, c1), (c1,), ln.weight, ln.bias, ln.eps))
        kernel2 = up2.weight.permute(2, 3, 1, 0).reshape(4 * c2, c1)
        z = torch.ops.aten.gelu_(tokens_times_weights(y, kernel2, cast(Tensor, up2.bias).repeat(4)))
        return masks_from_sub_pixels(z, hyper_in, size)


def _grid_size(embeddings: Tensor) -> tuple[int, int]:
    """``(h, w)`` of a BxCxhxw embedding."""
    return int(embeddings.shape[-2]), int(embeddings.shape[-1])
