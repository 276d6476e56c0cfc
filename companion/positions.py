"""Position information for attention, which on its own cannot tell one order of its inputs from another.

Three ways to put it in, five encodings:

* **added to the inputs** (absolute): ``SinusoidalPositions`` (Vaswani et al. 2017), a fixed table with
  ``P[t, 2i] = sin(t w_i)``, ``P[t, 2i+1] = cos(t w_i)``, ``w_i = base^(-2i/d)``; ``LearnedPositions``, a trained
  table (GPT-2, BERT). Call ``x + positions.encodings(T, offset)`` or just ``positions(x, offset)``.
* **added to the scores** (relative): ``RelativePositionBias``, one learned number per head and clipped distance
  ``j - i`` (Shaw et al. 2018; T5 buckets the distances instead); ``ALiBi`` (Press et al. 2022), a fixed penalty
  ``-m_h |i - j|`` with one slope per head. Both return a (1, heads, Tq, S) ``score_bias`` for the attention.
* **rotating queries and keys** (relative, through absolute rotations): ``RotaryEmbedding`` (RoPE, Su et al. 2021)
  turns each pair of features (2i, 2i+1) of a query or key at position t by the angle ``t w_i``, so that the score
  of a query at m with a key at n depends on m - n only. Apply it to the projected heads, before ``attend``.

Every encoding takes an ``offset``, the position of the first element (a KV cache asks for position t alone), and
raises ``PositionTableError`` for a position past its ``max_length`` instead of silently wrapping around or reading
out of bounds. The sinusoid and RoPE share one table of angles ``t w_i`` (``position_angles``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from companion.checks import check_positive, check_same_size, check_tensor


class PositionTableError(IndexError):
    """A position at or past an encoding's ``max_length`` was asked for: build the encoding with a larger table."""


def position_angles(length: int, dim: int, base: float = 10000.0, offset: int = 0) -> torch.Tensor:
    """The angles ``t * w_i`` for t = offset .. offset + length - 1 and ``w_i = base^(-2i / dim)``: (length, dim // 2).

    Frequency i turns once every ``2 pi / w_i`` positions: from once every 6.3 positions (i = 0) to once every
    ``2 pi base`` positions (the last pair), a geometric ladder of wavelengths.
    """
    _check_even_dim(dim)
    frequencies = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,) w_i
    positions = torch.arange(offset, offset + length, dtype=torch.float64)  # (T,)
    return positions[:, None] * frequencies[None, :]  # (T, dim/2)


class SinusoidalPositions(nn.Module):
    """The fixed sinusoidal table of the Transformer, added to the inputs: ``x_t + P[t]``.

    Interleaved as in the paper (and d2l's ``PositionalEncoding``): ``P[t, 2i] = sin(t w_i)``,
    ``P[t, 2i + 1] = cos(t w_i)``. For every shift k there is one fixed linear map (a rotation of each pair by
    ``k w_i``) with ``P[t + k] = M_k P[t]`` for all t: the property that lets attention read relative positions.

    Args:
        dim: D, the size of the inputs (even).
        max_length: the number of positions in the table.
        base: the longest wavelength is ``2 pi base``.
    """

    def __init__(self, dim: int, max_length: int = 1024, base: float = 10000.0) -> None:
        super().__init__()
        check_positive("max_length", max_length)
        check_positive("base", base)
        self.dim, self.max_length, self.base = dim, max_length, base
        theta = position_angles(max_length, dim, base)  # (max_length, D/2)
        table = torch.stack([theta.sin(), theta.cos()], dim=-1).flatten(1)  # (max_length, D): sin, cos, sin, ...
        # A buffer, not a parameter: it moves with .to(device) but is never trained, and not saved (it is recomputed).
        self.register_buffer("table", table.float(), persistent=False)

    def extra_repr(self) -> str:
        """The sizes, shown by ``print(module)``."""
        return f"dim={self.dim}, max_length={self.max_length}, base={self.base}"

    def encodings(self, length: int, offset: int = 0) -> torch.Tensor:
        """The rows for positions offset .. offset + length - 1: (length, D)."""
        _check_range(self, length, offset)
        return self.table[offset : offset + length]  # (T, D)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``x + P``: (B, T, D) inputs at positions offset .. offset + T - 1 -> (B, T, D)."""
        _check_inputs(x, self.dim)
        return x + self.encodings(x.shape[-2], offset).to(x.dtype)  # (B, T, D)


class LearnedPositions(nn.Module):
    """A trained table of position vectors, added to the inputs: ``x_t + E[t]`` (GPT-2, BERT).

    A row is trained only if some training sequence reaches its position: rows past the training length keep their
    random initial values, which is why learned positions do not extrapolate.

    Args:
        max_length: the number of positions in the table.
        dim: D, the size of the inputs.
    """

    def __init__(self, max_length: int, dim: int) -> None:
        super().__init__()
        check_positive("max_length", max_length)
        check_positive("dim", dim)
        self.max_length, self.dim = max_length, dim
        self.embedding = nn.Embedding(max_length, dim)  # (max_length, D)

    def encodings(self, length: int, offset: int = 0) -> torch.Tensor:
        """The rows for positions offset .. offset + length - 1: (length, D)."""
        _check_range(self, length, offset)
        return self.embedding.weight[offset : offset + length]  # (T, D)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``x + E``: (B, T, D) inputs at positions offset .. offset + T - 1 -> (B, T, D)."""
        _check_inputs(x, self.dim)
        return x + self.encodings(x.shape[-2], offset)  # (B, T, D)


class RelativePositionBias(nn.Module):
    """A learned score bias per head and relative distance ``j - i``, clipped to ``[-max_distance, max_distance]``.

    ``score(i, j) += b_h[clip(j - i)]``: query i and key j are as far apart wherever they sit, so what the model
    learns about a distance holds at every position. Distances beyond ``max_distance`` share the outermost entry.
    The table starts at zero, so an untrained model starts with no preference for any distance.

    Args:
        num_heads: one bias table per head.
        max_distance: K, the largest distance with an entry of its own (the table has 2 K + 1 entries).
        max_length: the largest position the encoding accepts.
    """

    def __init__(self, num_heads: int, max_distance: int, max_length: int = 1024) -> None:
        super().__init__()
        for name, value in (("num_heads", num_heads), ("max_distance", max_distance), ("max_length", max_length)):
            check_positive(name, value)
        self.num_heads, self.max_distance, self.max_length = num_heads, max_distance, max_length
        self.bias = nn.Embedding(2 * max_distance + 1, num_heads)  # (2K + 1, heads): distance -K .. K
        nn.init.zeros_(self.bias.weight)

    def forward(self, query_length: int, key_length: int | None = None, offset: int | None = None) -> torch.Tensor:
        """The bias for queries at positions offset .. offset + Tq - 1 and keys at 0 .. S - 1: (1, heads, Tq, S).

        ``key_length`` defaults to ``query_length`` and ``offset`` to ``S - Tq`` (the queries are the last
        positions, as in ``causal_mask``): a KV cache with t keys asks ``bias(1, t)``.
        """
        distance = _distances(self, query_length, key_length, offset)  # (Tq, S)
        clipped = distance.clamp(-self.max_distance, self.max_distance) + self.max_distance  # (Tq, S) in 0 .. 2K
        return self.bias(clipped).permute(2, 0, 1)[None]  # (1, heads, Tq, S)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi's slopes, one per head: (heads,).

    For n heads, n a power of two, the geometric sequence ``2^(-8/n), 2^(-16/n), ..., 2^(-8)``. Otherwise the
    slopes of the largest power of two below n, then every other slope of twice that power, as in the paper's code.
    """
    check_positive("num_heads", num_heads)

    def geometric(n: int) -> list[float]:
        return [2 ** (-8 * (h + 1) / n) for h in range(n)]

    power = 2 ** math.floor(math.log2(num_heads))
    slopes = geometric(power) + geometric(2 * power)[0::2][: num_heads - power]
    return torch.tensor(slopes)  # (heads,)


class ALiBi(nn.Module):
    """Attention with linear biases: a fixed penalty ``-m_h |i - j|`` on the scores, a different slope per head.

    Nothing is learned. Steep heads look at the last few positions, shallow ones far back; a distance never seen
    in training is penalised like the others, which is what lets ALiBi extrapolate. With a causal mask only
    ``j <= i`` is used and the bias is the paper's ``m_h (j - i)``.

    Args:
        num_heads: heads, each with its own slope (``alibi_slopes``).
        max_length: the largest position the encoding accepts (ALiBi itself has no table: any size costs nothing).
    """

    def __init__(self, num_heads: int, max_length: int = 1024) -> None:
        super().__init__()
        check_positive("max_length", max_length)
        self.num_heads, self.max_length = num_heads, max_length
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)  # (heads,), fixed

    def forward(self, query_length: int, key_length: int | None = None, offset: int | None = None) -> torch.Tensor:
        """The bias for queries at offset .. offset + Tq - 1 and keys at 0 .. S - 1: (1, heads, Tq, S).

        Defaults as in ``RelativePositionBias``: S = Tq, offset = S - Tq.
        """
        distance = _distances(self, query_length, key_length, offset, device=self.slopes.device)  # (Tq, S)
        penalty = -self.slopes[:, None, None] * distance.abs().to(self.slopes.dtype)  # (heads, Tq, S)
        return penalty[None]  # (1, heads, Tq, S)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE): turn each feature pair (2i, 2i+1) of a query or key at t by ``t w_i``.

    A rotation keeps lengths, and rotating q by m and k by n changes their dot product only through ``n - m``:
    ``(R_m q) . (R_n k) = q . R_{n-m} k``. Apply it to the projected queries and keys (not the values) of every
    head, before the dot product. Pairs are adjacent features, as in the paper (some libraries pair i with i + d/2).

    Args:
        dim: d, the size of each head's queries and keys (even).
        max_length: the number of positions in the table.
        base: as in ``SinusoidalPositions``; the same angles.
    """

    def __init__(self, dim: int, max_length: int = 1024, base: float = 10000.0) -> None:
        super().__init__()
        check_positive("max_length", max_length)
        check_positive("base", base)
        self.dim, self.max_length, self.base = dim, max_length, base
        theta = position_angles(max_length, dim, base)  # (max_length, d/2)
        # Fixed tables, moved with the module, recomputed rather than saved.
        self.register_buffer("cos", theta.cos().float(), persistent=False)
        self.register_buffer("sin", theta.sin().float(), persistent=False)

    def extra_repr(self) -> str:
        """The sizes, shown by ``print(module)``."""
        return f"dim={self.dim}, max_length={self.max_length}, base={self.base}"

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Rotate ``x`` (..., T, d), whose step t sits at position offset + t: returns the same shape."""
        _check_inputs(x, self.dim, layout="(..., time, head_dim)", min_rank=2)
        length = x.shape[-2]
        _check_range(self, length, offset)
        cos = self.cos[offset : offset + length].to(x.dtype)  # (T, d/2)
        sin = self.sin[offset : offset + length].to(x.dtype)  # (T, d/2)
        even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, d/2): the two coordinates of each pair
        # The 2-D rotation by angle t w_i of every pair (even, odd).
        turned = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)  # (..., T, d/2, 2)
        return turned.flatten(-2)  # (..., T, d): pairs back side by side


def _check_even_dim(dim: int) -> None:
    check_positive("dim", dim)
    if dim % 2:
        raise ValueError(f"dim must be even (the features come in sin/cos or rotation pairs), got {dim}")


def _check_inputs(x: torch.Tensor, dim: int, layout: str = "(batch, time, features)", min_rank: int = 3) -> None:
    check_tensor("x", x)
    if x.dim() < min_rank:
        raise ValueError(f"x must have at least {min_rank} dimensions {layout}, got shape {tuple(x.shape)}")
    check_same_size("x", x, -1, "the encoding's dim", dim)


def _check_range(encoding: nn.Module, length: int, offset: int) -> None:
    """Raise ``PositionTableError`` unless positions offset .. offset + length - 1 lie inside the table."""
    name = type(encoding).__name__
    for label, value in (("length", length), ("offset", offset)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: {label} must be a non-negative int, got {value!r}")
    if offset + length > encoding.max_length:
        raise PositionTableError(
            f"{name} holds positions 0 .. {encoding.max_length - 1} (max_length={encoding.max_length}), but "
            f"positions {offset} .. {offset + length - 1} were asked for (offset {offset}, length {length}); "
            "build it with a larger max_length"
        )


def _distances(
    encoding: nn.Module,
    query_length: int,
    key_length: int | None,
    offset: int | None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Key position minus query position, (Tq, S) long, after checking every position against the table."""
    key_length = query_length if key_length is None else key_length
    offset = key_length - query_length if offset is None else offset
    if device is None:
        device = next(encoding.parameters()).device
    _check_range(encoding, query_length, offset)
    _check_range(encoding, key_length, 0)
    queries = torch.arange(offset, offset + query_length, device=device)  # (Tq,)
    keys = torch.arange(key_length, device=device)  # (S,)
    return keys[None, :] - queries[:, None]  # (Tq, S)
