"""Gated recurrent cells from scratch: the LSTM and the GRU, one step and whole sequences.

The LSTM {Hochreiter and Schmidhuber 1997, with the forget gate of Gers et al. 2000} keeps two vectors, a hidden
state h and a *cell state* c. Four gates, each an affine map of x_t and h_{t-1}, decide what happens to the memory::

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)      input gate: how much of the candidate to write
    f = sigmoid(W_if x + b_if + W_hf h + b_hf)      forget gate: how much of the old memory to keep
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)         candidate: what could be written
    o = sigmoid(W_io x + b_io + W_ho h + b_ho)      output gate: how much of the memory to show
    c_t = f * c_{t-1} + i * g                       the additive update (the gradient's highway)
    h_t = o * tanh(c_t)

The GRU {Cho et al. 2014} keeps one vector and two gates, in PyTorch's convention (z keeps the old state)::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      reset gate: how much of the memory the candidate reads
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)      update gate: how much of the old state to keep
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   candidate
    h_t = z * h_{t-1} + (1 - z) * n

Weights are stacked as in ``torch.nn.LSTM`` / ``torch.nn.GRU``: ``weight_ih`` (G*H, D) and ``weight_hh`` (G*H, H)
hold the G gates' blocks one below the other, in the order (i, f, g, o) for the LSTM and (r, z, n) for the GRU.
``LSTMCell`` and ``GRUCell`` carry ``torch.nn.LSTMCell``'s and ``GRUCell``'s parameter names; ``LSTM`` and ``GRU``
carry ``torch.nn.LSTM``'s and ``GRU``'s (``weight_ih_l0``, ..., ``bias_hh_l1_reverse``), so ``from_torch`` is one
``load_state_dict`` and a function that sets a bias works on either. The layers share the time loop, the padding
rules, stacking and directions of ``companion.recurrent_cells.RecurrentLayer``. These versions teach; to train, use
the fused ``torch.nn`` layers (through ``companion.recurrent_cells.run_recurrent`` they take the same call).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from companion.checks import check_positive, check_rank, check_same_size
from companion.recurrent_cells import RecurrentLayer, Step, parameters_of, torch_parameter_names

LSTM_GATES = ("input", "forget", "cell", "output")  # the order of the blocks in torch's stacked weights
GRU_GATES = ("reset", "update", "new")


def lstm_step(
    x: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step: x (B, D) and state (h, c), each (B, H) -> new (h, c).

    Weights as in torch.nn.LSTMCell: (4H, D), (4H, H), biases (4H,).
    """
    h, c = state
    # The four gates' pre-activations side by side: (B, 4H).
    gates = x @ weight_ih.T + h @ weight_hh.T
    if bias_ih is not None:
        gates = gates + bias_ih + bias_hh
    i, f, g, o = gates.chunk(4, dim=1)  # (B, H) each, torch's order
    # Input gate: how much of the candidate to write into the memory.
    i = torch.sigmoid(i)
    # Forget gate: how much of the old memory to keep (1 keeps it all).
    f = torch.sigmoid(f)
    # Candidate: what could be written, in (-1, 1).
    g = torch.tanh(g)
    # Output gate: how much of the memory to show as the hidden state.
    o = torch.sigmoid(o)
    # The memory changes by addition, not through a squashing matrix
    # product: the gradient's highway.
    c = f * c + i * g  # (B, H)
    h = o * torch.tanh(c)  # (B, H)
    return h, c


def gru_step(
    x: torch.Tensor,
    h: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    """One GRU step in PyTorch's convention: x (B, D), h (B, H) -> new h.

    Weights as in torch.nn.GRUCell: (3H, D), (3H, H), biases (3H,).
    """
    from_input = x @ weight_ih.T  # (B, 3H)
    from_memory = h @ weight_hh.T  # (B, 3H)
    if bias_ih is not None:
        from_input = from_input + bias_ih
        from_memory = from_memory + bias_hh
    r_x, z_x, n_x = from_input.chunk(3, dim=1)  # (B, H) each
    r_h, z_h, n_h = from_memory.chunk(3, dim=1)
    # Reset gate: how much of the memory the candidate may read.
    r = torch.sigmoid(r_x + r_h)
    # Update gate: how much of the old state to keep (1 keeps it all).
    z = torch.sigmoid(z_x + z_h)
    # Candidate: the new content, reading the memory through r.
    n = torch.tanh(n_x + r * n_h)
    # Keep a share z of the old state, write 1 - z of the candidate.
    return z * h + (1 - z) * n  # (B, H)


# ---------------------------------------------------------------- cells


class _GatedCell(nn.Module):
    """A cell with ``gates`` blocks of H rows in its weights, named as ``torch.nn.LSTMCell`` / ``GRUCell``."""

    gates = 1
    twin: type[nn.Module] = nn.Module

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        check_positive("input_size", input_size)
        check_positive("hidden_size", hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))  # (G*H, D)
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))  # (G*H, H)
        self.bias_ih = nn.Parameter(torch.empty(rows)) if bias else None  # (G*H,)
        self.bias_hh = nn.Parameter(torch.empty(rows)) if bias else None  # (G*H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every weight from U(-1/sqrt(H), 1/sqrt(H)), PyTorch's initialisation for recurrent layers."""
        _uniform_(self.parameters(), self.hidden_size)

    def extra_repr(self) -> str:
        """The sizes, shown by ``print(cell)``."""
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias_ih is not None else ", bias=False")

    def _weights(self) -> tuple[torch.Tensor, ...]:
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def _check(self, x: torch.Tensor, parts: tuple[torch.Tensor, ...], names: tuple[str, ...]) -> None:
        check_rank("x", x, 2, "(batch, input_size)")
        check_same_size("x", x, 1, "input_size", self.input_size)
        if x.shape[0] == 0:
            raise ValueError(f"x is an empty batch (shape {tuple(x.shape)}); expected at least one sequence")
        for name, part in zip(names, parts, strict=True):
            check_rank(name, part, 2, "(batch, hidden_size)")
            check_same_size(name, part, 0, "x's batch", x.shape[0])
            check_same_size(name, part, 1, "hidden_size", self.hidden_size)

    @classmethod
    def _copy(cls, module: nn.Module) -> _GatedCell:
        if type(module) is not cls.twin:
            raise TypeError(f"module must be a torch.nn.{cls.twin.__name__}, got {type(module).__name__}")
        cell = cls(module.input_size, module.hidden_size, bias=module.bias)
        cell.to(device=module.weight_ih.device, dtype=module.weight_ih.dtype)
        cell.load_state_dict(module.state_dict())  # the same names: weight_ih, weight_hh, bias_ih, bias_hh
        return cell


class LSTMCell(_GatedCell):
    """One LSTM step, with ``torch.nn.LSTMCell``'s parameters: ``weight_ih`` (4H, D), ``weight_hh`` (4H, H),
    ``bias_ih`` and ``bias_hh`` (4H,), the gates stacked in the order input, forget, cell, output.

    Args:
        input_size: D. hidden_size: H, the length of h and of the cell state c. bias: add the two biases.
    """

    gates = 4
    twin = nn.LSTMCell

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x (B, D) and state ``(h, c)``, each (B, H), zeros if None -> the new ``(h, c)``."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size) if x.dim() == 2 else None  # (B, H)
            state = (zeros, zeros)
        if not (isinstance(state, tuple | list) and len(state) == 2):
            got = f"a tensor of shape {tuple(state.shape)}" if isinstance(state, torch.Tensor) else type(state).__name__
            raise TypeError(f"an LSTM cell's state must be a pair (h, c) of (batch, hidden_size) tensors, got {got}")
        self._check(x, tuple(state), ("h", "c"))
        return lstm_step(x, tuple(state), *self._weights())

    @classmethod
    def from_torch(cls, module: nn.LSTMCell) -> LSTMCell:
        """A cell with a copy of the weights of ``module`` (a ``torch.nn.LSTMCell``), on its device and dtype."""
        return cls._copy(module)


class GRUCell(_GatedCell):
    """One GRU step, with ``torch.nn.GRUCell``'s parameters: ``weight_ih`` (3H, D), ``weight_hh`` (3H, H),
    ``bias_ih`` and ``bias_hh`` (3H,), the gates stacked in the order reset, update, new.

    Args:
        input_size: D. hidden_size: H. bias: add the two biases.
    """

    gates = 3
    twin = nn.GRUCell

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """One step: x (B, D) and h (B, H), zeros if None -> the new h (B, H)."""
        if isinstance(h, tuple | list):
            raise TypeError(f"a GRU cell's state is one tensor h (batch, hidden_size), got a {type(h).__name__}")
        if h is None and x.dim() == 2:
            h = x.new_zeros(x.shape[0], self.hidden_size)  # (B, H)
        self._check(x, (h,), ("h",))
        return gru_step(x, h, *self._weights())

    @classmethod
    def from_torch(cls, module: nn.GRUCell) -> GRUCell:
        """A cell with a copy of the weights of ``module`` (a ``torch.nn.GRUCell``), on its device and dtype."""
        return cls._copy(module)


# ---------------------------------------------------------------- layers


class _GatedLayer(RecurrentLayer):
    """Stacked, optionally bidirectional gated layers with torch's flat parameter names."""

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        rows = self.gates * hidden_size
        for layer in range(num_layers):
            for direction in range(self.num_directions):
                shapes = [(rows, self.layer_input_size(layer)), (rows, hidden_size), (rows,), (rows,)]
                for name, shape in zip(torch_parameter_names(layer, direction, bias), shapes, strict=False):
                    self.register_parameter(name, nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every weight from U(-1/sqrt(H), 1/sqrt(H)), PyTorch's initialisation for recurrent layers."""
        _uniform_(self.parameters(), self.hidden_size)

    def _weights(self, layer: int, direction: int) -> list[torch.Tensor | None]:
        weights = [getattr(self, name) for name in torch_parameter_names(layer, direction, self.bias)]
        return [*weights, None, None] if not self.bias else weights


class LSTM(_GatedLayer):
    """A from-scratch LSTM over whole sequences, batch-first, with ``torch.nn.LSTM``'s constructor and parameter
    names (``weight_ih_l{k}`` (4H, D_k), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}``, and
    ``..._reverse`` for the backward direction).

    ``forward(inputs (B, T, D), state=None, lengths=None)`` returns ``(outputs (B, T, dirs * H), (h_n, c_n))``,
    h_n and c_n (num_layers * dirs, B, H); ``state`` is a pair ``(h0, c0)`` of that shape or None (zeros). See
    ``companion.recurrent_cells.RecurrentLayer`` for the arguments.
    """

    gates = 4
    state_size = 2
    torch_twin = nn.LSTM

    def step(self, layer: int, direction: int) -> Step:
        """``lstm_step`` with the weights of layer ``layer`` in ``direction``: ``(x_t, (h, c)) -> (h, c)``."""
        return partial(_lstm_step_positional, weights=self._weights(layer, direction))


class GRU(_GatedLayer):
    """A from-scratch GRU over whole sequences, batch-first, with ``torch.nn.GRU``'s constructor and parameter names
    (``weight_ih_l{k}`` (3H, D_k), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}``, ``..._reverse``).

    ``forward(inputs (B, T, D), state=None, lengths=None)`` returns ``(outputs (B, T, dirs * H), h_n)``, h_n
    (num_layers * dirs, B, H). See ``companion.recurrent_cells.RecurrentLayer`` for the arguments.
    """

    gates = 3
    torch_twin = nn.GRU

    def step(self, layer: int, direction: int) -> Step:
        """``gru_step`` with the weights of layer ``layer`` in ``direction``: ``(x_t, h) -> h``."""
        return partial(_gru_step_positional, weights=self._weights(layer, direction))


def _lstm_step_positional(x: torch.Tensor, state: tuple, weights: list) -> tuple[torch.Tensor, torch.Tensor]:
    return lstm_step(x, state, *weights)


def _gru_step_positional(x: torch.Tensor, h: torch.Tensor, weights: list) -> torch.Tensor:
    return gru_step(x, h, *weights)


def _uniform_(parameters: object, hidden_size: int) -> None:
    bound = 1 / math.sqrt(hidden_size)
    for parameter in parameters:
        nn.init.uniform_(parameter, -bound, bound)


# ---------------------------------------------------------------- initialising the forget gate


def gate_slice(gate: str, hidden_size: int) -> slice:
    """The rows of gate ``gate`` (an LSTM's ``"input"``, ``"forget"``, ``"cell"``, ``"output"`` or a GRU's
    ``"reset"``, ``"update"``, ``"new"``) in torch's stacked weights and biases."""
    order = LSTM_GATES if gate in LSTM_GATES else GRU_GATES
    if gate not in order:
        raise ValueError(f"gate must be one of {LSTM_GATES + GRU_GATES}, got {gate!r}")
    index = order.index(gate)
    return slice(index * hidden_size, (index + 1) * hidden_size)


def set_forget_bias_(lstm: nn.Module, value: float | torch.Tensor) -> nn.Module:
    """Set the forget gate's bias of every layer and direction of ``lstm`` to ``value``; returns ``lstm``.

    Works on ``torch.nn.LSTM`` and ``companion.gated_cells.LSTM`` alike (the same parameter names). The gate adds
    two biases, so ``bias_ih`` gets ``value`` and ``bias_hh`` zero: their sum, the gate's bias, is ``value``.
    ``value`` is a number or a tensor (H,) (one bias per unit). A bias of 1 {Gers et al. 2000; Jozefowicz et al.
    2015} starts the gate near sigmoid(1) = 0.73 instead of 0.5: the memory starts out longer.
    """
    _check_lstm("lstm", lstm)
    rows = gate_slice("forget", lstm.hidden_size)
    with torch.no_grad():
        for _, _, weights in parameters_of(lstm):
            bias_ih, bias_hh = weights[2], weights[3]
            bias_ih[rows] = value
            bias_hh[rows] = 0.0
    return lstm


def chrono_init_(lstm: nn.Module, max_lag: int, generator: torch.Generator | None = None) -> nn.Module:
    """Chrono initialisation {Tallec and Ollivier 2018} of ``lstm`` for dependencies up to ``max_lag`` steps.

    Each unit's forget bias is ``log(u)`` with u drawn from U(1, max_lag - 1), and its input bias is minus that.
    A unit whose forget gate starts at sigmoid(log u) = u / (1 + u) keeps its memory for about 1 + u steps, so
    the units' time scales spread over 1 .. max_lag from the start. Works on ``torch.nn.LSTM`` and the
    companion's ``LSTM``; returns ``lstm``.
    """
    _check_lstm("lstm", lstm)
    if not isinstance(max_lag, int) or max_lag < 3:
        raise ValueError(f"max_lag must be an int of at least 3 (u is drawn from U(1, max_lag - 1)), got {max_lag!r}")
    hidden = lstm.hidden_size
    forget, write = gate_slice("forget", hidden), gate_slice("input", hidden)
    with torch.no_grad():
        for _, _, weights in parameters_of(lstm):
            bias_ih, bias_hh = weights[2], weights[3]
            u = 1 + (max_lag - 2) * torch.rand(hidden, generator=generator, dtype=torch.float64)  # U(1, max_lag - 1)
            bias_ih[forget] = u.log().to(bias_ih.dtype)
            bias_ih[write] = -u.log().to(bias_ih.dtype)
            bias_hh[forget] = 0.0
            bias_hh[write] = 0.0
    return lstm


def _check_lstm(name: str, lstm: nn.Module) -> None:
    if not isinstance(lstm, nn.LSTM | LSTM):
        raise TypeError(f"{name} must be a torch.nn.LSTM or companion.gated_cells.LSTM, got {type(lstm).__name__}")
    if not lstm.bias:
        raise ValueError(f"{name} has no biases (bias=False): there is no forget bias to set")
