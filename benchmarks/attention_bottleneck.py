"""Chapter 7's sweep: the bottleneck removed. Chapter 5's encoder-decoder against the same model with attention.

Run it from the repository root (about 9 minutes of CPU on one thread; each run prints a line)::

    .venv/bin/python benchmarks/attention_bottleneck.py      # writes benchmarks/results/attention_bottleneck.json
    .venv/bin/python benchmarks/attention_bottleneck.py --only bahdanau --seeds 0 --lrs 0.01   # printed, not saved

The task is ``companion.data.number_list_pairs("de", "digits")``: lists of 1 to 8 numbers (0-99) in German words to
numerals ("vierundzwanzig, sieben" -> "24, 7"; German says the units first, so every two-digit number is read
backwards), split by value. A list says more the longer it is,
so a model that must squeeze the whole source into one vector of H numbers should fail first on the long lists.
Each model is built by ``companion.attention_seq2seq.attention_seq2seq`` and trained with Chapter 5's recipe
(``CHAPTER5_RECIPE``: Adam, cosine decay, clipping, batch 64, the same number of updates for every run):

* ``chapter5``: no attention; the decoder reads the fixed context vector beside every token (Chapter 5's model);
* ``bahdanau``: the additive score before the step (the context is an input of the recurrent step), its hidden size
  lowered to 55 so that it has as many parameters to within 1.2 %.

The baseline's learning rate is tuned: its first seed is trained with each of ``LEARNING_RATES["chapter5"]`` and the
rate with the lowest final validation loss is used for the other seeds (every run is recorded; ``chosen_lr`` marks
the ones at the chosen rate). The attention model, four times as costly to train (its decoder goes step by step),
gets one untuned rate: a handicap for the model that is expected to win, never for the baseline. A (model, seed)
pair starts from ``torch.manual_seed(seed)`` and draws its batches from a generator seeded with ``seed``. Each run
records the test set's exact match (greedy decoding) overall and by source length in characters, chrF (sacreBLEU,
with its signature), the validation loss after each epoch, the parameter count and the CPU seconds of training (one
thread). The file holds the environment report.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
from torch import nn

from companion.attention_seq2seq import attention_seq2seq
from companion.data import number_list_pairs
from companion.device import small_model_threads
from companion.reproducibility import ResultsWriter, command_line
from companion.seq2seq import Seq2Seq, count_parameters
from companion.translation_task import (
    CHAPTER5_RECIPE,
    TranslationTask,
    exact_match_by_length,
    score_translations,
    train_translator,
    translate,
    tune_then_repeat,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "attention_bottleneck.json"
HIDDEN = 64  # the context vector's length: small enough that eight numbers crowd it
SEEDS = (0, 1, 2)
# Tried with the first seed; the others use the best on validation loss.
LEARNING_RATES = {"chapter5": (0.003, 0.01, 0.03), "bahdanau": (0.01,)}
# Source lengths in characters: the buckets of the exact-match-by-length curve (the longest source has 134).
LENGTH_EDGES = (1, 20, 40, 60, 80, 100, 120, 140)
# (score, changes to the config): the three models of the comparison.
MODELS = {
    "chapter5": (None, {"hidden_size": HIDDEN}),
    "bahdanau": ("additive", {"hidden_size": 55, "attention_step": "before"}),
}


def task() -> TranslationTask:
    """The number lists, German words to numerals, as the models see them."""
    return TranslationTask(number_list_pairs("de", "digits"))


def build(name: str, task: TranslationTask, seed: int) -> Seq2Seq:
    """Model ``name`` of ``MODELS`` with the weights of ``torch.manual_seed(seed)``."""
    score, changes = MODELS[name]
    torch.manual_seed(seed)
    return attention_seq2seq(task.model_config(embedding_dim=32, **changes), score)


def run(
    name: str,
    seed: int,
    task: TranslationTask,
    lr: float,
    steps: int = CHAPTER5_RECIPE.steps,
    *,
    builder: Callable[[str, TranslationTask, int], nn.Module] | None = None,
    config: dict | None = None,
    device: str | None = None,
) -> dict:
    """Train one model with one seed and learning rate, and measure it (see the module docstring).

    ``builder(name, task, seed)`` and ``config`` (what the record says about the model) default to ``build`` and
    ``MODELS[name]``; Chapter 12's benchmark passes its own models through them.
    """
    model = (builder or build)(name, task, seed)
    start = time.process_time()
    recipe = CHAPTER5_RECIPE.scaled(lr=lr, steps=steps)
    history = train_translator(model, task, recipe, seed=seed, device=device, progress=False)
    cpu_seconds = time.process_time() - start
    pairs = task.pairs("test")
    outputs = translate(model, task, [source for source, _ in pairs])
    scores = score_translations(outputs, [target for _, target in pairs])
    return {
        "model": name,
        "seed": seed,
        "lr": lr,
        "steps": steps,
        "config": config if config is not None else MODELS[name][1] | {"score": MODELS[name][0]},
        "parameters": count_parameters(model),
        "cpu_seconds": round(cpu_seconds, 1),
        "val_loss": [round(record["val_loss"], 5) for record in history.records],
        "exact_match": scores.exact_match,
        "chrf": round(scores.chrf, 2),
        "by_length": exact_match_by_length(outputs, pairs, LENGTH_EDGES),
        "chrf_signature": scores.chrf_signature,
    }


def main() -> None:
    """Run the sweep (or ``--only`` some models) and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(MODELS), help="models to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--lrs", nargs="*", type=float, help="tried with the first seed (default: LEARNING_RATES)")
    parser.add_argument("--steps", type=int, default=CHAPTER5_RECIPE.steps)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (with --only: not written)")
    args = parser.parse_args()
    small_model_threads(torch.device("cpu"))
    writer = ResultsWriter(command_line(__file__, sys.argv[1:]), device=torch.device("cpu"))
    numbers = task()
    runs = []
    for name in args.only or MODELS:
        model_runs = tune_then_repeat(
            partial(run, name, task=numbers, steps=args.steps), args.lrs or LEARNING_RATES[name], args.seeds
        )
        runs += model_runs
        for result in model_runs:
            by_length = " ".join(f"{b['exact_match']:.2f}" for b in result["by_length"] if b["count"])
            print(
                f"{name:>9} seed {result['seed']} lr {result['lr']}: {result['parameters']} parameters, exact match "
                f"{result['exact_match']:.3f} (by length {by_length}), {result['cpu_seconds']:.0f} CPU s",
                flush=True,
            )
    if args.only:
        return
    writer.write(
        args.out,
        {"recipe": asdict(CHAPTER5_RECIPE.scaled(steps=args.steps)), "length_edges": LENGTH_EDGES, "runs": runs},
    )
    print(f"wrote {args.out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
