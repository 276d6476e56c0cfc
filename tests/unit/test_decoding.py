"""Sampling with a temperature: probabilities, the temperature limits, reproducibility, state carrying, errors."""

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.decoding import decode, sample, temperature_probabilities, temperature_sampler
from companion.language_models import RNNLanguageModel

V = 9


@pytest.fixture
def model():
    torch.manual_seed(0)
    return RNNLanguageModel(V, 16, embedding_dim=5)


@given(st.floats(0.05, 20), st.integers(0, 1000))
def test_probabilities_are_a_distribution(temperature, seed):
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(seed)) * 3
    probabilities = temperature_probabilities(logits, temperature)
    assert (probabilities >= 0).all()
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(3))


def test_temperature_one_is_the_softmax_and_order_is_kept():
    logits = torch.tensor([2.0, 0.5, -1.0, 0.0])
    torch.testing.assert_close(temperature_probabilities(logits, 1.0), torch.softmax(logits, -1))
    for temperature in (0.3, 1.0, 3.0):
        order = temperature_probabilities(logits, temperature).argsort()
        assert torch.equal(order, logits.argsort())


def test_low_temperature_approaches_the_argmax_and_high_the_uniform():
    logits = torch.tensor([[1.0, 3.0, 2.9, -2.0], [0.0, -1.0, 4.0, 3.5]])
    cold = temperature_probabilities(logits, 1e-3)
    torch.testing.assert_close(cold, torch.nn.functional.one_hot(logits.argmax(-1), 4).float())
    hot = temperature_probabilities(logits, 1e4)
    torch.testing.assert_close(hot, torch.full_like(hot, 0.25), atol=1e-3, rtol=0)
    # the largest probability grows as the temperature falls
    peaks = [temperature_probabilities(logits, t).max(-1).values for t in (4.0, 1.0, 0.5, 0.1)]
    assert all((later > earlier).all() for earlier, later in itertools.pairwise(peaks))


def test_sampling_at_a_tiny_temperature_is_greedy(model):
    generator = torch.Generator().manual_seed(3)
    out = sample(model, [1, 2, 3], 12, temperature=1e-4, generator=generator)
    ids = torch.tensor([1, 2, 3])
    for _ in range(12):  # greedy decoding, recomputed from scratch at every step
        logits, _ = model(ids[None])
        ids = torch.cat([ids, logits[0, -1].argmax()[None]])
    assert torch.equal(out, ids)


def test_sampling_is_reproducible_with_a_seeded_generator(model):
    first = sample(model, [4], 30, temperature=1.0, generator=torch.Generator().manual_seed(7))
    again = sample(model, [4], 30, temperature=1.0, generator=torch.Generator().manual_seed(7))
    other = sample(model, [4], 30, temperature=1.0, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_output_shapes_and_the_prompt_is_kept(model):
    one = sample(model, torch.tensor([1, 2]), 5, generator=torch.Generator().manual_seed(0))
    assert one.shape == (7,)
    assert one[:2].tolist() == [1, 2]
    batch = sample(model, torch.tensor([[1, 2], [3, 4], [5, 6]]), 4, generator=torch.Generator().manual_seed(0))
    assert batch.shape == (3, 6)
    assert batch[:, :2].tolist() == [[1, 2], [3, 4], [5, 6]]
    assert ((batch >= 0) & (batch < V)).all()
    assert torch.equal(sample(model, [1, 2], 0), torch.tensor([1, 2]))


def test_sampling_matches_the_distribution_it_draws_from():
    """A 'model' with fixed logits: draws follow softmax(logits / T)."""

    class Fixed(torch.nn.Module):
        vocab_size = 3

        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.tensor([0.0, 1.0, 2.0]))

        def forward(self, ids, state=None):
            return self.logits.expand(*ids.shape, 3), state

    prompts = torch.zeros(4000, 1, dtype=torch.long)
    for temperature in (0.5, 2.0):
        draws = sample(Fixed(), prompts, 1, temperature, torch.Generator().manual_seed(0))[:, 1]
        frequencies = torch.bincount(draws, minlength=3).float() / len(draws)
        expected = temperature_probabilities(torch.tensor([0.0, 1.0, 2.0]), temperature)
        torch.testing.assert_close(frequencies, expected, atol=0.03, rtol=0)


def test_decode_carries_the_state_instead_of_rereading(model):
    """One token per step after the prompt: the model sees T, then 1, 1 ... tokens (not the last one, whose
    scores nobody needs)."""
    lengths = []
    original = model.forward

    def spy(ids, state=None):
        lengths.append(ids.shape[1])
        return original(ids, state)

    model.forward = spy
    decode(model, [1, 2, 3, 4], 3, temperature_sampler(1.0, torch.Generator().manual_seed(0)))
    assert lengths == [4, 1, 1]


def test_training_mode_is_restored(model):
    model.train()
    sample(model, [1], 3, generator=torch.Generator().manual_seed(0))
    assert model.training
    model.eval()
    sample(model, [1], 3, generator=torch.Generator().manual_seed(0))
    assert not model.training


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("temperature", [0, -1.0, float("inf"), float("nan")])
def test_temperature_must_be_positive_and_finite(model, temperature):
    with pytest.raises(ValueError, match="temperature must be positive and finite"):
        sample(model, [1], 3, temperature=temperature)
    with pytest.raises(ValueError, match="temperature must be positive"):
        temperature_probabilities(torch.zeros(3), temperature)


def test_temperature_must_be_a_number(model):
    with pytest.raises(TypeError, match="temperature must be a number"):
        sample(model, [1], 3, temperature="hot")


def test_prompt_errors(model):
    with pytest.raises(ValueError, match=r"prompt holds ids \[9\] outside the vocabulary \[0, 9\)"):
        sample(model, [1, 9], 3)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        sample(model, [-1], 3)
    with pytest.raises(ValueError, match="prompt is empty"):
        sample(model, [], 3)
    with pytest.raises(TypeError, match="got a str"):
        sample(model, "hello", 3)
    with pytest.raises(TypeError, match="integer token ids"):
        sample(model, [1.5], 3)
    with pytest.raises(TypeError, match="prompt must hold integers"):
        sample(model, torch.tensor([1.0]), 3)
    with pytest.raises(ValueError, match="prompt must have 1 dimension"):
        sample(model, torch.zeros(1, 1, 1, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="num_tokens must be a non-negative int"):
        sample(model, [1], -1)


def test_prompt_is_checked_against_the_logits_when_the_model_has_no_vocab_size():
    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(100, 4)

        def forward(self, ids, state=None):
            return torch.zeros(*ids.shape, 5), state

    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 5\)"):
        sample(Plain(), [7], 2)


# ================================================================ Chapter 6: searches that stop at an end token

from hypothesis import settings  # noqa: E402

from companion.decoding import (  # noqa: E402
    Hypotheses,
    argmax,
    beam_search,
    exact_search,
    filter_logits,
    generate,
    greedy,
    length_penalty,
    sample_sequences,
    sampler,
    sequence_log_probs,
)
from companion.seq2seq import Seq2Seq, Seq2SeqConfig  # noqa: E402

BOS, END = 2, 3


def translator(seed=0, hidden_size=8, target_vocab=6):
    torch.manual_seed(seed)
    return Seq2Seq(Seq2SeqConfig(7, target_vocab, embedding_dim=4, hidden_size=hidden_size)).eval()


def encoded(model, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(1, 7, (batch, 4), generator=g)
    lengths = torch.randint(1, 5, (batch,), generator=g)
    return model.encode(source, lengths), torch.full((batch, 1), BOS)


class Table(torch.nn.Module):
    """A 'model' whose next-token probabilities are looked up by the whole prefix (tests only).

    The state is the tuple of ids each sequence has read; ``reorder_state`` picks tuples.
    """

    vocab_size = 5

    def __init__(self, table, default):
        super().__init__()
        self.table, self.default = table, default
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # decoding asks for the device of a parameter

    def forward(self, ids, state=None):
        read = list(state) if state is not None else [()] * ids.shape[0]
        rows = []
        for b, row in enumerate(ids.tolist()):
            steps = []
            for token in row:
                read[b] = (*read[b], token)
                steps.append(torch.tensor(self.table.get(read[b], self.default)).log())
            rows.append(torch.stack(steps))
        return torch.stack(rows), tuple(read)

    def reorder_state(self, state, indices):
        return tuple(state[i] for i in indices.tolist())


EPS = 1e-9  # (ids: 0 prompt, 1 end, 2 a, 3 b, 4 c)
TRAP = Table(
    {
        (0,): [EPS, EPS, 0.55, 0.45, EPS],  # greedy takes a
        (0, 2): [EPS, 0.30, 0.25, 0.25, 0.20],  # after a: end is best, 0.55 * 0.30 = 0.165
        (0, 3): [EPS, EPS, EPS, 0.50, 0.50],  # after b: 0.45 * 0.5 = 0.225 twice, both above 0.165
    },
    default=[EPS, 0.40, 0.20, 0.20, 0.20],  # after b b or b c: end, but 0.225 * 0.4 = 0.09 only
)


def test_greedy_is_the_argmax_recomputed_from_scratch(model):
    found = greedy(model, torch.tensor([[1, 2], [3, 4]]), 6, end_id=5)
    for b, prompt in enumerate(([1, 2], [3, 4])):
        ids = torch.tensor(prompt)
        for _ in range(int(found.lengths[b, 0])):
            logits, _ = model(ids[None])
            ids = torch.cat([ids, logits[0, -1].argmax()[None]])
        assert ids[2:].tolist() == found.ids[b, 0, : int(found.lengths[b, 0])].tolist()
        assert found.finished[b, 0] == (ids[-1] == 5)


@settings(max_examples=25)
@given(st.integers(0, 10_000), st.sampled_from([0.0, 0.6, 2.0]))
def test_beam_of_one_is_greedy(seed, alpha):
    model = translator(seed % 7)
    state, prompt = encoded(model, seed=seed)
    wide = greedy(model, prompt, 7, END, state=state)
    one = beam_search(model, prompt, 7, END, beam_size=1, alpha=alpha, state=state)
    assert torch.equal(one.ids, wide.ids)
    torch.testing.assert_close(one.log_probs, wide.log_probs)
    assert torch.equal(one.finished, wide.finished)


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.integers(2, 5))
def test_alpha_zero_scores_are_plain_log_probabilities(seed, beam_size):
    model = translator(seed % 5)
    state, prompt = encoded(model, seed=seed)
    found = beam_search(model, prompt, 6, END, beam_size=beam_size, alpha=0.0, state=state)
    torch.testing.assert_close(found.scores, found.log_probs)
    for k in range(beam_size):
        rescored = sequence_log_probs(model, prompt, found.ids[:, k], found.lengths[:, k], state=state)
        torch.testing.assert_close(rescored, found.log_probs[:, k], atol=1e-4, rtol=1e-4)
    finished = found.finished[:, 0]
    assert (found.scores[:, :-1][found.finished[:, 1:]] >= found.scores[:, 1:][found.finished[:, 1:]]).all()
    assert finished.any() or not found.finished.any()


def test_the_length_penalty_divides_the_log_probability():
    model = translator(1)
    state, prompt = encoded(model, seed=4)
    found = beam_search(model, prompt, 6, END, beam_size=3, alpha=0.8, state=state)
    torch.testing.assert_close(found.scores, found.log_probs / ((5 + found.lengths.float()) / 6) ** 0.8)
    torch.testing.assert_close(length_penalty(torch.tensor([1, 7]), 0.0), torch.ones(2))
    torch.testing.assert_close(length_penalty(torch.tensor([1, 7]), 1.0), torch.tensor([1.0, 2.0]))


def test_beam_search_is_batched_as_if_each_input_were_alone():
    model = translator(2)
    state, prompt = encoded(model, batch=4, seed=9)
    together = beam_search(model, prompt, 6, END, beam_size=3, alpha=0.6, state=state)
    for b in range(4):
        one = model.reorder_state(state, torch.tensor([b]))
        alone = beam_search(model, prompt[b : b + 1], 6, END, beam_size=3, alpha=0.6, state=one)
        width = alone.ids.shape[-1]
        assert torch.equal(alone.ids[0], together.ids[b, :, :width])
        torch.testing.assert_close(alone.scores[0], together.scores[b])


def all_outputs(vocab, end_id, max_length):
    """Every output that ends with end_id within max_length tokens (and has no end before)."""
    others = [token for token in range(vocab) if token != end_id]
    for n in range(max_length):
        for body in itertools.product(others, repeat=n):
            yield [*body, end_id]


@settings(max_examples=10)
@given(st.integers(0, 10_000))
def test_exact_search_finds_the_mode_that_enumeration_finds(seed):
    model = translator(seed % 4, target_vocab=4)
    state, prompt = encoded(model, batch=2, seed=seed)
    exact = exact_search(model, prompt, 4, END, state=state, max_expansions=1000)
    outputs = list(all_outputs(4, END, 4))
    for b in range(2):
        one = model.reorder_state(state, torch.tensor([b] * len(outputs)))
        ids, lengths = pad_outputs(outputs)
        scores = sequence_log_probs(model, prompt[b : b + 1].repeat(len(outputs), 1), ids, lengths, state=one)
        best = int(scores.argmax())
        assert exact.ids[b, 0, : len(outputs[best])].tolist() == outputs[best]
        torch.testing.assert_close(exact.log_probs[b, 0], scores[best], atol=1e-4, rtol=1e-4)
    # Wide enough to keep every prefix, beam search is exhaustive too and finds the same mode.
    beam = beam_search(model, prompt, 4, END, beam_size=64, state=state)
    torch.testing.assert_close(beam.log_probs[:, 0], exact.log_probs[:, 0], atol=1e-4, rtol=1e-4)


def pad_outputs(outputs):
    width = max(map(len, outputs))
    return torch.tensor([o + [0] * (width - len(o)) for o in outputs]), torch.tensor([len(o) for o in outputs])


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.integers(1, 6))
def test_no_search_beats_the_exact_mode(seed, beam_size):
    model = translator(seed % 5, target_vocab=5)
    state, prompt = encoded(model, batch=2, seed=seed)
    exact = exact_search(model, prompt, 5, END, state=state, max_expansions=5000)
    for found in (
        greedy(model, prompt, 5, END, state=state),
        beam_search(model, prompt, 5, END, beam_size=beam_size, state=state),
    ):
        finished = found.finished[:, 0]
        assert (found.log_probs[:, 0][finished] <= exact.log_probs[:, 0][finished] + 1e-5).all()


def test_a_wider_beam_can_lose_to_greedy():
    """Beam search is no guarantee of a better score than greedy: both of b's children outscore a's best one, so
    a beam of two drops the prefix a, whose end is the most probable output, and never sees it again."""
    prompt = torch.tensor([[0]])
    wide = greedy(TRAP, prompt, 3, end_id=1)
    assert wide.ids[0, 0].tolist() == [2, 1]
    assert wide.log_probs[0, 0].exp().item() == pytest.approx(0.165)
    beam = beam_search(TRAP, prompt, 3, end_id=1, beam_size=2)
    assert beam.finished[0, 0]
    assert beam.ids[0, 0, 0] == 3
    assert beam.log_probs[0, 0].exp().item() == pytest.approx(0.45 * 0.5 * 0.4)
    exact = exact_search(TRAP, prompt, 3, end_id=1)
    assert exact.ids[0, 0].tolist() == [2, 1]
    assert beam_search(TRAP, prompt, 3, end_id=1, beam_size=3).ids[0, 0, :2].tolist() == [2, 1]


@settings(max_examples=25)
@given(st.integers(0, 10_000), st.floats(0.1, 5.0))
def test_top_k_one_is_greedy_at_any_temperature(seed, temperature):
    model = translator(seed % 5)
    state, prompt = encoded(model, seed=seed)
    drawn = sample_sequences(
        model,
        prompt,
        7,
        END,
        state=state,
        top_k=1,
        temperature=temperature,
        generator=torch.Generator().manual_seed(seed),
    )
    assert torch.equal(drawn.ids, greedy(model, prompt, 7, END, state=state).ids)


def test_a_tiny_top_p_is_greedy_too():
    model = translator(3)
    state, prompt = encoded(model, seed=3)
    drawn = sample_sequences(model, prompt, 7, END, state=state, top_p=1e-6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn.ids, greedy(model, prompt, 7, END, state=state).ids)


@given(st.integers(0, 10_000), st.integers(1, 9), st.floats(0.01, 1.0))
def test_filters_keep_the_top_k_and_the_smallest_nucleus(seed, top_k, top_p):
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(seed)) * 2
    kept = torch.isfinite(filter_logits(logits, top_k=top_k))
    assert (kept.sum(-1) == top_k).all()
    assert (logits[kept].min() >= logits.topk(top_k).values[:, -1].min()).item()
    nucleus = torch.isfinite(filter_logits(logits, top_p=top_p))
    probabilities = torch.softmax(logits, -1)
    mass = (probabilities * nucleus).sum(-1)
    assert (mass >= top_p - 1e-6).all(), "the nucleus holds at least top_p"
    smallest_kept = torch.where(nucleus, probabilities, torch.inf).min(-1).values
    assert (mass - smallest_kept < top_p + 1e-6).all(), "without its least probable token it would hold less"
    assert nucleus.gather(1, logits.argmax(-1, keepdim=True)).all(), "the most probable token always stays"


def test_sampling_with_top_k_draws_from_the_renormalised_top_k():
    class Fixed(torch.nn.Module):
        vocab_size = 4

        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.tensor([0.0, 1.0, 2.0, 3.0]))

        def forward(self, ids, state=None):
            return self.logits.expand(*ids.shape, 4), state

    drawn = generate(
        Fixed(), torch.zeros(4000, 1, dtype=torch.long), 1, sampler(top_k=2, generator=torch.Generator().manual_seed(0))
    )
    frequencies = torch.bincount(drawn.ids[:, 0, 0], minlength=4).float() / 4000
    expected = torch.tensor([0.0, 0.0, 1.0, math.e]) / (1 + math.e)
    torch.testing.assert_close(frequencies, expected, atol=0.03, rtol=0)


def test_several_samples_per_input_repeat_its_state_and_are_reproducible():
    model = translator(4)
    state, prompt = encoded(model, batch=2, seed=1)
    first = sample_sequences(
        model, prompt, 6, END, state=state, num_samples=5, generator=torch.Generator().manual_seed(1)
    )
    again = sample_sequences(
        model, prompt, 6, END, state=state, num_samples=5, generator=torch.Generator().manual_seed(1)
    )
    assert first.ids.shape[:2] == (2, 5)
    assert torch.equal(first.ids, again.ids)
    for k in range(5):
        rescored = sequence_log_probs(model, prompt, first.ids[:, k], first.lengths[:, k], state=state)
        torch.testing.assert_close(rescored, first.log_probs[:, k], atol=1e-4, rtol=1e-4)


def test_the_language_model_reorders_its_state_for_beam_search(model):
    found = beam_search(model, torch.tensor([[1, 2, 3]]), 5, end_id=0, beam_size=4)
    assert found.ids.shape[:2] == (1, 4)
    torch.testing.assert_close(found.log_probs[0, 0], beam_search(model, [1, 2, 3], 5, 0, beam_size=4).log_probs[0, 0])
    one = beam_search(model, torch.tensor([[1, 2, 3]]), 5, end_id=0, beam_size=1)
    assert torch.equal(one.ids, greedy(model, torch.tensor([[1, 2, 3]]), 5, end_id=0).ids)


def test_outputs_are_padded_after_the_end_and_cut_by_sequences():
    found = Hypotheses(
        ids=torch.tensor([[[4, 3, 0], [4, 4, 4]]]),
        lengths=torch.tensor([[2, 3]]),
        log_probs=torch.zeros(1, 2),
        scores=torch.zeros(1, 2),
        finished=torch.tensor([[True, False]]),
    )
    assert found.sequences(end_id=3) == [[[4], [4, 4, 4]]]
    model = translator(0)
    state, prompt = encoded(model, seed=0)
    beam = beam_search(model, prompt, 6, END, beam_size=3, state=state)
    positions = torch.arange(beam.ids.shape[-1])
    assert (beam.ids[positions >= beam.lengths[..., None]] == 0).all()
    ended = beam.finished
    last = beam.ids.gather(2, (beam.lengths - 1).clamp(min=0)[..., None])[..., 0]
    assert (last[ended] == END).all()


# ---------------------------------------------------------------- errors of the searches


def test_search_errors_are_named():
    model = translator(0)
    state, prompt = encoded(model, seed=0)
    with pytest.raises(ValueError, match="beam_size must be an int of at least 1, got 0"):
        beam_search(model, prompt, 5, END, beam_size=0, state=state)
    with pytest.raises(ValueError, match=r"end_id 6 is not a token of the model's vocabulary \[0, 6\)"):
        greedy(model, prompt, 5, 6, state=state)
    with pytest.raises(ValueError, match=r"end_id -1 is not a token"):
        beam_search(model, prompt, 5, -1, beam_size=2, state=state)
    with pytest.raises(TypeError, match="end_id must be an int token id"):
        greedy(model, prompt, 5, None, state=state)
    with pytest.raises(ValueError, match="max_length must be an int of at least 1, got 0"):
        greedy(model, prompt, 0, END, state=state)
    with pytest.raises(ValueError, match=r"alpha \(the length penalty's exponent\) must be a finite number >= 0"):
        beam_search(model, prompt, 5, END, beam_size=2, alpha=-0.5, state=state)
    with pytest.raises(ValueError, match="top_k must be an int of at least 1"):
        sample_sequences(model, prompt, 5, END, state=state, top_k=0)
    with pytest.raises(ValueError, match=r"top_p must lie in \(0, 1\]"):
        sample_sequences(model, prompt, 5, END, state=state, top_p=1.5)
    with pytest.raises(ValueError, match="prompt holds ids"):
        greedy(model, torch.full((3, 1), 6), 5, END, state=state)


def test_over_long_outputs_are_refused_by_a_model_with_a_length_limit():
    model = translator(0)
    model.max_length = 8  # e.g. a positional table of 8 positions (Part V)
    state, prompt = encoded(model, seed=0)
    with pytest.raises(ValueError, match=r"the prompt \(1 tokens\) plus max_length=9 is longer than the 8 positions"):
        beam_search(model, prompt, 9, END, beam_size=2, state=state)
    assert greedy(model, prompt, 7, END, state=state).ids.shape[-1] <= 7


def test_beam_search_needs_a_model_that_reorders_its_state():
    class Plain(torch.nn.Module):
        vocab_size = 4

        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 4)

        def forward(self, ids, state=None):
            return self.layer(ids[..., None].float()), torch.zeros(1, ids.shape[0], 2)

    with pytest.raises(TypeError, match="Plain has no reorder_state"):
        beam_search(Plain(), torch.tensor([[1]]), 3, 0, beam_size=2, state=torch.zeros(1, 1, 2))


def test_exact_search_stops_at_its_budget():
    model = translator(0, target_vocab=6)
    state, prompt = encoded(model, batch=1, seed=0)
    with pytest.raises(RuntimeError, match="exact_search made max_expansions=3 model calls for input 0"):
        exact_search(model, prompt, 6, 5, state=state, max_expansions=3)
    assert argmax(torch.tensor([[0.0, 2.0, 1.0]])).tolist() == [1]
