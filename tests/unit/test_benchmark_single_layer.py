"""The pieces of benchmarks/single_layer_encoder_vs_lstm.py that decide what is compared: the tasks' labels, the
encoder's padding mask, the equal parameter counts and the tuning protocol's rows."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "single_layer_encoder_vs_lstm.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("single_layer_encoder_vs_lstm", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def strings(batch):
    """Each sequence's string (read-out or query removed) as a list of ids."""
    return [row[: length - 1].tolist() for row, length in zip(batch.ids, batch.lengths, strict=True)]


def test_parity_labels_count_the_ones(bench):
    batch = bench.parity(200, torch.Generator().manual_seed(0))
    for row, length, string, label in zip(batch.ids, batch.lengths, strings(batch), batch.labels, strict=True):
        assert 1 <= len(string) <= bench.PARITY_BITS[1]
        assert row[length - 1] == 3  # the read-out token
        assert (row[length:] == bench.PAD).all()
        assert label == string.count(2) % 2  # id 2 is a one
    assert 0.4 < batch.labels.float().mean() < 0.6


def test_membership_labels_say_whether_the_query_occurs(bench):
    batch = bench.membership(200, torch.Generator().manual_seed(0))
    alphabet = bench.ALPHABET
    for row, length, string, label in zip(batch.ids, batch.lengths, strings(batch), batch.labels, strict=True):
        query = int(row[length - 1])
        assert alphabet < query <= 2 * alphabet
        assert all(1 <= s <= alphabet for s in string)
        assert label == ((query - alphabet) in string)
    assert 0.4 < batch.labels.float().mean() < 0.6


@pytest.mark.parametrize("name", ["parity", "membership"])
def test_models_have_equal_parameters_and_ignore_padding(bench, name):
    spec = bench.task(name)
    encoder, lstm = bench.build("encoder", spec), bench.build("lstm", spec)
    assert abs(bench.parameters(lstm) / bench.parameters(encoder) - 1) < 0.02
    batch = spec.batch(8, torch.Generator().manual_seed(1))
    for model in (encoder, lstm):
        with torch.no_grad():
            padded = model(batch.ids, batch.lengths)
            # each sequence read alone, without the padding of the batch, gives the same logits
            pairs = zip(batch.ids, batch.lengths, strict=True)
            alone = [model(row[None, :length], length[None]) for row, length in pairs]
        assert torch.allclose(padded, torch.cat(alone), atol=1e-5)


def test_the_encoder_reads_both_ways(bench):
    spec = bench.task("parity")
    torch.manual_seed(0)
    encoder = bench.build("encoder", spec)
    ids = torch.tensor([[1, 2, 1, 3], [2, 2, 1, 3]])  # the first bit differs; the read-out sits last
    with torch.no_grad():
        logits = encoder(ids, torch.tensor([4, 4]))
    assert not torch.allclose(logits[0], logits[1])


def test_tuned_rows_and_summary(bench):
    rows = [
        bench.train(model, "parity", seed=seed, lr=lr, steps=3) | {"chosen_lr": chosen}
        for model, seed, lr, chosen in (
            ("encoder", 0, 1e-3, False),
            ("encoder", 0, 1e-2, True),
            ("encoder", 1, 1e-2, True),
            ("lstm", 0, 3e-3, True),
        )
    ]
    assert {r["steps"] for r in rows} == {3}
    assert all(0 <= r["test_accuracy"] <= 1 and r["train_cpu_seconds"] >= 0 for r in rows)
    table = bench.summarise(rows)
    assert [(t["model"], t["lr"], t["seeds"]) for t in table] == [("encoder", 1e-2, [0, 1]), ("lstm", 3e-3, [0])]
    assert "parity" in bench.format_summary(table)
