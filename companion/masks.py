"""Attention masks, in one convention: a bool tensor that is **True where a query may attend to a key**.

That is what ``torch.nn.functional.scaled_dot_product_attention`` reads for a bool ``attn_mask``, and what every
attention module of the companion takes as ``mask``, broadcastable to the weights' shape (B, [heads,] Tq, S):

* ``lengths_to_mask(lengths)`` (B, S): which positions of a padded batch are real (recurrent layers, losses);
* ``padding_mask(lengths)`` (B, 1, S): every query may use the real keys of its own sequence, none of its padding;
* ``causal_mask(Tq, S)`` (Tq, S): query i may use keys up to its own position, never a later one;
* ``combine_masks(a, b, ...)``: a position may be used only where every mask allows it (logical AND).

``torch.nn.MultiheadAttention`` and ``torch.nn.Transformer`` read the opposite convention, True where a key must be
*ignored*; ``to_key_padding_mask`` and ``to_attn_mask`` are the one place where the course flips a mask for them.
"""

from __future__ import annotations

import torch

from companion.checks import check_lengths, check_rank, check_tensor


def lengths_to_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Mask of real positions: (batch, max_length) bool with ``mask[b, t] = t < lengths[b]``."""
    check_lengths(lengths)
    longest = int(lengths.max()) if len(lengths) else 0
    max_length = longest if max_length is None else max_length
    if max_length < longest:
        raise ValueError(f"max_length ({max_length}) is shorter than the longest sequence in lengths ({longest})")
    positions = torch.arange(max_length, device=lengths.device)  # (max_length,)
    return positions[None, :] < lengths[:, None]  # (batch, max_length)


def padding_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Which keys are real: (B, 1, S) bool, ``mask[b, 0, j] = j < lengths[b]``.

    Args:
        lengths: (B,) integers, the real length of each padded sequence of keys.
        max_length: S, the padded length; the longest of ``lengths`` if None.

    Returns:
        (B, 1, S) bool: the middle axis of size 1 broadcasts over the queries, so the mask fits weights (B, Tq, S).
        For multi-head weights (B, heads, Tq, S) the modules insert the head axis themselves.
    """
    return lengths_to_mask(lengths, max_length)[:, None, :]  # (B, 1, S)


def causal_mask(
    query_length: int,
    key_length: int | None = None,
    offset: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Which keys are not in a query's future: (Tq, S) bool, ``mask[i, j] = j <= i + offset``.

    Query i sits at position ``offset + i`` of the key sequence. The default offset, ``S - Tq``, puts the queries at
    the *end* of the keys: with Tq = S it is the usual lower triangle, and a KV cache that holds t keys and asks with
    one new query (Tq = 1, S = t) gets a row of t Trues. (``F.scaled_dot_product_attention(is_causal=True)`` aligns
    the queries with the *start* of the keys instead; the two agree when Tq = S.)

    Args:
        query_length: Tq, the number of queries.
        key_length: S, the number of keys; Tq if None (self-attention).
        offset: the position of the first query among the keys; ``S - Tq`` if None.
        device: where to build the mask.

    Returns:
        (Tq, S) bool, True where query i may attend to key j.
    """
    key_length = query_length if key_length is None else key_length
    offset = key_length - query_length if offset is None else offset
    for name, value in (("query_length", query_length), ("key_length", key_length)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset (the position of the first query among the keys) must be >= 0, got {offset!r}")
    queries = torch.arange(query_length, device=device)[:, None] + offset  # (Tq, 1)
    keys = torch.arange(key_length, device=device)[None, :]  # (1, S)
    return keys <= queries  # (Tq, S)


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Allow a position only where every mask allows it: the logical AND, broadcast; ``None`` masks are skipped.

    ``combine_masks(padding_mask(lengths), causal_mask(T))`` is (B, T, T): no padding and no future. Returns None
    when every mask is None (attend everywhere).
    """
    present = [mask for mask in masks if mask is not None]
    for index, mask in enumerate(present):
        check_mask(f"masks[{index}]", mask)
    if not present:
        return None
    combined = present[0]
    for mask in present[1:]:
        combined = combined & mask
    return combined


def check_mask(name: str, mask: torch.Tensor, shape: tuple[int, ...] | torch.Size | None = None) -> None:
    """Raise unless ``mask`` is a bool tensor (True = may attend) that broadcasts to ``shape`` (if given)."""
    check_tensor(name, mask)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a bool tensor, True where a query may attend (the course's convention), "
            f"got dtype {mask.dtype}"
        )
    if shape is None:
        return
    try:
        broadcast = torch.broadcast_shapes(mask.shape, tuple(shape))
    except RuntimeError:
        broadcast = None
    if broadcast != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, which does not broadcast to {tuple(shape)}")


def fully_masked(mask: torch.Tensor) -> torch.Tensor:
    """Queries with nothing to attend to: ``mask`` (..., S) -> (..., 1) bool, True where every key is masked.

    Their attention output is defined as zeros (a softmax over no keys at all would divide 0 by 0).
    """
    check_mask("mask", mask)
    return ~mask.any(dim=-1, keepdim=True)  # (..., 1)


def to_key_padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """The course's padding mask in ``torch.nn.MultiheadAttention``'s convention: (B, S) bool, True = ignore.

    Args:
        mask: (B, S) or (B, 1, S) bool, True at real keys (``lengths_to_mask`` or ``padding_mask``).

    Returns:
        (B, S) bool, True at padding: the ``key_padding_mask`` of ``nn.MultiheadAttention`` and ``nn.Transformer``.
    """
    check_mask("mask", mask)
    if mask.dim() == 3 and mask.shape[1] == 1:
        mask = mask[:, 0]  # (B, S)
    check_rank("mask", mask, 2, "(batch, keys) or (batch, 1, keys)")
    return _flip(mask)


def to_attn_mask(mask: torch.Tensor, num_heads: int = 1, query_length: int | None = None) -> torch.Tensor:
    """Any course mask in ``torch.nn.MultiheadAttention``'s ``attn_mask`` convention: True = not allowed.

    Args:
        mask: (Tq, S), (B, Tq, S) or (B, heads, Tq, S) bool, True where a query may attend; an axis of size 1
            (``padding_mask``'s query axis, a head axis) is expanded.
        num_heads: the heads of the ``nn.MultiheadAttention`` that will read it.
        query_length: Tq, needed when the mask's query axis has size 1 (torch wants every row written out).

    Returns:
        (Tq, S) for a 2-D mask, else (B * num_heads, Tq, S) bool, True where a query must not attend.
    """
    check_mask("mask", mask)
    queries = mask.shape[-2] if mask.dim() >= 2 else 0
    if mask.dim() >= 2 and queries == 1 and query_length is not None:
        queries = query_length
    if mask.dim() == 2:
        return _flip(mask.expand(queries, mask.shape[-1]))  # (Tq, S)
    if mask.dim() == 3:
        mask = mask[:, None]  # (B, 1, Tq, S): the same for every head
    check_rank("mask", mask, 4, "(Tq, S), (batch, Tq, S) or (batch, heads, Tq, S)")
    batch, keys = mask.shape[0], mask.shape[-1]
    mask = mask.expand(batch, num_heads, queries, keys)  # (B, heads, Tq, S)
    return _flip(mask.reshape(batch * num_heads, queries, keys))  # (B * heads, Tq, S)


def _flip(mask: torch.Tensor) -> torch.Tensor:
    # The one flip between the conventions: ours is True = may attend, torch.nn's modules read True = ignore.
    return ~mask
