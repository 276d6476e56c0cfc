"""Synthetic tasks with a known answer, for controlled experiments on memory.

Token tasks use ids ``1 .. vocab_size - 1`` and leave id 0 free, so 0 can be the padding id as in ``Vocab``.
Every function takes a ``seed`` and draws from its own generator: the same call gives the same data everywhere and
never disturbs the global random stream.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Examples(NamedTuple):
    """Inputs and the targets a model should produce from them."""

    inputs: torch.Tensor
    targets: torch.Tensor


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_sizes(
    num_examples: int, length: int, vocab_size: int | None = None, min_length: int = 1, length_name: str = "length"
) -> None:
    if num_examples < 1:
        raise ValueError(f"num_examples must be at least 1, got {num_examples}")
    if length < min_length:
        raise ValueError(f"{length_name} must be at least {min_length}, got {length}")
    if vocab_size is not None and vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2 (id 0 is reserved for padding), got {vocab_size}")


def _random_tokens(num_examples: int, length: int, vocab_size: int, seed: int) -> torch.Tensor:
    return torch.randint(1, vocab_size, (num_examples, length), generator=_generator(seed))


def copy_task(num_examples: int, length: int, vocab_size: int = 10, seed: int = 0) -> Examples:
    """Reproduce the input: inputs and targets are the same (num_examples, length) token ids."""
    _check_sizes(num_examples, length, vocab_size)
    tokens = _random_tokens(num_examples, length, vocab_size, seed)
    return Examples(tokens, tokens.clone())


def reverse_task(num_examples: int, length: int, vocab_size: int = 10, seed: int = 0) -> Examples:
    """Output the input backwards: targets are the inputs flipped along time, both (num_examples, length)."""
    _check_sizes(num_examples, length, vocab_size)
    tokens = _random_tokens(num_examples, length, vocab_size, seed)
    return Examples(tokens, tokens.flip(1))


def recall_task(
    num_examples: int, lag: int, vocab_size: int = 10, seed: int = 0, filler: int | None = None
) -> Examples:
    """Remember the first token for ``lag`` steps of noise (or of silence, with ``filler``).

    inputs: (num_examples, lag + 1) ids, the token to recall followed by ``lag`` random distractors drawn from the
    same ids ``1 .. vocab_size - 1``, or, when ``filler`` is an id, by ``lag`` copies of it (a constant blank: the
    memory is tested without interference); targets: (num_examples,) the first token. Chance accuracy is
    1 / (vocab_size - 1).
    """
    _check_sizes(num_examples, lag, vocab_size, min_length=0, length_name="lag")
    tokens = _random_tokens(num_examples, lag + 1, vocab_size, seed)
    if filler is not None:
        if not isinstance(filler, int) or 1 <= filler < vocab_size:
            raise ValueError(
                f"filler must be an int id outside the recalled ids 1 .. {vocab_size - 1} (e.g. 0 or {vocab_size}), "
                f"got {filler!r}"
            )
        tokens[:, 1:] = filler
    return Examples(tokens, tokens[:, 0].clone())


def adding_problem(num_examples: int, length: int, seed: int = 0) -> Examples:
    """Hochreiter and Schmidhuber's adding problem: add the two marked numbers of a long sequence.

    inputs: (num_examples, length, 2) float; channel 0 holds numbers drawn from U(0, 1), channel 1 marks exactly two
    positions with 1.0 (one in each half). targets: (num_examples,) the sum of the two marked numbers. Always
    predicting 1.0 gives a mean squared error of about 0.167, the baseline a model must beat.
    """
    _check_sizes(num_examples, length, min_length=2)
    generator = _generator(seed)
    numbers = torch.rand(num_examples, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (num_examples,), generator=generator)
    second = torch.randint(half, length, (num_examples,), generator=generator)
    markers = torch.zeros(num_examples, length)
    rows = torch.arange(num_examples)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = numbers[rows, first] + numbers[rows, second]
    return Examples(torch.stack([numbers, markers], dim=-1), targets)
