"""How long can a recurrent network remember? The recall task, a classifier for it, and one point of the curve.

The task (``RecallTask``): read a sequence whose first token is one of ``symbols`` ids, followed by ``lag`` filler
steps, and name the first token at the end. The filler is either random distractors drawn from the same ids (the
memory must ignore what comes after) or a constant blank token (it only has to hold on). Chance is 1 / symbols.

The model (``SequenceClassifier``): one-hot tokens -> any recurrent layer -> the features at the last step -> a
linear head over the symbols. "Any recurrent layer" means any module that follows the course's interface
(``companion.recurrent_cells.run_recurrent``): ``torch.nn.RNN``/``LSTM``/``GRU``, the from-scratch layers, or a
Transformer encoder or minGRU that maps (B, T, D) to (B, T, H).

Training (``train_recall``) is full backpropagation through time: the loss at the last step sends its gradient
through every one of the ``lag + 1`` steps, so a failure is forgetting, not truncation. Every step draws a fresh
batch, so there is nothing to overfit; validation (early stopping, choosing the learning rate) and test sets are
fixed and disjoint from training by their seeds. ``recall_point`` is one point of the memory-against-lag curve,
for one model, lag and seed, exactly as ``benchmarks/memory_vs_lag.py`` computes it; ``hidden_size_for`` sizes
models to equal parameter counts.

Why memory fails is a question about gradients: ``initial_state_gradients`` measures how much of the gradient of a
loss n steps later reaches the initial state, ``|dL/dh_0|``, and for an LSTM ``|dL/dc_0|``, along the cell state.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from companion.checks import check_positive, check_rank, check_same_size
from companion.data.synthetic import Examples, recall_task
from companion.gated_cells import chrono_init_, set_forget_bias_
from companion.recurrent_cells import run_recurrent
from companion.reproducibility import repository_file
from companion.training import Trainer

# Data seeds: training batches, the validation set and the test set never share one.
_VALIDATION_SEED, _TEST_SEED, _TRAIN_SEED = 1_000_003, 2_000_003, 10_000_019


@dataclass(frozen=True)
class RecallTask:
    """Recall the first of ``lag + 1`` tokens.

    Ids: 0 is unused (padding), ``1 .. symbols`` are the tokens to recall (and the distractors), ``symbols + 1``
    is the blank filler. ``distractors=False`` fills the lag with the blank.
    """

    lag: int
    distractors: bool = True
    symbols: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.lag, int) or self.lag < 0:
            raise ValueError(f"lag must be a non-negative int, got {self.lag!r}")
        if not isinstance(self.symbols, int) or self.symbols < 2:
            raise ValueError(f"symbols must be an int of at least 2, got {self.symbols!r}")

    @property
    def name(self) -> str:
        """``"distractors"`` or ``"blank"``: the kind of filler."""
        return "distractors" if self.distractors else "blank"

    @property
    def vocab_size(self) -> int:
        """Ids the inputs can hold: padding, the symbols and the blank."""
        return self.symbols + 2

    @property
    def blank(self) -> int:
        """The filler id of the task without distractors."""
        return self.symbols + 1

    @property
    def chance(self) -> float:
        """The accuracy of guessing: 1 / symbols."""
        return 1 / self.symbols

    def examples(self, num_examples: int, seed: int) -> Examples:
        """inputs (N, lag + 1) ids and targets (N,), the first token; the same seed gives the same examples."""
        filler = None if self.distractors else self.blank
        return recall_task(num_examples, self.lag, vocab_size=self.symbols + 1, seed=seed, filler=filler)


class SequenceClassifier(nn.Module):
    """ids (B, T) -> one-hot (B, T, V) -> ``recurrent`` -> features at each sequence's last step -> logits (B, C).

    Args:
        recurrent: a batch-first layer with the course's recurrent interface whose input size is ``vocab_size``.
        vocab_size: V, the number of input ids (one-hot vectors of length V).
        num_classes: C, the classes the head scores.
        feature_size: the size of ``recurrent``'s output features; default ``hidden_size`` times its directions.

    For an RNN, LSTM or GRU the features at the last step are its hidden state h_T: the whole sequence, read
    once, summarised in one vector.
    """

    def __init__(
        self, recurrent: nn.Module, vocab_size: int, num_classes: int, feature_size: int | None = None
    ) -> None:
        super().__init__()
        check_positive("vocab_size", vocab_size)
        check_positive("num_classes", num_classes)
        if feature_size is None:
            if not hasattr(recurrent, "hidden_size"):
                raise TypeError(f"pass feature_size: {type(recurrent).__name__} has no hidden_size")
            feature_size = recurrent.hidden_size * (2 if getattr(recurrent, "bidirectional", False) else 1)
        size = getattr(recurrent, "input_size", vocab_size)
        if size != vocab_size:
            raise ValueError(
                f"recurrent.input_size is {size}, but the classifier feeds it one-hot vectors of {vocab_size}"
            )
        self.vocab_size, self.num_classes = vocab_size, num_classes
        self.recurrent = recurrent
        self.head = nn.Linear(feature_size, num_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) integers in [0, V), lengths (B,) or None (all T long) -> logits (B, C)."""
        check_rank("ids", ids, 2, "(batch, time)")
        one_hot = F.one_hot(ids, self.vocab_size).to(self.head.weight.dtype)  # (B, T, V)
        outputs, _ = run_recurrent(self.recurrent, one_hot, None, lengths)  # (B, T, F)
        if lengths is None:
            last = outputs[:, -1]  # (B, F)
        else:
            last = outputs[torch.arange(len(ids), device=ids.device), lengths.to(ids.device) - 1]  # (B, F)
        return self.head(last)  # (B, C)


def classification_loss(model: nn.Module, batch: Examples) -> torch.Tensor:
    """Mean cross-entropy of ``model(inputs)`` (B, C) against ``targets`` (B,): the ``loss_fn`` for ``Trainer``."""
    inputs, targets = batch
    return F.cross_entropy(model(inputs), targets)


def accuracy_on(model: nn.Module, examples: Examples, batch_size: int = 1024) -> float:
    """The share of ``examples`` whose target is the arg-max of ``model``'s logits (evaluated without gradients)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    right = 0
    with torch.no_grad():
        for start in range(0, len(examples.targets), batch_size):
            inputs = examples.inputs[start : start + batch_size].to(device)
            targets = examples.targets[start : start + batch_size].to(device)
            right += (model(inputs).argmax(-1) == targets).sum().item()
    model.train(was_training)
    return right / len(examples.targets)


def parameter_count(model: nn.Module) -> int:
    """The number of trainable numbers in ``model``."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def hidden_size_for(build: Callable[[int], nn.Module], parameters: int, largest: int = 4096) -> int:
    """The hidden size H whose model ``build(H)`` has the parameter count closest to ``parameters``.

    ``build`` maps H to a whole model (recurrent layer and head), so the comparison counts everything that is
    learned. Assumes the count grows with H (it does for every layer of the course); ties go to the smaller H.
    """
    check_positive("parameters", parameters)
    high = 1
    while parameter_count(build(high)) < parameters:  # double until the count is reached: small models are cheap
        if high >= largest:
            raise ValueError(f"even hidden size {largest} gives fewer than {parameters} parameters")
        high = min(2 * high, largest)
    low = high // 2 + 1 if high > 1 else 1
    while low < high:  # then the smallest H with at least `parameters` parameters
        middle = (low + high) // 2
        if parameter_count(build(middle)) < parameters:
            low = middle + 1
        else:
            high = middle
    candidates = [size for size in (low - 1, low) if size >= 1]
    return min(candidates, key=lambda size: abs(parameter_count(build(size)) - parameters))


@dataclass(frozen=True)
class Budget:
    """How a recall model is trained: at most ``steps`` Adam updates of ``batch_size`` fresh examples, clipped at
    global norm ``clip``; every ``eval_every`` steps the validation accuracy is measured and training stops once it
    reaches ``stop_at``. Accuracy is reported on ``test_examples`` examples that no run trains or stops on."""

    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    clip: float = 1.0
    eval_every: int = 100
    stop_at: float = 0.99
    validation_examples: int = 512
    test_examples: int = 2000


@dataclass(frozen=True)
class RecallResult:
    """One trained model on one task: test and validation accuracy, updates made, final training loss, CPU time."""

    accuracy: float
    validation_accuracy: float
    steps: int
    train_loss: float
    cpu_seconds: float

    def to_dict(self) -> dict[str, float]:
        """The fields as a plain dict (for a JSON results file)."""
        return asdict(self)


class _FreshBatches:
    """``count`` training batches of a task, batch ``first`` to ``first + count - 1`` of a seeded stream."""

    def __init__(self, task: RecallTask, batch_size: int, seed: int, first: int, count: int) -> None:
        self.task, self.batch_size, self.seed, self.first, self.count = task, batch_size, seed, first, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Examples]:
        for index in range(self.first, self.first + self.count):
            yield self.task.examples(self.batch_size, _TRAIN_SEED + 7919 * self.seed + index)


def train_recall(model: nn.Module, task: RecallTask, budget: Budget, seed: int) -> RecallResult:
    """Train ``model`` (ids (B, T) -> logits over ``task.vocab_size`` ids) on ``task`` with full BPTT.

    ``seed`` picks the training batches (the caller seeds the model's initialisation). Runs on the model's
    device, with the course's ``Trainer``; returns the test accuracy and what the run cost.
    """
    device = next(model.parameters()).device
    validation = task.examples(budget.validation_examples, _VALIDATION_SEED + task.lag)
    test = task.examples(budget.test_examples, _TEST_SEED + task.lag)
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    trainer = Trainer(model, optimizer, classification_loss, clip_grad_norm=budget.clip, device=device, progress=False)
    start, steps, validation_accuracy, loss = time.process_time(), 0, 0.0, math.nan
    while steps < budget.steps and validation_accuracy < budget.stop_at:
        count = min(budget.eval_every, budget.steps - steps)
        loss = trainer.fit(_FreshBatches(task, budget.batch_size, seed, steps, count), epochs=1).last("train_loss")
        steps += count
        validation_accuracy = accuracy_on(model, validation)
    return RecallResult(
        accuracy=accuracy_on(model, test),
        validation_accuracy=validation_accuracy,
        steps=steps,
        train_loss=loss,
        cpu_seconds=time.process_time() - start,
    )


Builder = Callable[[int, RecallTask], nn.Module]
"""``build(hidden_size, task) -> recurrent layer`` (batch-first, input size ``task.vocab_size``)."""


def recurrent_builders() -> dict[str, Builder]:
    """The layers the memory benchmark compares, by name: fused ``torch.nn`` layers, and an LSTM whose forget
    gate starts with a bias of 1 or chrono-initialised for the task's length."""

    def rnn(hidden: int, task: RecallTask) -> nn.Module:
        return nn.RNN(task.vocab_size, hidden, batch_first=True)

    def lstm(hidden: int, task: RecallTask) -> nn.Module:
        return nn.LSTM(task.vocab_size, hidden, batch_first=True)

    def gru(hidden: int, task: RecallTask) -> nn.Module:
        return nn.GRU(task.vocab_size, hidden, batch_first=True)

    def lstm_forget1(hidden: int, task: RecallTask) -> nn.Module:
        return set_forget_bias_(lstm(hidden, task), 1.0)

    def lstm_chrono(hidden: int, task: RecallTask) -> nn.Module:
        return chrono_init_(lstm(hidden, task), max(task.lag + 1, 3))

    return {"rnn": rnn, "lstm": lstm, "gru": gru, "lstm-forget1": lstm_forget1, "lstm-chrono": lstm_chrono}


def recall_model(build: Builder, hidden_size: int, task: RecallTask) -> SequenceClassifier:
    """The classifier for ``task`` around ``build(hidden_size, task)``; its head scores every input id."""
    return SequenceClassifier(build(hidden_size, task), task.vocab_size, task.vocab_size)


def recall_point(
    build: Builder,
    task: RecallTask,
    budget: Budget,
    seed: int,
    parameters: int,
    size_task: RecallTask | None = None,
    device: torch.device | str = "cpu",
) -> tuple[RecallResult, int]:
    """One point of the memory-against-lag curve: ``(result, hidden_size)`` for one layer, task, budget and seed.

    The hidden size gives the whole classifier about ``parameters`` parameters (sized on ``size_task``, default
    ``task``: the count does not depend on the lag). ``seed`` seeds the initialisation and the training batches;
    the model trains on ``device``.
    """
    size_task = size_task or task
    hidden = hidden_size_for(lambda size: recall_model(build, size, size_task), parameters)
    torch.manual_seed(seed)
    model = recall_model(build, hidden, task).to(device)
    return train_recall(model, task, budget, seed), hidden


# ---------------------------------------------------------------- how far back a gradient reaches


def initial_state_gradients(
    layer: nn.Module, inputs: torch.Tensor, distances: list[int], direction: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """How much of a gradient reaches the initial state from a loss ``n`` steps later, for each ``n`` in ``distances``.

    For every n, ``layer`` (any recurrent layer of the course's interface: ``torch.nn.RNN``/``LSTM``/``GRU`` or a
    from-scratch one, one direction) reads ``inputs[:, :n]`` from a zero state, and the loss is ``L = u . h_n``,
    the last layer's hidden state after step n in a unit direction ``u`` (``direction``, (H,); default
    ``(1, ..., 1) / sqrt(H)``). Returns ``{"h": (len(distances),), "c": ...}``: the mean over the batch of
    ``|dL/dh_0|`` and, for an LSTM, of ``|dL/dc_0|``, the gradient that arrives along the cell state, in float64 on
    the CPU. inputs: (B, T, D) with T >= max(distances). Run the layer in float64 to see gradients below 1e-38.
    """
    check_rank("inputs", inputs, 3, "(batch, time, features)")
    if not distances or min(distances) < 1 or max(distances) > inputs.shape[1]:
        raise ValueError(f"distances must lie between 1 and inputs' time dimension {inputs.shape[1]}, got {distances}")
    if getattr(layer, "bidirectional", False):
        raise ValueError("layer must run forwards only: a backward direction reads h_n's future")
    hidden, rows = layer.hidden_size, getattr(layer, "num_layers", 1)
    if direction is None:
        direction = inputs.new_full((hidden,), 1 / math.sqrt(hidden))
    check_rank("direction", direction, 1, "(hidden,)")
    check_same_size("direction", direction, 0, "layer.hidden_size", hidden)
    pair = isinstance(layer, nn.LSTM) or getattr(layer, "state_size", 1) == 2
    norms: dict[str, list[float]] = {"h": [], "c": []} if pair else {"h": []}
    with torch.enable_grad():
        for n in distances:
            zeros = [inputs.new_zeros(rows, inputs.shape[0], hidden, requires_grad=True) for _ in norms]
            outputs, _ = run_recurrent(layer, inputs[:, :n], tuple(zeros) if pair else zeros[0])
            loss = (outputs[:, -1] @ direction).sum()  # summed over the batch: each example's own gradient
            for key, grad in zip(norms, torch.autograd.grad(loss, zeros), strict=True):
                norms[key].append(grad.double().transpose(0, 1).flatten(1).norm(dim=1).mean().item())  # (B,) -> mean
    return {key: torch.tensor(values, dtype=torch.float64) for key, values in norms.items()}


# ---------------------------------------------------------------- the committed sweep

SWEEP_FILE = "benchmarks/results/memory_vs_lag.json"


def load_sweep(path: str | Path | None = None) -> dict:
    """The results of ``benchmarks/memory_vs_lag.py``: from ``path``, else the file committed in the repository.

    The committed file is found in the checkout this runs in (``companion.reproducibility.repository_file``), or
    downloaded from the course's repository where the companion was installed without it (Colab). The dict has the
    metadata of every results file (``companion.reproducibility.RESULTS_METADATA``: ``command``, ``environment``,
    ``cpu_seconds_total`` ...), then ``runs`` (each invocation), ``config``, ``stopped`` and ``rows`` (see the script).
    """
    return json.loads(Path(path if path is not None else repository_file(SWEEP_FILE)).read_text())


def sweep_rows(results: dict, task: str, model: str) -> list[dict]:
    """The rows of one task and model that were run, by increasing lag (skipped lags left out)."""
    rows = [row for row in results["rows"] if row["task"] == task and row["model"] == model and row["status"] == "run"]
    return sorted(rows, key=lambda row: row["lag"])


def longest_lag_remembered(results: dict, task: str, model: str, threshold: float = 0.9) -> int | None:
    """The longest lag up to which every run lag has a mean test accuracy of at least ``threshold`` (None: not even
    the shortest)."""
    longest = None
    for row in sweep_rows(results, task, model):
        if row["mean"] < threshold:
            break
        longest = row["lag"]
    return longest
