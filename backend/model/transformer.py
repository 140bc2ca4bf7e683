"""SAM's two-way transformer: prompt tokens and image tokens attend to each other."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose q/k/v projections may shrink the width by ``downsample_rate``."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def heads(self, x: Tensor) -> Tensor:
        """B x N x (heads d) -> B x heads x N x d."""
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attention of already projected, head-split ``q, k, v``; returns B x Nq x C.

        Batch dimensions of size 1 broadcast against the others.
        """
        if q.shape[0] != k.shape[0] and k.shape[0] == 1:
            # Shared keys: fold the query batch into the query length (no copies).
            b, h, t, d = q.shape
            out = F.scaled_dot_product_attention(q.transpose(0, 1).reshape(1, h, b * t, d), k, v)
            out = out.view(h, b, t, d).permute(1, 2, 0, 3)
        elif q.shape[0] != k.shape[0]:
            attn = torch.softmax((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5, dim=-1)
            out = (attn @ v).transpose(1, 2)
        else:
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        return self.out_proj(out.reshape(out.shape[0], out.shape[1], self.internal_dim))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self.attend(
            self.heads(self.q_proj(q)), self.heads(self.k_proj(k)), self.heads(self.v_proj(v))
        )


class TwoWayAttentionBlock(nn.Module):
    """Self-attention of the tokens, tokens -> image cross-attention, MLP, image -> tokens."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def image_projections(self, keys: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The prompt-independent projections of the image tokens, head-split.

        Returns ``k`` and ``v`` of the token -> image attention and ``q`` of the
        image -> token attention.
        """
        k_in = keys + key_pe
        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        return t2i.heads(t2i.k_proj(k_in)), t2i.heads(t2i.v_proj(keys)), i2t.heads(i2t.q_proj(k_in))

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        query_pe: Tensor,
        key_pe: Tensor,
        projections: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``queries``: BxTxC; ``keys``: (1|B)xNxC; ``key_pe``: 1xNxC.

        ``projections`` (from :meth:`image_projections` of these ``keys``) may be
        passed to skip recomputing them.
        """
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        if projections is None:
            projections = self.image_projections(keys, key_pe)
        k_t2i, v_t2i, q_i2t = projections

        t2i = self.cross_attn_token_to_image
        q = queries + query_pe
        queries = self.norm2(queries + t2i.attend(t2i.heads(t2i.q_proj(q)), k_t2i, v_t2i))
        queries = self.norm3(queries + self.mlp(queries))

        i2t = self.cross_attn_image_to_token
        q = queries + query_pe
        attn_out = i2t.attend(q_i2t, i2t.heads(i2t.k_proj(q)), i2t.heads(i2t.v_proj(queries)))
        keys = self.norm4(keys + attn_out)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks then a final token -> image attention."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim,
                num_heads,
                mlp_dim,
                attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        point_embedding: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Reference interface: ``image_embedding`` (1|B)xCxhxw, ``image_pe`` 1xCxhxw,
        ``point_embedding`` BxTxC. Returns tokens BxTxC and image tokens Bx(hw)xC."""
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        return self.forward_tokens(keys, key_pe, point_embedding)

    def forward_tokens(
        self,
        keys: Tensor,
        key_pe: Tensor,
        point_embedding: Tensor,
        first_projections: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """As :meth:`forward` on token layouts; ``first_projections`` are the first
        block's :meth:`TwoWayAttentionBlock.image_projections` of ``keys``."""
        queries = point_embedding
        for i, layer in enumerate(self.layers):
            queries, keys = layer(queries, keys, point_embedding, key_pe, first_projections if i == 0 else None)
        attn = self.final_attn_token_to_image
        queries = queries + attn(queries + point_embedding, keys + key_pe, keys)
        queries = self.norm_final_attn(queries)
        if keys.shape[0] != queries.shape[0]:  # depth 0 with a shared image
            keys = keys.expand(queries.shape[0], -1, -1)
        return queries, keys
