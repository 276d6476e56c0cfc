"""The Kneser–Ney n-gram baselines: every next-token distribution sums to one, the vectorised model agrees with a
plain dictionary implementation of the formula, it learns what a counting model should, and bad input gets a clear
error."""

import collections
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.data import next_token_pairs
from companion.ngrams import NGramModel, _discounts, ngram_perplexities


def reference_probability(stream: list[int], order: int, vocab_size: int):
    """Modified interpolated Kneser–Ney written as the formula reads, with dictionaries (slow, obviously right)."""
    raw = {
        k: collections.Counter(tuple(stream[i : i + k]) for i in range(len(stream) - k + 1))
        for k in range(1, order + 1)
    }
    continuation = {}
    for k in range(1, order):
        counts = collections.Counter()
        for gram in raw[k + 1]:
            counts[gram[1:]] += 1
        continuation[k] = counts

    def statistics(table):
        discounts = _discounts(np.array(list(table.values())))
        totals, given = collections.Counter(), collections.Counter()
        for gram, count in table.items():
            totals[gram[:-1]] += count
            given[gram[:-1]] += discounts[min(count, 3)]
        return table, totals, given, discounts

    levels = {("raw", k): statistics(raw[k]) for k in raw} | {("kn", k): statistics(c) for k, c in continuation.items()}

    def probability(history: tuple, token: int, top: bool = True) -> float:
        k = len(history) + 1
        lower = 1 / vocab_size if k == 1 else probability(history[1:], token, top=False)
        table, totals, given, discounts = levels[("raw" if top else "kn", k)]
        total = totals[history]
        if total == 0:
            return lower
        count = table[(*history, token)]
        return (max(count - discounts[min(count, 3)], 0) + given[history] * lower) / total

    return probability


def small_stream(seed: int = 0, vocab_size: int = 5, length: int = 300) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, vocab_size, length)
    stream[50:80] = np.tile([1, 2, 3], 10) % vocab_size  # a repeated phrase, so that some counts are large
    return torch.tensor(stream)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_agrees_with_the_formula_written_with_dictionaries(order):
    stream = small_stream()
    model = NGramModel(order, 5).fit(stream)
    probability = reference_probability(stream.tolist(), order, 5)
    rows = torch.tensor(np.random.default_rng(1).integers(0, 5, (4, 9)))
    log_probs = model.log_probs(rows)
    assert log_probs.shape == (4, 8)
    assert log_probs.dtype == torch.float64
    for row in range(4):
        for t in range(1, 9):
            # The history is cut at the start of the row.
            history = tuple(rows[row, max(0, t - order + 1) : t].tolist())
            expected = math.log(probability(history, int(rows[row, t])))
            assert log_probs[row, t - 1].item() == pytest.approx(expected, abs=1e-10)


@given(
    st.integers(1, 5),
    st.integers(2, 7),
    st.integers(0, 1000),
    st.lists(st.integers(0, 6), min_size=1, max_size=6),
)
def test_every_next_token_distribution_sums_to_one(order, vocab_size, seed, context):
    stream = small_stream(seed, vocab_size=vocab_size, length=120)
    model = NGramModel(order, vocab_size).fit(stream)
    context = torch.tensor([token % vocab_size for token in context])  # also contexts never seen
    probabilities = model.next_token_probabilities(context)
    assert probabilities.shape == (vocab_size,)
    assert (probabilities > 0).all()  # the uniform bottom level: never zero, even for unseen tokens
    assert probabilities.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_a_token_never_seen_in_training_still_gets_probability():
    model = NGramModel(3, 6).fit(torch.tensor([1, 2, 3] * 20))  # ids 0, 4 and 5 never occur
    probabilities = model.next_token_probabilities(torch.tensor([1, 2]))
    assert probabilities[3] > 0.9  # "1 2" was always followed by 3
    assert 0 < probabilities[5] < 0.01


def test_a_longer_history_predicts_a_deterministic_pattern_better():
    stream = torch.tensor([0, 1, 0, 2] * 200)  # after 0 comes 1 or 2 (alternating): a bigram cannot tell which
    inputs, targets = next_token_pairs(stream, 16)
    perplexity = ngram_perplexities(stream, inputs, targets, vocab_size=3, orders=range(1, 4))
    assert perplexity[1] > perplexity[2] > perplexity[3]
    assert perplexity[3] < 1.2  # two tokens back decide the next one


def test_random_tokens_have_perplexity_near_the_vocabulary_size():
    generator = torch.Generator().manual_seed(0)
    stream = torch.randint(0, 8, (20_000,), generator=generator)
    held_out = torch.randint(0, 8, (4_001,), generator=generator)
    inputs, targets = next_token_pairs(held_out, 40)
    for order, value in ngram_perplexities(stream, inputs, targets, 8, orders=range(1, 4)).items():
        # Higher orders overfit a little (their histories are rarely seen): never better than uniform.
        assert 7.9 < value < 8.6, (order, value)


def test_perplexity_scores_each_window_on_its_own():
    model = NGramModel(2, 4).fit(torch.tensor([0, 1, 2, 3] * 30))
    inputs, targets = next_token_pairs(torch.tensor([0, 1, 2, 3] * 5), 4)
    rows = torch.cat([inputs[:, :1], targets], dim=1)  # (windows, 5)
    expected = math.exp(-model.log_probs(rows).mean().item())
    assert model.perplexity(inputs, targets) == pytest.approx(expected)


def test_fitting_again_starts_from_scratch():
    model = NGramModel(2, 4).fit(torch.tensor([0, 1] * 20))
    refit = NGramModel(2, 4).fit(torch.tensor([2, 3] * 20))
    model.fit(torch.tensor([2, 3] * 20))
    context = torch.tensor([2])
    assert torch.equal(model.next_token_probabilities(context), refit.next_token_probabilities(context))


def test_discounts_follow_chen_and_goodman():
    counts = np.array([1] * 40 + [2] * 20 + [3] * 10 + [4] * 5 + [9] * 5)
    y = 40 / (40 + 2 * 20)
    expected = [0.0, 1 - 2 * y * 20 / 40, 2 - 3 * y * 10 / 20, 3 - 4 * y * 5 / 10]
    np.testing.assert_allclose(_discounts(counts), expected)


def test_repr_says_what_was_counted():
    assert "not fitted" in repr(NGramModel(2, 3))
    assert "distinct 2-grams" in repr(NGramModel(2, 3).fit(torch.tensor([0, 1, 2, 0])))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: NGramModel(0, 5), ValueError, "order must be a positive int"),
        (lambda: NGramModel(2, 0), ValueError, "vocab_size must be a positive int"),
        (lambda: NGramModel(11, 91), ValueError, "does not fit the 64-bit n-gram keys"),
        (lambda: NGramModel(2, 5).fit(torch.tensor([[1, 2]])), ValueError, "must have 1 dimensions"),
        (lambda: NGramModel(2, 5).fit(torch.tensor([1.0, 2.0])), TypeError, "must hold integers"),
        (lambda: NGramModel(2, 5).fit(torch.tensor([1, 7])), ValueError, "outside \\[0, 5\\)"),
        (lambda: NGramModel(3, 5).fit(torch.tensor([1, 2])), ValueError, "needs at least 3"),
        (lambda: NGramModel(2, 5).log_probs(torch.tensor([[1, 2]])), RuntimeError, "not fitted"),
        (lambda: _fitted().log_probs(torch.tensor([1])), ValueError, "T >= 2 tokens per row"),
        (lambda: _fitted().next_token_probabilities(torch.tensor([], dtype=torch.long)), ValueError, "is empty"),
        (lambda: _fitted().perplexity(torch.tensor([[1, 2]]), torch.tensor([[3, 4]])), ValueError, "shifted by one"),
        (lambda: _fitted().perplexity(torch.tensor([[1, 2]]), torch.tensor([[2, 3, 4]])), ValueError, "size 3"),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _fitted() -> NGramModel:
    return NGramModel(2, 5).fit(torch.tensor([0, 1, 2, 3, 4] * 4))
