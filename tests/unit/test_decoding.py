"""Sampling with a temperature: probabilities, the temperature limits, reproducibility, state carrying, errors."""

import itertools

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
    """One token per step after the prompt: the model sees T, then 1, 1, 1 ... tokens."""
    lengths = []
    original = model.forward

    def spy(ids, state=None):
        lengths.append(ids.shape[1])
        return original(ids, state)

    model.forward = spy
    decode(model, [1, 2, 3, 4], 3, temperature_sampler(1.0, torch.Generator().manual_seed(0)))
    assert lengths == [4, 1, 1, 1]


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
