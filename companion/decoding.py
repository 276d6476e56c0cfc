"""Decoding: turning a model's next-token scores into sequences.

**The generator protocol.** Every model that generates in this course (the RNN language model of Part I, the
encoder-decoder of Part III after ``encode``, the Transformer and GPT of Part V) offers two things:

* ``model(ids (B, T), state) -> (logits (B, T, V), state)``: score the token after each position of ``ids``,
  starting from ``state`` (``None`` for a language model with nothing read yet, ``model.encode(...)`` for a
  seq2seq model, a cache for a Transformer), and return the state after them, so that the next call continues
  the same sequences with one new token each;
* ``model.reorder_state(state, indices (N,)) -> state``: the state of sequences ``indices`` of the batch, in that
  order, repeats allowed. Beam search calls it to follow the beams it keeps; sampling several outputs per input
  calls it to repeat each input's state. The model knows its state's layout (a recurrent state has its batch in
  dimension 1, an encoder memory in dimension 0, a KV cache in 0), so the model, not the decoder, reorders it.

A model may also have ``vocab_size`` (prompts are checked against it) and ``max_length`` (the longest prompt plus
output it can score, e.g. a positional table; longer requests fail with a clear error).

**The decoders.** ``generate`` is the one loop: feed the prompt, then pick each next token with a ``choose(logits
(B, V)) -> ids (B,)`` function and feed it back, until every sequence has produced ``end_id`` or ``max_length``
tokens. Greedy decoding (``greedy``) chooses the arg-max; ``sample_sequences`` draws from the distribution reshaped
by a temperature and cut by top-k and top-p; ``decode``/``sample`` (Chapter 1) run the same loop for a fixed number
of tokens with no end token. ``beam_search`` keeps the ``beam_size`` best prefixes per input, ranked by GNMT's
length-normalised score ``log P(y) / lp(|y|)`` with ``lp(n) = ((5 + n) / 6) ** alpha``, batched over inputs and
beams. ``exact_search`` finds the most probable output itself (best-first search, for small models), and
``sequence_log_probs`` scores given outputs, to tell search errors from model errors.

Every search returns ``Hypotheses``: ids (B, K, L) with the end token included and ``pad_id`` after it, their
lengths, log-probabilities under the model and search scores, best first along K.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from companion.checks import check_integer_dtype, check_tensor
from companion.language_models import check_ids

Chooser = Callable[[torch.Tensor], torch.Tensor]  # logits (B, V) -> next ids (B,)


@dataclass(frozen=True)
class Hypotheses:
    """Outputs of a search for B inputs, K per input, best first.

    Attributes:
        ids: (B, K, L) generated ids after the prompt, the end token included, ``pad_id`` after it.
        lengths: (B, K) tokens generated, the end token included (an empty output has length 1).
        log_probs: (B, K) ``log P(output | prompt, state)`` under the model, summed over the generated tokens.
        scores: (B, K) what the search ranked by: ``log_probs`` divided by the length penalty (equal to
            ``log_probs`` when ``alpha`` is 0, and for greedy decoding and sampling).
        finished: (B, K) bool, whether the output ended with the end token within ``max_length``.
    """

    ids: torch.Tensor
    lengths: torch.Tensor
    log_probs: torch.Tensor
    scores: torch.Tensor
    finished: torch.Tensor

    @property
    def best(self) -> torch.Tensor:
        """(B, L) the first (best) output of each input."""
        return self.ids[:, 0]

    def sequences(self, end_id: int | None = None) -> list[list[list[int]]]:
        """The outputs as lists of ids, ``[b][k]``, cut before ``end_id`` (or at the length when None)."""
        out = []
        for ids_b, lengths_b, finished_b in zip(self.ids, self.lengths, self.finished, strict=True):
            row = []
            for ids, length, finished in zip(ids_b.tolist(), lengths_b.tolist(), finished_b.tolist(), strict=True):
                keep = length - 1 if (finished and end_id is not None) else length
                row.append(ids[:keep])
            out.append(row)
        return out


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's length penalty ``lp(n) = ((5 + n) / 6) ** alpha`` (Wu et al. 2016); 1 for every length at ``alpha=0``.

    Dividing a (negative) log-probability by ``lp`` favours longer outputs more as ``alpha`` grows.
    """
    _check_alpha(alpha)
    return ((5.0 + lengths.float()) / 6.0) ** alpha


# ---------------------------------------------------------------- choosing one token


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


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Keep the ``top_k`` highest logits and the smallest set of tokens whose probability reaches ``top_p``.

    logits (..., V) -> (..., V), with ``-inf`` at the removed tokens. Top-p (nucleus, Holtzman et al. 2020) keeps
    the most probable tokens, in order, up to and including the one whose cumulative probability first reaches
    ``top_p``; the most probable token always stays. None switches a filter off.
    """
    check_tensor("logits", logits)
    _check_top(top_k, top_p)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (..., 1): the k-th highest score
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1:
        probabilities, order = torch.softmax(logits.float(), dim=-1).sort(dim=-1, descending=True)  # (..., V)
        mass_before = probabilities.cumsum(dim=-1) - probabilities  # probability of the tokens ranked above
        drop_sorted = mass_before >= top_p  # the nucleus already holds top_p without this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def sampler(
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Chooser:
    """A ``choose`` function that draws the next token from ``softmax(filter_logits(logits / temperature))``.

    The temperature reshapes the distribution first; top-k and top-p then cut its tail. ``generator`` (a
    ``torch.Generator``) makes the draws reproducible without touching the global random state; the draw happens
    on the generator's device.
    """
    _check_temperature(temperature)
    _check_top(top_k, top_p)

    def choose(logits: torch.Tensor) -> torch.Tensor:
        scaled = filter_logits(logits.float() / temperature, top_k, top_p)  # (B, V)
        probabilities = torch.softmax(scaled, dim=-1)
        if generator is not None:
            probabilities = probabilities.to(generator.device)
        ids = torch.multinomial(probabilities, num_samples=1, generator=generator)  # (B, 1)
        return ids.squeeze(-1).to(logits.device)  # (B,)

    return choose


def temperature_sampler(temperature: float = 1.0, generator: torch.Generator | None = None) -> Chooser:
    """A ``choose`` function that draws each next token from ``softmax(logits / temperature)`` (Chapter 1)."""
    return sampler(temperature, generator=generator)


def argmax(logits: torch.Tensor) -> torch.Tensor:
    """The greedy ``choose`` function: logits (B, V) -> the highest-scoring id of each row (B,)."""
    return logits.argmax(dim=-1)


# ---------------------------------------------------------------- the generation loop


def generate(
    model: nn.Module,
    prompt: Sequence[int] | torch.Tensor,
    max_length: int,
    choose: Chooser,
    *,
    state: Any = None,
    end_id: int | None = None,
    pad_id: int = 0,
) -> Hypotheses:
    """Extend each prompt by up to ``max_length`` tokens, each picked by ``choose`` from the model's last logits.

    Args:
        model: a generator (see the module docstring).
        prompt: (B, T) ids (or (T,) for one sequence) that the model reads first; for a seq2seq model the start
            token, one column.
        max_length: the most tokens to generate per sequence.
        choose: maps the last logits (B, V) to the next ids (B,).
        state: the state to start from (``model.encode(...)`` for seq2seq, None for a language model).
        end_id: a sequence that produces it stops (it is kept as its last token); None: always ``max_length``.
        pad_id: written after a sequence's end.

    Returns:
        ``Hypotheses`` with K = 1.
    """
    ids = _checked_prompt(prompt)
    ids = ids[None] if ids.dim() == 1 else ids
    _check_count("max_length", max_length, minimum=1)
    with _evaluating(model):
        ids = ids.to(_device_of(model))
        _check_fits(model, ids, max_length)
        logits, state = model(ids, state)  # read the whole prompt once: (B, T, V)
        _check_prompt_and_end(ids, logits.shape[-1], end_id)
        return _generate_loop(model, logits, state, max_length, choose, end_id, pad_id)


def _generate_loop(
    model: nn.Module,
    logits: torch.Tensor,
    state: Any,
    max_length: int,
    choose: Chooser,
    end_id: int | None,
    pad_id: int,
) -> Hypotheses:
    batch = logits.shape[0]
    finished = torch.zeros(batch, dtype=torch.bool, device=logits.device)
    log_probs = torch.zeros(batch, device=logits.device)
    lengths = torch.zeros(batch, dtype=torch.long, device=logits.device)
    pieces = []
    for step in range(max_length):
        last = logits[:, -1]  # (B, V): the scores after the last token read
        next_ids = torch.where(finished, pad_id, choose(last))  # (B,): an ended sequence only pads
        chosen = torch.log_softmax(last.float(), dim=-1).gather(1, next_ids[:, None])[:, 0]  # (B,)
        log_probs += torch.where(finished, 0.0, chosen)
        lengths += (~finished).long()
        pieces.append(next_ids)
        if end_id is not None:
            finished |= next_ids == end_id
        if finished.all() or step == max_length - 1:
            break  # the state after the last token is not needed
        logits, state = model(next_ids[:, None], state)  # one step on from the carried state: (B, 1, V)
    if end_id is None:
        finished = torch.ones_like(finished)  # no end token asked for: every sequence is complete
    ids = torch.stack(pieces, dim=1)  # (B, L)
    return Hypotheses(ids[:, None], lengths[:, None], log_probs[:, None], log_probs[:, None], finished[:, None])


def greedy(
    model: nn.Module, prompt: Sequence[int] | torch.Tensor, max_length: int, end_id: int, *, state: Any = None
) -> Hypotheses:
    """Greedy decoding: the arg-max token at every step, until ``end_id`` or ``max_length`` (see ``generate``)."""
    _check_end_id(end_id)
    return generate(model, prompt, max_length, argmax, state=state, end_id=end_id)


def sample_sequences(
    model: nn.Module,
    prompt: Sequence[int] | torch.Tensor,
    max_length: int,
    end_id: int,
    *,
    state: Any = None,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Hypotheses:
    """Draw ``num_samples`` outputs per prompt with ``sampler(temperature, top_k, top_p, generator)``.

    Returns ``Hypotheses`` with K = ``num_samples`` (in the order drawn, not sorted); ``log_probs`` are under the
    model's own distribution, before temperature and filtering.
    """
    _check_end_id(end_id)
    _check_count("num_samples", num_samples, minimum=1)
    ids = _checked_prompt(prompt)
    ids = ids[None] if ids.dim() == 1 else ids
    batch = ids.shape[0]
    if num_samples > 1:
        repeat = torch.arange(batch, device=_device_of(model)).repeat_interleave(num_samples)  # (B * n,)
        ids = ids.to(repeat.device)[repeat]  # each input n times in a row
        state = _reorder(model, state, repeat)
    found = generate(model, ids, max_length, sampler(temperature, top_k, top_p, generator), state=state, end_id=end_id)
    return Hypotheses(*(field.view(batch, num_samples, *field.shape[2:]) for field in _fields(found)))


def decode(model: nn.Module, prompt: Sequence[int] | torch.Tensor, num_tokens: int, choose: Chooser) -> torch.Tensor:
    """Extend ``prompt`` by exactly ``num_tokens`` tokens, each picked by ``choose`` (no end token; Chapter 1).

    Args:
        model: called as ``model(ids (B, T), state) -> (logits (B, T, V), state)``, starting from state None.
        prompt: token ids, (T,) for one sequence or (B, T) for a batch of prompts of equal length; at least one.
        num_tokens: how many tokens to add (0 returns the prompt).
        choose: maps the last logits (B, V) to the next ids (B,).

    Returns:
        The prompt followed by the new tokens: (T + num_tokens,), or (B, T + num_tokens) for a batch.
    """
    prompt_ids = _checked_prompt(prompt)
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
        raise ValueError(f"num_tokens must be a non-negative int, got {num_tokens!r}")
    ids = prompt_ids[None] if prompt_ids.dim() == 1 else prompt_ids  # (B, T)
    if num_tokens == 0:
        _check_in_vocab(ids, getattr(model, "vocab_size", None))
        return prompt_ids
    new = generate(model, ids, num_tokens, choose).best  # (B, num_tokens)
    out = torch.cat([ids.to(new.device), new], dim=1)  # (B, T + num_tokens)
    return out[0] if prompt_ids.dim() == 1 else out


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


# ---------------------------------------------------------------- beam search


def beam_search(
    model: nn.Module,
    prompt: Sequence[int] | torch.Tensor,
    max_length: int,
    end_id: int,
    *,
    beam_size: int,
    alpha: float = 0.0,
    state: Any = None,
    pad_id: int = 0,
) -> Hypotheses:
    """Keep the ``beam_size`` best prefixes of every input, batched over inputs and beams.

    At every step each kept prefix is extended by every token; of the K * V candidates of an input the K best
    by ``log P / lp(length)`` (GNMT's length penalty, ``alpha`` >= 0; 0 ranks by plain log-probability) are kept,
    and ``model.reorder_state`` moves the model's state along with them. A prefix that has produced ``end_id``
    stays in the beam with its score frozen (it can only be extended by padding at no cost), so finished and
    unfinished hypotheses compete on the same ranking; the search stops when every kept hypothesis has finished
    or after ``max_length`` tokens. With ``beam_size=1`` it is greedy decoding.

    Returns ``Hypotheses`` with K = ``beam_size``, best first (finished outputs before those cut off at
    ``max_length``). When an input has fewer than K distinct outputs
    within ``max_length`` the missing ones have log-probability ``-inf`` and come last.
    """
    _check_end_id(end_id)
    _check_count("beam_size", beam_size, minimum=1)
    _check_alpha(alpha)
    ids = _checked_prompt(prompt)
    ids = ids[None] if ids.dim() == 1 else ids
    _check_count("max_length", max_length, minimum=1)
    batch, k = ids.shape[0], beam_size
    with _evaluating(model):
        ids = ids.to(_device_of(model))
        _check_fits(model, ids, max_length)
        repeat = torch.arange(batch, device=ids.device).repeat_interleave(k)  # (B * K,): each input K times
        logits, state = model(ids[repeat], _reorder(model, state, repeat))  # (B * K, T, V)
        vocab = logits.shape[-1]
        _check_prompt_and_end(ids, vocab, end_id)
        return _beam_loop(model, logits, state, batch, k, vocab, max_length, end_id, alpha, pad_id)


def _beam_loop(
    model: nn.Module,
    logits: torch.Tensor,
    state: Any,
    batch: int,
    k: int,
    vocab: int,
    max_length: int,
    end_id: int,
    alpha: float,
    pad_id: int,
) -> Hypotheses:
    device = logits.device
    log_probs = torch.full((batch, k), -math.inf, device=device)  # (B, K)
    log_probs[:, 0] = 0.0  # all K beams start as the same prefix: keep one, or the first step picks duplicates
    lengths = torch.zeros(batch, k, dtype=torch.long, device=device)
    finished = torch.zeros(batch, k, dtype=torch.bool, device=device)
    tokens = torch.empty(batch, k, 0, dtype=torch.long, device=device)
    # A finished hypothesis has one continuation, the end token again, at no cost (written as padding below).
    frozen = torch.full((vocab,), -math.inf, device=device)
    frozen[end_id] = 0.0
    offsets = torch.arange(batch, device=device)[:, None] * k  # (B, 1): where each input's beams start
    for step in range(max_length):
        step_log_probs = torch.log_softmax(logits[:, -1].float(), dim=-1).view(batch, k, vocab)  # (B, K, V)
        step_log_probs = torch.where(finished[..., None], frozen, step_log_probs)
        candidates = log_probs[..., None] + step_log_probs  # (B, K, V)
        new_lengths = lengths + (~finished).long()  # (B, K)
        ranks = candidates / length_penalty(new_lengths, alpha)[..., None]  # (B, K, V)
        flat = ranks.view(batch, k * vocab).topk(k, dim=-1).indices  # (B, K): the K best candidates
        beam, token = flat // vocab, flat % vocab  # (B, K) each: which prefix, extended by which token
        log_probs = candidates.view(batch, k * vocab).gather(1, flat)
        lengths = new_lengths.gather(1, beam)
        possible = torch.isfinite(log_probs)  # (B, K): False for the empty slots of an input with few outputs
        finished = (finished.gather(1, beam) | (token == end_id)) & possible
        history = tokens.gather(1, beam[..., None].expand(-1, -1, tokens.shape[-1]))  # (B, K, step)
        tokens = torch.cat([history, token[..., None]], dim=-1)  # (B, K, step + 1)
        if (finished | ~possible).all() or step == max_length - 1:
            break
        state = model.reorder_state(state, (beam + offsets).view(-1))  # follow the kept prefixes
        logits, state = model(token.view(-1, 1), state)  # (B * K, 1, V)
    scores = log_probs / length_penalty(lengths, alpha)  # (B, K)
    # Best first: finished outputs before those cut at max_length, each by score; empty slots (-inf) last.
    by_score = scores.argsort(dim=-1, descending=True, stable=True)  # (B, K)
    order = by_score.gather(1, finished.gather(1, by_score).int().argsort(dim=-1, descending=True, stable=True))
    positions = torch.arange(tokens.shape[-1], device=device)
    tokens = torch.where(positions < lengths[..., None], tokens, pad_id)  # padding after each end
    return Hypotheses(
        ids=tokens.gather(1, order[..., None].expand_as(tokens)),
        lengths=lengths.gather(1, order),
        log_probs=log_probs.gather(1, order),
        scores=scores.gather(1, order),
        finished=finished.gather(1, order),
    )


# ---------------------------------------------------------------- the most probable output, and scoring outputs


def exact_search(
    model: nn.Module,
    prompt: Sequence[int] | torch.Tensor,
    max_length: int,
    end_id: int,
    *,
    state: Any = None,
    max_expansions: int = 10_000,
    pad_id: int = 0,
) -> Hypotheses:
    """The most probable output of every input, ``argmax_y P(y | prompt, state)`` over all outputs that end with
    ``end_id`` within ``max_length`` tokens: the mode that beam search approximates.

    Best-first (uniform-cost) search: prefixes wait in a priority queue by log-probability, the most probable is
    extended by every token, and the first *finished* output taken from the queue is the exact answer, because
    extending a prefix can only lower its log-probability. It costs one model call per prefix extended; past
    ``max_expansions`` calls for one input it stops with an error instead of running for ever (a flat model has
    exponentially many prefixes more probable than its mode). Returns ``Hypotheses`` with K = 1.
    """
    _check_end_id(end_id)
    _check_count("max_length", max_length, minimum=1)
    _check_count("max_expansions", max_expansions, minimum=1)
    ids = _checked_prompt(prompt)
    ids = ids[None] if ids.dim() == 1 else ids
    found = []
    with _evaluating(model):
        ids = ids.to(_device_of(model))
        _check_fits(model, ids, max_length)
        for b in range(ids.shape[0]):
            one = torch.tensor([b], device=ids.device)
            logits, state_b = model(ids[b : b + 1], _reorder(model, state, one))  # (1, T, V)
            _check_prompt_and_end(ids, logits.shape[-1], end_id)
            found.append(_best_first(model, logits[0, -1], state_b, max_length, end_id, max_expansions, b))
    width = max(len(tokens) for tokens, _ in found)
    rows = [tokens + [pad_id] * (width - len(tokens)) for tokens, _ in found]
    log_probs = torch.tensor([[score] for _, score in found])
    lengths = torch.tensor([[len(tokens)] for tokens, _ in found])
    return Hypotheses(torch.tensor(rows)[:, None], lengths, log_probs, log_probs, torch.ones_like(lengths, dtype=bool))


def _best_first(
    model: nn.Module, logits: torch.Tensor, state: Any, max_length: int, end_id: int, budget: int, index: int
) -> tuple[list[int], float]:
    order = itertools.count()  # ties are taken first in, first out
    # Queue entries: (-log P, order, tokens, what to do). A prefix waits with its parent's state and is run
    # through the model only when it is taken; a finished output waits with nothing left to do.
    queue: list = [(-0.0, next(order), (), ("scores", logits, state))]
    calls = 0
    while queue:
        negative, _, tokens, (kind, *payload) = heapq.heappop(queue)
        if kind == "finished":
            return list(tokens), -negative
        if kind == "run":
            if calls == budget:
                raise RuntimeError(
                    f"exact_search made max_expansions={budget} model calls for input {index} without finding its "
                    "most probable output; raise max_expansions, shorten max_length, or use beam_search"
                )
            parent_state, last = payload
            step_logits, child_state = model(torch.tensor([[last]], device=logits.device), parent_state)
            calls += 1
            payload = (step_logits[0, -1], child_state)
        step_log_probs = torch.log_softmax(payload[0].float(), dim=-1).tolist()
        for token, log_prob in enumerate(step_log_probs):
            if log_prob == -math.inf:
                continue
            extended = (*tokens, token)
            if token == end_id:
                heapq.heappush(queue, (negative - log_prob, next(order), extended, ("finished",)))
            elif len(extended) < max_length:
                heapq.heappush(queue, (negative - log_prob, next(order), extended, ("run", payload[1], token)))
    raise ValueError(f"input {index} has no output that ends with end_id={end_id} within max_length={max_length}")


def sequence_log_probs(
    model: nn.Module,
    prompt: Sequence[int] | torch.Tensor,
    outputs: torch.Tensor,
    lengths: torch.Tensor,
    *,
    state: Any = None,
) -> torch.Tensor:
    """``log P(outputs | prompt, state)`` under the model, by teacher forcing: one call over prompt and outputs.

    Args:
        prompt: (B, T) ids read first (for seq2seq: the start token).
        outputs: (B, L) ids to score, each counted up to its length (end token included if it is to count).
        lengths: (B,) how many tokens of each output count.
        state: as for ``generate``.

    Returns:
        (B,) the summed log-probabilities: the ``log_probs`` a search reports for the same outputs.
    """
    ids = _checked_prompt(prompt)
    ids = ids[None] if ids.dim() == 1 else ids
    check_integer_dtype("outputs", outputs)
    if outputs.dim() != 2 or outputs.shape[0] != ids.shape[0]:
        raise ValueError(f"outputs must be (batch, length) with batch {ids.shape[0]}, got {tuple(outputs.shape)}")
    with _evaluating(model):
        device = _device_of(model)
        ids, outputs, lengths = ids.to(device), outputs.to(device), lengths.to(device)
        logits, _ = model(torch.cat([ids, outputs[:, :-1]], dim=1), state)  # (B, T + L - 1, V)
        scored = torch.log_softmax(logits[:, ids.shape[1] - 1 :].float(), dim=-1)  # (B, L, V): each output token
        per_token = scored.gather(2, outputs[..., None])[..., 0]  # (B, L)
        counted = torch.arange(outputs.shape[1], device=device)[None, :] < lengths[:, None]
        return (per_token * counted).sum(dim=1)


# ---------------------------------------------------------------- checks and plumbing


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the duration, then the model's own mode back."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _reorder(model: nn.Module, state: Any, indices: torch.Tensor) -> Any:
    if state is None:
        return None  # nothing read yet: the model starts every sequence from zeros
    reorder = getattr(model, "reorder_state", None)
    if reorder is None:
        raise TypeError(
            f"{type(model).__name__} has no reorder_state(state, indices) method; beam search and several samples "
            "per input need it to follow the sequences they keep (see companion.decoding's generator protocol)"
        )
    return reorder(state, indices)


def _fields(found: Hypotheses) -> tuple[torch.Tensor, ...]:
    return found.ids, found.lengths, found.log_probs, found.scores, found.finished


def _check_fits(model: nn.Module, ids: torch.Tensor, max_length: int) -> None:
    _check_in_vocab(ids, getattr(model, "vocab_size", None))
    limit = getattr(model, "max_length", None)
    if limit is not None and ids.shape[1] + max_length > limit:
        raise ValueError(
            f"the prompt ({ids.shape[1]} tokens) plus max_length={max_length} is longer than the "
            f"{limit} positions {type(model).__name__} can score (its max_length)"
        )


def _check_prompt_and_end(ids: torch.Tensor, vocab_size: int, end_id: int | None) -> None:
    _check_in_vocab(ids, vocab_size)
    if end_id is not None and not 0 <= end_id < vocab_size:
        raise ValueError(
            f"end_id {end_id} is not a token of the model's vocabulary [0, {vocab_size}); "
            "pass the id of the end token from the target Vocab"
        )


def _check_end_id(end_id: int) -> None:
    if isinstance(end_id, bool) or not isinstance(end_id, int):
        raise TypeError(f"end_id must be an int token id, got {type(end_id).__name__}")


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int of at least {minimum}, got {value!r}")


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not (alpha >= 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha (the length penalty's exponent) must be a finite number >= 0, got {alpha!r}")


def _check_top(top_k: int | None, top_p: float | None) -> None:
    if top_k is not None:
        _check_count("top_k", top_k, minimum=1)
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must lie in (0, 1] (1 keeps every token), got {top_p!r}")


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


def _check_in_vocab(ids: torch.Tensor, vocab_size: int | None) -> None:
    if vocab_size is not None:
        check_ids(ids, vocab_size, rank=2, layout="(batch, time)", name="prompt")


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
