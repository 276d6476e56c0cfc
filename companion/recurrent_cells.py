"""The plain (Elman) recurrent network, step by step, and the time loop that every recurrent layer shares.

``RNNCell`` takes one step, ``RNN`` loops it over time. Both hold their weights exactly as ``torch.nn.RNNCell`` and
``torch.nn.RNN`` do (``weight_ih`` (H, D), ``weight_hh`` (H, H), ``bias_ih`` and ``bias_hh`` (H,)), so one step is

    h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)

and either can load the weights of its ``torch.nn`` twin (``from_torch``) and must then agree with it. These versions
teach; to train anything non-trivial, use ``torch.nn.RNN`` (one fused kernel instead of a Python loop over time).

The recurrent interface of the course, which the RNN here and the LSTM and GRU of ``companion.gated_cells`` share
through ``RecurrentLayer`` (one time loop, one ``State``)::

    layer(inputs (B, T, D), state=None, lengths=None) -> (outputs (B, T, dirs * H), state)

Tensors are batch-first. The state is in torch's layout: a tensor (num_layers * dirs, B, H) for the RNN and GRU, a
pair ``(h, c)`` of such tensors for the LSTM. A padded batch carries ``lengths`` (B,): past its length a sequence's
state stays frozen and its outputs are zero, which is what ``torch.nn.RNN`` gives on a ``pack_padded_sequence``; a
backward direction reads each sequence from its own last real step, as packing does. ``run_recurrent`` gives a
``torch.nn.RNN``, ``LSTM`` or ``GRU`` (and any module with this interface) the same call, so models built on it take
a from-scratch layer or a fused one alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from companion.checks import (
    check_choice,
    check_integer_dtype,
    check_positive,
    check_rank,
    check_same_size,
    check_tensor,
)
from companion.masks import lengths_to_mask

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
"""A recurrent layer's state: a tensor (num_layers * dirs, B, H) for an RNN or GRU, a pair (h, c) for an LSTM.
A cell's state is the same without the first dimension: (B, H), or a pair of (B, H)."""

Step = Callable[[torch.Tensor, State], State]
"""One step of a recurrence: ``step(x_t (B, D), state) -> new state`` (a cell, or a function of its weights)."""


class RNNCell(nn.Module):
    """One step of a plain RNN: ``h_new = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``.

    Args:
        input_size: D, the number of features of each input vector.
        hidden_size: H, the length of the hidden state (a free choice: the network's memory size).
        bias: add the biases ``bias_ih`` and ``bias_hh`` (as ``torch.nn.RNNCell`` does by default).
        nonlinearity: ``"tanh"`` (the default, as in Elman's network) or ``"relu"``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        super().__init__()
        check_positive("input_size", input_size)
        check_positive("hidden_size", hidden_size)
        check_choice("nonlinearity", nonlinearity, tuple(NONLINEARITIES))
        self.input_size, self.hidden_size = input_size, hidden_size
        self.nonlinearity = nonlinearity
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # (H, D)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))  # (H, H)
        # Two biases where one would do (they are only ever added): torch.nn.RNN keeps two, so we do too.
        self.bias_ih = nn.Parameter(torch.empty(hidden_size)) if bias else None  # (H,)
        self.bias_hh = nn.Parameter(torch.empty(hidden_size)) if bias else None  # (H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every weight from U(-1/sqrt(H), 1/sqrt(H)), PyTorch's initialisation for recurrent layers."""
        bound = 1 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def extra_repr(self) -> str:
        """The sizes, shown by ``print(cell)``."""
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}, {self.nonlinearity}"

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """One step.

        Args:
            x: (B, D), the input at this step.
            h: (B, H), the previous hidden state; zeros if None.

        Returns:
            (B, H), the new hidden state.
        """
        check_rank("x", x, 2, "(batch, input_size)")
        check_same_size("x", x, 1, "input_size", self.input_size)
        _check_batch("x", x)
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)  # (B, H)
        check_rank("h", h, 2, "(batch, hidden_size)")
        check_same_size("h", h, 0, "x's batch", x.shape[0])
        check_same_size("h", h, 1, "hidden_size", self.hidden_size)
        # What the input says: project x into the hidden space.
        from_input = x @ self.weight_ih.T  # (B, H)
        # What the memory says: project the previous state into the same space.
        from_memory = h @ self.weight_hh.T  # (B, H)
        if self.bias_ih is not None:
            from_input = from_input + self.bias_ih
            from_memory = from_memory + self.bias_hh
        # Squash their sum (tanh: into (-1, 1)): the new state mixes the new input with what was remembered.
        return NONLINEARITIES[self.nonlinearity](from_input + from_memory)  # (B, H)

    @classmethod
    def from_torch(cls, module: nn.RNNCell) -> RNNCell:
        """A cell with a copy of the weights of ``module`` (a ``torch.nn.RNNCell``), on its device and dtype."""
        if not isinstance(module, nn.RNNCell):
            raise TypeError(f"module must be a torch.nn.RNNCell, got {type(module).__name__}")
        cell = cls(module.input_size, module.hidden_size, bias=module.bias, nonlinearity=module.nonlinearity)
        cell.to(device=module.weight_ih.device, dtype=module.weight_ih.dtype)
        cell.load_state_dict(module.state_dict())  # the same names: weight_ih, weight_hh, bias_ih, bias_hh
        return cell


# ---------------------------------------------------------------- the state


def hidden_of(state: State) -> torch.Tensor:
    """The hidden state h of ``state``: the tensor itself for an RNN or GRU, the first of an LSTM's ``(h, c)``."""
    return state[0] if isinstance(state, tuple) else state


def map_state(function: Callable[..., torch.Tensor], state: State, *others: State) -> State:
    """Apply ``function`` to every tensor of ``state`` (and the matching tensors of ``others``), keeping its form.

    ``map_state(lambda s: s[:, order], state)`` reorders the batch of an RNN's tensor and of an LSTM's pair alike.
    """
    if isinstance(state, tuple):
        return tuple(function(*parts) for parts in zip(state, *others, strict=True))
    return function(state, *others)


def last_layer_state(state: State, num_directions: int = 1) -> torch.Tensor:
    """(B, dirs * H): the last layer's final hidden state, its directions side by side (forward first).

    ``state`` is in torch's layout (num_layers * dirs, B, H) or an LSTM's ``(h, c)``; for one direction this is
    ``h[-1]``, the summary a classifier or forecaster reads.
    """
    h = hidden_of(state)  # (L * dirs, B, H)
    if num_directions == 1:
        return h[-1]  # (B, H)
    return torch.cat(list(h[-num_directions:]), dim=-1)  # (B, dirs * H)


def num_directions(layer: nn.Module) -> int:
    """2 for a bidirectional layer (``layer.bidirectional``), else 1."""
    return 2 if getattr(layer, "bidirectional", False) else 1


# ---------------------------------------------------------------- the time loop


def time_loop(
    step: Step,
    inputs: torch.Tensor,
    state: State,
    running: torch.Tensor | None = None,
    reverse: bool = False,
) -> tuple[torch.Tensor, State]:
    """Apply ``step`` at every time step of ``inputs`` (B, T, D), carrying ``state``: the loop of every layer.

    ``step(x_t, state) -> state`` is one cell; its output at each step is the new state's ``h`` (``hidden_of``).
    ``running`` (B, T, 1) bool marks the real steps of a padded batch (None: all real): elsewhere the state stays
    frozen and the output is zero. ``reverse`` walks from the last step to the first; with ``running`` each
    sequence then starts at its own last real step, because the frozen padding hands it the initial state.

    Returns the outputs (B, T, H) and the final state (after the last real step; for ``reverse`` after step 0).
    """
    outputs: list[torch.Tensor] = [inputs.new_empty(0)] * inputs.shape[1]
    for t in reversed(range(inputs.shape[1])) if reverse else range(inputs.shape[1]):
        # The same cell, with the same weights, at every step: only the state carries information forward.
        new_state = step(inputs[:, t], state)
        if running is not None:
            # A sequence that has ended keeps its last state and outputs zeros: its padding changes nothing.
            alive = running[:, t]  # (B, 1)
            new_state = map_state(lambda new, old, alive=alive: torch.where(alive, new, old), new_state, state)
            h = hidden_of(new_state)
            outputs[t] = torch.where(alive, h, torch.zeros_like(h))
        else:
            outputs[t] = hidden_of(new_state)
        state = new_state
    return torch.stack(outputs, dim=1), state  # (B, T, H), final state


# ---------------------------------------------------------------- the layer every recurrent network shares


class RecurrentLayer(nn.Module):
    """What the RNN, LSTM and GRU layers share: checks, stacking, directions, padding and torch's state layout.

    A subclass says how one step goes (``step(layer, direction)``, a function ``(x_t, state) -> state``), how many
    tensors its state holds (``state_size``: 1, or 2 for the LSTM's ``(h, c)``) and which ``torch.nn`` layer is its
    twin. Everything else is here, once: layer l > 0 reads the outputs of layer l - 1 (both directions side by
    side), a backward direction reads each sequence from its last real step, and the final states are stacked in
    torch's order, index ``layer * dirs + direction``.

    Args (those of the ``torch.nn`` twins):
        input_size: D, features per step.
        hidden_size: H, the length of each layer's hidden state.
        num_layers: stacked layers.
        bias: add the biases ``bias_ih`` and ``bias_hh``.
        batch_first: must be True: the course's layers take (B, T, D) (the argument is kept for the twins' sake).
        dropout: dropout on the inputs of every layer but the first, in training mode, as the twins do.
        bidirectional: also run each layer backwards in time; outputs become (B, T, 2H).
    """

    state_size: ClassVar[int] = 1
    torch_twin: ClassVar[type[nn.RNNBase]] = nn.RNNBase

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
        super().__init__()
        check_positive("input_size", input_size)
        check_positive("hidden_size", hidden_size)
        check_positive("num_layers", num_layers)
        if batch_first is not True:
            raise ValueError(
                "batch_first must be True: the course's layers take inputs (batch, time, features); "
                "transpose time-major inputs with inputs.transpose(0, 1)"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, True, float(dropout), bidirectional

    @property
    def num_directions(self) -> int:
        """2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def layer_input_size(self, layer: int) -> int:
        """What layer ``layer`` reads per step: D for the first, dirs * H (the layer below's outputs) after it."""
        return self.input_size if layer == 0 else self.num_directions * self.hidden_size

    def step(self, layer: int, direction: int) -> Step:
        """One step of layer ``layer`` in ``direction`` (0 forward, 1 backward): ``(x_t, state) -> state``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        """The sizes and options, shown by ``print(layer)`` as torch shows its twins'."""
        options = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers != 1:
            options.append(f"num_layers={self.num_layers}")
        if not self.bias:
            options.append("bias=False")
        if self.dropout:
            options.append(f"dropout={self.dropout}")
        if self.bidirectional:
            options.append("bidirectional=True")
        return ", ".join(options)

    def forward(
        self, inputs: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Run over every step of a batch of sequences.

        Args:
            inputs: (B, T, D).
            state: the initial state in torch's layout, (num_layers * dirs, B, H), or ``(h0, c0)`` of that shape for
                an LSTM; zeros if None.
            lengths: (B,) integers in 1..T, the real length of each padded sequence; None means all are T long.

        Returns:
            ``(outputs, state)``: outputs (B, T, dirs * H), the last layer's hidden state at every step (zero past a
            sequence's length), and the final state in the layout of ``state``: each layer's and direction's state
            after its last real step.
        """
        check_rank("inputs", inputs, 3, "(batch, time, input_size)")
        check_same_size("inputs", inputs, 2, "input_size", self.input_size)
        _check_batch("inputs", inputs)
        batch, time = inputs.shape[:2]
        if time == 0:
            raise ValueError(f"inputs has no time steps (shape {tuple(inputs.shape)}); expected at least one")
        if state is None:
            zeros = inputs.new_zeros(self.num_layers * self.num_directions, batch, self.hidden_size)  # (L*dirs, B, H)
            state = zeros if self.state_size == 1 else (zeros, zeros.clone())
        check_state(state, self.state_size, self.num_layers, self.num_directions, batch, self.hidden_size)
        running = _running_mask(lengths, batch, time, inputs.device)  # (B, T, 1) bool, or None

        layer_inputs, finals = inputs, []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout and self.training:
                layer_inputs = F.dropout(layer_inputs, self.dropout)
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction  # torch's order of the state's rows
                start = map_state(lambda part, index=index: part[index], state)  # (B, H) each
                out, final = time_loop(self.step(layer, direction), layer_inputs, start, running, direction == 1)
                outputs.append(out)  # (B, T, H)
                finals.append(final)
            layer_inputs = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)  # (B, T, dirs * H)
        return layer_inputs, map_state(lambda *parts: torch.stack(parts), *finals)  # (B, T, dirs*H), (L*dirs, B, H)

    @classmethod
    def from_torch(cls, module: nn.RNNBase) -> RecurrentLayer:
        """A layer with a copy of the weights of ``module`` (its ``torch.nn`` twin), on its device and dtype.

        Either layout of ``module`` works (``batch_first`` True or False): the weights are the same; this layer is
        always batch-first. Projections (``proj_size``) are not supported.
        """
        twin = cls.torch_twin
        if type(module) is not twin:
            raise TypeError(f"module must be a torch.nn.{twin.__name__}, got {type(module).__name__}")
        if module.proj_size:
            raise ValueError(f"only torch.nn.{twin.__name__} without proj_size can be copied, got {module.proj_size}")
        layer = cls(**cls._twin_arguments(module))
        first = module.weight_ih_l0
        layer.to(device=first.device, dtype=first.dtype)
        layer._copy_weights(module)
        return layer

    @classmethod
    def _twin_arguments(cls, module: nn.RNNBase) -> dict:
        return {
            "input_size": module.input_size,
            "hidden_size": module.hidden_size,
            "num_layers": module.num_layers,
            "bias": module.bias,
            "dropout": module.dropout,
            "bidirectional": module.bidirectional,
        }

    def _copy_weights(self, module: nn.RNNBase) -> None:
        self.load_state_dict(module.state_dict())  # the same names: weight_ih_l0, ..., bias_hh_l1_reverse


def torch_parameter_names(layer: int, direction: int, bias: bool = True) -> list[str]:
    """The names ``torch.nn.RNN``, ``LSTM`` and ``GRU`` give one layer's weights, e.g. ``weight_ih_l1_reverse``."""
    suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    return [name + suffix for name in names]


def check_state(
    state: State, state_size: int, num_layers: int, num_directions: int, batch: int, hidden_size: int
) -> None:
    """Raise unless ``state`` is a recurrent state in torch's layout, (num_layers * dirs, batch, hidden_size).

    ``state_size`` 1 asks for one tensor (an RNN's or GRU's ``h0``), 2 for an LSTM's pair ``(h0, c0)``.
    """
    if state_size == 2:
        if not (isinstance(state, tuple | list) and len(state) == 2):
            got = f"a tensor of shape {tuple(state.shape)}" if isinstance(state, torch.Tensor) else type(state).__name__
            raise TypeError(f"an LSTM's state must be a pair (h0, c0) of tensors, got {got}")
        names = ("h0", "c0")
    else:
        if isinstance(state, tuple | list):
            raise TypeError(
                f"state must be one tensor h0, got a {type(state).__name__} of {len(state)}: "
                "only an LSTM's state is a pair (h, c)"
            )
        state, names = (state,), ("h0",)
    stacked = "num_layers" if num_directions == 1 else "num_layers * num_directions"
    for name, part in zip(names, state, strict=True):
        check_rank(name, part, 3, f"({stacked}, batch, hidden_size)")
        for dim, other, size in (
            (0, stacked, num_layers * num_directions),
            (1, "inputs' batch", batch),
            (2, "hidden_size", hidden_size),
        ):
            check_same_size(name, part, dim, other, size)


# ---------------------------------------------------------------- the RNN


class RNN(RecurrentLayer):
    """A plain RNN over whole sequences, batch-first: ``RNNCell`` applied at every step, layer after layer.

    Args:
        input_size: D, features per step.
        hidden_size: H, the length of each layer's hidden state.
        num_layers: stacked layers; layer l > 0 reads the outputs of layer l - 1.
        bias: add biases (``torch.nn.RNN``'s default).
        nonlinearity: ``"tanh"`` or ``"relu"``.
        batch_first, dropout, bidirectional: as in ``RecurrentLayer`` (and ``torch.nn.RNN``).

    Parameters are named as in ``torch.nn.RNN`` through ``cells[i]``, one cell per layer and direction,
    ``i = layer * dirs + direction``: ``cells[0].weight_ih`` is ``weight_ih_l0``.
    """

    torch_twin = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        self.nonlinearity = nonlinearity
        self.cells = nn.ModuleList(
            RNNCell(self.layer_input_size(layer), hidden_size, bias, nonlinearity)
            for layer in range(num_layers)
            for _ in range(self.num_directions)
        )

    def step(self, layer: int, direction: int) -> Step:
        """The cell of layer ``layer`` in ``direction``: ``cell(x_t, h) -> h``."""
        return self.cells[layer * self.num_directions + direction]

    def forward(
        self,
        inputs: torch.Tensor,
        state: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        *,
        h0: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over every step of a batch of sequences (see ``RecurrentLayer.forward``).

        Args:
            inputs: (B, T, D).
            state: (num_layers * dirs, B, H), the initial state of each layer (the layout of ``torch.nn.RNN``);
                zeros if None. ``h0=`` is the same argument under its earlier name.
            lengths: (B,) integers in 1..T, the real length of each padded sequence; None means all are T long.

        Returns:
            ``(outputs, h_n)``: outputs (B, T, dirs * H), the last layer's state at every step (zero past a
            sequence's length), and h_n (num_layers * dirs, B, H), each layer's state at its last real step.
        """
        if h0 is not None:
            if state is not None:
                raise TypeError("pass the initial state once, as state or as h0, not both")
            state = h0
        return super().forward(inputs, state, lengths)

    def extra_repr(self) -> str:
        """The sizes and options, as ``torch.nn.RNN`` shows them."""
        relu = ", nonlinearity='relu'" if self.nonlinearity == "relu" else ""
        return super().extra_repr() + relu

    @classmethod
    def _twin_arguments(cls, module: nn.RNN) -> dict:
        return super()._twin_arguments(module) | {"nonlinearity": module.nonlinearity}

    def _copy_weights(self, module: nn.RNN) -> None:
        for index, cell in enumerate(self.cells):
            layer, direction = divmod(index, self.num_directions)
            for parameter, name in zip(
                cell.parameters(), torch_parameter_names(layer, direction, self.bias), strict=True
            ):
                parameter.data.copy_(getattr(module, name).detach())


# ---------------------------------------------------------------- one call for every recurrent layer


def run_recurrent(
    layer: nn.Module, inputs: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
) -> tuple[torch.Tensor, State]:
    """``layer(inputs, state, lengths)`` for any recurrent layer: the course's own or ``torch.nn``'s.

    A ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (batch-first) has no ``lengths`` argument; it gets the padded batch as
    a ``pack_padded_sequence`` and its outputs come back padded with zeros to T, which is exactly what the
    course's layers return. Any other module is called as ``layer(inputs, state)``, with ``lengths=lengths`` when
    given: a Transformer encoder or a minGRU that follows the interface plugs in unchanged.

    inputs: (B, T, D); state: the layer's state or None; lengths: (B,) or None. Returns ``(outputs, state)``,
    outputs (B, T, dirs * H).
    """
    if not isinstance(layer, nn.RNNBase):
        return layer(inputs, state) if lengths is None else layer(inputs, state, lengths=lengths)
    if not layer.batch_first:
        raise ValueError(f"layer must be batch-first (batch_first=True): inputs are (B, T, D), got {layer}")
    check_rank("inputs", inputs, 3, "(batch, time, input_size)")
    check_same_size("inputs", inputs, 2, "input_size", layer.input_size)
    _check_batch("inputs", inputs)
    batch, time = inputs.shape[:2]
    if state is not None:
        size = 2 if isinstance(layer, nn.LSTM) else 1
        check_state(state, size, layer.num_layers, num_directions(layer), batch, layer.hidden_size)
        state = tuple(state) if size == 2 else state
    if lengths is None:
        return layer(inputs, state)
    _running_mask(lengths, batch, time, inputs.device)  # checks lengths
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, state = layer(packed, state)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=time)  # (B, T, dirs * H)
    return outputs, state


def parameters_of(layer: RecurrentLayer) -> Iterator[tuple[int, int, list[torch.Tensor]]]:
    """``(layer, direction, [weight_ih, weight_hh, bias_ih, bias_hh])`` for every layer and direction, in torch's
    order, for a course layer or a ``torch.nn`` twin alike (no biases when ``bias=False``)."""
    for index in range(layer.num_layers * num_directions(layer)):
        number, direction = divmod(index, num_directions(layer))
        names = torch_parameter_names(number, direction, layer.bias)
        if isinstance(layer, RNN):
            yield number, direction, list(layer.cells[index].parameters())
        else:
            yield number, direction, [getattr(layer, name) for name in names]


def _running_mask(lengths: torch.Tensor | None, batch: int, time: int, device: torch.device) -> torch.Tensor | None:
    """(B, T, 1) bool, True where step t < lengths[b]; None when every sequence is T long. Checks ``lengths``."""
    if lengths is None:
        return None
    check_tensor("lengths", lengths)
    check_rank("lengths", lengths, 1, "(batch,)")
    check_integer_dtype("lengths", lengths)
    check_same_size("lengths", lengths, 0, "inputs' batch", batch)
    shortest, longest = int(lengths.min()), int(lengths.max())
    if shortest < 1 or longest > time:
        raise ValueError(
            f"lengths must lie between 1 and inputs' time dimension {time}, got values from {shortest} to {longest}"
        )
    return lengths_to_mask(lengths.to(device), time)[:, :, None]  # (B, T, 1)


def _check_batch(name: str, tensor: torch.Tensor) -> None:
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(tensor.shape)}); expected at least one sequence")
