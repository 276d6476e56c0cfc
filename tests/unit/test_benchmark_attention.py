"""The pieces of benchmarks/attention_vs_rnn.py that decide what the chapter reports: crossovers, exponents, table."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "attention_vs_rnn.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("attention_vs_rnn", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_crossover_interpolates_on_log_log_axes(bench):
    lengths = [10, 100, 1000]
    # n^2 / 100 against n: equal at n = 100 exactly
    assert bench.crossover(lengths, [1, 100, 10_000], [10, 100, 1000]) == pytest.approx(100)
    # n^2 / 200 against n: equal at n = 200, between the measured 100 and 1000
    assert bench.crossover(lengths, [0.5, 50, 5000], [10, 100, 1000]) == pytest.approx(200)


def test_crossover_ignores_noise_before_the_last_sign_change(bench):
    # above at 16 by noise, below at 32 and 64, above from 128: the crossover lies between 64 and 128
    at = bench.crossover([16, 32, 64, 128], [1.1, 0.9, 1.8, 8.0], [1.0, 1.0, 2.0, 4.0])
    assert 64 < at < 128


def test_crossover_edge_cases(bench):
    assert bench.crossover([1, 2], [2, 3], [1, 1]) == 1.0  # above everywhere: at or below the first length
    assert bench.crossover([1, 2], [1, 1], [2, 3]) is None  # never above


def test_scaling_exponent_recovers_a_power_law(bench):
    lengths = [64, 128, 256, 512, 1024]
    assert bench.scaling_exponent(lengths, [n**2 for n in lengths], smallest=128) == pytest.approx(2)
    assert bench.scaling_exponent(lengths, [3 * n for n in lengths], smallest=64) == pytest.approx(1)


def test_a_small_measurement_has_every_layer_and_exact_memory(bench):
    setup = bench.Setup(batch=2, width=8, heads=2, repeats=1)
    points = bench.measure(8, setup)
    assert [point.layer for point in points] == list(bench.LAYERS)
    assert all(point.cpu_s_min <= point.cpu_s <= point.cpu_s_max for point in points)
    again = bench.measure(8, setup)
    assert [point.saved_bytes for point in points] == [point.saved_bytes for point in again]  # load-independent
    table = bench.format_table(points)
    assert table.splitlines()[0].startswith("CPU ms")
    assert table.splitlines()[1].split() == ["n", "scratch", "fused", "RNN", "LSTM"]
    assert max(len(line) for line in table.splitlines()) <= 80  # fits the page


def test_the_committed_results_cover_the_chapters_lengths(bench):
    results = json.loads((PATH.parent / "results" / "attention_vs_rnn.json").read_text())
    assert set(bench.LENGTHS) <= {point["length"] for point in results["points"]}
    assert {point["layer"] for point in results["points"]} == set(bench.LAYERS)
    assert results["environment"]["packages"]["torch"]
