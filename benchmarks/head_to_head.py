"""Chapter 12's grid: RNN, LSTM, GRU, a Transformer and minGRU on the course's three tasks, at matched parameters
and optimiser steps, learning rate tuned per model, three seeds, with each task's strongest cheap baseline.

Run it from the repository root (it writes its results after every run; ``--resume`` keeps them)::

    nice -n 10 .venv/bin/python benchmarks/head_to_head.py --resume  # the committed grid (cpu_seconds_total: its time)
    .venv/bin/python benchmarks/head_to_head.py --tasks memory --lags 10 --out /tmp/h.json   # one small slice
    .venv/bin/python benchmarks/head_to_head.py --device cuda --out /tmp/gpu.json            # on a GPU

Each task reuses the harness, and the committed results, of the chapter that introduced it; a row whose protocol
is exactly that harness's is read from its file, not trained again (``"source"`` says which):

* **memory** (``benchmarks/memory_vs_lag.py``, Chapter 3): recall one of 8 symbols after ``lag`` random
  distractors, full backpropagation through time, about 12,000 parameters, at most 1,500 Adam updates of 32 fresh
  examples (stopping at 99 % validation accuracy), the rate tuned on seed 0 over (0.001, 0.003, 0.01), seeds 1-3
  scored on 2,000 test examples. RNN, LSTM and GRU rows come from ``results/memory_vs_lag.json``; the Transformer
  and minGRU join through that script's builder hook (``MEMORY_BUILDERS``). Baseline: chance, 1/8 (the symbol is
  drawn uniformly and the distractors carry no information about it, so no rule does better without memory).
* **language modelling** (``benchmarks/gpt_vs_recurrent.py``, Chapter 11): characters of Part I's Wikipedia prose,
  about 40,000 parameters, 1,000 Adam updates of 32 windows of 64 characters, the rate tuned on seed 0 over seven
  values, validation perplexity on 1,024 windows. RNN (``rnn128``), LSTM (``lstm58``) and GPT (``32x3``) rows come
  from ``results/gpt_vs_recurrent.json`` (its seeds 0-2); the GRU (``gru69``) and minGRU (``mingru88``) are trained
  by its ``train``. Baseline: Kneser-Ney n-grams, n = 1 to 5 (``companion.ngrams``), on the same windows.
* **translation** (``benchmarks/attention_bottleneck.py``, Chapter 7): lists of 1 to 8 German number words to
  numerals, Chapter 5's recipe (480 Adam updates of 64 pairs), the rate tuned on seed 0 over (0.003, 0.01, 0.03)
  by validation loss (``tune_then_repeat``), greedy exact match and chrF on the test set, about 52,000 parameters.
  The recurrent models are Chapter 5's encoder-decoder (no attention) with each cell; the GRU's rows come from
  ``results/attention_bottleneck.json``, as does its Bahdanau-attention GRU, shown for reference. The Transformer
  is ``companion.transformer.Transformer`` (2 + 2 pre-LN layers, d_model 32). Baseline: a lookup of the training
  pairs (``companion.translation_task.WordLookup``: each German word as the numeral it was paired with most often).

Every model has about the parameters of the task's RNN (the counts are in the file) and the same number of updates.
Training CPU seconds are ``time.process_time`` of one run on one thread (a memory run stops early when it has
learnt, so its time is what learning took). Inference CPU seconds score a fixed set with the model's weights
untrained (the cost does not depend on them): the memory test set (2,000 sequences at the longest lag), the 1,024
validation windows, the translation test set teacher-forced. The minGRU has two layers (one layer cannot tell the
first symbol from the distractors: its gates read only the current input) and trains with its loop, the cheaper of
its two equal forms on one CPU thread.

``--device cuda`` moves every harness's models and batches to the GPU. It has not been run (no GPU was lent while
this script was written), and its times would still be ``time.process_time``, the host's CPU seconds, not GPU wall
time: a GPU row needs its own timer (``torch.cuda.synchronize`` around a wall clock) before its times mean anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # the companion from this checkout, and the sibling harnesses

import attention_bottleneck  # noqa: E402
import gpt_vs_recurrent  # noqa: E402
import memory_vs_lag  # noqa: E402
import tiny_gpt  # noqa: E402

from companion import translation_task as translation  # noqa: E402
from companion.memory import RecallTask, accuracy_on, recall_model  # noqa: E402
from companion.modern_recurrent import MinGRU  # noqa: E402
from companion.ngrams import NGramModel  # noqa: E402
from companion.positions import SinusoidalPositions  # noqa: E402
from companion.reproducibility import ResultsWriter, command_line  # noqa: E402
from companion.seq2seq import Seq2Seq, teacher_forcing_loss  # noqa: E402
from companion.training import move_to  # noqa: E402
from companion.transformer import Transformer, TransformerConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "head_to_head.json"
MODELS = ("rnn", "lstm", "gru", "transformer", "mingru")
TASKS = ("memory", "lm", "translation")
SEEDS = {"memory": (1, 2, 3), "lm": (0, 1, 2), "translation": (0, 1, 2)}
LAGS = (10, 50, 200)
LM_SIZES = {"rnn": "rnn128", "lstm": "lstm58", "gru": "gru69", "transformer": "32x3", "mingru": "mingru88"}
LM_RATES = (1e-3, 3e-3, 1e-2, 2e-2, 4e-2, 8e-2, 1.6e-1)  # gpt_vs_recurrent's grid
TRANSLATION_RATES = attention_bottleneck.LEARNING_RATES["chapter5"]
# Encoder-decoders without attention (Chapter 5's), hidden sizes that match the GRU's 52,272 parameters.
SEQ2SEQ = {"rnn": ("rnn", 117, 1), "lstm": ("lstm", 54, 1), "gru": ("gru", 64, 1), "mingru": (None, 80, 2)}
# minGRU trains with its loop: the same function as its scan (Chapter 12 checks it), several times faster on one
# CPU thread, where the scan's log-space work buys no parallelism (the language model's ``mingru`` says the same).
MINGRU_PARALLEL = False
TRANSFORMER = {"d_model": 32, "nhead": 4, "dim_feedforward": 95, "num_encoder_layers": 2, "num_decoder_layers": 2}


# ---------------------------------------------------------------- the models the earlier chapters lack


class EncoderAsRecurrent(nn.Module):
    """A Transformer encoder behind the recurrent interface, for the recall classifier: one-hot (B, T, D) -> a
    linear embedding plus sinusoidal positions (no parameters, so the count does not depend on the lag) ->
    ``num_layers`` pre-LN ``nn.TransformerEncoderLayer`` (one head, feed-forward 2H, every position sees every
    other) -> (B, T, H). It returns no state."""

    batch_first = True

    def __init__(self, input_size: int, hidden_size: int, max_length: int, num_layers: int = 2) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.embed = nn.Linear(input_size, hidden_size)
        # The table needs an even width; an odd H uses the first H columns of the next one.
        self.positions = SinusoidalPositions(hidden_size + hidden_size % 2, max_length)
        layer = nn.TransformerEncoderLayer(
            hidden_size, 1, 2 * hidden_size, dropout=0.0, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(hidden_size), enable_nested_tensor=False
        )

    def forward(
        self, inputs: torch.Tensor, state: None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        """inputs (B, T, D) -> ((B, T, H), None); every sequence is T long here (the recall task pads nothing)."""
        x = self.embed(inputs) + self.positions.encodings(inputs.shape[1])[..., : self.hidden_size]  # (B, T, H)
        return self.layers(x), None


def transformer_for_memory(hidden: int, task: RecallTask) -> nn.Module:
    """``memory_vs_lag``'s builder of the Transformer: two encoder layers of width ``hidden``."""
    return EncoderAsRecurrent(task.vocab_size, hidden, max_length=task.lag + 1)


def mingru_for_memory(hidden: int, task: RecallTask) -> nn.Module:
    """``memory_vs_lag``'s builder of a two-layer minGRU of ``hidden`` units."""
    return MinGRU(task.vocab_size, hidden, num_layers=2, parallel=MINGRU_PARALLEL)


# For memory_vs_lag.py --builders head_to_head:MEMORY_BUILDERS --models transformer mingru.
MEMORY_BUILDERS = {"transformer": transformer_for_memory, "mingru": mingru_for_memory}


def translator(name: str, task: translation.TranslationTask, seed: int) -> nn.Module:
    """The translation model ``name`` with the weights of ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    if name == "transformer":
        config = task.model_config()
        return Transformer(
            TransformerConfig(
                source_vocab_size=config.source_vocab_size,
                target_vocab_size=config.target_vocab_size,
                max_length=256,
                **TRANSFORMER,
            )
        )
    cell, hidden, layers = SEQ2SEQ[name]
    if cell is not None:
        return Seq2Seq(task.model_config(embedding_dim=32, hidden_size=hidden, cell=cell))
    config = task.model_config(embedding_dim=32, hidden_size=hidden, num_layers=layers)
    encoder = MinGRU(config.embedding_dim, hidden, num_layers=layers, parallel=MINGRU_PARALLEL)
    decoder = MinGRU(
        config.embedding_dim + hidden, hidden, num_layers=layers, parallel=MINGRU_PARALLEL
    )  # reads the context vector too
    return Seq2Seq(config, encoder_rnn=encoder, decoder_rnn=decoder)


def translator_config(name: str) -> dict:
    """What a translation record says about its model."""
    if name == "transformer":
        return {"kind": "transformer", **TRANSFORMER}
    cell, hidden, layers = SEQ2SEQ[name]
    return {"kind": "seq2seq", "cell": cell or "mingru", "hidden_size": hidden, "num_layers": layers, "score": None}


# ---------------------------------------------------------------- inference cost


def cpu_seconds(work: callable, repeats: int = 3) -> float:
    """The least CPU time of ``repeats`` calls of ``work()`` (the least is the one the others' load disturbed least)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)


def inference_seconds(task: str, model: str, device: str, lag: int = max(LAGS)) -> float:
    """CPU seconds to score the task's fixed set with ``model``'s untrained weights (see the module docstring)."""
    torch.manual_seed(0)
    if task == "memory":
        recall = RecallTask(lag)
        build = (memory_vs_lag.recurrent_builders() | MEMORY_BUILDERS)[model]
        hidden = memory_row_hidden.get(model, 56)
        classifier = recall_model(build, hidden, recall).to(device)
        examples = recall.examples(2000, 0)
        return cpu_seconds(lambda: accuracy_on(classifier, examples))
    if task == "lm":
        vocab_size, _, val_ids = tiny_gpt.part_one_data()
        inputs, targets = gpt_vs_recurrent.next_token_pairs(val_ids, gpt_vs_recurrent.WINDOW)
        lm = tiny_gpt.build(LM_SIZES[model], vocab_size, gpt_vs_recurrent.WINDOW).to(device)
        count = gpt_vs_recurrent.VAL_WINDOWS
        return cpu_seconds(lambda: tiny_gpt.perplexity(lm, inputs[:count], targets[:count]))
    numbers = attention_bottleneck.task()
    seq2seq = translator(model, numbers, 0).to(device).eval()
    batch = move_to(numbers.batch(numbers.pairs("test")), torch.device(device))

    def score() -> None:
        with torch.no_grad():
            teacher_forcing_loss(seq2seq, batch)

    return cpu_seconds(score)


memory_row_hidden: dict[str, int] = {}  # filled from the memory rows: inference uses each model's hidden size


# ---------------------------------------------------------------- the grid


def widened(rates: tuple[float, ...], score: Callable[[float], float], factor: float) -> list[float]:
    """The learning-rate grid, widened by one step of ``factor`` past its edge while the best rate (lowest
    ``score(lr)``, a run of the tuning seed) lies on that edge, at most three steps: no model is tuned at a rate
    its grid cut short."""
    rates = sorted(rates)
    for _ in range(3):
        best = min(rates, key=score)
        if best == rates[-1]:
            rates.append(best * factor)
        elif best == rates[0]:
            rates.insert(0, best / factor)
        else:
            break
    return rates


class Grid:
    """The results file, written after every run; with ``resume`` the runs it already holds are not repeated."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.path = args, args.out
        saved = json.loads(self.path.read_text()) if args.resume and self.path.exists() else {}
        self.runs: dict[str, dict] = saved.get("runs", {})
        # The shared writer records the command, date, environment, threads, CPU seconds (of every invocation that
        # built the file) and this invocation's load averages.
        self.writer = ResultsWriter(
            command_line(__file__, args.argv),
            device=torch.device(args.device),
            cpu_seconds_before=saved.get("cpu_seconds_total", 0.0),
        )
        self.document = {
            "device": args.device,
            "settings": {
                "seeds": SEEDS,
                "lags": args.lags,
                "lm_sizes": LM_SIZES,
                "lm_rates": LM_RATES,
                "translation_rates": TRANSLATION_RATES,
                "seq2seq": SEQ2SEQ,
                "transformer": TRANSFORMER,
            },
            "tasks": saved.get("tasks", {}),
        }

    def cached(self, key: str, compute: callable) -> dict:
        """The run ``key``: from the file if it is there, else computed and saved at once."""
        if key not in self.runs:
            self.runs[key] = compute()
            self.save()
            print(f"{key}: done ({self.cpu_total():.0f} CPU s so far)", flush=True)
        return self.runs[key]

    def cpu_total(self) -> float:
        """CPU seconds of every invocation that built this file."""
        return self.writer.cpu_seconds_total()

    def save(self) -> None:
        """Write the file (the runs and every task's table so far)."""
        self.writer.write(self.path, self.document | {"runs": self.runs})


def memory_task(grid: Grid) -> dict:
    """Rows of the recall task: the earlier sweep's for RNN, LSTM and GRU, new ones for the others."""
    args = grid.args
    saved = {(r["model"], r["lag"]): r for r in json.loads(memory_vs_lag.RESULTS.read_text())["rows"]}
    # The Transformer and minGRU join through memory_vs_lag's builder hook, as its docstring says they would.
    harness = memory_vs_lag.parse_args(
        ["--tasks", "distractors", "--device", args.device, "--builders", "head_to_head:MEMORY_BUILDERS"]
    )
    rows = []
    for lag in args.lags:
        for model in args.models:
            recall = RecallTask(lag, distractors=True)
            row = saved.get((model, lag)) if model in ("rnn", "lstm", "gru") else None
            if row is not None and row["status"] == "run":
                row = row | {"source": "results/memory_vs_lag.json"}
            else:
                row = grid.cached(
                    f"memory/{model}/{lag}",
                    lambda m=model, r=recall: (
                        memory_vs_lag.run_point(m, r, memory_vs_lag.Budget(), harness) | {"source": "this script"}
                    ),
                )
            memory_row_hidden[model] = row["hidden_size"]
            # CPU seconds per reported seed (a run stops once it has learnt); "cpu_seconds" is the point's total.
            train_cpu = statistics.fmean(run["cpu_seconds"] for run in row["runs"])
            kept = {key: value for key, value in row.items() if key not in ("tuning", "runs")}
            rows.append(kept | {"model": model, "train_cpu_seconds": train_cpu})
    return {"rows": rows, "baseline": {"chance": RecallTask(1).chance}}


def lm_task(grid: Grid) -> dict:
    """Rows of the language model: the earlier file's for RNN, LSTM and GPT, new runs for the GRU and minGRU."""
    saved = json.loads(gpt_vs_recurrent.RESULTS.read_text())
    steps = saved["settings"]["steps"]
    rows = []
    for model in grid.args.models:
        size = LM_SIZES[model]
        earlier = [r for r in saved["rows"] if r["size"] == size]

        def run(lr: float, seed: int, size: str = size, earlier: list = earlier) -> dict:
            found = [r for r in earlier if r["lr"] == lr and r["seed"] == seed]
            if found:
                return found[0] | {"source": "results/gpt_vs_recurrent.json"}
            key = f"lm/{size}/{lr:g}/{seed}"
            compute = partial(gpt_vs_recurrent.train, size, lr, seed, steps, device=grid.args.device)
            return grid.cached(key, lambda: compute() | {"source": "this script"})

        first, *others = SEEDS["lm"]
        rates = widened(LM_RATES, lambda lr, run=run, first=first: run(lr, first)["val_perplexity"], factor=2)
        tuning = [run(lr, first) for lr in rates]
        best = min(tuning, key=lambda r: r["val_perplexity"])["lr"]
        runs = [next(r for r in tuning if r["lr"] == best)] + [run(best, seed) for seed in others]
        perplexities = [r["val_perplexity"] for r in runs]
        rows.append(
            {
                "model": model,
                "size": size,
                "parameters": runs[0]["parameters"],
                "lr": best,
                "tuning": {f"{r['lr']:g}": r["val_perplexity"] for r in tuning},
                "seeds": list(SEEDS["lm"]),
                "perplexities": perplexities,
                **memory_vs_lag.summarise(perplexities),
                "train_cpu_seconds": statistics.fmean(r["train_cpu_seconds"] for r in runs),
                "source": sorted({r["source"] for r in runs}),
            }
        )
    vocab_size, train_ids, val_ids = tiny_gpt.part_one_data()
    inputs, targets = gpt_vs_recurrent.next_token_pairs(val_ids, gpt_vs_recurrent.WINDOW)
    count = gpt_vs_recurrent.VAL_WINDOWS

    def ngrams() -> dict:
        return {
            str(n): NGramModel(n, vocab_size).fit(train_ids).perplexity(inputs[:count], targets[:count])
            for n in range(1, 6)
        }

    baseline = grid.cached("lm/ngrams", ngrams)
    return {"rows": rows, "baseline": {"ngram_perplexity": baseline}, "steps": steps}


def translation_task(grid: Grid) -> dict:
    """Rows of the translation task: the GRU's from Chapter 7's file, new runs for the others."""
    saved = json.loads(attention_bottleneck.RESULTS.read_text())["runs"]
    numbers = attention_bottleneck.task()
    rows = []
    for model in [*grid.args.models, "gru+attention"]:
        # Chapter 7's runs of its baseline (chapter5: the GRU) and of its attention model, where they exist.
        name = {"gru": "chapter5", "gru+attention": "bahdanau"}.get(model)
        earlier = {(r["lr"], r["seed"]): r for r in saved if r["model"] == name}
        if model == "gru+attention":
            # Chapter 7's reference: one untuned rate by that chapter's design, shown as it was committed.
            runs = [r | {"source": "results/attention_bottleneck.json"} for r in earlier.values()]
        else:
            build = partial(
                attention_bottleneck.run,
                name or model,
                task=numbers,
                builder=None if name else translator,
                config=None if name else translator_config(model),
                device=grid.args.device,
            )

            def run(seed: int, lr: float, build: partial = build, model: str = model, earlier: dict = earlier) -> dict:
                if (lr, seed) in earlier:
                    found = dict(earlier[lr, seed])
                    found.pop("chosen_lr", None)
                    return found | {"source": "results/attention_bottleneck.json"}
                key = f"translation/{model}/{lr:g}/{seed}"
                return dict(grid.cached(key, lambda: build(seed=seed, lr=lr))) | {"source": "this script"}

            first = SEEDS["translation"][0]
            rates = widened(
                TRANSLATION_RATES, lambda lr, run=run, first=first: run(first, lr)["val_loss"][-1], factor=3
            )
            runs = translation.tune_then_repeat(run, rates, SEEDS["translation"])
        chosen = [r for r in runs if r["chosen_lr"]]
        exact = [r["exact_match"] for r in chosen]
        rows.append(
            {
                "model": model,
                "parameters": chosen[0]["parameters"],
                "lr": chosen[0]["lr"],
                "tuning": {f"{r['lr']:g}": r["val_loss"][-1] for r in runs if r["seed"] == runs[0]["seed"]},
                "seeds": [r["seed"] for r in chosen],
                "exact_matches": exact,
                **memory_vs_lag.summarise(exact),
                "chrf": memory_vs_lag.summarise([r["chrf"] for r in chosen]),
                "by_length": [r["by_length"] for r in chosen],
                "train_cpu_seconds": statistics.fmean(r["cpu_seconds"] for r in chosen),
                "source": sorted({r["source"] for r in runs}),
            }
        )
    return {"rows": rows, "baseline": lookup_baseline(numbers)}


def lookup_baseline(numbers: translation.TranslationTask) -> dict:
    """The translation task's cheap baseline: ``WordLookup`` learned from the training pairs, scored on the test set."""
    start = time.process_time()
    lookup = translation.WordLookup.fit(numbers.pairs("train"))
    scores = lookup.score(numbers.pairs("test"))
    return {
        "word_lookup": {
            "exact_match": scores.exact_match,
            "chrf": scores.chrf,
            "aligned_pairs": lookup.aligned_pairs,
            "cpu_seconds": time.process_time() - start,
        }
    }


def main(argv: list[str] | None = None) -> None:
    """Run the grid (or a slice of it) and write the results file after every run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--lags", nargs="+", type=int, default=list(LAGS), help="the memory task's lags")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU (not run in this course's CI)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--resume", action="store_true", help="keep the runs --out already holds; do the rest")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    grid = Grid(args)
    for name, compute in (("memory", memory_task), ("lm", lm_task), ("translation", translation_task)):
        if name in args.tasks:
            grid.document["tasks"][name] = compute(grid)
            grid.save()
    for name in args.tasks:
        for model in args.models:
            key = f"inference/{name}/{model}"
            seconds = grid.cached(
                key, lambda n=name, m=model: {"cpu_seconds": inference_seconds(n, m, args.device, max(args.lags))}
            )
            for row in grid.document["tasks"][name]["rows"]:
                if row["model"] == model:
                    row["inference_cpu_seconds"] = seconds["cpu_seconds"]
    grid.save()
    for name in args.tasks:
        for row in grid.document["tasks"][name]["rows"]:
            print(
                f"{name:11} {row['model']:13} {row.get('lag', ''):>4} mean {row['mean']:.3f} [{row['min']:.3f}, "
                f"{row['max']:.3f}] {row['parameters']:,} parameters"
            )
    print(f"wrote {args.out} ({grid.cpu_total():.0f} CPU s in all)")


if __name__ == "__main__":
    main()
