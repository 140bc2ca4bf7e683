"""SAM 2's two-way transformer: SAM's (:class:`backend.model.TwoWayTransformer`) with the
MLP of each block named as Meta's ``sam2`` names it (``mlp.layers.{0,1}``, ReLU).

SAM's fast path folds attention projections into the prompt tokens, reading
the projection weights directly. It runs only while every attention layer and
its projections are stock modules without hooks; otherwise
:func:`reference_forward` calls every submodule, in the reference's order.
"""

from __future__ import annotations

from typing import cast

from torch import Tensor, nn

from ..transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer
from .mlp import MLP
from .plain_modules import is_plain


class Sam2TwoWayTransformer(TwoWayTransformer):
    """``depth`` two-way blocks then a final token -> image attention (SAM 2 layout)."""

    def __init__(
        self,
        *,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__(depth, embedding_dim, num_heads, mlp_dim, attention_downsample_rate)
        for layer in self.layers:
            layer.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, 2, activation=nn.ReLU)

    def blocks(self) -> list[TwoWayAttentionBlock]:
        """The two-way blocks, typed."""
        return [cast(TwoWayAttentionBlock, layer) for layer in self.layers]

    def can_fold(self) -> bool:
        """Whether the folded fast path computes what the submodules would."""
        attentions = [cast(Attention, self.final_attn_token_to_image)]
        for layer in self.blocks():
            if not is_plain(layer, TwoWayAttentionBlock):
                return False
            attentions += [
                cast(Attention, layer.self_attn),
                cast(Attention, layer.cross_attn_token_to_image),
                cast(Attention, layer.cross_attn_image_to_token),
            ]
        for attn in attentions:
            if not is_plain(attn, Attention):
                return False
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
                if not is_plain(proj, nn.Linear):
                    return False
        return True

    def forward_tokens(
        self,
        keys: Tensor,
        key_pe: Tensor,
        point_embedding: Tensor,
        first_projections: tuple[Tensor, Tensor, Tensor] | None = None,
        output_tokens: list[int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Image tokens ``keys`` ``(1|B)xNxC``, their encoding ``key_pe`` ``1xNxC`` and the
        prompt tokens ``point_embedding`` ``BxTxC`` -> tokens ``BxTxC`` (or the
        ``output_tokens`` among them) and image tokens ``BxNxC``.

        ``first_projections``: the first block's
        :meth:`~backend.model.transformer.TwoWayAttentionBlock.image_projections`
        of ``keys`` (used by the fast path only).
        """
        if self.can_fold():
            return super().forward_tokens(keys, key_pe, point_embedding, first_projections, output_tokens)
        queries, keys = reference_forward(self, keys, key_pe, point_embedding)
        if output_tokens is not None:
            queries = queries[:, output_tokens]
        return queries, keys


def reference_forward(
    transformer: TwoWayTransformer, keys: Tensor, key_pe: Tensor, point_embedding: Tensor
) -> tuple[Tensor, Tensor]:
    """The two-way transformer as Meta writes it, calling every submodule.

    Args:
        transformer: Its blocks, final attention and norm are called.
        keys: ``(1|B)xNxC`` image tokens.
        key_pe: ``1xNxC`` their positional encoding.
        point_embedding: ``BxTxC`` prompt tokens (also their positional encoding).

    Returns:
        Tokens ``BxTxC`` and image tokens ``BxNxC``.
    """
    queries = point_embedding
    query_pe = point_embedding
    for layer in (cast(TwoWayAttentionBlock, m) for m in transformer.layers):
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q, q, queries)
        queries = layer.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = layer.norm2(queries + layer.cross_attn_token_to_image(q, k, keys))
        queries = layer.norm3(queries + layer.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = layer.norm4(keys + layer.cross_attn_image_to_token(k, q, queries))
    q, k = queries + query_pe, keys + key_pe
    final = cast(Attention, transformer.final_attn_token_to_image)
    queries = transformer.norm_final_attn(queries + final(q, k, keys))
    if keys.shape[0] != queries.shape[0]:
        keys = keys.expand(queries.shape[0], -1, -1)
    return queries, keys
