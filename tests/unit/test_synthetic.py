"""companion.data.synthetic: copy, reverse, recall-the-first-token and the adding problem."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.data import Examples, adding_problem, copy_task, recall_task, reverse_task

token_tasks = [copy_task, reverse_task]


@pytest.mark.parametrize("task", token_tasks)
def test_token_task_shapes_dtype_and_range(task):
    examples = task(64, 7, vocab_size=5, seed=1)
    assert isinstance(examples, Examples)
    assert examples.inputs.shape == examples.targets.shape == (64, 7)
    assert examples.inputs.dtype == examples.targets.dtype == torch.long
    assert examples.inputs.min() == 1  # id 0 stays free for padding
    assert examples.inputs.max() == 4  # ... and every other id is used
    assert set(examples.inputs.unique().tolist()) == {1, 2, 3, 4}


@given(st.integers(1, 20), st.integers(1, 20), st.integers(2, 30), st.integers(0, 2**31))
def test_copy_and_reverse_targets(num_examples, length, vocab_size, seed):
    copy = copy_task(num_examples, length, vocab_size, seed)
    reverse = reverse_task(num_examples, length, vocab_size, seed)
    assert torch.equal(copy.targets, copy.inputs)
    assert copy.targets.data_ptr() != copy.inputs.data_ptr()  # a copy, so editing one leaves the other
    assert torch.equal(reverse.inputs, copy.inputs)  # same seed, same tokens
    assert torch.equal(reverse.targets, reverse.inputs.flip(1))
    assert torch.equal(reverse.targets[:, 0], reverse.inputs[:, -1])
    assert int(copy.inputs.min()) >= 1
    assert int(copy.inputs.max()) <= vocab_size - 1


def test_vocab_size_two_gives_only_token_one():
    assert (copy_task(3, 4, vocab_size=2).inputs == 1).all()


@given(st.integers(1, 20), st.integers(0, 30), st.integers(2, 30), st.integers(0, 2**31))
def test_recall_target_is_the_first_token(num_examples, lag, vocab_size, seed):
    examples = recall_task(num_examples, lag, vocab_size, seed)
    assert examples.inputs.shape == (num_examples, lag + 1)
    assert examples.targets.shape == (num_examples,)
    assert examples.targets.dtype == torch.long
    assert torch.equal(examples.targets, examples.inputs[:, 0])
    assert int(examples.inputs.min()) >= 1
    assert int(examples.inputs.max()) <= vocab_size - 1


def test_recall_target_is_uniform_so_chance_is_one_over_vocab_size_minus_one():
    targets = recall_task(9000, 3, vocab_size=10).targets
    frequencies = torch.bincount(targets, minlength=10)[1:].float() / len(targets)
    assert torch.allclose(frequencies, torch.full((9,), 1 / 9), atol=0.015)


@given(st.integers(1, 20), st.integers(2, 40), st.integers(0, 2**31))
def test_adding_problem_markers_and_target(num_examples, length, seed):
    inputs, targets = adding_problem(num_examples, length, seed)
    assert inputs.shape == (num_examples, length, 2)
    assert targets.shape == (num_examples,)
    assert inputs.dtype == targets.dtype == torch.float32
    numbers, markers = inputs[..., 0], inputs[..., 1]
    assert ((numbers >= 0) & (numbers < 1)).all()
    assert set(markers.unique().tolist()) <= {0.0, 1.0}
    assert (markers.sum(1) == 2).all()
    half = length // 2
    assert (markers[:, :half].sum(1) == 1).all()
    assert (markers[:, half:].sum(1) == 1).all()
    assert torch.allclose(targets, (numbers * markers).sum(1))


def test_adding_problem_baseline_of_the_docstring():
    _, targets = adding_problem(20000, 10, seed=3)
    assert ((targets - 1.0) ** 2).mean().item() == pytest.approx(1 / 6, abs=0.01)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: copy_task(8, 5, 7, seed),
        lambda seed: reverse_task(8, 5, 7, seed),
        lambda seed: recall_task(8, 5, 7, seed),
        lambda seed: adding_problem(8, 5, seed),
    ],
    ids=["copy", "reverse", "recall", "adding"],
)
def test_same_seed_same_data_different_seed_different_data_global_stream_untouched(make):
    state = torch.get_rng_state()
    first, again, other = make(0), make(0), make(1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.inputs, again.inputs)
    assert torch.equal(first.targets, again.targets)
    assert not torch.equal(first.inputs, other.inputs)


def test_global_seed_does_not_change_the_data():
    torch.manual_seed(0)
    first = copy_task(4, 6)
    torch.manual_seed(1)
    assert torch.equal(copy_task(4, 6).inputs, first.inputs)


@pytest.mark.parametrize("task", token_tasks)
def test_token_task_errors(task):
    with pytest.raises(ValueError, match=r"^num_examples must be at least 1, got 0$"):
        task(0, 5)
    with pytest.raises(ValueError, match=r"^length must be at least 1, got 0$"):
        task(3, 0)
    with pytest.raises(ValueError, match=r"^vocab_size must be at least 2 \(id 0 is reserved for padding\), got 1$"):
        task(3, 5, vocab_size=1)


def test_recall_task_errors():
    with pytest.raises(ValueError, match=r"num_examples must be at least 1, got -2"):
        recall_task(-2, 5)
    with pytest.raises(ValueError, match=r"vocab_size must be at least 2"):
        recall_task(3, 5, vocab_size=0)


def test_recall_task_with_no_lag_is_just_the_token():
    examples = recall_task(5, 0)
    assert examples.inputs.shape == (5, 1)
    assert torch.equal(examples.targets, examples.inputs[:, 0])


def test_recall_task_names_a_bad_lag():
    with pytest.raises(ValueError, match=r"^lag must be at least 0, got -1$"):
        recall_task(3, -1)


def test_adding_problem_errors():
    with pytest.raises(ValueError, match=r"^length must be at least 2, got 1$"):
        adding_problem(4, 1)
    with pytest.raises(ValueError, match=r"^num_examples must be at least 1, got 0$"):
        adding_problem(0, 10)


def test_recall_with_a_filler_holds_the_same_tokens_to_recall_and_then_only_the_filler():
    noisy, blank = recall_task(30, 6, vocab_size=5, seed=2), recall_task(30, 6, vocab_size=5, seed=2, filler=5)
    assert torch.equal(noisy.targets, blank.targets)
    assert (blank.inputs[:, 1:] == 5).all()
    with pytest.raises(ValueError, match=r"filler must be an int id outside the recalled ids 1 \.\. 4"):
        recall_task(3, 2, vocab_size=5, filler=3)
