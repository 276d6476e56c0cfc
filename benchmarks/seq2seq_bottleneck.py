"""Chapter 5's sweep: the plain encoder-decoder against hidden size, source reversal and where the context enters.

Run it from the repository root (about 30 minutes of CPU on one thread; each run prints a line)::

    .venv/bin/python benchmarks/seq2seq_bottleneck.py         # writes benchmarks/results/seq2seq_bottleneck.json
    .venv/bin/python benchmarks/seq2seq_bottleneck.py --only hidden=128 --seeds 0   # printed, not saved

Every run trains ``companion.seq2seq.Seq2Seq`` on the English -> German numbers of
``companion.data.number_pairs("en", "de")`` (0 to 9999, split by value) with Chapter 5's recipe
(``companion.translation_task.CHAPTER5_RECIPE``: the same optimiser, learning-rate schedule, clipping, batch size and
number of updates for every run) and changes one thing from Chapter 5's model (``CHAPTER5_MODEL``):

* ``hidden=H``: the hidden size, which is the length of the context vector (16 to 256);
* ``reversed``: the source read backwards (Sutskever et al. 2014);
* ``start-only``: the decoder starts from the context vector but does not read it at every step (Sutskever et al.
  2014's decoder) instead of Cho et al. 2014's, which reads it beside every token; ``start-only, equal parameters``
  is the same with a hidden size that gives it as many parameters as Chapter 5's model.

The learning rate is tuned per variant: the first seed is trained with each of ``LEARNING_RATES`` and the rate
with the lowest final validation loss is used for the other seeds (every run is recorded, ``chosen_lr`` marks the
ones at the chosen rate). Each (variant, seed) pair starts from weights drawn with ``torch.manual_seed(seed)`` and
draws its batches from a generator seeded with ``seed``. It records the test set's exact match, chrF and character
BLEU (sacreBLEU, with signatures), exact match by source length, the token accuracy with teacher forcing and free
running, the validation loss after each epoch, the parameter count and the CPU seconds of training (one thread).
The results file holds the environment report (``companion.environment_report``) of the machine that made it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch

from companion.data import number_pairs
from companion.device import small_model_threads
from companion.reproducibility import ResultsWriter, command_line
from companion.seq2seq import Seq2Seq, count_parameters
from companion.translation_task import (
    CHAPTER5_MODEL,
    CHAPTER5_RECIPE,
    TranslationTask,
    exact_match_by_length,
    forcing_gap,
    score_translations,
    train_translator,
    translate,
    tune_then_repeat,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "seq2seq_bottleneck.json"
HIDDEN_SIZES = (16, 32, 64, 128, 256)
SEEDS = (0, 1, 2)
LEARNING_RATES = (0.003, 0.01, 0.03)  # tried with the first seed; the others use the best on validation loss
START_ONLY_EQUAL_HIDDEN = 154  # 179,123 parameters against the chapter 5 model's 178,329
# Source lengths in characters: the buckets of the exact-match-by-length curve.
LENGTH_EDGES = (1, 10, 20, 30, 35, 40, 45, 50)


def variants() -> dict[str, dict]:
    """Each variant's changes to Chapter 5's model (``hidden_size``, ``reverse_source``, ``feed_context``)."""
    table = {f"hidden={size}": {"hidden_size": size} for size in HIDDEN_SIZES}
    table["reversed"] = {"reverse_source": True}
    table["start-only"] = {"feed_context": False}
    # The decoder that reads the context at every step has more input weights: a start-only decoder as large.
    table["start-only, equal parameters"] = {"feed_context": False, "hidden_size": START_ONLY_EQUAL_HIDDEN}
    return table


def run(name: str, seed: int, task: TranslationTask, lr: float) -> dict:
    """Train one variant with one seed and learning rate, and measure it (see the module docstring)."""
    changes = dict(variants()[name])
    task = task.with_reversed_source(changes.pop("reverse_source", False))
    torch.manual_seed(seed)
    model = Seq2Seq(task.model_config(**(CHAPTER5_MODEL | changes)))
    start = time.process_time()
    history = train_translator(model, task, CHAPTER5_RECIPE.scaled(lr=lr), seed=seed, progress=False)
    cpu_seconds = time.process_time() - start
    pairs = task.pairs("test")
    outputs = translate(model, task, [source for source, _ in pairs])
    scores = score_translations(outputs, [target for _, target in pairs])
    return {
        "variant": name,
        "seed": seed,
        "lr": lr,
        "changes": variants()[name],
        "parameters": count_parameters(model),
        "cpu_seconds": round(cpu_seconds, 1),
        "val_loss": [round(record["val_loss"], 5) for record in history.records],
        "exact_match": scores.exact_match,
        "chrf": round(scores.chrf, 2),
        "bleu": round(scores.bleu, 2),
        "forcing_gap": asdict(forcing_gap(model, task, pairs)),
        "by_length": exact_match_by_length(outputs, pairs, LENGTH_EDGES),
        "signatures": {"chrf": scores.chrf_signature, "bleu": scores.bleu_signature},
    }


def main() -> None:
    """Run the sweep (or ``--only`` some variants) and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(variants()), help="variants to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (with --only: not written)")
    args = parser.parse_args()
    small_model_threads(torch.device("cpu"))
    writer = ResultsWriter(command_line(__file__, sys.argv[1:]), device=torch.device("cpu"))
    task = TranslationTask(number_pairs("en", "de"))
    runs = []
    for name in args.only or variants():
        variant_runs = tune_then_repeat(partial(run, name, task=task), LEARNING_RATES, args.seeds)
        runs += variant_runs
        for result in variant_runs:
            print(
                f"{name:>28} seed {result['seed']} lr {result['lr']}: exact match {result['exact_match']:.3f}, "
                f"chrF {result['chrf']:.1f}, token accuracy forced {result['forcing_gap']['teacher_forced']:.3f} / "
                f"free {result['forcing_gap']['free_running']:.3f}, {result['cpu_seconds']:.0f} CPU s",
                flush=True,
            )
    if args.only:
        return
    document = {
        "recipe": asdict(CHAPTER5_RECIPE),
        "model": CHAPTER5_MODEL,
        "length_edges": LENGTH_EDGES,
        "runs": runs,
    }
    writer.write(args.out, document)
    print(f"wrote {args.out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
