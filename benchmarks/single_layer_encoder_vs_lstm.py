"""One bidirectional Transformer encoder layer against one LSTM layer, at equal parameters and optimiser steps, on two
small generated classification tasks: the evidence of chapter 11's claim box "A single-layer Transformer encoder can
be weaker than a single-layer LSTM".

Run it from the repository root::

    nice -n 10 .venv/bin/python benchmarks/single_layer_encoder_vs_lstm.py     # the committed results (~2.5 CPU min)
    .venv/bin/python benchmarks/single_layer_encoder_vs_lstm.py --steps 50 --seeds 0 --out /tmp/s.json   # smoke

What is measured, for each task, model and seed: accuracy on 2,000 test sequences (and on those of them in the
longer half of the task's length range), the CPU seconds of training (``time.process_time``, one thread, the load
average recorded beside them) and the parameter count.

The tasks (``Task``), generated from a seeded ``torch.Generator``, sequences of varied length padded on the right:

* ``parity``: a string of 1 to 32 bits (``PARITY_BITS``; uniform length, each bit a fair coin), then a read-out
  token; the class is the number of ones modulo 2. Every bit matters, and an LSTM can carry one bit of state along;
  one soft-attention layer can only average, which Hahn (2020) shows cannot follow parity as the length grows.
* ``membership``: 4 to 12 symbols (``MEMBERSHIP_SYMBOLS``) drawn from an alphabet of 16 (with replacement), then a
  query token naming one symbol of the alphabet (a token of its own, distinct from the symbol's); the class says
  whether the symbol occurs in the string (yes or no with equal chance). Attention can look the query up in one
  step; an LSTM has to hold the set of symbols seen so far.

Chance is 50 % on both. The models (``build``): ``encoder``, a token embedding plus the sinusoidal positions of
``companion.positions``, one ``companion.transformer.TransformerEncoderLayer`` (pre-LN, 4 heads, feed-forward
``4 * width``, no dropout) inside a ``TransformerEncoder`` with its final LayerNorm, attending both ways under the
padding mask (``companion.masks.padding_mask``), and a linear classifier on the output at the last real position
(the read-out or query token); ``lstm``, a token embedding, one ``nn.LSTM`` layer and the same classifier on its
state after the last real token. The LSTM's width is chosen so that its parameter count is the encoder's to within
2 %.

Every run: ``--steps`` Adam steps of 64 fresh sequences drawn with the run's seed (both models of a seed see the same
batches), a learning rate rising linearly over the first 5 % of the steps and then falling linearly to zero,
gradient clipping at norm 1. The learning rate is tuned per model and task on the first seed with
``companion.translation_task.tune_then_repeat`` (the rate whose run ends with the lowest validation loss, on 1,000
validation sequences), then the other seeds run at it. Validation and test sequences come from generators of their
own, apart from the training seeds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from companion.masks import padding_mask
from companion.positions import SinusoidalPositions
from companion.reproducibility import ResultsWriter, command_line
from companion.transformer import TransformerEncoder, TransformerEncoderLayer
from companion.translation_task import tune_then_repeat

RESULTS = Path(__file__).parent / "results" / "single_layer_encoder_vs_lstm.json"
PAD = 0
PARITY_BITS = (1, 32)  # shortest and longest bit string, both included
ALPHABET = 16
MEMBERSHIP_SYMBOLS = (4, 12)
BATCH_SIZE, VAL_SIZE, TEST_SIZE = 64, 1000, 2000
VAL_SEED, TEST_SEED = 10_000, 20_000  # apart from the training seeds
WIDTH, HEADS = 32, 4
MODELS = ("encoder", "lstm")
TASKS = ("parity", "membership")


@dataclass(frozen=True)
class Batch:
    """A padded batch: ids (B, T) with ``PAD`` after each sequence, lengths (B,), labels (B,)."""

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor


def with_readout(strings: torch.Tensor, lengths: torch.Tensor, last: torch.Tensor, labels: torch.Tensor) -> Batch:
    """strings (B, L) of ids, of which the first lengths[b] are real; ``last`` (B,) is put after them; the rest
    becomes ``PAD``."""
    real = torch.arange(strings.shape[1])[None, :] < lengths[:, None]  # (B, L)
    ids = torch.cat([torch.where(real, strings, PAD), torch.full_like(lengths, PAD)[:, None]], dim=1)  # (B, L + 1)
    ids[torch.arange(len(ids)), lengths] = last
    return Batch(ids, lengths + 1, labels)


def parity(n: int, generator: torch.Generator, bits: tuple[int, int] = PARITY_BITS) -> Batch:
    """n bit strings (ids 1 and 2 for bits 0 and 1) of bits[0] to bits[1] bits, each then the read-out id 3; the
    label is the count of ones modulo 2."""
    lengths = torch.randint(bits[0], bits[1] + 1, (n,), generator=generator)
    strings = torch.randint(0, 2, (n, bits[1]), generator=generator)  # (B, L)
    real = torch.arange(bits[1])[None, :] < lengths[:, None]  # (B, L)
    labels = (strings * real).sum(1) % 2
    return with_readout(strings + 1, lengths, torch.full_like(lengths, 3), labels)


def membership(
    n: int, generator: torch.Generator, symbols: tuple[int, int] = MEMBERSHIP_SYMBOLS, alphabet: int = ALPHABET
) -> Batch:
    """n strings of symbols[0] to symbols[1] symbols (ids 1 .. alphabet), each then a query id (alphabet + 1 ..
    2 alphabet, one per symbol); the label says whether the queried symbol occurs in the string (half of them do)."""
    lengths = torch.randint(symbols[0], symbols[1] + 1, (n,), generator=generator)
    strings = torch.randint(0, alphabet, (n, symbols[1]), generator=generator)  # (B, L)
    wanted = torch.randint(0, 2, (n,), generator=generator)
    real = torch.arange(symbols[1])[None, :] < lengths[:, None]  # (B, L)
    seen = torch.zeros(n, alphabet, dtype=torch.long).scatter_add_(1, strings, real.long()) > 0  # (B, alphabet)
    # the query names a symbol drawn uniformly from those in the string (wanted) or from those not in it
    allowed = torch.where(wanted[:, None].bool(), seen, ~seen)  # (B, alphabet)
    draw = torch.rand(n, alphabet, generator=generator).masked_fill(~allowed, -1.0)
    query = draw.argmax(1)
    return with_readout(strings + 1, lengths, query + alphabet + 1, wanted)


@dataclass(frozen=True)
class Task:
    """A generated task: its batches, its vocabulary (padding included) and its longest sequence."""

    name: str
    vocab_size: int
    max_length: int
    long_after: int  # a string longer than this (read-out not counted) is in the longer half of the range

    def batch(self, n: int, generator: torch.Generator) -> Batch:
        """n fresh sequences drawn with ``generator``."""
        return parity(n, generator) if self.name == "parity" else membership(n, generator)


def task(name: str) -> Task:
    """``parity`` or ``membership``."""
    if name == "parity":
        return Task(name, 4, PARITY_BITS[1] + 1, sum(PARITY_BITS) // 2)
    if name == "membership":
        return Task(name, 2 * ALPHABET + 1, MEMBERSHIP_SYMBOLS[1] + 1, sum(MEMBERSHIP_SYMBOLS) // 2)
    raise ValueError(f"task must be one of {TASKS}, got {name!r}")


def last_real(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, E) outputs -> (B, E), each sequence's at its last real position."""
    return x[torch.arange(len(x)), lengths - 1]


class EncoderClassifier(nn.Module):
    """Embedding plus sinusoidal positions, one bidirectional pre-LN encoder layer, a classifier on the output at the
    last real position."""

    def __init__(self, vocab_size: int, width: int, heads: int, max_length: int, classes: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, width, padding_idx=PAD)
        self.positions = SinusoidalPositions(width, max_length)
        layer = TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, norm_first=True)
        self.encoder = TransformerEncoder(layer, 1, nn.LayerNorm(width))
        self.classifier = nn.Linear(width, classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T), lengths (B,) -> logits (B, classes)."""
        x = self.positions(self.embedding(ids))  # (B, T, E)
        # every position reads every real position of its sequence, before and after it
        x, _ = self.encoder(x, padding_mask(lengths, ids.shape[1]))  # (B, T, E)
        return self.classifier(last_real(x, lengths))


class LSTMClassifier(nn.Module):
    """Embedding, one LSTM layer, a classifier on the state after the last real token."""

    def __init__(self, vocab_size: int, embedding: int, hidden: int, classes: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding, padding_idx=PAD)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True)
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T), lengths (B,) -> logits (B, classes)."""
        # left to right, so the output at the last real token has not read the padding after it
        out, _ = self.lstm(self.embedding(ids))  # (B, T, H)
        return self.classifier(last_real(out, lengths))


def parameters(model: nn.Module) -> int:
    """The number of trained parameters."""
    return sum(p.numel() for p in model.parameters())


def lstm_hidden(vocab_size: int, target: int, embedding: int = WIDTH) -> int:
    """The LSTM width whose classifier's parameter count is closest to ``target``."""

    def count(hidden: int) -> int:
        # embedding, the four gates' input and recurrent weights with nn.LSTM's two biases, the classifier
        return vocab_size * embedding + 4 * hidden * (embedding + hidden + 2) + 2 * (hidden + 1)

    return min(range(1, int(math.sqrt(target)) + 1), key=lambda hidden: abs(count(hidden) - target))


def build(model: str, spec: Task) -> nn.Module:
    """``encoder`` or ``lstm`` for ``spec``, the LSTM sized to the encoder's parameter count."""
    encoder = EncoderClassifier(spec.vocab_size, WIDTH, HEADS, spec.max_length)
    if model == "encoder":
        return encoder
    if model == "lstm":
        return LSTMClassifier(spec.vocab_size, WIDTH, lstm_hidden(spec.vocab_size, parameters(encoder)))
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def warmup_then_decay(steps: int) -> callable:
    """The learning-rate factor of step n: up linearly over the first 5 % of ``steps``, then down to zero."""
    warmup = max(1, steps // 20)
    return lambda n: min((n + 1) / warmup, max(0.0, (steps - n) / (steps - warmup)))


def evaluate(model: nn.Module, batch: Batch, long_after: int) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``batch``, and the accuracy on its strings longer than
    ``long_after`` (the read-out or query token not counted)."""
    model.eval()
    with torch.no_grad():
        logits = model(batch.ids, batch.lengths)
    model.train()
    right = (logits.argmax(-1) == batch.labels).float()  # (B,)
    return {
        "loss": F.cross_entropy(logits, batch.labels).item(),
        "accuracy": right.mean().item(),
        "accuracy_long": right[batch.lengths - 1 > long_after].mean().item(),
    }


def train(model_name: str, task_name: str, *, seed: int, lr: float, steps: int) -> dict:
    """Train one model on one task for ``steps`` steps; its record (val_loss as a one-entry list, for
    ``tune_then_repeat``)."""
    spec = task(task_name)
    torch.manual_seed(seed)
    model = build(model_name, spec)
    batches = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_decay(steps))
    start = time.process_time()
    for _ in range(steps):
        batch = spec.batch(BATCH_SIZE, batches)
        loss = F.cross_entropy(model(batch.ids, batch.lengths), batch.labels)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    cpu = time.process_time() - start
    val = evaluate(model, spec.batch(VAL_SIZE, torch.Generator().manual_seed(VAL_SEED)), spec.long_after)
    test = evaluate(model, spec.batch(TEST_SIZE, torch.Generator().manual_seed(TEST_SEED)), spec.long_after)
    return {
        "task": task_name,
        "model": model_name,
        "seed": seed,
        "lr": lr,
        "steps": steps,
        "parameters": parameters(model),
        "train_cpu_seconds": cpu,
        "val_loss": [val["loss"]],
        "val_accuracy": val["accuracy"],
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "test_accuracy_long": test["accuracy_long"],
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Per task and model, the chosen rate's seeds: test accuracy mean, min and max, parameters, CPU seconds."""
    table = []
    for task_name in dict.fromkeys(r["task"] for r in rows):
        for model_name in dict.fromkeys(r["model"] for r in rows):
            chosen = [r for r in rows if (r["task"], r["model"]) == (task_name, model_name) and r["chosen_lr"]]
            if not chosen:
                continue
            accuracy = [r["test_accuracy"] for r in chosen]
            table.append(
                {
                    "task": task_name,
                    "model": model_name,
                    "lr": chosen[0]["lr"],
                    "parameters": chosen[0]["parameters"],
                    "seeds": [r["seed"] for r in chosen],
                    "test_accuracy": accuracy,
                    "mean": statistics.mean(accuracy),
                    "min": min(accuracy),
                    "max": max(accuracy),
                    "test_accuracy_long": [r["test_accuracy_long"] for r in chosen],
                    "cpu_seconds_mean": statistics.mean(r["train_cpu_seconds"] for r in chosen),
                }
            )
    return table


def format_summary(table: list[dict]) -> str:
    """The summary as aligned text: per task, one line per model, test accuracy over the seeds (all sequences, and
    those in the longer half of the lengths) in per cent."""

    def spread(values: list[float]) -> str:
        return f"{100 * statistics.mean(values):5.1f} [{100 * min(values):5.1f}, {100 * max(values):5.1f}]"

    lines = []
    for task_name in dict.fromkeys(t["task"] for t in table):
        lines += [
            f"{task_name}: test accuracy %, mean [min, max] over the seeds",
            f"{'model':>8} {'params':>6} {'lr':>6}  {'all':>19}  {'longer half':>19}  {'CPU s':>5}",
        ]
        lines += [
            f"{t['model']:>8} {t['parameters']:>6,} {t['lr']:>6g}  {spread(t['test_accuracy'])}  "
            f"{spread(t['test_accuracy_long'])}  {t['cpu_seconds_mean']:>5.1f}"
            for t in table
            if t["task"] == task_name
        ]
    return "\n".join(lines)


def main() -> None:
    """Tune, repeat and write the results after every task and model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    writer = ResultsWriter(command_line(__file__, sys.argv[1:]), seed=args.seeds[0], device=torch.device("cpu"))
    settings = {
        "steps": args.steps,
        "batch_size": BATCH_SIZE,
        "lrs": args.lrs,
        "seeds": args.seeds,
        "width": WIDTH,
        "heads": HEADS,
        "parity_bits": PARITY_BITS,
        "membership_symbols": MEMBERSHIP_SYMBOLS,
        "alphabet": ALPHABET,
        "val_size": VAL_SIZE,
        "test_size": TEST_SIZE,
        "chance": 0.5,
        "tasks": {name: asdict(task(name)) for name in args.tasks},
    }
    rows: list[dict] = []
    for task_name in args.tasks:
        for model_name in args.models:

            def run(*, seed: int, lr: float, model_name: str = model_name, task_name: str = task_name) -> dict:
                record = train(model_name, task_name, seed=seed, lr=lr, steps=args.steps)
                print(
                    f"{task_name:>10} {model_name:>7} lr {lr:g} seed {seed}: test accuracy "
                    f"{record['test_accuracy']:.1%} ({record['train_cpu_seconds']:.1f} CPU s)",
                    flush=True,
                )
                return record

            rows += tune_then_repeat(run, args.lrs, args.seeds)
            writer.write(args.out, {"settings": settings, "rows": rows, "summary": summarise(rows)})
    table = summarise(rows)
    for t in table:
        if not math.isfinite(t["mean"]):
            raise RuntimeError(f"{t['task']} {t['model']}: no finite accuracy")
    print(format_summary(table))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
