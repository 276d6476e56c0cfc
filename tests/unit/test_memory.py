"""companion.memory and benchmarks/memory_vs_lag.py: the recall task holds what it says, the classifier reads the
last real step of any recurrent layer, equal-parameter sizing finds the closest size, training is full BPTT,
deterministic and learns an easy lag, and the sweep's bookkeeping (summaries, skipping, resuming) is right."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from companion.bptt import rnn_with_radius
from companion.gated_cells import GRU, LSTM
from companion.memory import (
    Budget,
    RecallTask,
    SequenceClassifier,
    accuracy_on,
    hidden_size_for,
    initial_state_gradients,
    parameter_count,
    recall_model,
    recall_point,
    recurrent_builders,
    train_recall,
)

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_vs_lag.py"
QUICK = Budget(steps=300, batch_size=32, lr=1e-2, eval_every=50, validation_examples=256, test_examples=256)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("memory_vs_lag", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


# ---------------------------------------------------------------- the task


@given(st.integers(0, 30), st.booleans(), st.integers(2, 9), st.integers(0, 2**16))
def test_the_target_is_the_first_token_and_the_filler_is_what_the_task_says(lag, distractors, symbols, seed):
    task = RecallTask(lag, distractors, symbols)
    inputs, targets = task.examples(50, seed)
    assert inputs.shape == (50, lag + 1)
    assert torch.equal(targets, inputs[:, 0])
    assert ((targets >= 1) & (targets <= symbols)).all()
    if distractors:
        assert ((inputs >= 1) & (inputs <= symbols)).all()
    else:
        assert (inputs[:, 1:] == task.blank).all()
    assert task.vocab_size == symbols + 2
    assert task.chance == 1 / symbols


def test_both_fillers_ask_for_the_same_tokens_and_seeds_repeat():
    with_noise, blank = RecallTask(7, True).examples(20, 3), RecallTask(7, False).examples(20, 3)
    assert torch.equal(with_noise.targets, blank.targets)
    assert torch.equal(with_noise.inputs, RecallTask(7, True).examples(20, 3).inputs)
    assert not torch.equal(with_noise.inputs, RecallTask(7, True).examples(20, 4).inputs)


def test_task_errors():
    with pytest.raises(ValueError, match="lag must be a non-negative int"):
        RecallTask(-1)
    with pytest.raises(ValueError, match="symbols must be an int of at least 2"):
        RecallTask(3, symbols=1)


# ---------------------------------------------------------------- the classifier


def test_classifier_reads_the_last_real_step_of_any_layer():
    torch.manual_seed(0)
    task = RecallTask(4)
    scratch = LSTM(task.vocab_size, 6)
    fused = nn.LSTM(task.vocab_size, 6, batch_first=True)
    fused.load_state_dict(scratch.state_dict())
    ours, theirs = (SequenceClassifier(layer, task.vocab_size, 3) for layer in (scratch, fused))
    theirs.head.load_state_dict(ours.head.state_dict())
    ids, lengths = task.examples(4, 0).inputs, torch.tensor([5, 2, 1, 3])
    torch.testing.assert_close(ours(ids, lengths), theirs(ids, lengths), atol=1e-5, rtol=1e-5)
    for b, length in enumerate(lengths.tolist()):  # each sequence scored as if it were alone and unpadded
        torch.testing.assert_close(ours(ids[b : b + 1, :length])[0], ours(ids, lengths)[b], atol=1e-5, rtol=1e-5)
    assert ours(ids).shape == (4, 3)


def test_classifier_sizes_its_head_from_the_layer_or_from_feature_size():
    assert SequenceClassifier(GRU(5, 4, bidirectional=True), 5, 3).head.in_features == 8

    class Encoder(nn.Module):
        """Any module with the interface, here without hidden_size: a Transformer encoder would look the same."""

        def forward(self, inputs, state=None, lengths=None):
            return inputs.cumsum(1), None

    classifier = SequenceClassifier(Encoder(), 5, 3, feature_size=5)
    assert classifier(torch.randint(0, 5, (2, 4))).shape == (2, 3)
    with pytest.raises(TypeError, match="pass feature_size"):
        SequenceClassifier(Encoder(), 5, 3)
    with pytest.raises(
        ValueError, match=r"recurrent\.input_size is 4, but the classifier feeds it one-hot vectors of 5"
    ):
        SequenceClassifier(nn.GRU(4, 3, batch_first=True), 5, 3)


# ---------------------------------------------------------------- equal parameters


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("target", [500, 12_000])
def test_hidden_size_for_is_the_closest_size(name, target):
    task = RecallTask(3)
    build = recurrent_builders()[name]

    def count(size):
        return parameter_count(recall_model(build, size, task))

    size = hidden_size_for(lambda size: recall_model(build, size, task), target)
    assert abs(count(size) - target) <= abs(count(size + 1) - target)
    assert size == 1 or abs(count(size) - target) <= abs(count(size - 1) - target)


def test_equal_budgets_give_the_lstm_fewer_units_than_the_gru_and_the_gru_fewer_than_the_rnn():
    task = RecallTask(3)
    sizes = {
        name: hidden_size_for(lambda size, build=build: recall_model(build, size, task), 12_000)
        for name, build in recurrent_builders().items()
    }
    assert sizes["lstm"] < sizes["gru"] < sizes["rnn"]
    assert sizes["lstm"] == sizes["lstm-chrono"] == sizes["lstm-forget1"]


# ---------------------------------------------------------------- training


def test_training_learns_a_short_lag_and_is_deterministic():
    task = RecallTask(2)
    build = recurrent_builders()["lstm-chrono"]
    first, hidden = recall_point(build, task, QUICK, seed=1, parameters=1500)
    again, _ = recall_point(build, task, QUICK, seed=1, parameters=1500)
    assert first == again.__class__(**{**again.to_dict(), "cpu_seconds": first.cpu_seconds})
    assert first.accuracy > 0.9
    assert first.steps <= QUICK.steps
    assert hidden == hidden_size_for(lambda size: recall_model(build, size, task), 1500)


def test_the_gradient_reaches_the_first_step():
    """Full BPTT: the loss at the end sends a gradient to the token to recall, however long the lag."""
    torch.manual_seed(2)
    task = RecallTask(30, distractors=False)
    model = recall_model(recurrent_builders()["lstm-chrono"], 8, task)
    ids, targets = task.examples(4, 0)
    embedded = nn.functional.one_hot(ids, task.vocab_size).float().requires_grad_()
    outputs, _ = model.recurrent(embedded)
    nn.functional.cross_entropy(model.head(outputs[:, -1]), targets).backward()
    assert embedded.grad[:, 0].abs().sum() > 0


def test_early_stopping_and_accuracy():
    torch.manual_seed(3)
    task = RecallTask(1)
    model = recall_model(recurrent_builders()["lstm"], 8, task)
    chance = accuracy_on(model, task.examples(400, 9))
    assert 0 <= chance < 0.5
    result = train_recall(model, task, QUICK, seed=0)
    assert result.validation_accuracy >= QUICK.stop_at
    assert result.steps < QUICK.steps  # stopped early, at a multiple of eval_every
    assert result.steps % QUICK.eval_every == 0


# ---------------------------------------------------------------- the benchmark's bookkeeping


def test_summary_and_skipping(bench):
    assert bench.summarise([0.5, 1.0, 0.75]) == pytest.approx({"mean": 0.75, "min": 0.5, "max": 1.0, "std": 0.25})

    def row(lag, mean):
        return {"task": "blank", "model": "rnn", "lag": lag, "status": "run", "mean": mean, "chance": 0.125}

    assert bench.skip_reason([row(5, 0.9), row(10, 0.13)], "blank", "rnn") is None
    assert bench.skip_reason([row(5, 0.13), row(10, 0.13)], "blank", "rnn") == "at chance at lags 5 and 10"
    assert bench.skip_reason([row(5, 0.13), row(10, 0.13)], "blank", "gru") is None
    skipped = {"task": "blank", "model": "rnn", "lag": 20, "status": "skipped", "reason": "because"}
    assert bench.skip_reason([row(5, 0.13), row(10, 0.13), skipped], "blank", "rnn") == "because"


def test_a_tiny_sweep_writes_a_results_file_and_resumes(bench, tmp_path):
    out = tmp_path / "results.json"
    common = ["--models", "rnn", "--tasks", "blank", "--seeds", "1", "2", "--lrs", "0.01", "--steps", "50"]
    bench.main([*common, "--lags", "1", "--parameters", "500", "--out", str(out)])
    first = json.loads(out.read_text())
    assert first["environment"]["packages"]["torch"] == torch.__version__
    assert first["config"]["budget"]["steps"] == 50
    (row,) = first["rows"]
    assert (row["task"], row["model"], row["lag"], row["status"]) == ("blank", "rnn", 1, "run")
    assert len(row["accuracies"]) == 2
    assert row["min"] <= row["mean"] <= row["max"]
    assert abs(row["parameters"] - 500) < 60
    bench.main([*common, "--lags", "1", "2", "--parameters", "500", "--out", str(out), "--resume"])
    second = json.loads(out.read_text())
    assert [r["lag"] for r in second["rows"]] == [1, 2]
    assert second["rows"][0] == row  # kept, not rerun
    assert second["cpu_seconds_total"] > first["cpu_seconds_total"]
    assert len(second["runs"]) == 2


# ---------------------------------------------------------------- gradients to the initial state


def test_initial_state_gradients_of_a_linear_path_and_of_an_lstm():
    # zero inputs and biases keep the state at 0, where tanh is linear: |dL/dh_0| = |(W_h^T)^n u| = a^n exactly
    rnn = rnn_with_radius(2, 4, 0.5, generator=torch.Generator().manual_seed(0)).double()
    norms = initial_state_gradients(rnn, torch.zeros(3, 6, 2, dtype=torch.float64), [1, 3, 6])
    assert set(norms) == {"h"}
    torch.testing.assert_close(norms["h"], torch.tensor([0.5, 0.5**3, 0.5**6], dtype=torch.float64))
    torch.manual_seed(0)
    inputs = torch.randn(3, 6, 2, dtype=torch.float64)
    lstm = LSTM(2, 5).double()
    fused = nn.LSTM(2, 5, batch_first=True).double()
    fused.load_state_dict(lstm.state_dict())
    ours, theirs = (initial_state_gradients(layer, inputs, [1, 2, 6]) for layer in (lstm, fused))
    assert set(ours) == {"h", "c"}
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key])
    # one step: dL/dc_0 = f_1 * o_1 * (1 - tanh(c_1)^2) * u exactly
    gates = inputs[:, 0] @ fused.weight_ih_l0.T + fused.bias_ih_l0 + fused.bias_hh_l0  # h_0 = 0
    i, f, g, o = gates.chunk(4, 1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c1 = i * g  # c_0 = 0
    expected = (f * o * (1 - torch.tanh(c1) ** 2) / 5**0.5).norm(dim=1).mean()
    torch.testing.assert_close(ours["c"][0], expected)


def test_initial_state_gradients_errors():

    with pytest.raises(ValueError, match="distances must lie between 1 and inputs' time dimension 4"):
        initial_state_gradients(nn.GRU(2, 3, batch_first=True), torch.randn(1, 4, 2), [5])
    with pytest.raises(ValueError, match="forwards only"):
        initial_state_gradients(nn.GRU(2, 3, batch_first=True, bidirectional=True), torch.randn(1, 4, 2), [1])


def test_the_sweep_takes_any_layer_with_the_interface(bench, tmp_path, monkeypatch):
    """Chapter 12 puts other layers into the same harness: a module of builders, named on the command line."""
    import types

    class Mean(nn.Module):
        """(B, T, D) -> (B, T, H): a projection then a running mean; no state, like a Transformer encoder."""

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.input_size, self.hidden_size = input_size, hidden_size
            self.project = nn.Linear(input_size, hidden_size)

        def forward(self, inputs, state=None, lengths=None):
            steps = torch.arange(1, inputs.shape[1] + 1)[None, :, None]
            return self.project(inputs).cumsum(1) / steps, None

    module = types.ModuleType("extra_builders")
    module.BUILDERS = {"mean": lambda hidden, task: Mean(task.vocab_size, hidden)}
    monkeypatch.setitem(sys.modules, "extra_builders", module)
    out = tmp_path / "mean.json"
    options = ["--builders", "extra_builders:BUILDERS", "--models", "mean", "--tasks", "blank", "--lags", "1"]
    bench.main([*options, "--seeds", "1", "--lrs", "0.01", "--steps", "20", "--parameters", "300", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "mean"
    assert abs(row["parameters"] - 300) < 40
    with pytest.raises(SystemExit, match="unknown models"):
        bench.main(["--models", "transformer", "--out", str(out)])


def test_a_resumed_sweep_may_extend_one_model_and_keeps_what_came_before(bench, tmp_path):
    out = tmp_path / "results.json"
    common = ["--tasks", "blank", "--seeds", "1", "--lrs", "0.01", "--steps", "20", "--parameters", "300"]
    bench.main([*common, "--models", "rnn", "lstm", "--lags", "1", "--out", str(out)])
    bench.main([*common, "--models", "lstm", "--lags", "2", "--out", str(out), "--resume"])
    results = json.loads(out.read_text())
    assert results["config"]["models"] == ["rnn", "lstm"]
    assert results["config"]["lags"] == [1, 2]
    assert [run["command"].split("--lags")[1].split()[0] for run in results["runs"]] == ["1", "2"]
    assert [(r["model"], r["lag"]) for r in results["rows"]] == [("lstm", 1), ("lstm", 2), ("rnn", 1)]
