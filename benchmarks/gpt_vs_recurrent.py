"""A tiny GPT against Part I's RNN and chapter 3's LSTM at about equal parameters and equal optimiser steps, on the
Part I Wikipedia prose, several seeds: the comparison table of Chapter 11.

Run it from the repository root::

    nice -n 10 .venv/bin/python benchmarks/gpt_vs_recurrent.py          # the committed results (about 7 CPU minutes)
    .venv/bin/python benchmarks/gpt_vs_recurrent.py --sizes 32x3 --lrs 1e-2 --seeds 0 --steps 100 --out /tmp/g.json

The data, vocabulary, window and validation windows are those of ``tiny_gpt.py`` (Part I's exactly). The models are
built by its ``build``: ``DxL`` a ``companion.pretraining.GPT`` (d_model D, L layers, 4 heads, feed-forward 4 D,
learned positions, tied weights), ``rnnH`` Part I's ``RNNLanguageModel`` over an ``nn.RNN`` of H units, ``lstmH``
the same over an ``nn.LSTM`` (the fused twin of chapter 3's ``companion.gated_cells.LSTM``), one-hot inputs. The
default sizes hold about 40,000 parameters each; ``52x1`` is a one-layer GPT for the claim that a one-layer
Transformer can be weaker than a one-layer LSTM.

Every run trains with ``companion.training.Trainer`` for exactly ``--steps`` optimiser steps: batches of 32 windows
drawn at random (with replacement, from every start position) by a sampler seeded with the run's seed, Adam, a
linear warm-up over the first 5 % of the steps then a linear decay to zero, gradient clipping at norm 1. Chapter 11
trains its GPT with the same lines, so its live run reproduces this file's ``32x3`` row of seed 0.

Learning rates are tuned on the first seed only: every ``--lrs`` value is run with it, and the other seeds use, per
model, the rate whose validation perplexity was lowest. Validation perplexity is measured on the first 1,024
validation windows, each read from a fresh start (as ``tiny_gpt.perplexity``). CPU seconds are
``time.process_time`` on one thread; the load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_gpt import build, part_one_data, perplexity

from companion.data import next_token_pairs
from companion.language_models import next_token_loss
from companion.reproducibility import ResultsWriter, command_line
from companion.training import Trainer

RESULTS = Path(__file__).parent / "results" / "gpt_vs_recurrent.json"
SIZES = ("rnn128", "lstm58", "32x3", "52x1")  # about 40,000 parameters each
WINDOW, BATCH_SIZE, VAL_WINDOWS = 64, 32, 1024


def warmup_then_decay(steps: int) -> callable:
    """The learning-rate factor of step n: up linearly over the first 5 % of ``steps``, then down to zero."""
    warmup = max(1, steps // 20)
    return lambda n: min((n + 1) / warmup, max(0.0, (steps - n) / (steps - warmup)))


def train(size: str, lr: float, seed: int, steps: int, device: str = "cpu") -> dict:
    """Train one model for ``steps`` steps on ``device``; its parameters, CPU seconds and validation perplexity."""
    vocab_size, train_ids, val_ids = part_one_data()
    inputs, targets = next_token_pairs(train_ids, WINDOW, step=1)  # every start position (views, no copies)
    val_inputs, val_targets = next_token_pairs(val_ids, WINDOW)
    torch.manual_seed(seed)
    model = build(size, vocab_size, WINDOW)
    sampler = torch.utils.data.RandomSampler(
        range(len(inputs)),
        replacement=True,
        num_samples=steps * BATCH_SIZE,
        generator=torch.Generator().manual_seed(seed),
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(inputs, targets), batch_size=BATCH_SIZE, sampler=sampler
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    trainer = Trainer(
        model,
        optimizer,
        next_token_loss,
        clip_grad_norm=1.0,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_decay(steps)),
        device=device,
        progress=False,
    )
    start = time.process_time()
    history = trainer.fit(loader, epochs=1)
    cpu = time.process_time() - start
    ppl = perplexity(model, val_inputs[:VAL_WINDOWS], val_targets[:VAL_WINDOWS])
    return {
        "size": size,
        "lr": lr,
        "seed": seed,
        "steps": steps,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_cpu_seconds": cpu,
        "train_loss": history.last("train_loss"),
        "val_perplexity": ppl,
        "bits_per_character": math.log2(ppl),
    }


def best_lrs(rows: list[dict], seed: int) -> dict[str, float]:
    """Per model, the learning rate with the lowest validation perplexity on ``seed``."""
    sizes = dict.fromkeys(r["size"] for r in rows)  # in the order they ran
    ranked = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["val_perplexity"])
    return {size: next(r["lr"] for r in ranked if r["size"] == size) for size in sizes}


def summary(results: dict) -> str:
    """One line per model at its tuned rate: perplexity mean [min, max] over seeds, parameters, CPU seconds."""
    lines = []
    for size, lr in results["tuned_lrs"].items():
        rows = [r for r in results["rows"] if r["size"] == size and r["lr"] == lr]
        ppl = [r["val_perplexity"] for r in rows]
        lines.append(
            f"{size:>7} {rows[0]['parameters']:>6,} parameters, lr {lr:g}: perplexity {statistics.mean(ppl):.3f} "
            f"[{min(ppl):.3f}, {max(ppl):.3f}] over {len(rows)} seeds, "
            f"{statistics.mean(r['train_cpu_seconds'] for r in rows):.1f} CPU s per run"
        )
    return "\n".join(lines)


def main() -> None:
    """Tune each model's rate on the first seed, run the other seeds at it, write the results after every run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 2e-2, 4e-2, 8e-2, 1.6e-1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--resume", action="store_true", help="keep the runs --out already holds; train the rest")
    args = parser.parse_args()
    saved = json.loads(args.out.read_text()) if args.resume and args.out.exists() else {}
    done = saved.get("rows", [])
    torch.set_num_threads(1)
    # the CPU seconds count the invocations this one resumes; the load averages are this invocation's
    writer = ResultsWriter(
        command_line(__file__, sys.argv[1:]),
        seed=args.seeds[0],
        device=torch.device("cpu"),
        cpu_seconds_before=saved.get("cpu_seconds_total", 0.0),
    )
    results = {
        "settings": {"steps": args.steps, "window": WINDOW, "batch_size": BATCH_SIZE, "val_windows": VAL_WINDOWS},
        "rows": [],
    }

    def record(size: str, lr: float, seed: int) -> None:
        key = (size, lr, seed, args.steps)
        earlier = [r for r in done if (r["size"], r["lr"], r["seed"], r["steps"]) == key]
        row = earlier[0] if earlier else train(size, lr, seed, args.steps)
        results["rows"].append(row)
        # Until the run ends, the file also keeps the earlier runs not reached yet: a run cut short loses none.
        waiting = [r for r in done if r not in results["rows"]]
        writer.write(args.out, results | {"rows": results["rows"] + waiting})
        print(
            f"{row['size']:>7} lr {row['lr']:g} seed {row['seed']}: perplexity {row['val_perplexity']:.3f} "
            f"({row['train_cpu_seconds']:.1f} CPU s)",
            flush=True,
        )

    first, *others = args.seeds
    for size in args.sizes:
        for lr in args.lrs:
            record(size, lr, first)
    results["tuned_lrs"] = best_lrs(results["rows"], first)
    for seed in others:
        for size, lr in results["tuned_lrs"].items():
            record(size, lr, seed)
    writer.write(args.out, results)
    print(summary(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
