"""Seeding and a report of everything a reader needs to reproduce a figure: seed, device and versions."""

from __future__ import annotations

import importlib.metadata
import platform
import random
import urllib.request
from dataclasses import dataclass, field
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
    import json

    return json.loads(repository_file(f"benchmarks/results/{name}").read_text())
