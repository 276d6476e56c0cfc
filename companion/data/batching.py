"""Turning sequences of different lengths into padded batches, with their lengths and masks.

Convention used across the course: a mask is a bool tensor that is ``True`` where a position holds a real token and
``False`` at padding, and padded batches are batch-first, (batch, time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch
from torch.nn.utils.rnn import pad_sequence

from companion.checks import check_lengths, check_not_empty, check_rank, check_tensor
from companion.masks import lengths_to_mask  # re-exported: batches build their masks with it

TokenIds = Sequence[int] | torch.Tensor


def pad_batch(sequences: Sequence[TokenIds], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad 1-D id sequences to the longest one.

    Returns ``(padded, lengths)``: padded (batch, max_length) long, lengths (batch,) long.
    """
    check_not_empty("sequences", sequences)
    tensors = [_as_ids(f"sequences[{index}]", sequence) for index, sequence in enumerate(sequences)]
    lengths = torch.tensor([len(tensor) for tensor in tensors])
    return pad_sequence(tensors, batch_first=True, padding_value=pad_id), lengths


def _as_ids(name: str, sequence: TokenIds) -> torch.Tensor:
    if isinstance(sequence, torch.Tensor):
        tensor = sequence
    else:
        items = list(sequence)
        if not all(isinstance(item, int) for item in items):
            kinds = sorted({type(item).__name__ for item in items if not isinstance(item, int)})
            raise TypeError(f"{name} must hold integer token ids, got {kinds}: encode tokens with a Vocab first")
        tensor = torch.tensor(items, dtype=torch.long)
    check_rank(name, tensor, 1, "(time,)")
    if len(tensor) == 0:
        raise ValueError(f"{name} is empty; every sequence needs at least one token")
    return tensor


def unpad(padded: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Undo ``pad_batch``: the list of (length_b, ...) sequences."""
    check_lengths(lengths)
    check_tensor("padded", padded)
    if padded.dim() < 2 or padded.shape[0] != len(lengths):
        raise ValueError(
            f"padded must be (batch, time, ...) with batch = len(lengths) = {len(lengths)}, "
            f"got shape {tuple(padded.shape)}"
        )
    if len(lengths) and int(lengths.max()) > padded.shape[1]:
        raise ValueError(
            f"lengths has a maximum of {int(lengths.max())}, longer than padded's time dimension "
            f"(shape {tuple(padded.shape)})"
        )
    return [row[:length] for row, length in zip(padded, lengths.tolist(), strict=True)]


@dataclass
class PairBatch:
    """A padded batch of (source, target) sequences for sequence-to-sequence models; all tensors batch-first."""

    source: torch.Tensor  # (batch, source_time) long
    source_lengths: torch.Tensor  # (batch,) long
    target: torch.Tensor  # (batch, target_time) long
    target_lengths: torch.Tensor  # (batch,) long

    @property
    def source_mask(self) -> torch.Tensor:
        """(batch, source_time) bool, True at real source tokens."""
        return lengths_to_mask(self.source_lengths, self.source.shape[1])  # (batch, source_time)

    @property
    def target_mask(self) -> torch.Tensor:
        """(batch, target_time) bool, True at real target tokens."""
        return lengths_to_mask(self.target_lengths, self.target.shape[1])  # (batch, target_time)

    def to(self, device: torch.device | str) -> PairBatch:
        """The same batch with every tensor on ``device``."""
        return PairBatch(**{field.name: getattr(self, field.name).to(device) for field in fields(self)})


def pair_collator(pad_id: int = 0) -> Callable[[Sequence[tuple[TokenIds, TokenIds]]], PairBatch]:
    """A ``collate_fn`` for ``torch.utils.data.DataLoader`` over (source_ids, target_ids) pairs."""

    def collate(pairs: Sequence[tuple[TokenIds, TokenIds]]) -> PairBatch:
        check_not_empty("pairs", pairs)
        source, source_lengths = pad_batch([source for source, _ in pairs], pad_id)
        target, target_lengths = pad_batch([target for _, target in pairs], pad_id)
        return PairBatch(source, source_lengths, target, target_lengths)

    return collate


def sliding_windows(sequence: torch.Tensor, size: int, step: int = 1) -> torch.Tensor:
    """All windows of ``size`` consecutive steps: (time, ...) -> (num_windows, size, ...), a view, no copy."""
    check_tensor("sequence", sequence)
    if sequence.dim() < 1:
        raise ValueError("sequence must have at least 1 dimension (time, ...), got a scalar")
    if not 1 <= size <= len(sequence):
        raise ValueError(f"size must be between 1 and the sequence length {len(sequence)}, got {size}")
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    windows = sequence.unfold(0, size, step)  # (num_windows, ..., size)
    return windows.movedim(-1, 1)  # (num_windows, size, ...)


def next_token_pairs(ids: torch.Tensor, length: int, step: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Language-model examples from one long id sequence: inputs and the same windows shifted by one.

    ids: (time,). Returns inputs, targets: (num_windows, length) each, with ``targets[:, t] = inputs[:, t + 1]``
    inside a window. ``step`` defaults to ``length`` (windows that do not overlap).
    """
    check_rank("ids", ids, 1, "(time,)")
    if not 1 <= length < len(ids):
        raise ValueError(f"length must be between 1 and len(ids) - 1 = {len(ids) - 1}, got {length}")
    if step is not None and step < 1:
        raise ValueError(f"step must be at least 1 or None, got {step}")
    windows = sliding_windows(ids, length + 1, step if step is not None else length)  # (num_windows, length + 1)
    return windows[:, :-1], windows[:, 1:]
