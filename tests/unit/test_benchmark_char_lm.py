"""The pieces of benchmarks/char_lm_vs_d2l.py that decide what is compared: batches, budget checks, memory, table."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "char_lm_vs_d2l.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("char_lm_vs_d2l", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_each_epoch_continues_with_new_batches(bench):
    inputs = torch.arange(12)[:, None].repeat(1, 3)  # 12 windows, row i holds i
    batches = bench.Batches(inputs, inputs + 100, batch_size=2, steps_per_epoch=3)
    assert len(batches) == 3
    first = [x[:, 0].tolist() for x, _ in batches]
    second = [x[:, 0].tolist() for x, _ in batches]
    assert first == [[0, 1], [2, 3], [4, 5]]
    assert second == [[6, 7], [8, 9], [10, 11]]


def test_budget_checks(bench):
    bench.Budget().check()
    assert bench.Budget(steps=10, batch_size=4, window=8).tokens == 320
    with pytest.raises(ValueError, match="multiple of epochs"):
        bench.Budget(steps=7, epochs=2).check()
    with pytest.raises(ValueError, match="hidden_size must be at least 1"):
        bench.Budget(hidden_size=0).check()
    with pytest.raises(ValueError, match="sides must be among"):
        bench.run(bench.Budget(), sides=("keras",))


def test_peak_memory_sees_a_temporary_allocation(bench):
    with bench.PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del block
    assert memory.peak > 48 * 2**20
    assert memory.method


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(bench):
    inputs = torch.randint(0, 7, (5, 4))
    ppl = bench.perplexity(lambda x: torch.zeros(*x.shape, 7), inputs, inputs, torch.device("cpu"))
    assert ppl == pytest.approx(7)


def test_table_lists_every_side_and_the_budget(bench):
    result = bench.Result(
        "companion", 5.0, 1000.0, 2.0, 2**20, "peak RSS growth", "cpu", 1, {"torch": "2"}, {"cpu_seconds": 1.0}
    )
    d2l = bench.Result(
        "d2l",
        5.1,
        500.0,
        4.0,
        2**21,
        "peak RSS growth",
        "cpu",
        1,
        {"torch": "2", "d2l": "1.0.3"},
        {"cpu_seconds": 4.0, "plot_renders": 30},
    )
    table = bench.format_table([result, d2l], bench.Budget())
    assert "companion Trainer" in table
    assert "d2l.Trainer + d2l.RNNLM (live plot)" in table
    assert "2,000" in table  # tokens per CPU second of the companion: 1000 * 2 / 1
    assert "409,600 training characters" in table
    assert "plot renders" in table


def test_the_json_has_the_shape_chapter_1_reads(bench):
    results = [
        bench.Result("companion", 5.1234, 1.0, 1.0, 1, "m", "cuda", 1, {}, {}),
        bench.Result("d2l", 5.2, 1.0, 1.0, 1, "m", "cuda", 1, {}, {}),
    ]
    budget = bench.Budget(lr=0.002)
    document = bench.results_document(results, budget, {"device": "cuda", "device_name": "NVIDIA H200"})
    assert document["device"] == "cuda (NVIDIA H200)"
    assert document["budget"]["lr"] == 0.002
    assert document["runs"] == [{"lr": 0.002, "val_perplexity": {"companion": 5.123, "d2l": 5.2}}]
    assert [result["side"] for result in document["results"]] == ["companion", "d2l"]
