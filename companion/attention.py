"""Attention: a soft lookup. Each query scores every key, a softmax turns the scores into weights, and the output
is the weighted average of the values:

    weights = softmax(score(q, k_j)) over j,        out = sum_j weights_j v_j

Every attention here is called the same way, so a decoder or a Transformer block can take any of them:

    out, weights = attention(query (B, Tq, Dq), key (B, S, Dk), value (B, S, Dv), mask=None)
    # out (B, Tq, Dv); weights (B, Tq, S), or (B, heads, Tq, S) for MultiHeadAttention

``mask`` is bool and True where a query may attend (``companion.masks``), broadcastable to the weights; a 3-D mask
always means (B, Tq, S), so ``padding_mask`` (B, 1, S) and ``causal_mask`` (Tq, S) fit every module. A query with
nothing to attend to gets weights and output zero, never NaN. The weights are returned, never kept on the module.

The score functions: additive (Bahdanau et al. 2015) ``w_v^T tanh(W_q q + W_k k)``; Luong et al.'s (2015) dot
``q^T k``, general ``q^T W_a k`` and concat ``v_a^T tanh(W_a [q; k])``; and the scaled dot product of the
Transformer (Vaswani et al. 2017), ``q^T k / sqrt(d)``. ``scaled_dot_product_attention`` computes the last from
scratch (the teaching path, which returns the weights) or with ``torch.nn.functional.scaled_dot_product_attention``
(``fused=True``: the fast path, which never forms the weights and so returns None for them), behind one signature.
``MultiHeadAttention`` keeps ``torch.nn.MultiheadAttention``'s parameter names (``from_torch`` is one
``load_state_dict``) and splits into ``project`` and ``attend``, so a KV cache or a rotary encoding can step in
between.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from companion.checks import check_positive, check_rank, check_same_size, check_tensor
from companion.masks import check_mask, fully_masked


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last axis of ``scores`` that gives masked keys weight 0, and a fully masked row all zeros.

    Args:
        scores: (..., S) float.
        mask: bool, broadcastable to ``scores``, True where a key may be used; None allows every key.

    Returns:
        weights, the shape of ``scores``: each row sums to 1 over its allowed keys, or is all zeros if it has none.
    """
    if mask is None:
        return torch.softmax(scores, dim=-1)
    # exp(-inf) = 0: a masked key gets no weight, and the allowed keys' weights still sum to one.
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    # A row with every key masked is all -inf, and its softmax is 0/0 = NaN. It has nothing to attend to: zero it.
    return weights.masked_fill(~mask, 0.0)


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    score_bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    fused: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``softmax(q k^T / sqrt(d) + score_bias) v`` over the allowed keys, from scratch or with PyTorch's fused kernel.

    Args:
        query: (B, Tq, D) or (B, heads, Tq, D).
        key: (B, S, D) or (B, heads, S, D), the same rank as ``query``.
        value: (B, S, Dv) or (B, heads, S, Dv).
        mask: bool, True where a query may attend, broadcastable to (B, [heads,] Tq, S); a 3-D mask is (B, Tq, S)
            and applies to every head.
        score_bias: float, added to the scores before the softmax (a relative position bias, ALiBi), broadcastable
            like ``mask``.
        scale: the factor on ``q k^T``; ``1 / sqrt(D)`` if None.
        dropout_p: probability of dropping a weight (pass 0 when not training, as ``F.scaled_dot_product_attention``).
        fused: use ``torch.nn.functional.scaled_dot_product_attention``; it never forms the weights.

    Returns:
        ``(out, weights)``: out (B, [heads,] Tq, Dv), zero for a query with nothing to attend to; weights
        (B, [heads,] Tq, S) before dropout, or None when ``fused``.
    """
    _check_query_key_value(query, key, value, ranks=(3, 4), same_key_size=True)
    scores_shape = (*query.shape[:-1], key.shape[-2])  # (B, [heads,] Tq, S)
    mask = _aligned("mask", mask, scores_shape)
    score_bias = _aligned("score_bias", score_bias, scores_shape)
    if not 0 <= dropout_p < 1:
        raise ValueError(f"dropout_p must lie in [0, 1), got {dropout_p!r}")
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    if fused:
        return _fused_attention(query, key, value, mask, score_bias, scale, dropout_p), None

    scores = query @ key.transpose(-2, -1) * scale  # (B, [heads,] Tq, S)
    if score_bias is not None:
        scores = scores + score_bias
    weights = masked_softmax(scores, mask)  # (B, [heads,] Tq, S)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ value, weights  # (B, [heads,] Tq, Dv), (B, [heads,] Tq, S)


def _fused_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    score_bias: torch.Tensor | None,
    scale: float,
    dropout_p: float,
) -> torch.Tensor:
    """F.scaled_dot_product_attention with the course's masks; zero output where a query has nothing to attend."""
    empty = None
    if mask is not None:
        # Which backend returns what for a row with every key masked differs (NaN in some, zeros in others); let
        # such a row attend everywhere, then zero its output: the same answer, and a finite gradient, everywhere.
        empty = fully_masked(mask)  # (..., Tq or 1, 1)
        mask = mask | empty
    attn_mask = mask
    if score_bias is not None:
        attn_mask = score_bias if mask is None else score_bias.masked_fill(~mask, float("-inf"))
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)
    return out if empty is None else out.masked_fill(empty, 0.0)  # (B, [heads,] Tq, Dv)


class Attention(nn.Module):
    """Attention through a score function: ``out = softmax(score(query, key)) @ value`` over the allowed keys.

    A subclass defines ``score(query (B, Tq, Dq), key (B, S, Dk)) -> (B, Tq, S)``; everything else (checks, mask,
    softmax, weighted sum) is shared, so the score functions below differ only in their score.
    """

    def score(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """The score of every query against every key: (B, Tq, Dq), (B, S, Dk) -> (B, Tq, S)."""
        raise NotImplementedError

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend.

        Args:
            query: (B, Tq, Dq), e.g. a decoder's hidden state (Tq = 1 for one step).
            key: (B, S, Dk), e.g. the encoder's outputs.
            value: (B, S, Dv), often the same tensor as ``key``.
            mask: bool, broadcastable to (B, Tq, S), True where a query may attend (``padding_mask(lengths)``).

        Returns:
            ``(out, weights)``: out (B, Tq, Dv) and weights (B, Tq, S), each row summing to 1 over its allowed keys
            (zeros, and a zero output, for a query with none).
        """
        _check_query_key_value(query, key, value, ranks=(3,))
        _check_size("query", query, getattr(self, "query_size", None))
        _check_size("key", key, getattr(self, "key_size", None))
        mask = _aligned("mask", mask, (*query.shape[:-1], key.shape[1]))
        weights = masked_softmax(self.score(query, key), mask)  # (B, Tq, S)
        return weights @ value, weights  # (B, Tq, Dv), (B, Tq, S)


class AdditiveAttention(Attention):
    """Bahdanau's additive attention: ``score(q, k) = w_v^T tanh(W_q q + W_k k)``, a one-hidden-layer network.

    Query and key may have different sizes (a decoder state against bidirectional encoder outputs). Parameter names
    follow d2l's ``AdditiveAttention`` (``W_q``, ``W_k``, ``w_v``), so its weights load with one ``load_state_dict``.

    Args:
        query_size: Dq.
        key_size: Dk.
        hidden_size: H, the width of the scoring network.
    """

    def __init__(self, query_size: int, key_size: int, hidden_size: int) -> None:
        super().__init__()
        for name, size in (("query_size", query_size), ("key_size", key_size), ("hidden_size", hidden_size)):
            check_positive(name, size)
        self.query_size, self.key_size, self.hidden_size = query_size, key_size, hidden_size
        self.W_q = nn.Linear(query_size, hidden_size, bias=False)  # (H, Dq)
        self.W_k = nn.Linear(key_size, hidden_size, bias=False)  # (H, Dk)
        self.w_v = nn.Linear(hidden_size, 1, bias=False)  # (1, H)

    def score(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``w_v^T tanh(W_q q + W_k k)`` for every (query, key) pair: (B, Tq, Dq), (B, S, Dk) -> (B, Tq, S)."""
        # Every query against every key by broadcasting: (B, Tq, 1, H) + (B, 1, S, H).
        features = torch.tanh(self.W_q(query)[:, :, None] + self.W_k(key)[:, None])  # (B, Tq, S, H)
        return self.w_v(features).squeeze(-1)  # (B, Tq, S)


class DotProductAttention(Attention):
    """Dot-product attention: ``score(q, k) = q^T k``, divided by ``sqrt(d)`` when ``scaled`` (the Transformer's).

    Luong's "dot" score is the unscaled one. No parameters: queries and keys must have the same size d.

    Args:
        scaled: divide the scores by ``sqrt(d)``, which keeps their variance near 1 whatever d is.
    """

    def __init__(self, scaled: bool = True) -> None:
        super().__init__()
        self.scaled = scaled

    def score(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``q^T k`` (over ``sqrt(d)`` if scaled): (B, Tq, d), (B, S, d) -> (B, Tq, S)."""
        check_same_size("key", key, 2, "query's last dimension", query.shape[2])
        scores = query @ key.transpose(1, 2)  # (B, Tq, S)
        return scores / math.sqrt(query.shape[2]) if self.scaled else scores


class GeneralAttention(Attention):
    """Luong's "general" attention: ``score(q, k) = q^T W_a k``, a learned bilinear form.

    Args:
        query_size: Dq.
        key_size: Dk.
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        check_positive("query_size", query_size)
        check_positive("key_size", key_size)
        self.query_size, self.key_size = query_size, key_size
        self.W_a = nn.Linear(key_size, query_size, bias=False)  # (Dq, Dk)

    def score(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``q^T W_a k``: (B, Tq, Dq), (B, S, Dk) -> (B, Tq, S)."""
        # Map the keys into the query space once (not once per query), then take dot products.
        return query @ self.W_a(key).transpose(1, 2)  # (B, Tq, S)


class ConcatAttention(Attention):
    """Luong's "concat" attention: ``score(q, k) = v_a^T tanh(W_a [q; k])``.

    ``W_a [q; k]`` is ``W_a``'s first Dq columns applied to q plus its last Dk columns applied to k, so this is
    Bahdanau's additive score with ``W_a = [W_q, W_k]`` (tested); it is computed that way, without forming the
    concatenation for every (query, key) pair.

    Args:
        query_size: Dq.
        key_size: Dk.
        hidden_size: H.
    """

    def __init__(self, query_size: int, key_size: int, hidden_size: int) -> None:
        super().__init__()
        for name, size in (("query_size", query_size), ("key_size", key_size), ("hidden_size", hidden_size)):
            check_positive(name, size)
        self.query_size, self.key_size, self.hidden_size = query_size, key_size, hidden_size
        self.W_a = nn.Linear(query_size + key_size, hidden_size, bias=False)  # (H, Dq + Dk)
        self.v_a = nn.Linear(hidden_size, 1, bias=False)  # (1, H)

    def score(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``v_a^T tanh(W_a [q; k])`` for every pair: (B, Tq, Dq), (B, S, Dk) -> (B, Tq, S)."""
        w_query, w_key = self.W_a.weight.split([self.query_size, self.key_size], dim=1)  # (H, Dq), (H, Dk)
        features = torch.tanh((query @ w_query.T)[:, :, None] + (key @ w_key.T)[:, None])  # (B, Tq, S, H)
        return self.v_a(features).squeeze(-1)  # (B, Tq, S)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Cut the features into heads: (B, T, heads * d) -> (B, heads, T, d). Head h gets features h*d .. (h+1)*d - 1."""
    check_rank("x", x, 3, "(batch, time, features)")
    if x.shape[2] % num_heads:
        raise ValueError(f"x's {x.shape[2]} features (shape {tuple(x.shape)}) do not split into {num_heads} heads")
    batch, time, _ = x.shape
    return x.reshape(batch, time, num_heads, -1).transpose(1, 2)  # (B, heads, T, d)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Undo ``split_heads``: (B, heads, T, d) -> (B, T, heads * d), the heads side by side."""
    check_rank("x", x, 4, "(batch, heads, time, head_dim)")
    batch, heads, time, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, time, heads * head_dim)  # (B, T, heads * d)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with ``torch.nn.MultiheadAttention``'s constructor and parameter names, batch-first.

    Queries, keys and values are projected to ``embed_dim`` features, cut into ``num_heads`` heads of
    ``embed_dim // num_heads`` each, every head runs scaled dot-product attention on its own, and ``out_proj`` mixes
    the heads' outputs. With ``kdim = vdim = embed_dim`` the three projections are one ``in_proj_weight``
    (3 E, E), else ``q_proj_weight``, ``k_proj_weight`` and ``v_proj_weight``, exactly as in torch.

    Args:
        embed_dim: E, the size of the queries and of the output.
        num_heads: heads; must divide E.
        dropout: probability of dropping an attention weight while training.
        bias: add biases to the projections (``in_proj_bias`` (3 E,) and ``out_proj.bias``).
        kdim: the size of the keys; E if None.
        vdim: the size of the values; E if None.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
    ) -> None:
        super().__init__()
        check_positive("embed_dim", embed_dim)
        check_positive("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.same_dims = self.kdim == embed_dim and self.vdim == embed_dim
        if self.same_dims:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))  # (3E, E): W_q; W_k; W_v
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.register_parameter("in_proj_weight", None)
            self.q_proj_weight = nn.Parameter(torch.empty(embed_dim, embed_dim))  # (E, E)
            self.k_proj_weight = nn.Parameter(torch.empty(embed_dim, self.kdim))  # (E, kdim)
            self.v_proj_weight = nn.Parameter(torch.empty(embed_dim, self.vdim))  # (E, vdim)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))  # (3E,)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # mixes the heads
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: Xavier-uniform projections, zero biases (``out_proj.weight`` as ``nn.Linear``)."""
        for weight in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            if weight is not None:
                nn.init.xavier_uniform_(weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def extra_repr(self) -> str:
        """The sizes, shown by ``print(module)``."""
        dims = "" if self.same_dims else f", kdim={self.kdim}, vdim={self.vdim}"
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}{dims}"

    def project(
        self, query: torch.Tensor | None, key: torch.Tensor | None, value: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Project and split into heads: (B, Tq, E), (B, S, kdim), (B, S, vdim) -> (B, heads, Tq | S, d) each.

        Any of the three may be None and comes back None: a decoder that cached the projected encoder keys and
        values projects only its new query, ``q, _, _ = attention.project(x, None, None)``.
        """
        inputs = (query, key, value)
        return tuple(None if x is None else self._project(index, x) for index, x in enumerate(inputs))

    def _project(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Project input ``index`` (0 query, 1 key, 2 value): (B, T, D) -> (B, heads, T, d)."""
        name, size_name, size = (
            ("query", "embed_dim", self.embed_dim),
            ("key", "kdim", self.kdim),
            ("value", "vdim", self.vdim),
        )[index]
        check_rank(name, x, 3, "(batch, time, features)")
        check_same_size(name, x, 2, size_name, size)
        if self.same_dims:
            weight = self.in_proj_weight.chunk(3)[index]  # (E, E): rows index*E .. (index+1)*E - 1
        else:
            weight = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[index]  # (E, size)
        bias = None if self.in_proj_bias is None else self.in_proj_bias.chunk(3)[index]  # (E,)
        return split_heads(F.linear(x, weight, bias), self.num_heads)  # (B, heads, T, d)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        score_bias: torch.Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention within each head, then ``out_proj`` over the merged heads.

        Args:
            q: (B, heads, Tq, d), from ``project`` (maybe rotated by a rotary encoding).
            k: (B, heads, S, d), maybe with cached keys in front of the new ones.
            v: (B, heads, S, d).
            mask: bool, True where a query may attend: (Tq, S), (B, Tq, S) for every head, or (B, heads, Tq, S).
            score_bias: float, added to the scores, broadcastable like ``mask`` (a relative position bias, ALiBi).
            need_weights: False takes the fused kernel and returns None for the weights, as torch does.

        Returns:
            ``(out, weights)``: out (B, Tq, E); weights (B, heads, Tq, S) per head (torch averages them unless asked
            not to), before dropout, or None. A query with nothing to attend to gets zeros from every head, which
            ``out_proj`` turns into its bias (torch's module returns NaN there).
        """
        for name, tensor in (("q", q), ("k", k), ("v", v)):
            check_rank(name, tensor, 4, "(batch, heads, time, head_dim)")
            check_same_size(name, tensor, 1, "num_heads", self.num_heads)
            check_same_size(name, tensor, 3, "head_dim", self.head_dim)
        out, weights = scaled_dot_product_attention(
            q,
            k,
            v,
            mask,
            score_bias=score_bias,
            dropout_p=self.dropout if self.training else 0.0,
            fused=not need_weights,
        )  # (B, heads, Tq, d), (B, heads, Tq, S)
        return self.out_proj(merge_heads(out)), weights  # (B, Tq, E)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        score_bias: torch.Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend: ``attend(*project(query, key, value), mask)``.

        Args:
            query: (B, Tq, E).
            key: (B, S, kdim).
            value: (B, S, vdim).
            mask: bool, True where a query may attend, broadcastable to (B, heads, Tq, S); (Tq, S) and (B, Tq, S)
                masks apply to every head (``padding_mask``, ``causal_mask``, ``combine_masks``).
            score_bias: float, added to every head's scores, broadcastable like ``mask``.
            need_weights: False takes the fused kernel (``F.scaled_dot_product_attention``) and returns None.

        Returns:
            ``(out, weights)``: out (B, Tq, E), weights (B, heads, Tq, S) or None.
        """
        _check_query_key_value(query, key, value, ranks=(3,))
        q, k, v = self.project(query, key, value)  # (B, heads, Tq | S, d) each
        return self.attend(q, k, v, mask, score_bias=score_bias, need_weights=need_weights)

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of ``module`` (a ``torch.nn.MultiheadAttention``, either ``batch_first``), on its device and dtype."""
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"module must be a torch.nn.MultiheadAttention, got {type(module).__name__}")
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("torch.nn.MultiheadAttention with add_bias_kv or add_zero_attn cannot be copied")
        copy = cls(
            module.embed_dim,
            module.num_heads,
            module.dropout,
            bias=module.in_proj_bias is not None,
            kdim=module.kdim,
            vdim=module.vdim,
        )
        first = next(module.parameters())
        copy.to(device=first.device, dtype=first.dtype)
        copy.load_state_dict(module.state_dict())  # the same names: in_proj_weight, in_proj_bias, out_proj.*
        return copy


def _check_query_key_value(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, ranks: tuple[int, ...], same_key_size: bool = False
) -> None:
    """Tensors of one rank in ``ranks``, one batch (and heads), as many values as keys, and a non-empty batch."""
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, tensor)
    layout = "(batch, time, features)" if ranks == (3,) else "(batch, [heads,] time, features)"
    if query.dim() not in ranks:
        raise ValueError(
            f"query must have {' or '.join(map(str, ranks))} dimensions {layout}, got {tuple(query.shape)}"
        )
    for name, tensor in (("key", key), ("value", value)):
        check_rank(name, tensor, query.dim(), layout)
        for dim in range(query.dim() - 2):
            check_same_size(name, tensor, dim, f"query's dimension {dim}", query.shape[dim])
    check_same_size("value", value, -2, "key's length", key.shape[-2])
    if same_key_size:
        check_same_size("key", key, -1, "query's last dimension", query.shape[-1])
    if query.shape[0] == 0:
        raise ValueError(f"query is an empty batch (shape {tuple(query.shape)}); expected at least one sequence")


def _check_size(name: str, tensor: torch.Tensor, size: int | None) -> None:
    if size is not None:
        check_same_size(name, tensor, 2, f"the module's {name}_size", size)


def _aligned(name: str, tensor: torch.Tensor | None, scores_shape: tuple[int, ...]) -> torch.Tensor | None:
    """A mask or bias checked against the scores' shape; a 3-D one is (B, Tq, S) and gains the head axis."""
    if tensor is None:
        return None
    if tensor.dim() == 3 and len(scores_shape) == 4:
        tensor = tensor[:, None]  # (B, 1, Tq, S): the same for every head
    if name == "mask":
        check_mask(name, tensor, scores_shape)
    else:
        check_tensor(name, tensor)
        if not tensor.dtype.is_floating_point:
            raise TypeError(f"{name} must be a float tensor added to the scores, got dtype {tensor.dtype}")
        try:
            fits = torch.broadcast_shapes(tensor.shape, scores_shape) == tuple(scores_shape)
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, which does not broadcast to {scores_shape}")
    return tensor
