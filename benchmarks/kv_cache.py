"""Generation time with and without the KV cache, against the number of generated tokens: the table and plot of
Chapter 11.

Run it from the repository root::

    .venv/bin/python benchmarks/kv_cache.py                 # the committed results (a few CPU minutes)
    .venv/bin/python benchmarks/kv_cache.py --lengths 16 64 --repeats 1 --out /tmp/kv.json   # a quick look
    .venv/bin/python benchmarks/kv_cache.py --device cuda   # on a GPU

What is compared: one ``companion.pretraining.GPT`` (its weights untrained: the time of a step does not depend on
what the weights are), generating greedily with ``companion.decoding.decode`` from the same prompt, once as it is
(each step reads one new token and the cache of the earlier ones) and once wrapped in
``companion.transformer.NoCache`` (each step reads the whole prefix again). Both go through the same loop, the
same checks and the same ``inference_mode``; the tokens must come out identical, and the script stops if not.

For every length the two run alternately ``--repeats`` times, and the table shows medians: CPU seconds
(``time.process_time``, robust to other programs on the machine; on a GPU, wall seconds matter instead) and the
ratio no-cache / cache of each repeat, measured back to back. Without a cache step t costs the work of t positions,
so a generation of n tokens costs ~n^2 / 2 positions' work; with it, n positions' work (plus the attention over the
cache, which grows with t but is small at these sizes): the ratio grows about linearly with n.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from companion.decoding import decode
from companion.pretraining import GPT, LanguageModelConfig
from companion.reproducibility import ResultsWriter, command_line
from companion.transformer import NoCache

RESULTS = Path(__file__).parent / "results" / "kv_cache.json"


@dataclass(frozen=True)
class Settings:
    """The model and the generations to time."""

    vocab_size: int = 91  # the Part I character vocabulary's size
    d_model: int = 128
    nhead: int = 4
    num_layers: int = 4
    prompt_length: int = 16
    batch_size: int = 1
    lengths: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    repeats: int = 3
    seed: int = 0

    def model(self, device: torch.device) -> GPT:
        """The GPT to time, on ``device``, in eval mode."""
        torch.manual_seed(self.seed)
        config = LanguageModelConfig(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            nhead=self.nhead,
            num_layers=self.num_layers,
            max_length=self.prompt_length + max(self.lengths),
        )
        return GPT(config).to(device).eval()


@dataclass
class Row:
    """One generated length: medians over the repeats."""

    new_tokens: int
    cache_cpu_seconds: float
    no_cache_cpu_seconds: float
    cache_wall_seconds: float
    no_cache_wall_seconds: float
    speedup_cpu: float  # median over repeats of (no-cache CPU time / cache CPU time), each pair back to back
    speedup_wall: float
    repeats: list[dict] = field(default_factory=list)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The arg-max token of each row: (B, V) -> (B,)."""
    return logits.argmax(-1)


def timed(generate: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float, float]:
    """Run ``generate``; return its tokens, CPU seconds and wall seconds (after the device has finished)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cpu, wall = time.process_time(), time.perf_counter()
    tokens = generate()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return tokens, time.process_time() - cpu, time.perf_counter() - wall


def measure(model: GPT, prompt: torch.Tensor, new_tokens: int, repeats: int) -> Row:
    """Time ``repeats`` generations of ``new_tokens`` tokens with the cache and without, alternately."""
    device = prompt.device
    recomputing = NoCache(model)
    decode(model, prompt, 2, greedy)  # warm up kernels and allocator before the first timing
    samples = []
    for repeat in range(repeats):
        # Alternate which side goes first, so neither always meets a warmer (or colder) machine.
        order = ("cache", "no cache") if repeat % 2 == 0 else ("no cache", "cache")
        found = {}
        for side in order:
            generator = model if side == "cache" else recomputing
            found[side] = timed(lambda generator=generator: decode(generator, prompt, new_tokens, greedy), device)
        if not torch.equal(found["cache"][0], found["no cache"][0]):
            raise AssertionError(f"generating {new_tokens} tokens with and without the cache gave different tokens")
        samples.append(
            {
                "cache_cpu_seconds": found["cache"][1],
                "no_cache_cpu_seconds": found["no cache"][1],
                "cache_wall_seconds": found["cache"][2],
                "no_cache_wall_seconds": found["no cache"][2],
            }
        )

    def median(key: str) -> float:
        return statistics.median(sample[key] for sample in samples)

    def median_ratio(kind: str) -> float:
        return statistics.median(s[f"no_cache_{kind}_seconds"] / s[f"cache_{kind}_seconds"] for s in samples)

    return Row(
        new_tokens=new_tokens,
        cache_cpu_seconds=median("cache_cpu_seconds"),
        no_cache_cpu_seconds=median("no_cache_cpu_seconds"),
        cache_wall_seconds=median("cache_wall_seconds"),
        no_cache_wall_seconds=median("no_cache_wall_seconds"),
        speedup_cpu=median_ratio("cpu"),
        speedup_wall=median_ratio("wall"),
        repeats=samples,
    )


def run(settings: Settings, device: torch.device, threads: int = 1, log: Callable[[str], object] = print) -> dict:
    """Every length of ``settings``: the settings, the model's parameter count and one row per length."""
    if device.type == "cpu":
        torch.set_num_threads(threads)
    model = settings.model(device)
    prompt = torch.randint(
        settings.vocab_size, (settings.batch_size, settings.prompt_length), generator=torch.Generator().manual_seed(0)
    ).to(device)
    rows = []
    for length in settings.lengths:
        rows.append(measure(model, prompt, length, settings.repeats))
        log(format_row(rows[-1]))
    return {
        "settings": asdict(settings),
        "parameters": sum(p.numel() for p in model.parameters()),
        "rows": [asdict(row) for row in rows],
    }


HEADER = f"{'tokens':>7} {'cache CPU s':>12} {'no cache CPU s':>15} {'speed-up CPU':>13} {'speed-up wall':>14}"


def format_row(row: Row) -> str:
    """One line of the table."""
    return (
        f"{row.new_tokens:>7} {row.cache_cpu_seconds:>12.3f} {row.no_cache_cpu_seconds:>15.3f} "
        f"{row.speedup_cpu:>12.2f}x {row.speedup_wall:>13.2f}x"
    )


def main() -> None:
    """Parse the command line, time every length, print the table and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--lengths", type=int, nargs="+")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    settings = Settings()
    changes = {"lengths": tuple(args.lengths) if args.lengths else None, "repeats": args.repeats}
    changes["batch_size"] = args.batch_size
    settings = Settings(**(asdict(settings) | {key: value for key, value in changes.items() if value is not None}))
    device = torch.device(args.device)
    writer = ResultsWriter(command_line(__file__, sys.argv[1:]), seed=settings.seed, device=device)
    print(HEADER)
    results = writer.write(args.out, run(settings, device, args.threads, log=lambda line: print(line, flush=True)))
    print(f"load average {results['load_average_at_start']} -> {results['load_average_at_end']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
