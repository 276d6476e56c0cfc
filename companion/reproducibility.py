"""Seeding and a report of everything a reader needs to reproduce a figure: seed, device and versions.

The benchmarks' results files are written here too (``ResultsWriter``), so that every file in
``benchmarks/results/`` carries the same record of what made it (``RESULTS_METADATA``), and read back here
(``benchmark_results``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import random
import shlex
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from companion.device import pick_device

# The packages whose versions change the numbers a notebook prints.
REPORTED_PACKAGES = ("torch", "numpy", "matplotlib", "sacrebleu", "gensim", "statsmodels", "babel", "num2words")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and PyTorch's generators (all devices); return a ``torch.Generator`` seeded alike.

    The generator is handy for data code that must not disturb, or be disturbed by, the global stream.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- code that uses the global np.random must be seeded too
    torch.manual_seed(seed)  # also seeds every CUDA and MPS device
    return torch.Generator().manual_seed(seed)


@dataclass
class Report:
    """What produced a result: printed at the top of every chapter so a reader can compare like with like."""

    seed: int | None
    device: str
    device_name: str
    python: str
    platform: str
    packages: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        rows = [
            ("seed", str(self.seed)),
            ("device", f"{self.device} ({self.device_name})"),
            ("python", self.python),
            ("platform", self.platform),
            *self.packages.items(),
        ]
        width = max(len(key) for key, _ in rows)
        return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def environment_report(seed: int | None = None, device: torch.device | None = None) -> Report:
    """Describe the seed, the device (with its model name) and the versions of the packages that shape results."""
    device = device or pick_device()
    return Report(
        seed=seed,
        device=str(device),
        device_name=_device_name(device),
        python=platform.python_version(),
        platform=platform.platform(terse=True),
        # torch.__version__ keeps the build tag (+cu130, +cpu) that package metadata drops
        packages={name: _version(name) for name in REPORTED_PACKAGES}
        | {"torch": torch.__version__}
        | _accelerator_versions(device),
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return platform.processor() or platform.machine()


def _accelerator_versions(device: torch.device) -> dict[str, str]:
    if device.type != "cuda":
        return {}
    return {"cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version())}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


REPOSITORY_RAW = "https://raw.githubusercontent.com/rnn-to-transformer/course/main/"


def repository_file(relative_path: str) -> Path:
    """A file of the course's repository (a benchmark script, a committed results file), by its path there.

    In a checkout (the book build, a local Jupyter) it is found in the current folder or one of its parents, or
    beside the installed package; a companion installed without the repository (Colab) downloads it once into the
    current folder from the course's repository on GitHub.
    """
    for folder in [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[1]]:
        if (folder / relative_path).is_file():
            return folder / relative_path
    target = Path.cwd() / Path(relative_path).name
    if not target.is_file():
        urllib.request.urlretrieve(REPOSITORY_RAW + relative_path, target)  # only outside a checkout
    return target


def benchmark_results(name: str) -> dict:
    """The committed results file ``benchmarks/results/<name>`` (JSON) of a benchmark script, as a dict.

    Found like every ``repository_file``: in the checkout that holds the working directory (the book build, a clone)
    or, for a companion installed without the repository (Colab), downloaded from the course's repository.
    """
    return json.loads(repository_file(f"benchmarks/results/{name}").read_text())


# What every results file records about the run that made it, beside its numbers (``ResultsWriter`` writes them).
RESULTS_METADATA = (
    "command",  # the command line that remakes the file, from the repository root
    "date",  # when the file was written, UTC, ISO 8601
    "environment",  # asdict(environment_report(...)): seed, device, versions
    "threads",  # torch's intra-op threads when the file was written
    "cpu_seconds_total",  # user + system CPU of the process and its finished children, all invocations together
    "load_average_at_start",  # os.getloadavg() when this invocation started: how busy the machine was
    "load_average_at_end",  # ... and when it wrote the file
)


def command_line(script: str | Path, argv: Sequence[str]) -> str:
    """The command that remakes a results file: ``python benchmarks/<script> <argv>``, quoted as a shell needs."""
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *map(str, argv)])


def _cpu_seconds() -> float:
    # os.times adds the children a script waited for (char_lm_vs_d2l trains in subprocesses); process_time does not
    children = os.times()
    return time.process_time() + children.children_user + children.children_system


class ResultsWriter:
    """Writes a benchmark's results file with the metadata of ``RESULTS_METADATA`` in front of its numbers.

    Make it when the run starts (it notes the CPU time and the load average then); call ``write`` as often as the
    script likes (after every point of a long sweep): each call records the CPU time and load average so far, and
    ``document`` gives the same object without writing it (for a script whose file is optional). A
    resumed run passes the CPU seconds of the invocations before it as ``cpu_seconds_before``, so that
    ``cpu_seconds_total`` covers them all; the load averages are always this invocation's.
    """

    def __init__(
        self,
        command: str,
        *,
        seed: int | None = None,
        device: torch.device | None = None,
        cpu_seconds_before: float = 0.0,
    ) -> None:
        self.command = command
        self.environment = asdict(environment_report(seed=seed, device=device))
        self.cpu_seconds_before = cpu_seconds_before
        self.load_average_at_start = list(os.getloadavg())
        self._cpu_at_start = _cpu_seconds()

    def cpu_seconds_total(self) -> float:
        """CPU seconds so far: this invocation's, plus ``cpu_seconds_before``."""
        return self.cpu_seconds_before + _cpu_seconds() - self._cpu_at_start

    def metadata(self) -> dict:
        """The keys of ``RESULTS_METADATA``, as of now."""
        return {
            "command": self.command,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "environment": self.environment,
            "threads": torch.get_num_threads(),
            "cpu_seconds_total": round(self.cpu_seconds_total(), 3),
            "load_average_at_start": self.load_average_at_start,
            "load_average_at_end": list(os.getloadavg()),
        }

    def document(self, results: dict) -> dict:
        """The metadata followed by ``results``, which must not set any of the metadata's keys."""
        clash = sorted(set(RESULTS_METADATA) & set(results))
        if clash:
            raise ValueError(f"results must not set the metadata keys {clash}: ResultsWriter records them")
        return self.metadata() | results

    def write(self, path: str | Path, results: dict) -> dict:
        """Write ``document(results)`` to ``path`` as JSON (whole or not at all); return what was written."""
        path, document = Path(path), self.document(results)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        partial.replace(path)  # a run killed mid-write leaves the previous file whole
        return document
