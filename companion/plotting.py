"""Plots the chapters share: training curves from a ``History`` and heatmaps (attention, alignments, gates)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from companion.training import History


def plot_history(
    history: History,
    keys: Sequence[str] = ("train_loss", "val_loss"),
    ax: Axes | None = None,
    log_y: bool = False,
    title: str | None = None,
) -> Axes:
    """Plot the recorded ``keys`` against the epoch; keys never recorded are skipped (e.g. no validation)."""
    recorded = [key for key in keys if key in history]
    if not recorded:
        raise ValueError(f"none of keys {list(keys)} was recorded; the history has {history.keys()}")
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    for key in recorded:
        epochs, values = history.series(key)
        ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_yscale("log" if log_y else "linear")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_heatmap(
    matrix: torch.Tensor | np.ndarray,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Axes:
    """Show a 2-D ``matrix`` (rows, columns), e.g. attention weights (queries, keys), with optional tick labels.

    ``vmin`` and ``vmax`` fix the colour scale, e.g. 0 and 1 for probabilities or masks, so that a matrix whose
    entries are all equal is still drawn in the colour of its value.
    """
    values = matrix.detach().cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    if values.ndim != 2:
        raise ValueError(f"matrix must have 2 dimensions (rows, columns), got shape {values.shape}")
    for name, labels, size in (("x_labels", x_labels, values.shape[1]), ("y_labels", y_labels, values.shape[0])):
        if labels is not None and len(labels) != size:
            raise ValueError(f"{name} has {len(labels)} labels but matrix {values.shape} needs {size}")
    ax = ax or plt.subplots(figsize=(0.4 * values.shape[1] + 2, 0.4 * values.shape[0] + 1.5))[1]
    image = ax.imshow(values, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    if x_labels is not None:
        ax.set_xticks(range(len(x_labels)), x_labels, rotation=90)
    if y_labels is not None:
        ax.set_yticks(range(len(y_labels)), y_labels)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    if title:
        ax.set_title(title)
    return ax


# One colour per recurrent model, the same in every chapter's memory plots.
MODEL_COLORS = {"rnn": "C0", "lstm": "C1", "lstm-forget1": "C2", "lstm-chrono": "C3", "gru": "C4"}


def plot_memory_curves(
    results: dict,
    task: str,
    models: Sequence[str],
    ax: Axes | None = None,
    labels: dict[str, str] | None = None,
    title: str | None = None,
    legend: bool = True,
) -> Axes:
    """Recall accuracy against lag from ``benchmarks/memory_vs_lag.py``'s results (``companion.memory.load_sweep``).

    One line per model of ``models`` on ``task`` (``"distractors"`` or ``"blank"``): the mean over the seeds, with
    a bar from the lowest to the highest seed; the lag axis is logarithmic (the models are shifted a little
    sideways so that their bars do not hide each other), and a dotted line marks chance. ``labels`` renames models
    in the legend (``legend=False`` leaves it out, e.g. for one legend under several panels); each model keeps its
    colour of ``MODEL_COLORS`` across plots. Lags a model was not run at (after failing twice) are left out.
    """
    ax = ax or plt.subplots(figsize=(5, 3.4))[1]
    chance, all_lags = None, set()
    for index, model in enumerate(models):
        rows = sorted(
            (row for row in results["rows"] if (row["task"], row["model"], row["status"]) == (task, model, "run")),
            key=lambda row: row["lag"],
        )
        if not rows:
            raise ValueError(f"no rows for task {task!r} and model {model!r} in the results")
        lags = np.array([row["lag"] for row in rows], dtype=float)
        all_lags.update(row["lag"] for row in rows)
        means = np.array([row["mean"] for row in rows])
        spread = np.array([[row["mean"] - row["min"] for row in rows], [row["max"] - row["mean"] for row in rows]])
        shift = 1.04 ** (index - (len(models) - 1) / 2)  # a few percent along the log axis
        label = (labels or {}).get(model, model)
        color = MODEL_COLORS.get(model, f"C{(len(MODEL_COLORS) + index) % 10}")
        ax.errorbar(lags * shift, means, yerr=spread, marker="o", ms=4, capsize=2, label=label, color=color)
        chance = rows[0]["chance"]
    ax.axhline(chance, color="gray", ls=":", label="chance")
    ax.set_xscale("log")
    ticks = sorted(all_lags)
    ax.set_xticks(ticks, [str(lag) for lag in ticks])
    ax.minorticks_off()
    ax.set(xlabel="lag (steps between the token and the question)", ylabel="test accuracy", ylim=(0, 1.05))
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax
