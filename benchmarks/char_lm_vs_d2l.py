"""The same character-level language model trained with the companion and with d2l, side by side.

Run it from the repository root::

    .venv/bin/python benchmarks/char_lm_vs_d2l.py              # the chapter's CPU budget (200 steps)
    .venv/bin/python benchmarks/char_lm_vs_d2l.py --large      # a GPU budget: 2000 steps x 256 windows, hidden 512
    .venv/bin/python benchmarks/char_lm_vs_d2l.py --large --steps 5000   # any flag overrides the preset
    .venv/bin/python benchmarks/char_lm_vs_d2l.py --repeats 3 --d2l-without-plot   # steadier numbers, more rows

What is the same on both sides: the Wikipedia prose and its character vocabulary (``companion.data``); the model
(one-hot characters -> one ``nn.RNN`` layer -> a linear head, as d2l's ``RNNLM``), started from the *same initial
weights*; the optimiser (Adam: d2l's ``Module.configure_optimizers`` is overridden, which is how d2l is meant to be
extended), the learning rate and gradient clipping at the same global norm; and the same training batches in the
same order, split into the same epochs, each epoch ending with a pass over the same small validation set (d2l's
Trainer always does one; the companion's Trainer gets a ``loss_on`` hook). The companion trains with
``companion.training.Trainer`` and ``companion.language_models.RNNLanguageModel``; d2l with ``d2l.Trainer`` and
``d2l.RNNLM`` fed by a ``d2l.DataModule`` subclass over our batches.

What is measured, each side in its own fresh Python process (so neither inherits the other's memory or caches):

* validation perplexity: exp of the mean cross-entropy per character over ``--val-windows`` windows of held-out
  text, computed after training by one function for both models;
* tokens per second: training characters (steps x batch size x window length) divided by the wall time of the
  ``fit`` call, which includes each library's per-epoch validation and its progress display: the companion's tqdm
  bar, and d2l's ProgressBoard, a matplotlib plot redrawn twice per epoch and once per validation pass. Outside
  Jupyter that plot would never be rendered, which would flatter d2l, so the d2l worker renders it to SVG exactly
  as Jupyter's inline backend does after ``d2l.use_svg_display()``; ``--d2l-without-plot`` adds a d2l row with
  the board switched off, which shows what the plot costs;
* peak memory during ``fit``: on CUDA ``torch.cuda.max_memory_allocated`` minus the memory allocated when ``fit``
  starts; on the CPU the growth of the process's peak resident set size (Linux: the peak is reset just before
  ``fit`` through ``/proc/self/clear_refs``; elsewhere RSS is sampled every millisecond with psutil).

With ``--repeats N`` each side runs N times, alternating, and the table shows the median speed (perplexity does not
change between repeats: the runs are deterministic). ``--json PATH`` also writes the results, after the metadata
every results file carries (``companion.reproducibility.ResultsWriter``).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

SIDES = ("companion", "d2l", "d2l-no-plot")
# --large: a bigger budget, meant for a GPU run. Its learning rate is lower than the CPU budget's: on an H100, lr 0.01
# left the 512-unit model at validation perplexity 20.2 (d2l: 24.3); lr 0.002 reached 5.19 (d2l: 5.22).
LARGE = {"steps": 2000, "batch_size": 256, "hidden_size": 512, "val_windows": 4096, "lr": 0.002}
LABELS = {
    "companion": "companion Trainer + RNNLanguageModel",
    "d2l": "d2l.Trainer + d2l.RNNLM (live plot)",
    "d2l-no-plot": "d2l.Trainer + d2l.RNNLM (plot off)",
}


@dataclass
class Budget:
    """What both sides train: the model's size, the optimiser and how many batches of what shape."""

    steps: int = 200
    epochs: int = 10
    batch_size: int = 32
    window: int = 64  # characters per training window (the d2l book's num_steps)
    hidden_size: int = 128
    lr: float = 0.01
    clip: float = 1.0
    val_windows: int = 1024
    min_freq: int = 100  # rarer characters become <unk>
    seed: int = 0

    def check(self) -> None:
        """Raise ValueError on a budget that cannot run."""
        for name in ("steps", "epochs", "batch_size", "window", "hidden_size", "val_windows", "min_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps % self.epochs:
            raise ValueError(f"steps ({self.steps}) must be a multiple of epochs ({self.epochs})")
        if not (self.lr > 0 and self.clip > 0):
            raise ValueError(f"lr and clip must be positive, got {self.lr} and {self.clip}")

    @property
    def tokens(self) -> int:
        """Training characters seen by each side."""
        return self.steps * self.batch_size * self.window


@dataclass
class Result:
    """One side's measurements (the median over repeats for speed; the perplexity of the last run)."""

    side: str
    val_perplexity: float
    tokens_per_second: float
    fit_seconds: float
    peak_memory_bytes: int
    memory_method: str
    device: str
    threads: int
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_cpu_second(self) -> float:
        """Training characters per second of CPU time used by the process: steadier than wall time on a busy
        machine, where other programs take turns on the cores (on a GPU it counts only the host's work)."""
        return self.tokens_per_second * self.fit_seconds / self.extra["cpu_seconds"]


# ---------------------------------------------------------------- data and initial weights (parent process)


def prepare(budget: Budget, folder: Path) -> Path:
    """Encode the prose, cut the batches both sides train on, and draw the initial weights; save them to one file."""
    from companion.data import CharTokenizer, Vocab, next_token_pairs, wikipedia_text
    from companion.language_models import RNNLanguageModel

    chars = CharTokenizer().tokenize(wikipedia_text())
    split = int(0.9 * len(chars))  # the first 90 % trains, the last 10 % validates
    vocab = Vocab.build([chars[:split]], min_freq=budget.min_freq)
    ids = torch.tensor(vocab.encode(chars))
    generator = torch.Generator().manual_seed(budget.seed)
    inputs, targets = next_token_pairs(ids[:split], budget.window)  # (N, T) each
    needed = budget.steps * budget.batch_size
    passes = -(-needed // len(inputs))  # a fresh shuffle for every pass over the training windows
    order = torch.cat([torch.randperm(len(inputs), generator=generator) for _ in range(passes)])[:needed]
    val_inputs, val_targets = next_token_pairs(ids[split:], budget.window)
    torch.manual_seed(budget.seed)
    model = RNNLanguageModel(len(vocab), budget.hidden_size)  # one-hot inputs, like d2l.RNNLM
    path = folder / "data.pt"
    torch.save(
        {
            "budget": asdict(budget),
            "vocab_size": len(vocab),
            "train": (inputs[order].clone(), targets[order].clone()),
            "val": (val_inputs[: budget.val_windows].clone(), val_targets[: budget.val_windows].clone()),
            "initial": model.state_dict(),
        },
        path,
    )
    return path


class Batches:
    """The training batches, ``steps_per_epoch`` per pass: each new pass (epoch) continues where the last stopped.

    The same object feeds both trainers, which both iterate their loader once per epoch and ask for its length.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, steps_per_epoch: int) -> None:
        self.inputs, self.targets = inputs, targets  # (N, T) each
        self.batch_size, self.steps_per_epoch = batch_size, steps_per_epoch
        self.next_batch = 0

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.steps_per_epoch):
            rows = slice(self.next_batch * self.batch_size, (self.next_batch + 1) * self.batch_size)
            self.next_batch += 1
            yield self.inputs[rows], self.targets[rows]  # (B, T) each


def val_batches(inputs: torch.Tensor, targets: torch.Tensor, size: int, windows: int) -> list:
    """The first ``windows`` validation windows in batches of ``size``: what both trainers check each epoch."""
    return [(inputs[i : i + size], targets[i : i + size]) for i in range(0, min(windows, len(inputs)), size)]


def loaders(saved: dict, budget: Budget) -> tuple[Batches, list]:
    """The training batches and the per-epoch validation batches, built the same way for both sides."""
    train = Batches(*saved["train"], budget.batch_size, budget.steps // budget.epochs)
    return train, val_batches(*saved["val"], budget.batch_size, 4 * budget.batch_size)


def perplexity(logits_of, inputs: torch.Tensor, targets: torch.Tensor, device: torch.device) -> float:
    """exp(mean cross-entropy per character) of ``logits_of(ids (B, T)) -> (B, T, V)`` over all windows."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(inputs), 256):
            x, y = inputs[start : start + 256].to(device), targets[start : start + 256].to(device)
            logits = logits_of(x)  # (B, T, V)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
            count += y.numel()
    return math.exp(total / count)


# ---------------------------------------------------------------- memory


class PeakMemory:
    """Peak memory growth inside a ``with`` block: CUDA allocations, or the process's resident set on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated growth"
        elif Path("/proc/self/clear_refs").exists():
            Path("/proc/self/clear_refs").write_text("5")  # reset the kernel's peak-RSS mark (VmHWM) to now
            self.start = _proc_status_kib("VmRSS") * 1024
            self.method = "peak RSS growth (Linux VmHWM)"
        else:
            import psutil

            process = psutil.Process()
            self.start = process.memory_info().rss
            self.sampled, self.stop = self.start, threading.Event()

            def sample() -> None:
                while not self.stop.wait(0.001):
                    self.sampled = max(self.sampled, process.memory_info().rss)

            self.thread = threading.Thread(target=sample, daemon=True)
            self.thread.start()
            self.method = "peak RSS growth (sampled every 1 ms)"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.start
        elif hasattr(self, "thread"):
            self.stop.set()
            self.thread.join()
            self.peak = self.sampled - self.start
        else:
            self.peak = _proc_status_kib("VmHWM") * 1024 - self.start


def _proc_status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


# ---------------------------------------------------------------- the two sides (each in its own process)


def _timed_fit(fit, device: torch.device) -> tuple[float, float, PeakMemory]:
    """Wall-clock and CPU seconds of ``fit()`` (all threads of this process), and its peak memory."""
    with PeakMemory(device) as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        fit()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return seconds, cpu_seconds, memory


def train_companion(saved: dict, device: torch.device) -> Result:
    """Train with ``companion.training.Trainer``; return the measurements."""
    from companion.language_models import RNNLanguageModel, next_token_loss
    from companion.training import Trainer, loss_on

    budget = Budget(**saved["budget"])
    model = RNNLanguageModel(saved["vocab_size"], budget.hidden_size)
    model.load_state_dict(saved["initial"])
    train, validation = loaders(saved, budget)
    trainer = Trainer(
        model,
        torch.optim.Adam(model.parameters(), lr=budget.lr),
        next_token_loss,
        clip_grad_norm=budget.clip,
        evaluate=loss_on(validation, next_token_loss),
        device=device,
    )
    seconds, cpu_seconds, memory = _timed_fit(lambda: trainer.fit(train, budget.epochs), device)
    model.eval()
    ppl = perplexity(lambda x: model(x)[0], *saved["val"], device)
    return _result("companion", budget, ppl, seconds, memory, device, {"cpu_seconds": cpu_seconds})


class _NotebookDisplay:
    """Stands in for IPython.display inside d2l: renders each figure to SVG, as Jupyter's inline backend does."""

    draws = 0

    @classmethod
    def display(cls, figure: object) -> None:
        figure.savefig(io.BytesIO(), format="svg")  # what Jupyter does with a figure after use_svg_display()
        cls.draws += 1

    @staticmethod
    def clear_output(wait: bool = False) -> None:
        """Nothing to clear outside a notebook."""


def train_d2l(saved: dict, device: torch.device, live_plot: bool) -> Result:
    """Train with ``d2l.Trainer`` and ``d2l.RNNLM``; return the measurements."""
    import matplotlib

    matplotlib.use("Agg")
    from d2l import torch as d2l

    budget = Budget(**saved["budget"])
    vocab_size = saved["vocab_size"]

    class WikipediaChars(d2l.DataModule):
        """Our batches, through d2l's data interface."""

        def __init__(self) -> None:
            super().__init__()
            self.train, self.val = loaders(saved, budget)

        def get_dataloader(self, train: bool):
            return self.train if train else self.val

    class AdamRNNLM(d2l.RNNLM):
        """d2l's RNNLM with Adam instead of its default SGD: the one thing changed, the d2l way."""

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=self.lr)

    model = AdamRNNLM(d2l.RNN(vocab_size, budget.hidden_size), vocab_size=vocab_size, lr=budget.lr)
    model(torch.zeros(1, 1, dtype=torch.long))  # materialise d2l's LazyLinear head before copying weights
    initial = saved["initial"]
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(model.rnn.rnn, name).copy_(initial[f"recurrent.{name}"])
        model.linear.weight.copy_(initial["head.weight"])
        model.linear.bias.copy_(initial["head.bias"])
    d2l.display = _NotebookDisplay  # d2l calls display.display(fig) and display.clear_output(wait=True)
    model.board.display = live_plot
    trainer = d2l.Trainer(
        max_epochs=budget.epochs, num_gpus=1 if device.type == "cuda" else 0, gradient_clip_val=budget.clip
    )
    data = WikipediaChars()
    seconds, cpu_seconds, memory = _timed_fit(lambda: trainer.fit(model, data), device)
    model.eval()
    ppl = perplexity(model, *saved["val"], device)
    side = "d2l" if live_plot else "d2l-no-plot"
    return _result(
        side, budget, ppl, seconds, memory, device, {"cpu_seconds": cpu_seconds, "plot_renders": _NotebookDisplay.draws}
    )


def _result(side: str, budget: Budget, ppl: float, seconds: float, memory: PeakMemory, device, extra) -> Result:
    from importlib.metadata import version

    versions = {"torch": torch.__version__} | ({"d2l": version("d2l")} if side.startswith("d2l") else {})
    return Result(
        side=side,
        val_perplexity=ppl,
        tokens_per_second=budget.tokens / seconds,
        fit_seconds=seconds,
        peak_memory_bytes=memory.peak,
        memory_method=memory.method,
        device=str(device),
        threads=torch.get_num_threads(),
        versions=versions,
        extra=extra,
    )


def worker(side: str, data_path: Path, out_path: Path, threads: int | None) -> None:
    """Run one side in this process and write its Result as JSON."""
    from companion.device import pick_device

    if threads:
        torch.set_num_threads(threads)
    saved = torch.load(data_path, weights_only=False)
    device = pick_device()
    if side == "companion":
        result = train_companion(saved, device)
    else:
        result = train_d2l(saved, device, live_plot=side == "d2l")
    out_path.write_text(json.dumps(asdict(result)))


# ---------------------------------------------------------------- orchestration and the table


def run(budget: Budget, sides: Sequence[str] = ("companion", "d2l"), repeats: int = 1, threads: int | None = None):
    """Prepare the data once, then train each side ``repeats`` times in fresh processes; return one Result each."""
    budget.check()
    for side in sides:
        if side not in SIDES:
            raise ValueError(f"sides must be among {SIDES}, got {side!r}")
    runs: dict[str, list[Result]] = {side: [] for side in sides}
    env = os.environ | {"MPLBACKEND": "Agg", "PYTHONPATH": _repository_root()}
    with tempfile.TemporaryDirectory() as folder:
        data_path = prepare(budget, Path(folder))
        for repeat in range(repeats):
            for side in sides:
                out_path = Path(folder) / f"{side}-{repeat}.json"
                command = [sys.executable, __file__, "--worker", side, "--data", str(data_path), "--out", str(out_path)]
                if threads:
                    command += ["--threads", str(threads)]
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                if done.returncode:
                    raise RuntimeError(f"the {side} worker failed:\n{done.stderr[-3000:]}")
                runs[side].append(Result(**json.loads(out_path.read_text())))
    return [_median(results) for results in runs.values()]


def _repository_root() -> str:
    here = Path(__file__).resolve().parent.parent
    return os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


def _median(results: list[Result]) -> Result:
    speeds = sorted(results, key=lambda result: result.tokens_per_second)
    middle = speeds[len(speeds) // 2]
    return replace(middle, peak_memory_bytes=int(statistics.median(r.peak_memory_bytes for r in results)))


def format_table(results: Sequence[Result], budget: Budget, repeats: int = 1) -> str:
    """The printed table: one row per side, then the budget and how things were measured."""
    header = ("side", "val. perplexity", "tokens/s", "tokens/CPU-s", "fit (s)", "peak memory (MiB)")
    rows = [
        (
            LABELS[r.side],
            f"{r.val_perplexity:.3f}",
            f"{r.tokens_per_second:,.0f}",
            f"{r.tokens_per_cpu_second:,.0f}",
            f"{r.fit_seconds:.1f}",
            f"{r.peak_memory_bytes / 2**20:.1f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * width for width in widths)
    body = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    first = results[0]
    d2l_version = next((r.versions["d2l"] for r in results if "d2l" in r.versions), None)
    notes = [
        f"model: one-hot characters -> nn.RNN(hidden {budget.hidden_size}) -> linear head; same initial weights",
        f"budget: {budget.steps} steps x {budget.batch_size} windows x {budget.window} characters "
        f"= {budget.tokens:,} training characters in {budget.epochs} epochs; Adam lr {budget.lr}, clip {budget.clip}",
        f"validation: {budget.val_windows} held-out windows; tokens/s = training characters / fit wall time "
        f"(median of {repeats} run{'s' * (repeats > 1)}); tokens/CPU-s divides by the process's CPU time instead",
        f"device: {first.device} ({platform.machine()}), {first.threads} torch thread(s); "
        f"torch {first.versions['torch']}{f', d2l {d2l_version}' if d2l_version else ''}",
        f"memory: {first.memory_method}, each side in its own process",
    ]
    renders = [f"{LABELS[r.side]}: {r.extra['plot_renders']:.0f}" for r in results if r.extra.get("plot_renders")]
    if renders:
        notes.append("d2l plot renders to SVG during fit: " + "; ".join(renders))
    return "\n".join([*body[:1], line, *body[1:], "", *notes])


def main(argv: Sequence[str] | None = None) -> list[Result]:
    """Command line: run the benchmark and print the table (or, with --worker, run one side)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Budget()
    for name in ("steps", "epochs", "batch_size", "window", "hidden_size", "val_windows", "seed"):
        parser.add_argument(
            "--" + name.replace("_", "-"), type=int, default=None, help=f"default {getattr(defaults, name)}"
        )
    parser.add_argument("--large", action="store_true", help=f"the GPU budget {LARGE}; other flags override it")
    for name in ("lr", "clip"):
        parser.add_argument(f"--{name}", type=float, default=None, help=f"default {getattr(defaults, name)}")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, alternating; the median is shown")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in each worker (default: torch's)")
    parser.add_argument("--d2l-without-plot", action="store_true", help="add a d2l row with the live plot off")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.data, args.out, args.threads)
        return []
    from companion.reproducibility import ResultsWriter, command_line

    writer = ResultsWriter(command_line(__file__, sys.argv[1:] if argv is None else argv))
    preset = asdict(defaults) | (LARGE if args.large else {})
    given = {name: value for name, value in vars(args).items() if name in preset and value is not None}
    budget = Budget(**(preset | given))
    sides = ("companion", "d2l", "d2l-no-plot") if args.d2l_without_plot else ("companion", "d2l")
    results = run(budget, sides, args.repeats, args.threads)
    print(format_table(results, budget, args.repeats))
    if args.json:
        writer.write(args.json, results_document(results, budget, writer.environment))
    return results


def results_document(results: Sequence[Result], budget: Budget, environment: dict) -> dict:
    """What ``--json`` writes after the metadata: the budget, the device, each side's perplexity and every Result.

    ``runs`` has the shape of ``results/char_lm_vs_d2l_large.json``, which Chapter 1 reads (one entry per learning
    rate: merge two files' ``runs`` to compare rates).
    """
    return {
        "budget": asdict(budget),
        "device": f"{environment['device']} ({environment['device_name']})",
        "runs": [{"lr": budget.lr, "val_perplexity": {r.side: round(r.val_perplexity, 3) for r in results}}],
        "results": [asdict(result) for result in results],
    }


if __name__ == "__main__":
    main()
