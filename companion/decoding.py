"""Decoding: turning a language model's next-token scores into text, one token at a time.

Every decoder here runs the same loop (``decode``): feed the prompt, then repeatedly pick the next token from the
last position's logits and feed it back, carrying the recurrent state so that each step costs one token's work.
Decoders differ only in how they pick, a ``choose(logits) -> ids`` function:

* ``sample`` draws from ``softmax(logits / temperature)`` (Chapter 1);
* greedy decoding, beam search and top-k sampling join in Chapter 6.

The model is any module called as ``model(ids, state) -> (logits, state)`` with ids (B, T) and logits (B, T, V),
such as ``companion.language_models.RNNLanguageModel``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from companion.checks import check_integer_dtype, check_tensor
from companion.language_models import check_ids

Chooser = Callable[[torch.Tensor], torch.Tensor]  # logits (B, V) -> next ids (B,)


def temperature_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(logits / temperature)`` over the last dimension: (..., V) -> (..., V).

    A temperature below 1 sharpens the distribution towards the arg-max (as it tends to 0 all the mass goes to
    the highest score); 1 leaves the model's distribution unchanged; above 1 flattens it towards uniform.
    """
    check_tensor("logits", logits)
    _check_temperature(temperature)
    if logits.dim() == 0:
        raise ValueError("logits must have at least 1 dimension (..., vocab_size), got a scalar")
    return torch.softmax(logits.float() / temperature, dim=-1)  # (..., V)


def temperature_sampler(temperature: float = 1.0, generator: torch.Generator | None = None) -> Chooser:
    """A ``choose`` function for ``decode`` that draws each next token from ``softmax(logits / temperature)``.

    ``generator`` (a ``torch.Generator``) makes the draws reproducible without touching the global random state;
    the draw happens on the generator's device.
    """
    _check_temperature(temperature)

    def choose(logits: torch.Tensor) -> torch.Tensor:
        probabilities = temperature_probabilities(logits, temperature)  # (B, V)
        if generator is not None:
            probabilities = probabilities.to(generator.device)
        ids = torch.multinomial(probabilities, num_samples=1, generator=generator)  # (B, 1)
        return ids.squeeze(-1).to(logits.device)  # (B,)

    return choose


def decode(model: nn.Module, prompt: Sequence[int] | torch.Tensor, num_tokens: int, choose: Chooser) -> torch.Tensor:
    """Extend ``prompt`` by ``num_tokens`` tokens, each picked by ``choose`` from the model's last logits.

    Args:
        model: called as ``model(ids (B, T), state) -> (logits (B, T, V), state)``.
        prompt: token ids, (T,) for one sequence or (B, T) for a batch of prompts of equal length; at least one.
        num_tokens: how many tokens to add (0 returns the prompt).
        choose: maps the last logits (B, V) to the next ids (B,).

    Returns:
        The prompt followed by the new tokens: (T + num_tokens,), or (B, T + num_tokens) for a batch.
    """
    prompt_ids = _checked_prompt(prompt)
    if not isinstance(num_tokens, int) or isinstance(num_tokens, bool) or num_tokens < 0:
        raise ValueError(f"num_tokens must be a non-negative int, got {num_tokens!r}")
    single = prompt_ids.dim() == 1
    device = _device_of(model)
    ids = (prompt_ids[None] if single else prompt_ids).to(device)  # (B, T)
    vocab_size = getattr(model, "vocab_size", None)
    if vocab_size is not None:
        _check_in_vocab(ids, vocab_size)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            generated = _decode_loop(model, ids, num_tokens, choose)  # (B, T + num_tokens)
    finally:
        model.train(was_training)
    return generated[0] if single else generated


def _decode_loop(model: nn.Module, ids: torch.Tensor, num_tokens: int, choose: Chooser) -> torch.Tensor:
    if num_tokens == 0:
        return ids
    pieces = [ids]
    logits, state = model(ids, None)  # read the whole prompt once: (B, T, V)
    _check_in_vocab(ids, logits.shape[-1])
    for _ in range(num_tokens):
        next_ids = choose(logits[:, -1])  # (B,): picked from the scores after the last token
        pieces.append(next_ids[:, None])
        logits, state = model(next_ids[:, None], state)  # one step on from the carried state: (B, 1, V)
    return torch.cat(pieces, dim=1)  # (B, T + num_tokens)


def sample(
    model: nn.Module,
    prompt: Sequence[int] | torch.Tensor,
    num_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue ``prompt`` by ``num_tokens`` tokens drawn from ``softmax(logits / temperature)``.

    prompt: (T,) or (B, T) ids; returns (T + num_tokens,) or (B, T + num_tokens). With the same seeded
    ``generator`` the same text comes out every time.
    """
    return decode(model, prompt, num_tokens, temperature_sampler(temperature, generator))


def _check_temperature(temperature: float) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(
            f"temperature must be positive and finite, got {temperature!r} "
            "(for the most likely token, use a small temperature such as 0.01, or greedy decoding)"
        )


def _checked_prompt(prompt: Sequence[int] | torch.Tensor) -> torch.Tensor:
    if isinstance(prompt, str):
        raise TypeError("prompt must be token ids, got a str: encode it with a Vocab first")
    if not isinstance(prompt, torch.Tensor):
        items = list(prompt)
        if not all(isinstance(item, int) and not isinstance(item, bool) for item in items):
            raise TypeError(f"prompt must hold integer token ids, got {items[:5]!r}")
        prompt = torch.tensor(items, dtype=torch.long)
    check_integer_dtype("prompt", prompt)
    if prompt.dim() not in (1, 2):
        raise ValueError(f"prompt must have 1 dimension (time,) or 2 (batch, time), got shape {tuple(prompt.shape)}")
    if prompt.shape[-1] == 0 or prompt.numel() == 0:
        raise ValueError(f"prompt is empty (shape {tuple(prompt.shape)}); give at least one token to start from")
    return prompt.long()


def _check_in_vocab(ids: torch.Tensor, vocab_size: int) -> None:
    check_ids(ids, vocab_size, rank=2, layout="(batch, time)", name="prompt")


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
