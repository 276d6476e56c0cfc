"""Counting language models: n-grams smoothed with interpolated, modified Kneser–Ney, the baseline to beat.

An n-gram model predicts the next token from the previous ``n - 1`` tokens only, by counting how often each
continuation followed the same ``n - 1`` tokens in the training text. Raw frequencies give probability zero to
everything never seen, so the counts are *smoothed*: each level of the model gives away a little of its mass and
hands it to the level below, which looks one token less far back {Chen and Goodman 1999, section 3}::

    P_k(w | h) = (c(h w) - D_k(c(h w)))+ / c(h)  +  gamma_k(h) * P_{k-1}(w | h')
    gamma_k(h) = (D_k1 N_1(h .) + D_k2 N_2(h .) + D_k3+ N_3+(h .)) / c(h)

Here ``h`` is the history of ``k - 1`` tokens, ``h'`` the same history without its oldest token, ``c(h w)`` a count,
``c(h) = sum_w c(h w)``, and ``N_j(h .)`` the number of different tokens that follow ``h`` exactly ``j`` times (3+:
at least three times). A history never seen (``c(h) = 0``) passes all its weight to the level below. The top level
counts raw occurrences; every lower level counts *continuations*, ``c(h w) = N_1+(. h w)``, the number of different
tokens seen before ``h w`` (Kneser and Ney 1995): a token that follows many different contexts is a good guess in a
new one, a token frequent only after one context is not. The bottom of the recursion is the uniform ``1 / V``, so
every token of the vocabulary gets some probability. Each level's three discounts come from its count-of-counts
``n_j`` (how many entries have count ``j``): ``Y = n_1 / (n_1 + 2 n_2)``, ``D_j = j - (j + 1) Y n_{j+1} / n_j``.

Positions too close to the start of a sequence to have ``n - 1`` tokens of history use the longest history they
have, with raw counts at that level: the model never reads across the start of a row, just as a recurrent model
that starts each window from a zero state.

Counts are kept as sorted arrays of integer keys (an n-gram ``t_1 .. t_n`` is ``sum_i t_i V^(n - i)``), so fitting
on a few million tokens and scoring a few hundred thousand takes seconds; ``V ** order`` must stay below ``2 ** 63``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from companion.checks import check_integer_dtype, check_rank, check_same_size, check_tensor

MAX_KEY = 2**63 - 1


@dataclass(frozen=True)
class _Level:
    """The counts of one level: k-grams (raw or continuation counts) and, per history, what smoothing needs."""

    keys: np.ndarray  # (entries,) sorted k-gram keys
    counts: np.ndarray  # (entries,) their counts
    history_keys: np.ndarray  # (histories,) sorted keys of the (k - 1)-token histories
    history_totals: np.ndarray  # (histories,) c(h)
    history_given: np.ndarray  # (histories,) D_1 N_1(h .) + D_2 N_2(h .) + D_3+ N_3+(h .)
    discounts: np.ndarray  # (4,) the discount for counts 0, 1, 2 and 3+

    @classmethod
    def from_counts(cls, keys: np.ndarray, counts: np.ndarray, vocab_size: int) -> _Level:
        discounts = _discounts(counts)
        histories = keys // vocab_size  # the k-gram without its last token
        history_keys, which = np.unique(histories, return_inverse=True)
        per_entry = discounts[np.minimum(counts, 3)]  # what each entry gives away
        return cls(
            keys=keys,
            counts=counts,
            history_keys=history_keys,
            history_totals=np.bincount(which, weights=counts, minlength=len(history_keys)),
            history_given=np.bincount(which, weights=per_entry, minlength=len(history_keys)),
            discounts=discounts,
        )

    def probabilities(self, keys: np.ndarray, lower: np.ndarray, vocab_size: int) -> np.ndarray:
        """P_k(w | h) for k-gram ``keys`` (any shape), given the level below's probabilities ``lower`` (same shape)."""
        count = _lookup(self.keys, self.counts, keys)
        histories = keys // vocab_size
        total = _lookup(self.history_keys, self.history_totals, histories)
        given = _lookup(self.history_keys, self.history_given, histories)
        kept = np.maximum(count - self.discounts[np.minimum(count, 3).astype(np.int64)], 0.0)
        seen = total > 0
        safe_total = np.where(seen, total, 1.0)
        return np.where(seen, (kept + given * lower) / safe_total, lower)


def _discounts(counts: np.ndarray) -> np.ndarray:
    """Modified Kneser–Ney's discounts for counts 0, 1, 2 and 3+ from the count-of-counts (Chen and Goodman 1999).

    On tiny corpora some count-of-counts are zero; there each discount falls back to ``Y``, and every discount is
    kept between 0.1 and its count, so that each level always hands some mass to the one below.
    """
    n = np.array([np.count_nonzero(counts == j) for j in range(1, 5)], dtype=np.float64)  # n_1 .. n_4
    y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] > 0 else 0.5
    discounts = np.zeros(4)
    for j in (1, 2, 3):
        estimate = j - (j + 1) * y * n[j] / n[j - 1] if n[j - 1] > 0 else y
        discounts[j] = min(max(estimate, 0.1), j)
    return discounts


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values`` of each query key (0 where the key is absent); keys sorted, queries of any shape."""
    if len(keys) == 0:
        return np.zeros(queries.shape)
    where = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return np.where(keys[where] == queries, values[where], 0).astype(np.float64)


class NGramModel:
    """An n-gram language model over token ids ``0 .. vocab_size - 1``, smoothed with modified Kneser–Ney.

    Args:
        order: n, the number of tokens of each n-gram (1: unigram, 2: bigram, ... 5: 5-gram); the model looks
            ``order - 1`` tokens back.
        vocab_size: V; every id must be below it.

    ``fit(ids)`` counts a training stream; ``log_probs(ids)`` scores rows of ids; ``perplexity(inputs, targets)``
    scores language-model windows such as those of ``companion.data.next_token_pairs``.
    """

    def __init__(self, order: int, vocab_size: int) -> None:
        for name, value in (("order", order), ("vocab_size", vocab_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if vocab_size**order > MAX_KEY:
            raise ValueError(
                f"vocab_size ** order = {vocab_size}^{order} does not fit the 64-bit n-gram keys; "
                f"use an order of at most {int(math.log(MAX_KEY) / math.log(vocab_size))} for this vocabulary"
            )
        self.order, self.vocab_size = order, vocab_size
        self.raw: list[_Level] = []  # raw[k - 1]: the k-gram level with raw counts
        self.continuation: list[_Level] = []  # continuation[k - 1]: with continuation counts, k < order

    def __repr__(self) -> str:
        fitted = f", {len(self.raw[-1].keys):,} distinct {self.order}-grams" if self.raw else ", not fitted"
        return f"NGramModel(order={self.order}, vocab_size={self.vocab_size}{fitted})"

    def fit(self, ids: torch.Tensor) -> NGramModel:
        """Count every k-gram (k = 1 .. order) of one training stream ``ids`` (T,) of integer ids; returns self."""
        stream = self._checked(ids, "ids", rank=1)
        if len(stream) < self.order:
            raise ValueError(f"ids has {len(stream)} tokens; an order-{self.order} model needs at least {self.order}")
        self.raw, self.continuation, unique_keys = [], [], []
        keys = stream.copy()  # (T,): the 1-gram starting at each position
        for k in range(1, self.order + 1):
            if k > 1:
                # Extend every (k - 1)-gram by the token that follows it: (T - k + 1,)
                keys = keys[:-1] * self.vocab_size + stream[k - 1 :]
            unique, counts = np.unique(keys, return_counts=True)
            unique_keys.append(unique)
            self.raw.append(_Level.from_counts(unique, counts, self.vocab_size))
        for k in range(1, self.order):
            # Continuation count of a k-gram: how many distinct (k + 1)-grams end in it.
            suffixes = unique_keys[k] % self.vocab_size**k
            unique, counts = np.unique(suffixes, return_counts=True)
            self.continuation.append(_Level.from_counts(unique, counts, self.vocab_size))
        return self

    def log_probs(self, ids: torch.Tensor) -> torch.Tensor:
        """Natural-log probabilities of every token after the first of each row.

        ids: (..., T) integer ids. Returns (..., T - 1) float64: entry ``t - 1`` is
        ``log P(ids[..., t] | ids[..., t - order + 1 : t])``, with the history cut at the start of the row.
        """
        if not self.raw:
            raise RuntimeError("the model is not fitted: call fit(train_ids) first")
        check_tensor("ids", ids)
        if ids.dim() < 1 or ids.shape[-1] < 2:
            raise ValueError(f"ids must be (..., T) with T >= 2 tokens per row, got shape {tuple(ids.shape)}")
        rows = self._checked(ids.reshape(-1, ids.shape[-1]), "ids", rank=2)  # (R, T)
        targets = rows[:, 1:]  # (R, T - 1)
        position = np.arange(1, rows.shape[1])  # the position t of each target in its row
        top = np.minimum(self.order, position + 1)  # the highest level each position has history for
        probability = np.full(targets.shape, 1.0 / self.vocab_size)  # the uniform bottom level
        keys = targets.copy()  # (R, T - 1): the k-gram ending at each target
        for k in range(1, self.order + 1):
            if k > 1:
                # Prepend the token k - 1 places before each target (rows too short for it are masked below).
                earlier = np.zeros_like(targets)
                earlier[:, k - 2 :] = rows[:, : rows.shape[1] - k + 1]
                keys = earlier * self.vocab_size ** (k - 1) + keys
            valid = position >= k - 1  # (T - 1,)
            if not valid.any():
                break
            raw = self.raw[k - 1].probabilities(keys, probability, self.vocab_size)
            is_top = (top == k)[None, :]
            if k < self.order:
                lower = self.continuation[k - 1].probabilities(keys, probability, self.vocab_size)
                probability = np.where(valid, np.where(is_top, raw, lower), probability)
            else:
                probability = np.where(valid, raw, probability)
        return torch.from_numpy(np.log(probability)).reshape(*ids.shape[:-1], ids.shape[-1] - 1)

    def next_token_probabilities(self, context: torch.Tensor) -> torch.Tensor:
        """The model's distribution over the next token after ``context`` (C,) ids (C >= 1): (V,) float64."""
        context = torch.as_tensor(context)
        check_rank("context", context, 1, "(time,)")
        if len(context) == 0:
            raise ValueError("context is empty; give at least one token (the model never scores a row's first)")
        candidates = torch.arange(self.vocab_size)[:, None]  # (V, 1)
        rows = torch.cat([context[None].expand(self.vocab_size, -1), candidates], dim=1)  # (V, C + 1)
        return self.log_probs(rows)[:, -1].exp()  # (V,)

    def perplexity(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """exp(mean negative log-probability) of ``targets`` (N, T) after ``inputs`` (N, T), window by window.

        The windows are those of ``next_token_pairs``: ``targets[:, t] = inputs[:, t + 1]``. Each target is scored
        from the tokens of its own window only, as a recurrent model starting each window from a zero state sees it.
        """
        check_rank("inputs", inputs, 2, "(windows, time)")
        check_rank("targets", targets, 2, "(windows, time)")
        for dim, what in ((0, "inputs (windows)"), (1, "inputs (time)")):
            check_same_size("targets", targets, dim, what, inputs.shape[dim])
        if not torch.equal(targets[:, :-1], inputs[:, 1:]):
            raise ValueError("targets must be inputs shifted by one (targets[:, t] == inputs[:, t + 1])")
        rows = torch.cat([inputs[:, :1], targets], dim=1)  # (N, T + 1)
        return math.exp(-self.log_probs(rows).mean().item())

    def _checked(self, ids: torch.Tensor, name: str, rank: int) -> np.ndarray:
        check_rank(name, ids, rank, "(time,)" if rank == 1 else "(rows, time)")
        check_integer_dtype(name, ids)
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(
                f"{name} holds ids from {int(ids.min())} to {int(ids.max())}, outside [0, {self.vocab_size}) "
                f"(shape {tuple(ids.shape)})"
            )
        return ids.detach().cpu().numpy().astype(np.int64)


def ngram_perplexities(
    train_ids: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, vocab_size: int, orders: range = range(1, 6)
) -> dict[int, float]:
    """Fit one ``NGramModel`` per order on ``train_ids`` (T,) and score the windows ``inputs``, ``targets`` (N, L).

    Returns ``{order: perplexity}``: the counting baselines a neural language model on the same vocabulary and
    split is compared with (chapters 1, 11 and 12 of the course).
    """
    return {order: NGramModel(order, vocab_size).fit(train_ids).perplexity(inputs, targets) for order in orders}
