"""Chapter 10's sweep: the encoder-decoder Transformer against Chapter 7's attention RNN, and both against the
word-lookup baseline, on Chapter 7's translation task with Chapter 7's recipe.

Run it from the repository root (about 15 minutes of CPU on one thread when the RNN's runs at the rate Chapter 7
used are taken from its results file; each run prints a line)::

    .venv/bin/python benchmarks/transformer_vs_attention_rnn.py     # writes benchmarks/results/transformer_vs_...json
    .venv/bin/python benchmarks/transformer_vs_attention_rnn.py --only transformer --seeds 0 --lrs 0.003  # printed
    .venv/bin/python benchmarks/transformer_vs_attention_rnn.py --resume   # keeps the runs the file already holds

The task is ``companion.data.number_list_pairs("de", "digits")``: lists of 1 to 8 numbers (0-99) in German words
to numerals ("vierundzwanzig, sieben" -> "24, 7"), character by character, split by value (Chapter 7's
``benchmarks/attention_bottleneck.py``). Both models are trained with ``CHAPTER5_RECIPE`` (Adam, cosine decay,
clipping at 1, batch 64, 480 updates; no warm-up) and have as many parameters to within 1 %:

* ``transformer``: ``companion.transformer.Transformer``, pre-LN (``norm_first=True``), width 32, 4 heads, a
  feed-forward width of 96, 2 encoder and 2 decoder layers, sinusoidal positions, tied output embedding;
* ``bahdanau``: Chapter 7's attention RNN (``attention_bottleneck.MODELS["bahdanau"]``: a GRU encoder-decoder with
  additive attention before the step, hidden size 55).

Each model's learning rate is tuned (``tune_then_repeat``): its first seed is trained at each rate of
``LEARNING_RATES[name]`` and the rate with the lowest final validation loss is used for the other seeds. A run that
``attention_bottleneck.json`` already holds (same model, seed, rate and steps) is taken from it, not rerun, and
marked ``"from": "attention_bottleneck.json"``; its CPU seconds are the ones measured there. Each run records what
Chapter 7's do: greedy exact match and chrF (sacreBLEU, with its signature) on the test set, exact match by source
length, the validation loss per epoch, the parameter count and the CPU seconds of training (one thread).

The baseline is ``companion.translation_task.WordLookup``: each source word's most frequent partner in the training
pairs, applied word by word in source order. Its exact match, chrF and CPU seconds (learning and translating) are
recorded too. The file holds the environment report and the load average before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import cache, partial
from pathlib import Path

import torch

from companion.data import number_list_pairs
from companion.device import small_model_threads
from companion.reproducibility import ResultsWriter, command_line
from companion.seq2seq import count_parameters
from companion.transformer import Transformer, TransformerConfig
from companion.translation_task import (
    CHAPTER5_RECIPE,
    TranslationTask,
    WordLookup,
    exact_match_by_length,
    score_translations,
    train_translator,
    translate,
    tune_then_repeat,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "transformer_vs_attention_rnn.json"
CHAPTER7_RESULTS = ROOT / "benchmarks" / "results" / "attention_bottleneck.json"
SEEDS = (0, 1, 2)
# Tried with the first seed; the other seeds use the best on validation loss.
LEARNING_RATES = {"transformer": (0.001, 0.003, 0.01, 0.03), "bahdanau": (0.003, 0.01, 0.03)}
# The Transformer's sizes: 52,528 parameters on this task, against the attention RNN's 52,863.
TRANSFORMER = {
    "d_model": 32,
    "nhead": 4,
    "dim_feedforward": 96,
    "num_encoder_layers": 2,
    "num_decoder_layers": 2,
    "norm_first": True,
    "max_length": 160,
}


@cache
def chapter7():
    """Chapter 7's benchmark module (its task, its models and its ``run``), loaded once."""
    spec = importlib.util.spec_from_file_location(
        "attention_bottleneck", ROOT / "benchmarks" / "attention_bottleneck.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def task() -> TranslationTask:
    """The number lists, German words to numerals, as the models see them (Chapter 7's task)."""
    return TranslationTask(number_list_pairs("de", "digits"))


def build_transformer(task: TranslationTask, seed: int) -> Transformer:
    """The Transformer of the comparison with the weights of ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    config = TransformerConfig(
        source_vocab_size=len(task.source_vocab), target_vocab_size=len(task.target_vocab), **TRANSFORMER
    )
    return Transformer(config)


def run_transformer(seed: int, task: TranslationTask, lr: float, steps: int = CHAPTER5_RECIPE.steps) -> dict:
    """Train the Transformer with one seed and rate and measure it as Chapter 7 measures its models."""
    model = build_transformer(task, seed)
    start = time.process_time()
    history = train_translator(model, task, CHAPTER5_RECIPE.scaled(lr=lr, steps=steps), seed=seed, progress=False)
    cpu_seconds = time.process_time() - start
    pairs = task.pairs("test")
    outputs = translate(model, task, [source for source, _ in pairs])
    scores = score_translations(outputs, [target for _, target in pairs])
    return {
        "model": "transformer",
        "seed": seed,
        "lr": lr,
        "steps": steps,
        "config": TRANSFORMER,
        "parameters": count_parameters(model),
        "cpu_seconds": round(cpu_seconds, 1),
        "val_loss": [round(record["val_loss"], 5) for record in history.records],
        "exact_match": scores.exact_match,
        "chrf": round(scores.chrf, 2),
        "by_length": exact_match_by_length(outputs, pairs, chapter7().LENGTH_EDGES),
        "chrf_signature": scores.chrf_signature,
    }


def run_rnn(seed: int, task: TranslationTask, lr: float, steps: int, committed: list[dict]) -> dict:
    """Chapter 7's attention RNN with one seed and rate: from its results file when it holds that run, else trained."""
    for record in committed:
        if (record["model"], record["seed"], record["lr"], record["steps"]) == ("bahdanau", seed, lr, steps):
            return {key: value for key, value in record.items() if key != "chosen_lr"} | {"from": CHAPTER7_RESULTS.name}
    return chapter7().run("bahdanau", seed, task, lr, steps)


def resumed(runner: Callable[..., dict], name: str, earlier: list[dict]) -> Callable[..., dict]:
    """``runner(seed=…, lr=…)``, except that a run of model ``name`` which ``earlier`` records (an unfinished
    results file of this script) is taken from there."""

    def run(seed: int, lr: float) -> dict:
        for record in earlier:
            if (record["model"], record["seed"], record["lr"]) == (name, seed, lr):
                return {key: value for key, value in record.items() if key != "chosen_lr"}
        return runner(seed=seed, lr=lr)

    return run


def lookup_baseline(task: TranslationTask) -> dict:
    """The word-lookup baseline learned from the training pairs and scored on the test pairs."""
    start = time.process_time()
    lookup = WordLookup.fit(task.pairs("train"))
    scores = lookup.score(task.pairs("test"))
    cpu_seconds = time.process_time() - start
    return {
        "model": "word lookup",
        "words": len(lookup.table),
        "aligned_pairs": lookup.aligned_pairs,
        "cpu_seconds": round(cpu_seconds, 3),
        "exact_match": scores.exact_match,
        "chrf": round(scores.chrf, 2),
        "chrf_signature": scores.chrf_signature,
    }


def main() -> None:
    """Run the sweep (or ``--only`` some models) and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(LEARNING_RATES), help="models to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--lrs", nargs="*", type=float, help="tried with the first seed (default: LEARNING_RATES)")
    parser.add_argument("--steps", type=int, default=CHAPTER5_RECIPE.steps)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (with --only: not written)")
    parser.add_argument("--resume", action="store_true", help="keep the runs that --out already holds")
    parser.add_argument(
        "--longer",
        type=int,
        nargs="*",
        default=[],
        help="then train the Transformer of the first seed, at its "
        "chosen rate, for these numbers of steps too (recorded under 'longer')",
    )
    args = parser.parse_args()
    small_model_threads(torch.device("cpu"))
    numbers = task()
    committed = json.loads(CHAPTER7_RESULTS.read_text())["runs"]
    runners = {
        "transformer": partial(run_transformer, task=numbers, steps=args.steps),
        "bahdanau": partial(run_rnn, task=numbers, steps=args.steps, committed=committed),
    }
    previous = json.loads(args.out.read_text()) if args.resume and args.out.exists() else {"runs": []}
    earlier = [record for record in previous["runs"] if record["steps"] == args.steps]
    # A resumed sweep's CPU time is that of all its sessions.
    earlier_cpu = previous.get("cpu_seconds_total", 0.0) if earlier else 0.0
    writer = ResultsWriter(
        command_line(__file__, sys.argv[1:]), device=torch.device("cpu"), cpu_seconds_before=earlier_cpu
    )
    runners = {name: resumed(runner, name, earlier) for name, runner in runners.items()}
    baseline = lookup_baseline(numbers)
    print(f"word lookup: exact match {baseline['exact_match']:.3f}, chrF {baseline['chrf']:.1f}", flush=True)
    document = {
        "complete": False,
        "recipe": asdict(CHAPTER5_RECIPE.scaled(steps=args.steps)),
        "learning_rates": LEARNING_RATES,
        "transformer": TRANSFORMER,
        "baseline": baseline,
        "runs": [],
    }

    def save(record: dict | None = None, keep: bool = True) -> dict | None:
        # After every run, everything so far: a sweep cut short keeps what it measured.
        if record is not None:
            if keep:
                document["runs"].append(record)
            source = f" (from {record['from']})" if "from" in record else ""
            print(
                f"{record['model']:>11} seed {record['seed']} lr {record['lr']}: {record['parameters']} parameters, "
                f"exact match {record['exact_match']:.3f}, chrF {record['chrf']:.1f}, "
                f"{record['cpu_seconds']:.0f} CPU s{source}",
                flush=True,
            )
        if not args.only:
            writer.write(args.out, document)
        return record

    for name in args.only or LEARNING_RATES:
        first = len(document["runs"])

        def recorded(seed: int, lr: float, runner: Callable[..., dict] = runners[name]) -> dict:
            return save(runner(seed=seed, lr=lr))

        # tune_then_repeat marks the chosen rate on the records it returns (some of them copies of the saved ones).
        document["runs"][first:] = tune_then_repeat(recorded, args.lrs or LEARNING_RATES[name], args.seeds)
    chosen = [r for r in document["runs"] if r["model"] == "transformer" and r["chosen_lr"]]
    document["longer"] = [r for r in previous.get("longer", []) if r["steps"] not in args.longer]
    for steps in args.longer if chosen else []:
        print(f"the Transformer for {steps} steps:", end=" ", flush=True)
        document["longer"].append(
            save(run_transformer(seed=chosen[0]["seed"], task=numbers, lr=chosen[0]["lr"], steps=steps), keep=False)
        )
    document["complete"] = True
    save()
    if not args.only:
        print(f"wrote {args.out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
