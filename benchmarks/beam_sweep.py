"""Chapter 6's sweep: greedy and beam search with and without length normalisation, on Chapter 5's model.

Run it from the repository root (about 15 minutes of CPU on one thread)::

    .venv/bin/python benchmarks/beam_sweep.py              # writes benchmarks/results/beam_sweep.json
    .venv/bin/python benchmarks/beam_sweep.py --seeds 0    # one seed, printed, not saved

For each seed, three models decode the whole test set with every beam size in ``BEAM_SIZES`` and every length-
penalty exponent in ``ALPHAS`` (GNMT's ``lp = ((5 + n) / 6) ** alpha``; beam size 1 is greedy decoding). Each
setting records exact match, chrF, character BLEU (sacreBLEU), the mean output length over the mean reference
length, the share of empty outputs, and the share of *search errors*: test items where the model gives the reference
a higher probability than the output the search returned (the search missed a better answer by the model's own
measure). The models (``MODELS``) all have Chapter 5's architecture (``companion.translation_task.CHAPTER5_MODEL``)
and are trained on the English -> German numbers: Chapter 5's model itself (``CHAPTER5_RECIPE``, exactly as
``benchmarks/seq2seq_bottleneck.py`` trains its ``hidden=128`` runs), a small one and a weak one. On the first
``EXACT_ITEMS`` test items the exact most probable output (``companion.decoding.exact_search``) is found too, to see
whether it is short or empty.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from companion.data import number_pairs
from companion.decoding import exact_search, sequence_log_probs
from companion.device import small_model_threads
from companion.reproducibility import ResultsWriter, command_line
from companion.seq2seq import Seq2Seq
from companion.translation_task import (
    CHAPTER5_MODEL,
    CHAPTER5_RECIPE,
    TranslationTask,
    score_translations,
    search,
    train_translator,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "beam_sweep.json"
SEEDS = (0, 1, 2)
BEAM_SIZES = (1, 2, 3, 5, 10, 20, 50)
ALPHAS = (0.0, 0.5, 1.0, 2.0)
EXACT_ITEMS = 200
# Three models of three qualities, all with Chapter 5's architecture: Chapter 5's own; a small one (hidden size 32,
# at the learning rate benchmarks/seq2seq_bottleneck.py chose for it), which makes many mistakes; and a weak one
# (hidden size 16, a tenth of the updates), barely trained.
MODELS = {
    "chapter 5": ({}, CHAPTER5_RECIPE),
    "small": ({"hidden_size": 32}, CHAPTER5_RECIPE.scaled(lr=0.03)),
    "weak": ({"hidden_size": 16}, CHAPTER5_RECIPE.scaled(steps=CHAPTER5_RECIPE.steps // 10, epochs=3)),
}


def models(seed: int, task: TranslationTask) -> dict[str, tuple[Seq2Seq, float]]:
    """The three models trained with ``seed``: name -> (model, CPU seconds of training)."""
    built = {}
    for name, (changes, recipe) in MODELS.items():
        torch.manual_seed(seed)
        model = Seq2Seq(task.model_config(**(CHAPTER5_MODEL | changes)))
        start = time.process_time()
        train_translator(model, task, recipe, seed=seed, progress=False)
        built[name] = (model.eval(), time.process_time() - start)
    return built


def decode_setting(model: Seq2Seq, task: TranslationTask, beam_size: int, alpha: float) -> dict:
    """Decode the test set with one setting and measure it (see the module docstring)."""
    pairs = task.pairs("test")
    start = time.process_time()
    found = search(model, task, [source for source, _ in pairs], beam_size=beam_size, alpha=alpha)
    seconds = time.process_time() - start
    outputs = [task.decode_target(row) for row in found.best.tolist()]
    references = [target for _, target in pairs]
    scores = score_translations(outputs, references)
    reference_log_probs = reference_scores(model, task, pairs)
    return {
        "beam_size": beam_size,
        "alpha": alpha,
        "exact_match": scores.exact_match,
        "chrf": round(scores.chrf, 2),
        "bleu": round(scores.bleu, 2),
        "length_ratio": sum(map(len, outputs)) / sum(map(len, references)),
        "empty": sum(output == "" for output in outputs) / len(outputs),
        "unfinished": 1 - found.finished[:, 0].float().mean().item(),
        "search_errors": (reference_log_probs > found.log_probs[:, 0] + 1e-4).float().mean().item(),
        "cpu_seconds": round(seconds, 2),
    }


def reference_scores(model: Seq2Seq, task: TranslationTask, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """``log P(reference | source)`` under ``model`` for every pair, end token included: (N,)."""
    batch = task.batch(pairs)
    state = model.encode(batch.source, batch.source_lengths)
    outputs = batch.target[:, 1:]  # after the start token, up to and including the end token
    return sequence_log_probs(model, batch.target[:, :1], outputs, batch.target_lengths - 1, state=state)


def exact_modes(model: Seq2Seq, task: TranslationTask, count: int, budget: int = 20_000) -> dict:
    """The exact most probable outputs of the first ``count`` test items: how long, how often empty or right.

    An item whose search needs more than ``budget`` model calls is left out and counted as ``unresolved``.
    """
    pairs = task.pairs("test")[:count]
    batch = task.batch(pairs)
    state = model.encode(batch.source, batch.source_lengths)
    start = time.process_time()
    outputs, references = [], []
    for index, (_, target) in enumerate(pairs):
        one = model.reorder_state(state, torch.tensor([index]))
        prompt = torch.full((1, 1), task.bos_id)
        try:
            found = exact_search(model, prompt, task.max_output_length, task.eos_id, state=one, max_expansions=budget)
        except RuntimeError:
            continue
        outputs.append(task.decode_target(found.best[0].tolist()))
        references.append(target)
    resolved = len(outputs)
    return {
        "items": count,
        "unresolved": count - resolved,
        "exact_match": sum(o == r for o, r in zip(outputs, references, strict=True)) / max(resolved, 1),
        "empty": sum(o == "" for o in outputs) / max(resolved, 1),
        "length_ratio": sum(map(len, outputs)) / max(sum(map(len, references)), 1),
        "cpu_seconds": round(time.process_time() - start, 2),
    }


def main() -> None:
    """Run the sweep for every seed and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    small_model_threads(torch.device("cpu"))
    writer = ResultsWriter(command_line(__file__, sys.argv[1:]), device=torch.device("cpu"))
    task = TranslationTask(number_pairs("en", "de"))
    runs = []
    for seed in args.seeds:
        for name, (model, train_seconds) in models(seed, task).items():
            with torch.inference_mode():
                settings = [decode_setting(model, task, k, a) for k in BEAM_SIZES for a in ALPHAS if k > 1 or a == 0]
                mode = exact_modes(model, task, EXACT_ITEMS)
            runs.append(
                {
                    "model": name,
                    "seed": seed,
                    "train_cpu_seconds": round(train_seconds, 1),
                    "settings": settings,
                    "exact_search": mode,
                }
            )
            best = max(settings, key=lambda row: row["exact_match"])
            print(
                f"{name} seed {seed}: greedy {settings[0]['exact_match']:.3f}, best {best['exact_match']:.3f} "
                f"(beam {best['beam_size']}, alpha {best['alpha']}); exact mode empty {mode['empty']:.2f}",
                flush=True,
            )
    if args.seeds != list(SEEDS):
        return
    document = {
        "recipe": asdict(CHAPTER5_RECIPE),
        "model": CHAPTER5_MODEL,
        "models": {name: {"changes": changes, "recipe": asdict(recipe)} for name, (changes, recipe) in MODELS.items()},
        "beam_sizes": BEAM_SIZES,
        "alphas": ALPHAS,
        "runs": runs,
    }
    writer.write(args.out, document)
    print(f"wrote {args.out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
