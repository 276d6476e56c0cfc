"""The pieces of Part V's benchmarks that decide what is measured: the KV-cache timing compares identical
generations, the pre-/post-LN runs use the translation task's real characters and the companion's gradient norms,
and the tiny-GPT sizes build what they name."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from companion.language_models import RNNLanguageModel
from companion.pretraining import GPT

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kv_cache():
    yield load("kv_cache")
    del sys.modules["kv_cache"]


@pytest.fixture(scope="module")
def placement():
    yield load("layer_norm_placement")
    del sys.modules["layer_norm_placement"]


def test_kv_cache_rows_time_both_sides_and_check_their_tokens(kv_cache):
    settings = kv_cache.Settings(d_model=16, nhead=2, num_layers=1, prompt_length=4, lengths=(3, 6), repeats=2)
    results = kv_cache.run(settings, torch.device("cpu"), log=lambda line: None)
    assert [row["new_tokens"] for row in results["rows"]] == [3, 6]
    for row in results["rows"]:
        assert len(row["repeats"]) == 2
        assert row["cache_cpu_seconds"] >= 0
        assert row["speedup_cpu"] > 0
        assert row["speedup_wall"] > 0
    assert results["parameters"] == sum(p.numel() for p in settings.model(torch.device("cpu")).parameters())
    assert set(results) == {"settings", "parameters", "rows"}  # main adds the metadata (ResultsWriter)
    assert "6" in kv_cache.format_row(kv_cache.Row(6, 1.0, 3.0, 1.0, 3.0, 3.0, 3.0))


def test_kv_cache_measure_refuses_generators_that_disagree(kv_cache, monkeypatch):
    model = kv_cache.Settings(d_model=16, nhead=2, num_layers=1, lengths=(4,)).model(torch.device("cpu"))
    prompt = torch.zeros(1, 3, dtype=torch.long)
    calls = []

    def unequal(generator, prompt, new_tokens, choose):
        calls.append(generator)
        return torch.full((1, 3 + new_tokens), len(calls))

    monkeypatch.setattr(kv_cache, "decode", unequal)
    with pytest.raises(AssertionError, match="different tokens"):
        kv_cache.measure(model, prompt, 4, repeats=1)


def test_placement_task_and_loss(placement):
    task = placement.load_task()
    _, target = task.train[0]
    bos, eos = (task.target_vocab.token_to_id[token] for token in ("<bos>", "<eos>"))
    assert target[0] == bos
    assert target[-1] == eos
    assert len(task.valid) > 500
    settings = placement.Settings(d_model=16, nhead=2, dim_feedforward=32, layers=2)
    batch = placement.pair_collator()(task.train[:8])
    model = placement.new_model(settings, task, norm_first=True, seed=0)
    loss = placement.teacher_forcing_loss(model, batch)
    # untrained, the loss is near that of a uniform guess over the target characters
    assert abs(loss.item() - math.log(len(task.target_vocab))) < 1.0
    post = dict(placement.new_model(settings, task, norm_first=False, seed=0).named_parameters())
    pre = dict(model.named_parameters())
    # pre-LN has one more LayerNorm per stack (no random draws); every other weight starts the same
    assert set(pre) - set(post) == {f"{side}.norm.{p}" for side in ("encoder", "decoder") for p in ("weight", "bias")}
    for name, weight in post.items():
        assert torch.equal(pre[name], weight), f"{name}: the placements must start from the same weights"


def test_placement_gradient_norms_and_summary(placement):
    settings = placement.Settings(d_model=16, nhead=2, dim_feedforward=32)
    norms = placement.gradient_norms(settings, norm_first=False, layers=3, seed=0)
    assert len(norms["encoder"]) == len(norms["decoder"]) == 3
    assert all(value > 0 for value in norms["encoder"] + norms["decoder"])
    fake = {
        "grid": {"depths": [3]},
        "gradients": [{"placement": name, "layers": 3, "seed": 0, **norms} for name in placement.PLACEMENTS],
        "runs": [
            {
                "lr": 1e-3,
                "warmup": 0,
                "placement": "post-LN",
                "final_val_loss": 0.5,
                "exact_match": 0.25,
                "diverged_at_step": None,
            },
            {
                "lr": 1e-3,
                "warmup": 0,
                "placement": "post-LN",
                "final_val_loss": math.inf,
                "exact_match": 0.0,
                "diverged_at_step": 50,
            },
        ],
    }
    table = placement.summary(fake)
    assert "diverged 1/2" in table
    assert "pre-LN" in table


def test_placement_exact_match_reads_up_to_the_end_token(placement, monkeypatch):
    task = placement.load_task()
    pairs = task.train[:3]

    class Oracle(torch.nn.Module):
        """Answers the gold target of each pair, whatever it is fed."""

        def encode(self, source, lengths):
            return 0

        def forward(self, ids, step):
            targets = [target[1:] + [0] * 50 for _, target in pairs]
            next_ids = torch.tensor([row[step] for row in targets])
            return torch.nn.functional.one_hot(next_ids, len(task.target_vocab))[:, None].float(), step + 1

    assert placement.greedy_exact_match(Oracle(), pairs) == 1.0


def test_tiny_gpt_builds_the_sizes_it_names():
    tiny = load("tiny_gpt")
    try:
        gpt = tiny.build("32x3", 91, 64)
        assert isinstance(gpt, GPT)
        assert (gpt.config.d_model, gpt.config.num_layers, gpt.max_length) == (32, 3, 64)
        rnn = tiny.build("rnn128", 91, 64)
        assert isinstance(rnn, RNNLanguageModel)
        assert sum(p.numel() for p in rnn.parameters()) == 40_027  # Part I's model
        assert isinstance(tiny.build("lstm64", 91, 64).recurrent, torch.nn.LSTM)
    finally:
        del sys.modules["tiny_gpt"]


def test_gpt_vs_recurrent_schedule_tuning_and_parameter_counts():
    compared = load("gpt_vs_recurrent")
    try:
        factor = compared.warmup_then_decay(100)
        # up over the first 5 steps, the full rate at the end of the warm-up, zero at the end
        assert [round(factor(n), 6) for n in (0, 4, 99)] == [0.2, 1.0, round(1 / 95, 6)]
        assert factor(100) == 0.0
        rows = [
            {"size": "a", "lr": 0.1, "seed": 0, "val_perplexity": 9.0},
            {"size": "a", "lr": 0.2, "seed": 0, "val_perplexity": 8.0},
            {"size": "b", "lr": 0.1, "seed": 0, "val_perplexity": 7.0},
            {"size": "b", "lr": 0.2, "seed": 1, "val_perplexity": 1.0},  # another seed does not tune
        ]
        assert compared.best_lrs(rows, seed=0) == {"a": 0.2, "b": 0.1}
        # the default models hold about the same number of parameters
        counts = [sum(p.numel() for p in compared.build(size, 91, 64).parameters()) for size in compared.SIZES]
        assert max(counts) / min(counts) < 1.1
    finally:
        del sys.modules["gpt_vs_recurrent"]


def test_placement_resume_runs_only_the_cells_asked_for_and_keeps_every_session(placement):
    settings = placement.Settings(d_model=8, nhead=2, dim_feedforward=16, layers=1, steps=2, eval_every=1, val_pairs=4)
    grid = placement.Grid(depths=[1], gradient_seeds=[0], lrs=[1e-3], warmups=[0], seeds=[0], placements=["pre-LN"])
    first = placement.run(settings, grid, log=lambda line: None)
    assert [(r["placement"], r["seed"]) for r in first["runs"]] == [("pre-LN", 0)]
    more = placement.Grid(depths=[1], gradient_seeds=[0], lrs=[1e-3], warmups=[0], seeds=[1], placements=["post-LN"])
    second = placement.run(settings, more, log=lambda line: None, done=json.loads(json.dumps(first)))
    assert [(r["placement"], r["seed"]) for r in second["runs"]] == [("pre-LN", 0), ("post-LN", 1)]
    assert len(second["gradients"]) == 2, "the gradients measured before are kept, not measured again"
    assert second["grid"]["seeds"] == [0, 1]
    assert second["grid"]["placements"] == ["post-LN", "pre-LN"]
    assert [session["grid"]["seeds"] for session in second["sessions"]] == [[0], [1]]
    sessions_cpu = sum(session["cpu_seconds_total"] for session in second["sessions"])
    assert second["cpu_seconds_total"] == pytest.approx(sessions_cpu)


@pytest.fixture(scope="module")
def versus():
    yield load("transformer_vs_attention_rnn")
    del sys.modules["transformer_vs_attention_rnn"]


def test_transformer_vs_attention_rnn_sizes_reuse_and_baseline(versus):
    task = versus.task()
    transformer = versus.build_transformer(task, seed=0)
    rnn = versus.chapter7().build("bahdanau", task, seed=0)
    sizes = [sum(p.numel() for p in model.parameters()) for model in (transformer, rnn)]
    assert abs(sizes[0] / sizes[1] - 1) < 0.01, f"equal parameters to within 1 %, got {sizes}"
    committed = [{"model": "bahdanau", "seed": 4, "lr": 0.01, "steps": 480, "exact_match": 0.5, "chosen_lr": True}]
    reused = versus.run_rnn(seed=4, task=task, lr=0.01, steps=480, committed=committed)
    assert reused["from"] == "attention_bottleneck.json"
    assert "chosen_lr" not in reused, "the protocol marks the chosen rate afresh"
    baseline = versus.lookup_baseline(task)
    assert baseline["aligned_pairs"] == len(task.pairs("train")), "every list has as many words as numerals"
    assert 0 <= baseline["exact_match"] <= 1
