"""One training loop for the whole course.

The chapters differ in what a batch is and how a loss is computed from it, so the Trainer asks for exactly that, a
``loss_fn(model, batch) -> scalar tensor``, and does the rest the same way everywhere: moving batches to the
device, gradient clipping (and recording the gradient norm before clipping), evaluation hooks, a tqdm progress bar
that renders as a widget in Jupyter and as text in a terminal, a history for plots, and checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from companion.device import mps_available, pick_device

LossFn = Callable[[nn.Module, Any], torch.Tensor]
EvalFn = Callable[[nn.Module], Mapping[str, float]]


class History:
    """One record (a dict of numbers) per epoch: ``epoch``, ``train_loss``, ``grad_norm``, ``seconds`` and any
    metrics returned by evaluation hooks (``val_loss``, ``val_accuracy`` ...)."""

    def __init__(self, records: Iterable[Mapping[str, float]] = ()) -> None:
        self.records: list[dict[str, float]] = [dict(record) for record in records]

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, key: str) -> bool:
        return any(key in record for record in self.records)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, keys={self.keys()})"

    def append(self, record: Mapping[str, float]) -> None:
        """Add one epoch's record."""
        self.records.append(dict(record))

    def keys(self) -> list[str]:
        """Every key recorded in any epoch, in the order first seen."""
        return list(dict.fromkeys(key for record in self.records for key in record))

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """``(epochs, values)`` of ``key`` over the epochs where it was recorded, ready to plot."""
        if key not in self:
            raise KeyError(f"key {key!r} was never recorded; recorded keys are {self.keys()}")
        pairs = [(record["epoch"], record[key]) for record in self.records if key in record]
        return [epoch for epoch, _ in pairs], [value for _, value in pairs]

    def last(self, key: str) -> float:
        """The most recent value of ``key``."""
        return self.series(key)[1][-1]


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside a batch (tensors, tuples, lists, dicts, dataclasses) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # NamedTuple
        return type(batch)(*(move_to(value, device) for value in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move_to(value, device) for value in batch)
    if is_dataclass(batch) and not isinstance(batch, type):
        return type(batch)(**{field.name: move_to(getattr(batch, field.name), device) for field in fields(batch)})
    return batch


class Trainer:
    """Train ``model`` with ``optimizer`` on ``loss_fn(model, batch)``.

    Args:
        clip_grad_norm: rescale gradients whose global norm exceeds this (None: no clipping). The norm before
            clipping is recorded either way as ``grad_norm`` (mean over the epoch's steps).
        scheduler: a learning-rate scheduler stepped after every optimizer step (e.g. a warm-up schedule).
        evaluate: hooks run every ``eval_every`` epochs in eval mode without gradients; each returns a dict of
            metrics that is added to the epoch's record. ``loss_on(loader, loss_fn)`` builds the usual one.
        device: defaults to ``pick_device()``; the model is moved there.
        progress: show a tqdm progress bar.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        *,
        clip_grad_norm: float | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        evaluate: EvalFn | Iterable[EvalFn] = (),
        eval_every: int = 1,
        device: torch.device | str | None = None,
        progress: bool = True,
    ) -> None:
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be positive or None, got {clip_grad_norm!r}")
        if eval_every < 1:
            raise ValueError(f"eval_every must be at least 1, got {eval_every}")
        self.device = torch.device(device) if device is not None else pick_device()
        self.model = model.to(self.device)
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.clip_grad_norm = clip_grad_norm
        self.scheduler = scheduler
        self.hooks: list[EvalFn] = [evaluate] if callable(evaluate) else list(evaluate)
        self.eval_every = eval_every
        self.progress = progress
        self.history = History()

    @property
    def epoch(self) -> int:
        """Epochs trained so far (restored by ``load_checkpoint``, so ``fit`` resumes where it stopped)."""
        return len(self.history)

    def fit(self, train_loader: Iterable, epochs: int) -> History:
        """Train for ``epochs`` more epochs; return the history of all epochs so far."""
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        steps_per_epoch = _length_or_none(train_loader)
        total = steps_per_epoch * epochs if steps_per_epoch is not None else None
        with tqdm(total=total, disable=not self.progress, desc="training", unit="step") as bar:
            for _ in range(epochs):
                record = self._train_epoch(train_loader, bar)
                if self.hooks and (self.epoch + 1) % self.eval_every == 0:
                    record |= self._run_hooks()
                self.history.append(record)
                bar.set_postfix(_progress_summary(record))
        return self.history

    def _train_epoch(self, loader: Iterable, bar: tqdm) -> dict[str, float]:
        self.model.train()
        start = time.perf_counter()
        # The loss value is the one host-device synchronisation per step; gradient norms are summed on the device.
        loss_sum, norm_sum, steps = 0.0, torch.zeros((), device=self.device), 0
        for batch in loader:
            loss = self.loss_fn(self.model, move_to(batch, self.device))
            loss_sum += self._checked_value(loss, steps)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm_sum += self._clip_and_measure()
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            steps += 1
            bar.update()
        if steps == 0:
            raise ValueError("train_loader produced no batches; is the dataset empty or smaller than a batch?")
        return {
            "epoch": self.epoch + 1,
            "train_loss": loss_sum / steps,
            "grad_norm": norm_sum.item() / steps,
            "seconds": time.perf_counter() - start,
        }

    def _checked_value(self, loss: torch.Tensor, step: int) -> float:
        """The loss as a float, after checking that it is a finite scalar tensor."""
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar tensor, got {shape}")
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"loss is {value} at epoch {self.epoch + 1}, step {step + 1}; "
                "try a smaller learning rate or clip_grad_norm"
            )
        return value

    def _clip_and_measure(self) -> torch.Tensor:
        # clip_grad_norm_ returns the norm before clipping; with max_norm=inf it only measures it.
        max_norm = self.clip_grad_norm if self.clip_grad_norm is not None else math.inf
        return nn.utils.clip_grad_norm_(self.model.parameters(), max_norm).detach()

    def _run_hooks(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        self.model.eval()
        with torch.no_grad():
            for hook in self.hooks:
                metrics |= {key: float(value) for key, value in hook(self.model).items()}
        self.model.train()
        return metrics

    def save_checkpoint(self, path: str | Path) -> None:
        """Save model, optimizer, scheduler, history and PyTorch's random state.

        The random state drives data-loader shuffling and dropout, so a run resumed from a checkpoint repeats,
        bit for bit, the run that never stopped.
        """
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "history": self.history.records,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "rng_mps": torch.mps.get_rng_state() if mps_available() else None,
        }
        torch.save(state, Path(path))

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint saved by ``save_checkpoint``; model and optimizer tensors move to this device."""
        state = torch.load(Path(path), map_location=self.device, weights_only=True)
        if (state["scheduler"] is None) != (self.scheduler is None):
            raise ValueError("the checkpoint and this Trainer disagree on whether there is a scheduler")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.history = History(state["history"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([rng.cpu() for rng in state["rng_cuda"]])
        if state["rng_mps"] is not None and mps_available():
            torch.mps.set_rng_state(state["rng_mps"].cpu())


def loss_on(loader: Iterable, loss_fn: LossFn, name: str = "val_loss") -> EvalFn:
    """An evaluation hook for ``Trainer(evaluate=...)``: the mean of ``loss_fn`` over ``loader``, as ``name``.

    Batches go to the device of the model's parameters.
    """

    def hook(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        losses = [float(loss_fn(model, move_to(batch, device))) for batch in loader]
        if not losses:
            raise ValueError(f"the loader for {name!r} produced no batches")
        return {name: sum(losses) / len(losses)}

    return hook


def _progress_summary(record: Mapping[str, float]) -> dict[str, str]:
    """The epoch's losses and metrics, short enough to leave room for the bar itself."""
    hidden = {"epoch", "grad_norm", "seconds"}
    return {
        key.removesuffix("_loss") + " loss" if key.endswith("_loss") else key: f"{value:.4g}"
        for key, value in record.items()
        if key not in hidden
    }


def _length_or_none(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
