"""Which tiny GPT to train on the Part I Wikipedia prose in about a minute of CPU: validation perplexity of a few
sizes and learning rates at one fixed CPU budget, for Chapter 11 to choose from.

Run it from the repository root::

    .venv/bin/python benchmarks/tiny_gpt.py                        # the committed results (a few CPU minutes per row)
    .venv/bin/python benchmarks/tiny_gpt.py --budget 20 --sizes 32x3 --lrs 3e-3   # one quick row

The data are Part I's exactly: the characters of ``companion.data.load_corpus("wikipedia")``, the first 90 % for
training and the rest for validation, the vocabulary ``Vocab.build([train characters], min_freq=100)`` (91 tokens),
random windows of ``--window`` characters (64, Part I's BPTT length) in batches of 32 for training, and
non-overlapping windows of the same length for validation, each read from a fresh start (as Part I scores its
RNN). A size ``DxL`` is a ``companion.pretraining.GPT`` with ``d_model`` D, L layers, 4 heads, a feed-forward
width of 4 D and learned positions, weights tied; ``rnn128`` is Part I's RNN language model (one-hot characters,
128 hidden units, about as many parameters as ``32x3``), trained the same way for reference.

Each run first times 10 steps, then trains for as many steps as fit in ``--budget`` CPU seconds (one thread):
Adam, a linear warm-up over the first 5 % of the steps, then a linear decay to zero (a schedule that only needs the
step count), gradient clipping at norm 1. Validation perplexity is measured on the first ``--val-windows``
windows of the validation text.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from companion.data import CharTokenizer, Vocab, load_corpus, next_token_pairs
from companion.language_models import RNNLanguageModel
from companion.modern_recurrent import MinGRU
from companion.pretraining import GPT, LanguageModelConfig
from companion.reproducibility import ResultsWriter, command_line

RESULTS = Path(__file__).parent / "results" / "tiny_gpt.json"
# The recurrent layers a size ``{kind}{H}`` names, each (input size, H) -> a batch-first layer (Chapter 12 adds
# the GRU and a two-layer minGRU).
RECURRENT = {
    "rnn": lambda inputs, hidden: torch.nn.RNN(inputs, hidden, batch_first=True),
    "lstm": lambda inputs, hidden: torch.nn.LSTM(inputs, hidden, batch_first=True),
    "gru": lambda inputs, hidden: torch.nn.GRU(inputs, hidden, batch_first=True),
    # The loop, not the scan: the same function, and on one CPU thread several times faster (Chapter 12).
    "mingru": lambda inputs, hidden: MinGRU(inputs, hidden, num_layers=2, parallel=False),
}


@dataclass(frozen=True)
class Run:
    """One model and learning rate at one budget: ``size`` is ``DxL`` for a GPT, ``rnnH``, ``lstmH``, ``gruH`` or
    ``mingruH`` for Part I's recurrent language model over a layer of H units (``RECURRENT``; one-hot inputs)."""

    size: str
    lr: float
    budget_cpu_seconds: float = 60.0
    window: int = 64
    batch_size: int = 32
    val_windows: int = 1024
    seed: int = 0


@lru_cache(maxsize=1)
def part_one_data() -> tuple[int, torch.Tensor, torch.Tensor]:
    """Part I's split and vocabulary: (V, train ids, validation ids)."""
    chars = CharTokenizer().tokenize(load_corpus("wikipedia"))
    split = int(0.9 * len(chars))
    vocab = Vocab.build([chars[:split]], min_freq=100)
    ids = torch.tensor(vocab.encode(chars))
    return len(vocab), ids[:split], ids[split:]


def build(size: str, vocab_size: int, window: int) -> torch.nn.Module:
    """The model a ``Run.size`` names."""
    for kind, layer in RECURRENT.items():
        if size.startswith(kind):
            hidden = int(size.removeprefix(kind))
            return RNNLanguageModel(vocab_size, recurrent=layer(vocab_size, hidden))
    d_model, layers = (int(part) for part in size.split("x"))
    config = LanguageModelConfig(vocab_size=vocab_size, d_model=d_model, nhead=4, num_layers=layers, max_length=window)
    return GPT(config)


def perplexity(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """exp(mean cross-entropy per character) over the windows, each read from a fresh start."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(inputs), 256):
            logits, _ = model(inputs[start : start + 256].to(device))
            batch_targets = targets[start : start + 256].to(device)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch_targets.reshape(-1), reduction="sum")
            count += batch_targets.numel()
    model.train()
    return math.exp(total.item() / count)


def train(run: Run) -> dict:
    """Train one GPT for ``run.budget_cpu_seconds`` CPU seconds; its perplexity, steps and parameter count."""
    vocab_size, train_ids, val_ids = part_one_data()
    torch.manual_seed(run.seed)
    model = build(run.size, vocab_size, run.window).train()
    inputs, targets = next_token_pairs(train_ids, run.window, step=1)  # every window start: views, no copies
    val_inputs, val_targets = next_token_pairs(val_ids, run.window)
    val_inputs, val_targets = val_inputs[: run.val_windows], val_targets[: run.val_windows]
    generator = torch.Generator().manual_seed(run.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr)

    def step() -> float:
        rows = torch.randint(len(inputs), (run.batch_size,), generator=generator)
        logits, _ = model(inputs[rows])
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), targets[rows].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    start = time.process_time()
    probe = 10
    for _ in range(probe):
        for group in optimizer.param_groups:
            group["lr"] = run.lr * 0.01  # the probe steps barely move the weights
        step()
    seconds_per_step = (time.process_time() - start) / probe
    steps = max(20, int((run.budget_cpu_seconds - (time.process_time() - start)) / seconds_per_step))
    warmup = max(1, steps // 20)
    for n in range(steps):
        factor = min((n + 1) / warmup, (steps - n) / (steps - warmup))
        for group in optimizer.param_groups:
            group["lr"] = run.lr * factor
        last = step()
    cpu = time.process_time() - start
    return {
        **asdict(run),
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps + probe,
        "train_cpu_seconds": cpu,
        "final_train_loss": last,
        "val_perplexity": perplexity(model, val_inputs, val_targets),
    }


def main() -> None:
    """Parse the command line, train every size at every learning rate, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sizes", nargs="+", default=["rnn128", "32x3", "48x2", "64x2", "64x4"])
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2])
    parser.add_argument("--budget", type=float, default=60.0, help="CPU seconds of training per run")
    parser.add_argument("--append", action="store_true", help="add the rows to those --out already holds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    earlier = json.loads(args.out.read_text()) if args.append and args.out.exists() else None
    rows = [] if earlier is None else earlier["rows"]
    # with --append the CPU seconds count the earlier invocations too; the load averages are this invocation's
    writer = ResultsWriter(
        command_line(__file__, sys.argv[1:]),
        seed=0,
        device=torch.device("cpu"),
        cpu_seconds_before=0.0 if earlier is None else earlier.get("cpu_seconds_total", 0.0),
    )
    for size in args.sizes:
        for lr in args.lrs:
            row = train(Run(size, lr, budget_cpu_seconds=args.budget))
            rows.append(row)
            print(
                f"{size:>7} ({row['parameters']:>7,} parameters), lr {lr:g}: "
                f"{row['steps']:>5} steps in {row['train_cpu_seconds']:.0f} CPU s, "
                f"validation perplexity {row['val_perplexity']:.3f}",
                flush=True,
            )
    writer.write(args.out, {"rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
