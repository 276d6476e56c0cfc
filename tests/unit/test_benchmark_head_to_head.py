"""Chapter 12's grid compares like with like: every task's models hold about its RNN's parameters, the new models
plug into the earlier harnesses (the memory builder hook, the language model's sizes, the translation builder), and
a small slice of the grid runs, writes the shared metadata and resumes without training again."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from companion.memory import RecallTask, hidden_size_for, parameter_count, recall_model
from companion.modern_recurrent import MinGRU
from companion.reproducibility import RESULTS_METADATA

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def grid():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("head_to_head", BENCHMARKS / "head_to_head.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["head_to_head"]
    sys.path.remove(str(BENCHMARKS))


def test_memory_models_match_the_parameters_at_every_lag(grid):
    for build in grid.MEMORY_BUILDERS.values():
        counts = set()
        for lag in (5, 200):
            task = RecallTask(lag)
            hidden = hidden_size_for(lambda size, task=task, build=build: recall_model(build, size, task), 12_000)
            counts.add(parameter_count(recall_model(build, hidden, task)))
        assert len(counts) == 1  # sinusoidal positions: the count does not grow with the lag
        assert abs(counts.pop() / 12_000 - 1) < 0.02


def test_the_transformer_reads_the_recall_sequence_and_sees_the_first_token(grid):
    task = RecallTask(6)
    model = recall_model(grid.transformer_for_memory, 16, task)
    ids = task.examples(4, seed=0).inputs
    changed = ids.clone()
    changed[:, 0] = (changed[:, 0] % task.symbols) + 1
    assert model(ids).shape == (4, task.vocab_size)
    assert not torch.allclose(model(ids), model(changed))


def test_language_models_and_translators_match_the_rnn(grid):
    lm = [sum(p.numel() for p in grid.tiny_gpt.build(size, 91, 64).parameters()) for size in grid.LM_SIZES.values()]
    assert max(lm) / min(lm) < 1.1
    assert isinstance(grid.tiny_gpt.build("mingru88", 91, 64).recurrent, MinGRU)
    task = grid.attention_bottleneck.task()
    counts = {model: sum(p.numel() for p in grid.translator(model, task, 0).parameters()) for model in grid.MODELS}
    assert counts["gru"] == 52_272  # chapter 7's committed model
    assert max(counts.values()) / min(counts.values()) < 1.02


def test_a_slice_runs_writes_the_metadata_and_resumes(grid, tmp_path, monkeypatch):
    out = tmp_path / "grid.json"
    grid.main(["--tasks", "memory", "--lags", "5", "--models", "gru", "mingru", "--out", str(out)])
    written = json.loads(out.read_text())
    assert set(RESULTS_METADATA) <= set(written)
    rows = {row["model"]: row for row in written["tasks"]["memory"]["rows"]}
    assert rows["gru"]["source"] == "results/memory_vs_lag.json"  # read, not retrained
    assert rows["mingru"]["source"] == "this script"
    assert rows["mingru"]["mean"] > 0.9
    assert rows["mingru"]["inference_cpu_seconds"] > 0
    # a resumed run finds every run in the file and trains nothing
    monkeypatch.setattr(grid.memory_vs_lag, "run_point", lambda *args: pytest.fail("trained again"))
    grid.main(["--tasks", "memory", "--lags", "5", "--models", "gru", "mingru", "--out", str(out), "--resume"])
    assert json.loads(out.read_text())["tasks"]["memory"]["rows"] == written["tasks"]["memory"]["rows"]


def test_the_rate_grid_widens_past_an_edge_that_holds_the_best(grid):
    assert grid.widened((1, 2, 4), lambda lr: abs(lr - 2), factor=2) == [1, 2, 4]
    assert grid.widened((1, 2, 4), lambda lr: abs(lr - 10), factor=2) == [1, 2, 4, 8, 16]
    assert grid.widened((1, 2, 4), lambda lr: lr, factor=2) == [0.125, 0.25, 0.5, 1, 2, 4]  # at most three steps
