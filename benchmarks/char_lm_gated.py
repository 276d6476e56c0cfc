"""The learning rate for the RNN, LSTM and GRU character language models of Chapter 4, chosen on a small grid.

Run it from the repository root::

    nice -n 10 .venv/bin/python benchmarks/char_lm_gated.py          # the committed results (CPU, minutes)
    .venv/bin/python benchmarks/char_lm_gated.py --lrs 0.01 --out /tmp/lr.json

The model and data are Chapter 1's (``book/part1/char-language-model.ipynb``) and Chapter 4's
(``book/part2/gru.ipynb``): the Wikipedia prose shipped with gensim, characters seen fewer than 100 times mapped to
``<unk>``, the first 90 % for training and the last 10 % for validation, windows of 64 characters, batches of 32,
400 Adam updates (8 epochs of 50) with clipping at norm 1, one-hot inputs -> a recurrent layer -> a linear head.
The RNN has Chapter 1's 128 units; the LSTM and the GRU are sized to the same parameter count. For every model and
learning rate of the grid one model is trained from the tuning seed (``--seed``, not one of the seeds the chapter
reports) and scored by its perplexity on the whole validation part; the chapter then trains its seeds with each
model's best rate. The results file holds the grid, every perplexity and CPU time, the chosen rates and the
environment report.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the companion

import companion  # noqa: E402
from companion.data import CharTokenizer, Vocab, load_corpus, next_token_pairs  # noqa: E402
from companion.device import small_model_threads  # noqa: E402
from companion.language_models import RNNLanguageModel, next_token_loss  # noqa: E402
from companion.memory import hidden_size_for, parameter_count  # noqa: E402
from companion.reproducibility import ResultsWriter, command_line  # noqa: E402
from companion.training import Trainer, loss_on  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "char_lm_gated.json"
LAYERS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
WINDOW, BATCH, EPOCHS, STEPS_PER_EPOCH = 64, 32, 8, 50
MIN_FREQ, TRAIN_SHARE = 100, 0.9  # Chapter 1's vocabulary and split


def character_data() -> dict:
    """Chapter 1's split: training and validation windows and the vocabulary size."""
    text = load_corpus("wikipedia")
    chars = CharTokenizer().tokenize(text)
    split = int(TRAIN_SHARE * len(chars))
    vocab = Vocab.build([chars[:split]], min_freq=MIN_FREQ)
    ids = torch.tensor(vocab.encode(chars))
    return {
        "vocab_size": len(vocab),
        "train": next_token_pairs(ids[:split], WINDOW),
        "validation": next_token_pairs(ids[split:], WINDOW),
    }


def language_model(kind: str, vocab_size: int, hidden: int) -> RNNLanguageModel:
    """One-hot characters -> ``kind`` layer with ``hidden`` units -> a linear head."""
    return RNNLanguageModel(vocab_size, recurrent=LAYERS[kind](vocab_size, hidden, batch_first=True))


def equal_sizes(vocab_size: int) -> dict[str, int]:
    """Hidden sizes that give every model the parameter count of Chapter 1's RNN with 128 units."""
    budget = parameter_count(language_model("RNN", vocab_size, 128))
    return {kind: hidden_size_for(lambda h, kind=kind: language_model(kind, vocab_size, h), budget) for kind in LAYERS}


def train_and_score(kind: str, hidden: int, lr: float, seed: int, data: dict) -> dict:
    """Train one language model for 400 updates; its validation perplexity and the CPU seconds it took."""
    generator = companion.seed_everything(seed)
    model = language_model(kind, data["vocab_size"], hidden)
    train_set = torch.utils.data.TensorDataset(*data["train"])
    sampler = torch.utils.data.RandomSampler(train_set, num_samples=STEPS_PER_EPOCH * BATCH, generator=generator)
    loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH, sampler=sampler)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    trainer = Trainer(model, optimizer, next_token_loss, clip_grad_norm=1.0, device="cpu", progress=False)
    start = time.process_time()
    trainer.fit(loader, epochs=EPOCHS)
    seconds = time.process_time() - start
    model.eval()
    validation = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data["validation"]), batch_size=256)
    with torch.no_grad():
        loss = loss_on(validation, next_token_loss)(model)["val_loss"]
    return {"perplexity": math.exp(loss), "cpu_seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    """Run the grid and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lrs", nargs="+", type=float, default=[0.003, 0.01, 0.02, 0.04, 0.08, 0.16])
    parser.add_argument("--seed", type=int, default=100, help="the tuning seed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    threads = small_model_threads(device)
    writer = ResultsWriter(command_line(__file__, sys.argv[1:] if argv is None else argv), device=device)
    data = character_data()
    sizes = equal_sizes(data["vocab_size"])
    grid = {}
    for kind, hidden in sizes.items():
        grid[kind] = {}
        for lr in args.lrs:
            grid[kind][str(lr)] = train_and_score(kind, hidden, lr, args.seed, data)
            print(f"{kind:4} hidden {hidden:3} lr {lr:<6}: perplexity {grid[kind][str(lr)]['perplexity']:.3f}")
    best = {kind: float(min(runs, key=lambda lr: runs[lr]["perplexity"])) for kind, runs in grid.items()}
    results = {
        "config": {"lrs": args.lrs, "tuning_seed": args.seed, "threads": threads, "steps": EPOCHS * STEPS_PER_EPOCH},
        "hidden_sizes": sizes,
        "parameters": {kind: parameter_count(language_model(kind, data["vocab_size"], h)) for kind, h in sizes.items()},
        "grid": grid,
        "best_lr": best,
    }
    written = writer.write(args.out, results)
    print(f"best learning rates: {best}; {written['cpu_seconds_total']:.0f} CPU seconds")


if __name__ == "__main__":
    main()
