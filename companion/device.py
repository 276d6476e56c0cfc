"""Pick the fastest device the machine offers: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import os

import torch

DEVICE_ENV_VAR = "COURSE_DEVICE"


def pick_device(preferred: str | None = None) -> torch.device:
    """Return the device every model and trainer of the course runs on.

    ``preferred`` (or the ``COURSE_DEVICE`` environment variable, e.g. ``COURSE_DEVICE=cpu`` to compare timings)
    forces a device; otherwise CUDA is chosen when present, then MPS, then the CPU.
    """
    preferred = preferred or os.environ.get(DEVICE_ENV_VAR)
    if preferred:
        return _checked_device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def mps_available() -> bool:
    """Whether this PyTorch build has Apple's MPS backend and the machine can use it (the Trainer asks too)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def _checked_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"preferred device {name!r} is not a device name such as 'cpu', 'cuda' or 'mps'") from error
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": mps_available(),
    }
    if not available.get(device.type, False):
        raise ValueError(f"preferred device {name!r} is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"preferred device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def small_model_threads(device: torch.device) -> int:
    """On the CPU, run PyTorch on one thread, and return the thread count now in force.

    The chapters' models are small: a second thread saves little on them, and when other programs share the
    cores (a laptop, a CI machine) threads that wait for each other made training up to 20 times slower in our
    measurements. Larger models on a GPU are unaffected: on CUDA or MPS this changes nothing.
    """
    if device.type == "cpu":
        torch.set_num_threads(1)
    return torch.get_num_threads()
