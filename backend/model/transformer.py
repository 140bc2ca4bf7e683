"""SAM's two-way transformer: prompt tokens and image tokens attend to each other."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLPBlock
from .plain_modules import calls_are_plain
from .token_products import add_to_tokens, pool_tokens, scores_against_tokens


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
        return self.attend(self.heads(self.q_proj(q)), self.heads(self.k_proj(k)), self.heads(self.v_proj(v)))


class TwoWayAttentionBlock(nn.Module):
    """Self-attention of the tokens, tokens -> image cross-attention, MLP, image -> tokens.

    With few tokens (``heads x tokens <= internal width``, e.g. up to 16 tokens
    at SAM's sizes) the two cross-attentions are evaluated with the projections
    folded into the token side, so that the image tokens (N = 4096) only meet
    ``N x C x (heads tokens)`` matrix products instead of full projections; the
    result is the same function up to floating-point rounding.
    """

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

    def _projections_are_plain(self) -> bool:
        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        return calls_are_plain(
            t2i.q_proj, t2i.k_proj, t2i.v_proj, t2i.out_proj, i2t.q_proj, i2t.k_proj, i2t.v_proj, i2t.out_proj
        )

    def image_projections(self, keys: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The prompt-independent projections of the image tokens ``keys`` (1xNxC).

        Returns ``k`` and ``v`` of the token -> image attention (head-split,
        1 x heads x N x d) and ``q`` of the image -> token attention (1 x N x Ci).
        """
        k_in = keys + key_pe
        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        k = t2i.heads(t2i.k_proj(k_in)).contiguous()
        v = t2i.heads(t2i.v_proj(keys)).contiguous()
        return k, v, i2t.q_proj(k_in)

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        query_pe: Tensor,
        key_pe: Tensor,
        projections: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``queries``: BxTxC; ``keys``: (1|B)xNxC (1 = shared by all prompts); ``key_pe``: 1xNxC.

        ``projections`` (:meth:`image_projections` of these ``keys``) may be
        passed to skip recomputing them. Returns queries BxTxC, keys BxNxC.
        """
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        # folding reads the projections' weights: only while they are plain Linear layers
        fold = t2i.num_heads * queries.shape[1] <= t2i.internal_dim and self._projections_are_plain()
        k_in = None
        if projections is None and not fold:
            projections = self.image_projections(keys, key_pe)

        q = queries + query_pe
        if projections is not None:
            attn_out = t2i.attend(t2i.heads(t2i.q_proj(q)), projections[0], projections[1])
        else:
            k_in = keys + key_pe
            attn_out = token_to_image_folded(t2i, q, k_in, keys)
        queries = self.norm2(queries + attn_out)
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        if fold:
            kt = i2t.k_proj(q)
            if projections is not None:
                scores = image_to_token_scores_projected(i2t, projections[2], kt)
            else:
                scores = image_to_token_scores_folded(i2t, k_in if k_in is not None else keys + key_pe, kt)
            keys = image_to_token_output_folded(i2t, scores, i2t.v_proj(queries), keys)
        else:
            assert projections is not None
            k = i2t.heads(i2t.k_proj(q))
            v = i2t.heads(i2t.v_proj(queries))
            q_img = i2t.heads(projections[2])
            keys = keys + i2t.attend(q_img, k, v)
        keys = self.norm4(keys)
        return queries, keys


def token_to_image_folded(attn: Attention, q: Tensor, k_in: Tensor, v_in: Tensor) -> Tensor:
    """``attn(q, k_in, v_in)`` for few queries (BxTxC) and many keys ((1|B)xNxC).

    Scores ``(q W_q^T + b_q)_h (k_in W_k^T + b_k)_h^T`` are computed as
    ``((q W_q^T + b_q)_h W_k,h) k_in^T`` (the ``b_k`` term is constant along the
    softmax axis and drops out) and the values as ``(P_h v_in) W_v,h^T + b_v``
    (the rows of ``P_h`` sum to one).
    """
    B, T, C = q.shape
    H = attn.num_heads
    d = attn.internal_dim // H
    qp = attn.q_proj(q).view(B, T, H, d) * d**-0.5
    a = torch.einsum("bthd,hdc->bhtc", qp, attn.k_proj.weight.view(H, d, C)).reshape(B, H * T, C)
    probs = torch.softmax(scores_against_tokens(a, k_in), dim=-1)  # B x (H T) x N
    z = pool_tokens(probs, v_in).view(B, H, T, C)
    out = torch.einsum("bhtc,hdc->bthd", z, attn.v_proj.weight.view(H, d, C)).reshape(B, T, H * d)
    return attn.out_proj(out + attn.v_proj.bias)


def image_to_token_scores_folded(attn: Attention, q_in: Tensor, kt: Tensor) -> Tensor:
    """Scores of many image queries ``q_in`` ((1|B)xNxC) against projected token keys
    ``kt`` (BxTxCi), with the query projection folded into the keys.

    Returned transposed, B x (H T) x N (with shared image queries a strided view,
    see :func:`scores_against_tokens`); the softmax over the few tokens is then
    taken with the long N axis contiguous.
    """
    B, T, _ = kt.shape
    H = attn.num_heads
    d = attn.internal_dim // H
    C = q_in.shape[-1]
    kh = kt.view(B, T, H, d) * d**-0.5
    g = torch.einsum("bthd,hdc->bhtc", kh, attn.q_proj.weight.view(H, d, C)).reshape(B, H * T, C)
    c = torch.einsum("bthd,hd->bht", kh, attn.q_proj.bias.view(H, d)).reshape(B, H * T, 1)
    return scores_against_tokens(g, q_in, c)


def image_to_token_scores_projected(attn: Attention, q_img: Tensor, kt: Tensor) -> Tensor:
    """Scores of already projected image queries ``q_img`` ((1|B)xNxCi) against token keys
    ``kt`` (BxTxCi): B x (H T) x N (transposed), one product per head.

    Each head's product has only ``d = Ci / H`` terms per score; with shared image
    queries the B prompts' tokens go into one product per head.
    """
    B, T, Ci = kt.shape
    H = attn.num_heads
    d = Ci // H
    kh = (kt.view(B, T, H, d) * d**-0.5).permute(2, 0, 1, 3)  # H x B x T x d
    if q_img.shape[0] == 1:
        qh = q_img[0].view(-1, H, d).permute(1, 2, 0)  # H x d x N (a view)
        scores = torch.bmm(kh.reshape(H, B * T, d), qh)  # H x (B T) x N
        return scores.view(H, B, T, -1).transpose(0, 1).reshape(B, H * T, -1)
    qh = q_img.view(B, -1, H, d).permute(0, 2, 3, 1)  # B x H x d x N
    return torch.matmul(kh.transpose(0, 1), qh).reshape(B, H * T, -1)


def image_to_token_output_folded(attn: Attention, scores_t: Tensor, vt: Tensor, keys: Tensor) -> Tensor:
    """``keys + out_proj(softmax(scores) @ v)`` with ``out_proj`` folded into the token values.

    ``scores_t``: B x (H T) x N (transposed scores); ``vt``: BxTxCi projected token
    values; ``keys``: (1|B)xNxC. The output bias is spread over the heads (each
    head's probabilities sum to one).
    """
    B, HT, N = scores_t.shape
    H = attn.num_heads
    T = HT // H
    d = attn.internal_dim // H
    C = attn.embedding_dim
    # The softmax over the few tokens is fast with N contiguous (a copy when it is not).
    probs_t = torch.softmax(scores_t.contiguous().view(B, H, T, N), dim=2).view(B, HT, N)
    u = torch.einsum("bthd,chd->bhtc", vt.view(B, T, H, d), attn.out_proj.weight.view(C, H, d))
    u = (u + attn.out_proj.bias / H).reshape(B, HT, C)
    return add_to_tokens(keys, probs_t, u)


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

    def first_layer_projection_modules(self) -> list[nn.Module]:
        """The modules :meth:`first_layer_projections` calls (see
        :meth:`TwoWayAttentionBlock.image_projections`)."""
        if not self.layers:
            return []
        first: TwoWayAttentionBlock = self.layers[0]  # type: ignore[assignment]
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        return [t2i.k_proj, t2i.v_proj, i2t.q_proj]

    def first_layer_projections(self, keys: Tensor, key_pe: Tensor) -> tuple[Tensor, ...]:
        """The first block's :meth:`TwoWayAttentionBlock.image_projections` (``()`` with no blocks)."""
        if not self.layers:
            return ()
        first: TwoWayAttentionBlock = self.layers[0]  # type: ignore[assignment]
        return first.image_projections(keys, key_pe)

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
        output_tokens: list[int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """As :meth:`forward` on token layouts ``keys`` (1|B)xNxC, ``key_pe`` 1xNxC.

        ``first_projections`` are the first block's
        :meth:`TwoWayAttentionBlock.image_projections` of ``keys``; with
        ``output_tokens`` (indices) only those tokens are returned (the final
        attention is then computed for those only).
        """
        queries = point_embedding
        for i, layer in enumerate(self.layers):
            queries, keys = layer(
                queries, keys, point_embedding, key_pe, first_projections if i == 0 else None
            )
        if output_tokens is not None:
            queries = queries[:, output_tokens]
            point_embedding = point_embedding[:, output_tokens]
        attn = self.final_attn_token_to_image
        q = queries + point_embedding
        if attn.num_heads * q.shape[1] <= attn.internal_dim:
            attn_out = token_to_image_folded(attn, q, keys + key_pe, keys)
        else:
            attn_out = attn(q, keys + key_pe, keys)
        queries = self.norm_final_attn(queries + attn_out)
        if keys.shape[0] != queries.shape[0]:  # depth 0 with a shared image
            keys = keys.expand(queries.shape[0], -1, -1)
        return queries, keys
