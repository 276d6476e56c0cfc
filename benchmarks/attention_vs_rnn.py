"""Self-attention against recurrent layers: the time and memory of one layer against the sequence length n.

Run it from the repository root::

    .venv/bin/python benchmarks/attention_vs_rnn.py                  # the sweep the chapter plots, printed
    .venv/bin/python benchmarks/attention_vs_rnn.py --json benchmarks/results/attention_vs_rnn.json
    .venv/bin/python benchmarks/attention_vs_rnn.py --lengths 64 256 --repeats 3

What is compared, on the same device, batch and width (``--batch`` sequences of n vectors of ``--width``
features, float32):

* ``attention (scratch)``: ``companion.attention.MultiHeadAttention`` (``--heads`` heads) on its teaching path,
  which forms the (n, n) weights of every head;
* ``attention (fused)``: the same module with ``need_weights=False``, i.e. ``F.scaled_dot_product_attention``,
  which never stores the (n, n) matrix;
* ``RNN``: ``torch.nn.RNN`` (tanh), hidden size = width, and ``LSTM``: ``torch.nn.LSTM``, the same width; both
  fused (one call, its loop over the n steps in C++).

Self-attention here is bidirectional (no mask): every position attends to every other, n^2 pairs. What is measured
for each layer and n:

* time: the CPU seconds (``time.process_time``) of one forward and backward pass (loss = sum of the outputs), the
  median of ``--repeats`` runs after one untimed warm-up, with the fastest and slowest run beside it; the layers take
  turns within each repeat, so a burst of load from other programs falls on all of them alike. The wall time is
  recorded too. PyTorch runs on ``--threads`` threads (1 by default: the comparison of *work*, not of how well each
  kernel spreads over cores, and the figure least disturbed by other jobs on shared cores);
* memory: the bytes of the tensors that autograd saves for the backward pass (``saved_tensors_hooks``), which is
  what training keeps per layer; exact and independent of the load.

``--json PATH`` writes the points and the set-up, after the metadata every results file carries
(``companion.reproducibility.RESULTS_METADATA``: command, date, environment report, threads, CPU seconds, load
averages).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from companion.attention import MultiHeadAttention
from companion.reproducibility import ResultsWriter, command_line

LAYERS = ("attention (scratch)", "attention (fused)", "RNN", "LSTM")
LENGTHS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# The scratch path keeps (batch, heads, n, n) weights twice over (the softmax's output and the matrix product's
# input): about 1 GB at n = 2048 with the default set-up, so it stops there.
MAX_SCRATCH_LENGTH = 2048


@dataclass(frozen=True)
class Setup:
    """What every layer gets: the batch and width of its inputs, the heads of attention, threads and repeats."""

    batch: int = 4
    width: int = 64
    heads: int = 4
    threads: int = 1
    repeats: int = 5
    seed: int = 0


@dataclass
class Point:
    """One layer at one sequence length."""

    layer: str
    length: int
    cpu_s: float  # median CPU seconds of a forward + backward pass
    cpu_s_min: float
    cpu_s_max: float
    wall_s: float  # median wall seconds
    saved_bytes: int  # saved for the backward pass


def build_layers(setup: Setup) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Each layer as ``forward(x (B, n, width)) -> (B, n, width)``, with weights drawn from ``setup.seed``."""
    torch.manual_seed(setup.seed)
    attention = MultiHeadAttention(setup.width, setup.heads)
    rnn = nn.RNN(setup.width, setup.width, batch_first=True)
    lstm = nn.LSTM(setup.width, setup.width, batch_first=True)
    return {
        "attention (scratch)": lambda x: attention(x, x, x)[0],
        "attention (fused)": lambda x: attention(x, x, x, need_weights=False)[0],
        "RNN": lambda x: rnn(x)[0],
        "LSTM": lambda x: lstm(x)[0],
    }


def saved_bytes(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward pass of ``forward(x)``."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward(x)
    return total


def training_pass(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[float, float]:
    """CPU and wall seconds of one forward and backward pass."""
    cpu, wall = time.process_time(), time.perf_counter()
    forward(x).sum().backward()
    return time.process_time() - cpu, time.perf_counter() - wall


def measure(length: int, setup: Setup, layers: Sequence[str] = LAYERS) -> list[Point]:
    """Every layer in ``layers`` at sequence length ``length``; they take turns within each repeat."""
    torch.set_num_threads(setup.threads)
    forwards = build_layers(setup)
    x = torch.randn(setup.batch, length, setup.width, generator=torch.Generator().manual_seed(setup.seed))
    x.requires_grad_(True)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in layers}
    for name in layers:
        training_pass(forwards[name], x)  # warm-up: allocations, oneDNN's kernel choice
    for _ in range(setup.repeats):
        for name in layers:
            times[name].append(training_pass(forwards[name], x))
    points = []
    for name in layers:
        cpu = [c for c, _ in times[name]]
        wall = statistics.median(w for _, w in times[name])
        memory = saved_bytes(forwards[name], x)
        points.append(Point(name, length, statistics.median(cpu), min(cpu), max(cpu), wall, memory))
    return points


def sweep(lengths: Sequence[int], setup: Setup, progress: bool = True) -> list[Point]:
    """``measure`` at every length; the scratch attention only up to ``MAX_SCRATCH_LENGTH``."""
    points = []
    for length in lengths:
        layers = [name for name in LAYERS if name != "attention (scratch)" or length <= MAX_SCRATCH_LENGTH]
        points += measure(length, setup, layers)
        if progress:
            print(f"n = {length} done", file=sys.stderr)
    return points


def series(points: Sequence[Point | dict], layer: str, key: str) -> tuple[list[int], list[float]]:
    """The lengths and the values of ``key`` (e.g. "cpu_s", "saved_bytes") of one layer, in length order."""
    rows = sorted((_get(p, "length"), _get(p, key)) for p in points if _get(p, "layer") == layer)
    return [length for length, _ in rows], [value for _, value in rows]


def crossover(lengths: Sequence[int], rising: Sequence[float], other: Sequence[float]) -> float | None:
    """The n from which ``rising`` stays above ``other``, interpolated on log-log axes; None if it ends below.

    Both are measured at the same ``lengths``. The crossover is taken after the *last* length at which ``rising`` is
    still the smaller, so that noise among the fastest, nearly equal, points does not decide it; if ``rising`` is
    above at every length, the first length is returned (the crossover lies at or below it).
    """
    gaps = [math.log(a) - math.log(b) for a, b in zip(rising, other, strict=True)]
    if gaps[-1] < 0:
        return None
    below = [i for i, gap in enumerate(gaps) if gap < 0]
    if not below:
        return float(lengths[0])
    i = below[-1]
    fraction = -gaps[i] / (gaps[i + 1] - gaps[i])
    return math.exp(math.log(lengths[i]) + fraction * (math.log(lengths[i + 1]) - math.log(lengths[i])))


def scaling_exponent(lengths: Sequence[int], values: Sequence[float], smallest: int) -> float:
    """The slope of log(value) against log(n) over the lengths >= ``smallest`` (least squares): 1 linear, 2 square."""
    pairs = [(math.log(n), math.log(v)) for n, v in zip(lengths, values, strict=True) if n >= smallest]
    mean_x = statistics.fmean(x for x, _ in pairs)
    mean_y = statistics.fmean(y for _, y in pairs)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in pairs)
    return covariance / sum((x - mean_x) ** 2 for x, _ in pairs)


def format_table(points: Sequence[Point | dict]) -> str:
    """Two tables, one row per length and one column per layer: CPU ms (median), then MB saved for backward."""
    lengths = sorted({_get(p, "length") for p in points})
    by_key = {(_get(p, "layer"), _get(p, "length")): p for p in points}
    short = {"attention (scratch)": "scratch", "attention (fused)": "fused", "RNN": "RNN", "LSTM": "LSTM"}
    lines = []
    for title, key, scale in (
        ("CPU ms, forward + backward", "cpu_s", 1e3),
        ("MB saved for backward", "saved_bytes", 1e-6),
    ):
        lines += [title, f"{'n':>6} " + " ".join(f"{short[name]:>9}" for name in LAYERS)]
        for length in lengths:
            cells = [by_key.get((name, length)) for name in LAYERS]
            values = [f"{'-':>9}" if p is None else f"{scale * _get(p, key):>9.2f}" for p in cells]
            lines.append(f"{length:>6} " + " ".join(values))
        lines.append("")
    lines.append("scratch, fused: self-attention (4 heads) on its two paths;")
    lines.append("RNN, LSTM: torch.nn's layers")
    return "\n".join(lines)


def _get(point: Point | dict, key: str):
    return point[key] if isinstance(point, dict) else getattr(point, key)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the sweep, print the table and the crossovers, and write ``--json`` if asked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    for name, value in asdict(Setup()).items():
        parser.add_argument(f"--{name}", type=int, default=value)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    setup = Setup(**{name: getattr(args, name) for name in asdict(Setup())})
    command = command_line(__file__, sys.argv[1:] if argv is None else argv)
    writer = ResultsWriter(command, seed=setup.seed, device=torch.device("cpu"))
    points = sweep(args.lengths, setup)
    results = {"setup": asdict(setup), "points": [asdict(point) for point in points]}
    print(format_table(points))
    for attention in ("attention (scratch)", "attention (fused)"):
        for rnn in ("RNN", "LSTM"):
            lengths, ours = series(points, attention, "cpu_s")
            _, theirs = series(points, rnn, "cpu_s")
            at = crossover(lengths, ours, theirs[: len(ours)])
            print(f"{attention} slower than {rnn} from n = {'never' if at is None else f'{at:.0f}'}")
    return writer.write(args.json, results) if args.json else writer.document(results)


if __name__ == "__main__":
    main()
