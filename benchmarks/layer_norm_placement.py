"""Post-LN against pre-LN: gradient norms per layer at initialisation, and training a deep stack with and without
warm-up. The measurements behind Chapter 10's claim box ("post-LN has gradient trouble when deep; pre-LN trains
without warm-up").

Run it from the repository root::

    .venv/bin/python benchmarks/layer_norm_placement.py              # the committed results (about 45 CPU minutes)
    .venv/bin/python benchmarks/layer_norm_placement.py --quick      # one seed, fewer steps: a smoke test
    .venv/bin/python benchmarks/layer_norm_placement.py --out results.json --lrs 1e-3 --warmups 0 --seeds 0

The task is the course's translation task with the most reordering, English number words to German ones
(``companion.data.number_pairs``: "twenty-four" -> "vierundzwanzig"), character by character, split by value;
the model is ``companion.transformer.Transformer`` (Xavier initialisation as ``torch.nn.Transformer``), with
the same seed giving the same initial weights for both placements (the parameters do not depend on where the
LayerNorms sit).

1. **Gradients at initialisation** (Xiong et al. 2020): one batch of 64 training pairs, the teacher-forced
   cross-entropy, one backward pass, and ``layer_gradient_norms`` of every encoder and decoder layer, for several
   depths and seeds. No optimiser step is taken.
2. **Training with and without warm-up**: Adam with the paper's betas (0.9, 0.98) and eps 1e-9, no gradient
   clipping (it would hide the instability being measured), a fixed number of steps; the learning rate rises
   linearly over ``warmup`` steps (0: none) then stays constant (``warmup_schedule``). Recorded every
   ``eval_every`` steps: the mean training loss and gradient norm since the last record and the validation loss;
   at the end, greedy exact match on validation pairs. A run whose loss becomes NaN or infinite is recorded as
   diverged.

Timings are CPU seconds (``time.process_time``) on one thread; the load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from companion.data import BOS, EOS, CharTokenizer, PairBatch, Vocab, number_pairs, pair_collator
from companion.reproducibility import environment_report
from companion.training import Trainer, loss_on
from companion.transformer import Transformer, TransformerConfig, layer_gradient_norms, warmup_schedule

RESULTS = Path(__file__).parent / "results" / "layer_norm_placement.json"
PLACEMENTS = {"post-LN": False, "pre-LN": True}


@dataclass(frozen=True)
class Settings:
    """The model and the training budget shared by every run."""

    d_model: int = 64
    nhead: int = 4
    dim_feedforward: int = 256
    layers: int = 6  # encoder layers, and as many decoder layers
    batch_size: int = 64
    steps: int = 400
    eval_every: int = 50
    val_pairs: int = 256
    seed: int = 0

    def config(self, task: Task, norm_first: bool, layers: int | None = None) -> TransformerConfig:
        """The ``TransformerConfig`` of one run."""
        depth = self.layers if layers is None else layers
        return TransformerConfig(
            source_vocab_size=len(task.source_vocab),
            target_vocab_size=len(task.target_vocab),
            d_model=self.d_model,
            nhead=self.nhead,
            dim_feedforward=self.dim_feedforward,
            num_encoder_layers=depth,
            num_decoder_layers=depth,
            norm_first=norm_first,
            max_length=64,
        )


@dataclass(frozen=True)
class Task:
    """English -> German number words as character ids: pairs of (source ids, ``<bos>`` target ``<eos>`` ids)."""

    source_vocab: Vocab
    target_vocab: Vocab
    train: list[tuple[list[int], list[int]]]
    valid: list[tuple[list[int], list[int]]]


@lru_cache(maxsize=1)
def load_task() -> Task:
    """The number-words task, character-level, split by value (``companion.data.number_pairs``)."""
    splits = number_pairs("en", "de")
    tokenizer = CharTokenizer()
    source_vocab = Vocab.build([tokenizer.tokenize(source) for source, _ in splits.train])
    target_vocab = Vocab.build([tokenizer.tokenize(target) for _, target in splits.train], specials=(BOS, EOS))

    def encode(pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        return [
            (
                source_vocab.encode(tokenizer.tokenize(source)),
                target_vocab.encode([BOS, *tokenizer.tokenize(target), EOS]),
            )
            for source, target in pairs
        ]

    return Task(source_vocab, target_vocab, encode(splits.train), encode(splits.valid))


def teacher_forcing_loss(model: Transformer, batch: PairBatch) -> torch.Tensor:
    """Mean cross-entropy per real target character, the decoder reading the gold prefix."""
    logits, _ = model(batch.target[:, :-1], model.encode(batch.source, batch.source_lengths))  # (B, T - 1, V)
    real = batch.target_mask[:, 1:]  # (B, T - 1): the characters to predict, <eos> included
    return F.cross_entropy(logits[real], batch.target[:, 1:][real])


def new_model(settings: Settings, task: Task, norm_first: bool, seed: int, layers: int | None = None) -> Transformer:
    """A freshly initialised model; the same seed draws the same weights for either placement."""
    torch.manual_seed(seed)
    return Transformer(settings.config(task, norm_first, layers))


def gradient_norms(settings: Settings, norm_first: bool, layers: int, seed: int) -> dict[str, list[float]]:
    """Per-layer gradient norms at initialisation, encoder and decoder, for one batch of training pairs."""
    task = load_task()
    model = new_model(settings, task, norm_first, seed, layers)
    batch = pair_collator()(task.train[seed * settings.batch_size : (seed + 1) * settings.batch_size])
    teacher_forcing_loss(model, batch).backward()
    return {
        "encoder": layer_gradient_norms(model.encoder.layers),
        "decoder": layer_gradient_norms(model.decoder.layers),
    }


def greedy_exact_match(model: Transformer, pairs: list[tuple[list[int], list[int]]], max_length: int = 48) -> float:
    """The share of ``pairs`` whose greedy output equals the target exactly (up to and including ``<eos>``)."""
    vocab = load_task().target_vocab
    bos, eos = vocab.token_to_id[BOS], vocab.token_to_id[EOS]
    batch = pair_collator()(pairs)
    model.eval()
    with torch.no_grad():
        state = model.encode(batch.source, batch.source_lengths)
        ids = torch.full((len(pairs), 1), bos)
        outputs = []
        for _ in range(max_length):
            logits, state = model(ids, state)
            ids = logits[:, -1:].argmax(-1)  # (B, 1)
            outputs.append(ids)
    outputs = torch.cat(outputs, dim=1).tolist()
    hits = 0
    for output, (_, target) in zip(outputs, pairs, strict=True):
        produced = output[: output.index(eos) + 1] if eos in output else output
        hits += produced == target[1:]
    return hits / len(pairs)


def train(settings: Settings, norm_first: bool, lr: float, warmup: int, seed: int) -> dict:
    """One training run; returns its curve, final losses, exact match and CPU time."""
    task = load_task()
    model = new_model(settings, task, norm_first, seed)
    collate = pair_collator()
    generator = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(
        task.train, num_samples=settings.eval_every * settings.batch_size, generator=generator
    )  # one "epoch" of the Trainer = eval_every steps on freshly drawn pairs
    loader = torch.utils.data.DataLoader(task.train, settings.batch_size, sampler=sampler, collate_fn=collate)
    valid = task.valid[: settings.val_pairs]
    val_loader = torch.utils.data.DataLoader(valid, 256, collate_fn=collate)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)
    trainer = Trainer(
        model,
        optimizer,
        teacher_forcing_loss,
        scheduler=warmup_schedule(optimizer, warmup),
        evaluate=loss_on(val_loader, teacher_forcing_loss),
        device="cpu",
        progress=False,
    )
    start = time.process_time()
    diverged_at = None
    try:
        trainer.fit(loader, epochs=settings.steps // settings.eval_every)
    except FloatingPointError:
        diverged_at = (trainer.epoch + 1) * settings.eval_every
    records = trainer.history.records
    finite = diverged_at is None and all(math.isfinite(r["val_loss"]) for r in records)
    return {
        "placement": "pre-LN" if norm_first else "post-LN",
        "lr": lr,
        "warmup": warmup,
        "seed": seed,
        "steps": [r["epoch"] * settings.eval_every for r in records],
        "train_loss": [r["train_loss"] for r in records],
        "val_loss": [r["val_loss"] for r in records],
        "grad_norm": [r["grad_norm"] for r in records],
        "diverged_at_step": diverged_at,
        "final_val_loss": records[-1]["val_loss"] if finite and records else math.inf,
        "exact_match": greedy_exact_match(model, valid) if finite else 0.0,
        "cpu_seconds": time.process_time() - start,
    }


@dataclass
class Grid:
    """What to sweep."""

    depths: list[int] = field(default_factory=lambda: [2, 6, 12])
    gradient_seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3])
    warmups: list[int] = field(default_factory=lambda: [0, 100])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    placements: list[str] = field(default_factory=lambda: list(PLACEMENTS))


def run(
    settings: Settings,
    grid: Grid,
    log: Callable[[str], object] = print,
    save: Callable[[dict], object] | None = None,
    done: dict | None = None,
) -> dict:
    """Every measurement of the grid, in one dict ready for JSON.

    ``save(results)`` is called after every measurement with everything so far (a long run on a busy machine keeps
    what it measured); measurements already in ``done`` (an earlier, unfinished results dict) are kept, not rerun.
    Training runs go seed by seed, so a run cut short still holds whole grids of the first seeds.
    """
    torch.set_num_threads(1)
    started = time.process_time()
    session = {
        "command": " ".join(["python", "benchmarks/layer_norm_placement.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "grid": asdict(grid),
        "load_average_at_start": os.getloadavg(),
    }
    results = {
        "command": session["command"],
        "date": session["date"],
        "settings": asdict(settings),
        "grid": asdict(grid),
        "environment": asdict(environment_report(seed=settings.seed, device=torch.device("cpu"))),
        "threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        "gradients": [],
        "runs": [],
        "sessions": [session],
    }
    if done is not None:
        if done["settings"] != results["settings"]:
            raise ValueError("the earlier results were measured with other settings; start afresh")
        results["gradients"], results["runs"] = done["gradients"], done["runs"]
        # The file's grid is what it holds all together: the union of every session's grid.
        results["grid"] = {
            key: sorted(set(done["grid"].get(key, [])) | set(values)) for key, values in results["grid"].items()
        }
        earlier = done.get("sessions") or [
            {
                key: done[key]
                for key in ("command", "grid", "load_average_at_start", "load_average_at_end", "cpu_seconds_total")
                if key in done
            }
        ]
        results["sessions"] = [*earlier, session]
        results["load_average_at_start"] = earlier[0].get("load_average_at_start", session["load_average_at_start"])
    earlier_cpu = sum(s.get("cpu_seconds_total", 0.0) for s in results["sessions"][:-1])

    def record(kind: str, entry: dict) -> None:
        results[kind].append(entry)
        session["load_average_at_end"] = results["load_average_at_end"] = os.getloadavg()
        session["cpu_seconds_total"] = time.process_time() - started
        results["cpu_seconds_total"] = earlier_cpu + session["cpu_seconds_total"]
        if save is not None:
            save(results)

    measured = {(r["placement"], r["layers"], r["seed"]) for r in results["gradients"]}
    for depth in grid.depths:
        for name, norm_first in PLACEMENTS.items():
            for seed in grid.gradient_seeds:
                if (name, depth, seed) not in measured:
                    norms = gradient_norms(settings, norm_first, depth, seed)
                    record("gradients", {"placement": name, "layers": depth, "seed": seed, **norms})
            log(f"gradients at initialisation: {name}, {depth} + {depth} layers done")
    trained = {(r["placement"], r["lr"], r["warmup"], r["seed"]) for r in results["runs"]}
    for seed in grid.seeds:
        for lr in grid.lrs:
            for warmup in grid.warmups:
                for name in grid.placements:
                    norm_first = PLACEMENTS[name]
                    if (name, lr, warmup, seed) in trained:
                        continue
                    result = train(settings, norm_first, lr, warmup, seed)
                    record("runs", result)
                    log(
                        f"{name} lr {lr:g} warm-up {warmup} seed {seed}: val loss {result['final_val_loss']:.3f}, "
                        f"exact match {result['exact_match']:.1%}, {result['cpu_seconds']:.0f} CPU s"
                    )
    session["load_average_at_end"] = results["load_average_at_end"] = os.getloadavg()
    session["cpu_seconds_total"] = time.process_time() - started
    results["cpu_seconds_total"] = earlier_cpu + session["cpu_seconds_total"]
    return results


def summary(results: dict) -> str:
    """A text table: mean gradient norm of the first and last layer per depth; mean final loss and exact match."""
    lines = ["gradient norm at initialisation (mean over seeds): encoder first/last, decoder first/last"]
    for depth in results["grid"]["depths"]:
        for name in PLACEMENTS:
            rows = [r for r in results["gradients"] if r["layers"] == depth and r["placement"] == name]

            def mean(side: str, index: int, rows: list[dict] = rows) -> float:
                return statistics.mean(r[side][index] for r in rows)

            lines.append(
                f"  {depth:>2} + {depth:<2} {name:<7} encoder {mean('encoder', 0):6.3f} -> {mean('encoder', -1):6.3f}"
                f"   decoder {mean('decoder', 0):6.3f} -> {mean('decoder', -1):6.3f}"
            )
    lines.append("training (over seeds): final validation loss mean [min, max]; exact match mean; diverged runs")
    keys = sorted({(r["lr"], r["warmup"], r["placement"]) for r in results["runs"]})
    for lr, warmup, name in keys:
        rows = [r for r in results["runs"] if (r["lr"], r["warmup"], r["placement"]) == (lr, warmup, name)]
        losses = [r["final_val_loss"] for r in rows]
        diverged = sum(r["diverged_at_step"] is not None for r in rows)
        exact = statistics.mean(r["exact_match"] for r in rows)
        lines.append(
            f"  lr {lr:<6g} warm-up {warmup:>4} {name:<7} loss {statistics.mean(losses):6.3f} "
            f"[{min(losses):.3f}, {max(losses):.3f}]  exact match {exact:6.1%}  diverged {diverged}/{len(rows)}"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse the command line, run the grid, print the summary and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="one seed, 100 steps, depths 2 and 6: a smoke test")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--lrs", type=float, nargs="+")
    parser.add_argument("--warmups", type=int, nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--placements", nargs="+", choices=list(PLACEMENTS), help="training runs of these only")
    parser.add_argument("--resume", action="store_true", help="keep what --out already holds; measure the rest")
    args = parser.parse_args()
    settings, grid = Settings(), Grid()
    if args.quick:
        settings = replace(settings, steps=100)
        grid = Grid(depths=[2, 6], gradient_seeds=[0], lrs=[1e-3], warmups=[0, 50], seeds=[0])
    if args.steps:
        settings = replace(settings, steps=args.steps)
    if args.layers:
        settings = replace(settings, layers=args.layers)
    for name in ("lrs", "warmups", "seeds", "placements"):
        if getattr(args, name):
            setattr(grid, name, getattr(args, name))
    done = json.loads(args.out.read_text()) if args.resume and args.out.exists() else None
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(results: dict) -> None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")

    results = run(settings, grid, log=lambda line: print(line, flush=True), save=save, done=done)
    save(results)
    print(summary(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
