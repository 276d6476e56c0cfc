"""Argument checks that fail early with a message naming the argument, its shape and what was expected.

Every public function of the companion validates its inputs with these helpers, so that a student who passes a
tensor of the wrong rank reads "inputs must have 3 dimensions (batch, time, features), got shape (4, 7)" instead of
an opaque error from deep inside a matrix multiplication.
"""

from __future__ import annotations

from collections.abc import Sized

import torch


def check_rank(name: str, tensor: torch.Tensor, rank: int, layout: str) -> None:
    """Raise ``ValueError`` unless ``tensor`` has ``rank`` dimensions; ``layout`` names them, e.g. "(batch, time)"."""
    check_tensor(name, tensor)
    if tensor.dim() != rank:
        raise ValueError(f"{name} must have {rank} dimensions {layout}, got shape {tuple(tensor.shape)}")


def check_tensor(name: str, value: object) -> None:
    """Raise ``TypeError`` unless ``value`` is a ``torch.Tensor``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def check_integer_dtype(name: str, tensor: torch.Tensor) -> None:
    """Raise ``TypeError`` unless ``tensor`` holds integers (ids, lengths): floats would silently round."""
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must hold integers, got dtype {tensor.dtype}")


def check_same_size(name: str, tensor: torch.Tensor, dim: int, other_name: str, size: int) -> None:
    """Raise ``ValueError`` unless ``tensor.shape[dim] == size`` (the matching size of ``other_name``)."""
    if tensor.shape[dim] != size:
        raise ValueError(
            f"{name} has size {tensor.shape[dim]} in dimension {dim} (shape {tuple(tensor.shape)}), "
            f"but {other_name} has size {size}; they must match"
        )


def check_not_empty(name: str, items: Sized) -> None:
    """Raise ``ValueError`` if ``items`` is empty (an empty batch, corpus or list of sentences)."""
    if len(items) == 0:
        raise ValueError(f"{name} is empty; expected at least one item")


def check_positive(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value > 0``."""
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def check_choice(name: str, value: object, choices: tuple) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_lengths(lengths: torch.Tensor) -> None:
    """Lengths of a padded batch: (batch,) integers, none negative."""
    check_rank("lengths", lengths, 1, "(batch,)")
    check_integer_dtype("lengths", lengths)
    if len(lengths) and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be non-negative, got minimum {int(lengths.min())}")
