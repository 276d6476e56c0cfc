"""The plain (Elman) recurrent network, step by step: ``RNNCell`` takes one step, ``RNN`` loops it over time.

Both hold their weights exactly as ``torch.nn.RNNCell`` and ``torch.nn.RNN`` do (``weight_ih`` (H, D), ``weight_hh``
(H, H), ``bias_ih`` and ``bias_hh`` (H,)), so one step is

    h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)

and either can load the weights of its ``torch.nn`` twin (``from_torch``) and must then agree with it. These versions
teach; to train anything non-trivial, use ``torch.nn.RNN`` (one fused kernel instead of a Python loop over time).

Tensors are batch-first: inputs (B, T, D), outputs (B, T, H). A padded batch carries ``lengths`` (B,): past its
length a sequence's hidden state stays frozen and its outputs are zero, which is what ``torch.nn.RNN`` gives on a
``pack_padded_sequence``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from companion.checks import check_choice, check_integer_dtype, check_positive, check_rank, check_same_size
from companion.data.batching import lengths_to_mask

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


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


class RNN(nn.Module):
    """A plain RNN over whole sequences, batch-first: ``RNNCell`` applied at every step, layer after layer.

    Args:
        input_size: D, features per step.
        hidden_size: H, the length of each layer's hidden state.
        num_layers: stacked layers; layer l > 0 reads the outputs of layer l - 1.
        bias: add biases (``torch.nn.RNN``'s default).
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Parameters are named as in ``torch.nn.RNN`` through ``cells[l]``: ``cells[0].weight_ih`` is ``weight_ih_l0``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        nonlinearity: str = "tanh",
    ) -> None:
        super().__init__()
        check_positive("num_layers", num_layers)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.cells = nn.ModuleList(
            RNNCell(input_size if layer == 0 else hidden_size, hidden_size, bias, nonlinearity)
            for layer in range(num_layers)
        )

    def forward(
        self,
        inputs: torch.Tensor,
        h0: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over every step of a batch of sequences.

        Args:
            inputs: (B, T, D).
            h0: (num_layers, B, H), the initial state of each layer (the layout of ``torch.nn.RNN``); zeros if None.
            lengths: (B,) integers in 1..T, the real length of each padded sequence; None means all are T long.

        Returns:
            ``(outputs, h_n)``: outputs (B, T, H), the last layer's state at every step (zero past a sequence's
            length), and h_n (num_layers, B, H), each layer's state at the last real step of each sequence.
        """
        check_rank("inputs", inputs, 3, "(batch, time, input_size)")
        check_same_size("inputs", inputs, 2, "input_size", self.input_size)
        _check_batch("inputs", inputs)
        batch, time = inputs.shape[:2]
        if time == 0:
            raise ValueError(f"inputs has no time steps (shape {tuple(inputs.shape)}); expected at least one")
        if h0 is None:
            h0 = inputs.new_zeros(self.num_layers, batch, self.hidden_size)  # (L, B, H)
        check_rank("h0", h0, 3, "(num_layers, batch, hidden_size)")
        for dim, name, size in (
            (0, "num_layers", self.num_layers),
            (1, "inputs' batch", batch),
            (2, "hidden_size", self.hidden_size),
        ):
            check_same_size("h0", h0, dim, name, size)
        running = _running_mask(lengths, batch, time, inputs.device)  # (B, T, 1) bool, or None

        layer_inputs, finals = inputs, []
        for cell, h in zip(self.cells, h0, strict=True):
            layer_inputs, h = _run_layer(cell, layer_inputs, h, running)  # (B, T, H), (B, H)
            finals.append(h)
        return layer_inputs, torch.stack(finals)  # (B, T, H), (L, B, H)

    @classmethod
    def from_torch(cls, module: nn.RNN) -> RNN:
        """An RNN with a copy of the weights of ``module`` (a ``torch.nn.RNN``), on its device and dtype.

        Either layout of ``module`` works (``batch_first`` True or False): the weights are the same; this RNN is
        always batch-first. Bidirectional networks, projections (``proj_size``) and dropout are not supported.
        """
        if not isinstance(module, nn.RNN):
            raise TypeError(f"module must be a torch.nn.RNN, got {type(module).__name__}")
        if module.bidirectional or module.proj_size or module.dropout:
            raise ValueError(
                "only unidirectional torch.nn.RNN without proj_size or dropout can be copied, got "
                f"bidirectional={module.bidirectional}, proj_size={module.proj_size}, dropout={module.dropout}"
            )
        rnn = cls(module.input_size, module.hidden_size, module.num_layers, module.bias, module.nonlinearity)
        first = module.weight_ih_l0
        rnn.to(device=first.device, dtype=first.dtype)
        for layer, cell in enumerate(rnn.cells):
            for name, parameter in cell.named_parameters():  # weight_ih -> weight_ih_l{layer}, and so on
                parameter.data.copy_(getattr(module, f"{name}_l{layer}").detach())
        return rnn


def _run_layer(
    cell: RNNCell, inputs: torch.Tensor, h: torch.Tensor, running: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop ``cell`` over the T steps of ``inputs`` (B, T, D) from state ``h`` (B, H); see ``RNN.forward``."""
    outputs = []
    for t in range(inputs.shape[1]):
        # The same cell, with the same weights, at every step: only the state carries information forward.
        h_new = cell(inputs[:, t], h)  # (B, H)
        if running is not None:
            # A sequence that has ended keeps its last state and outputs zeros: its padding changes nothing.
            h_new = torch.where(running[:, t], h_new, h)  # (B, H)
            outputs.append(torch.where(running[:, t], h_new, torch.zeros_like(h_new)))
        else:
            outputs.append(h_new)
        h = h_new
    return torch.stack(outputs, dim=1), h  # (B, T, H), (B, H)


def _running_mask(lengths: torch.Tensor | None, batch: int, time: int, device: torch.device) -> torch.Tensor | None:
    """(B, T, 1) bool, True where step t < lengths[b]; None when every sequence is T long. Checks ``lengths``."""
    if lengths is None:
        return None
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
