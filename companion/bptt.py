"""Backpropagation through time: how gradients travel back through an unrolled RNN, and how training copes.

Three tools for Chapter 2:

- ``recurrent_matrix`` builds a recurrent weight ``W_h`` with a chosen spectral radius ``a``. The default is a scaled
  orthogonal matrix, ``a`` times a rotation: every singular value equals ``a``, so ``|W_h^n v| = a^n |v|`` exactly.
- ``gradient_norms`` unrolls a one-layer ``torch.nn.RNN`` with an explicit loop (so that every hidden state is a
  node of the graph) and measures ``|dL/dh_t|`` for every step, with ``L = u . h_T``: the size of the signal that
  reaches a state ``n = T - t`` steps before the loss. ``jacobian_product_norms`` measures the worst case over
  every ``u``: the spectral norm of the product of Jacobians ``dh_T/dh_{T-n}``.
- ``Chunk``, ``stream_chunks`` and ``CarriedState`` train on a long stream with truncated BPTT through the course's
  ``Trainer``: the hidden state is carried from one chunk to the next but detached, so gradients flow back at most
  one chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from companion.checks import check_choice, check_positive, check_rank, check_same_size, check_tensor

ACTIVATIONS = ("tanh", "linear")
KINDS = ("orthogonal", "gaussian")

State = torch.Tensor | tuple[torch.Tensor, ...]


def recurrent_matrix(
    hidden_size: int, spectral_radius: float, kind: str = "orthogonal", generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random (hidden_size, hidden_size) recurrent matrix whose eigenvalues have largest modulus ``spectral_radius``.

    ``kind="orthogonal"``: ``spectral_radius`` times a random orthogonal matrix (QR of a Gaussian matrix). All its
    eigenvalues and all its singular values equal the radius in modulus, so it stretches every vector by exactly the
    radius. ``kind="gaussian"``: a Gaussian matrix rescaled to the radius; its singular values spread around the
    radius, so a single step can stretch some vectors by more than the radius (it is not normal).
    """
    if not isinstance(hidden_size, int) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive int, got {hidden_size!r}")
    check_positive("spectral_radius", spectral_radius)
    check_choice("kind", kind, KINDS)
    gaussian = torch.randn(hidden_size, hidden_size, generator=generator, dtype=torch.float64)  # (H, H)
    if kind == "orthogonal":
        q, r = torch.linalg.qr(gaussian)
        # The sign fix makes Q uniformly distributed over rotations and reflections (Mezzadri 2007).
        q = q * torch.sign(torch.diagonal(r))[None, :]  # (H, H)
        return (spectral_radius * q).float()
    radius = torch.linalg.eigvals(gaussian).abs().max()
    return (gaussian * (spectral_radius / radius)).float()


def spectral_radius(matrix: torch.Tensor) -> float:
    """The largest modulus of the eigenvalues of a square (n, n) matrix."""
    check_rank("matrix", matrix, 2, "(n, n)")
    check_same_size("matrix", matrix, 1, "its number of rows", matrix.shape[0])
    return torch.linalg.eigvals(matrix.detach().double().cpu()).abs().max().item()


def rnn_with_radius(
    input_size: int,
    hidden_size: int,
    spectral_radius: float,
    kind: str = "orthogonal",
    generator: torch.Generator | None = None,
) -> nn.RNN:
    """A one-layer, batch-first ``nn.RNN`` (tanh) whose ``weight_hh_l0`` is ``recurrent_matrix(...)``.

    ``weight_ih_l0`` (H, D) is drawn as PyTorch draws it, from U(-1/sqrt(H), 1/sqrt(H)), but from ``generator``,
    so that the same generator seed gives the same network; the biases are zero, so that a zero input keeps a
    zero state at zero (the linear regime of tanh).
    """
    rnn = nn.RNN(input_size, hidden_size, batch_first=True)
    bound = 1 / math.sqrt(hidden_size)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(recurrent_matrix(hidden_size, spectral_radius, kind, generator))
        uniform = torch.rand(hidden_size, input_size, generator=generator)  # (H, D) in [0, 1)
        rnn.weight_ih_l0.copy_((2 * uniform - 1) * bound)
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
    return rnn


def _check_rnn(rnn: nn.RNN) -> None:
    if not isinstance(rnn, nn.RNN):
        raise TypeError(f"rnn must be a torch.nn.RNN, got {type(rnn).__name__}")
    if rnn.num_layers != 1 or rnn.bidirectional or not rnn.batch_first or rnn.nonlinearity != "tanh":
        raise ValueError(
            "rnn must be a one-layer, unidirectional, batch-first tanh nn.RNN, got "
            f"num_layers={rnn.num_layers}, bidirectional={rnn.bidirectional}, batch_first={rnn.batch_first}, "
            f"nonlinearity={rnn.nonlinearity!r}"
        )


def unroll(
    rnn: nn.RNN, inputs: torch.Tensor, h0: torch.Tensor | None = None, activation: str = "tanh"
) -> list[torch.Tensor]:
    """Run ``rnn`` step by step and return every hidden state ``[h_0, h_1, ..., h_T]``, each (B, H).

    inputs: (B, T, D). h0: (B, H), zeros if None. With ``activation="tanh"`` the states are exactly those of
    ``rnn(inputs, h0)``; ``"linear"`` drops the tanh, ``h_t = W_x x_t + W_h h_{t-1} + b``, the regime a small
    state lives in (tanh(z) is about z near zero).
    """
    _check_rnn(rnn)
    check_choice("activation", activation, ACTIVATIONS)
    check_rank("inputs", inputs, 3, "(batch, time, features)")
    check_same_size("inputs", inputs, 2, "rnn.input_size", rnn.input_size)
    batch = inputs.shape[0]
    weight = rnn.weight_hh_l0
    if h0 is None:
        h0 = inputs.new_zeros(batch, rnn.hidden_size)
    check_rank("h0", h0, 2, "(batch, hidden)")
    check_same_size("h0", h0, 0, "inputs", batch)
    check_same_size("h0", h0, 1, "rnn.hidden_size", rnn.hidden_size)
    # The input's contribution for all steps at once, as nn.RNN computes it: (B, T, H)
    driven = inputs @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0
    states = [h0]
    for t in range(inputs.shape[1]):
        # Mix the previous state through W_h and add this step's input.
        pre_activation = driven[:, t] + states[-1] @ weight.T  # (B, H)
        states.append(torch.tanh(pre_activation) if activation == "tanh" else pre_activation)
    return states


def gradient_norms(
    rnn: nn.RNN,
    inputs: torch.Tensor,
    h0: torch.Tensor | None = None,
    activation: str = "tanh",
    direction: torch.Tensor | None = None,
) -> torch.Tensor:
    """``norms[n] = |dL/dh_{T-n}|`` for n = 0 .. T: the gradient that reaches the state n steps before the end.

    The loss is ``L = u . h_T`` summed over the batch, for a unit vector ``u`` (``direction``, (H,); default
    ``(1, ..., 1) / sqrt(H)``), so ``norms[0] = 1`` and ``norms[T]`` is ``|dL/dh_0|``. Each example's gradient is
    measured on its own and the norms are averaged over the batch. inputs: (B, T, D); h0: (B, H), zeros if None.
    Returns (T + 1,) float64 on the CPU.

    By the chain rule ``dL/dh_{t-1} = W_h^T diag(1 - h_t^2) dL/dh_t`` (for ``"tanh"``; ``W_h^T dL/dh_t`` for
    ``"linear"``), so with a scaled orthogonal ``W_h`` of radius ``a`` the linear norms are exactly ``a^n``.
    """
    _check_rnn(rnn)
    check_rank("inputs", inputs, 3, "(batch, time, features)")
    hidden = rnn.hidden_size
    if direction is None:
        direction = inputs.new_full((hidden,), 1 / math.sqrt(hidden))
    check_rank("direction", direction, 1, "(hidden,)")
    check_same_size("direction", direction, 0, "rnn.hidden_size", hidden)
    if not math.isclose(direction.norm().item(), 1.0, rel_tol=1e-5):
        raise ValueError(f"direction must be a unit vector, got norm {direction.norm().item():.4g}")
    h0 = inputs.new_zeros(inputs.shape[0], hidden) if h0 is None else h0
    with torch.enable_grad():
        # A fresh leaf, so that dL/dh_0 is measured even when h0 came from elsewhere.
        h0 = h0.detach().requires_grad_(True)
        states = unroll(rnn, inputs, h0, activation)
        loss = (states[-1] @ direction).sum()
        grads = torch.autograd.grad(loss, states)  # T + 1 tensors, each (B, H)
    per_example = torch.stack([grad.double().norm(dim=1) for grad in grads])  # (T + 1, B)
    return per_example.mean(dim=1).flip(0).cpu()  # index by distance n = T - t


def jacobian_product_norms(
    rnn: nn.RNN, inputs: torch.Tensor, h0: torch.Tensor | None = None, activation: str = "tanh"
) -> torch.Tensor:
    """``norms[n] = |dh_T / dh_{T-n}|``, the spectral norm of the product of the last n Jacobians, for n = 0 .. T.

    ``dh_T / dh_{T-n} = J_T J_{T-1} ... J_{T-n+1}`` with ``J_t = diag(1 - h_t^2) W_h`` (``W_h`` for ``"linear"``).
    Its spectral norm is the largest factor by which a gradient arriving at ``h_T`` can grow on its way back to
    ``h_{T-n}``, whatever the loss: the worst case over the directions that ``gradient_norms`` fixes to one. The
    norms are averaged over the batch. inputs: (B, T, D); h0: (B, H), zeros if None. Returns (T + 1,) float64 on
    the CPU. For a scaled orthogonal ``W_h`` of radius ``a`` the linear norms are exactly ``a^n``; for a
    non-normal one they can exceed ``a^n``, because one step can stretch some vectors by ``|W_h| > a``.
    """
    _check_rnn(rnn)
    check_choice("activation", activation, ACTIVATIONS)
    with torch.no_grad():
        states = unroll(rnn, inputs, h0, activation)  # T + 1 tensors, each (B, H)
        weight = rnn.weight_hh_l0.detach().double()  # (H, H)
        batch, hidden = states[0].shape
        product = torch.eye(hidden, dtype=torch.float64, device=weight.device).expand(batch, -1, -1)  # (B, H, H)
        norms = [torch.ones(batch, dtype=torch.float64)]
        for t in range(len(states) - 1, 0, -1):
            # One more Jacobian on the right: dh_T/dh_{t-1} = (dh_T/dh_t) diag(tanh'(z_t)) W_h.
            slopes = 1 - states[t].double() ** 2 if activation == "tanh" else torch.ones_like(states[t]).double()
            product = product @ (slopes[:, :, None] * weight)  # (B, H, H)
            norms.append(torch.linalg.matrix_norm(product, ord=2).cpu())  # (B,)
    return torch.stack(norms).mean(dim=1)  # (T + 1,), indexed by distance n


def manual_bptt(
    rnn: nn.RNN, inputs: torch.Tensor, output_grads: torch.Tensor, h0: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Backpropagation through time written out: the gradients of a loss from its gradients at the outputs.

    inputs: (B, T, D); output_grads: (B, T, H), ``dL/dh_t`` through the loss's direct use of each output h_t
    (t = 1 .. T); h0: (B, H), zeros if None. Walks back from t = T to 1 carrying ``delta = dL/dh_t``, the gradient
    through all later steps, and returns ``weight_ih_l0`` (H, D), ``weight_hh_l0`` (H, H), ``bias_ih_l0`` and
    ``bias_hh_l0`` (H,) (the same names as ``rnn``'s parameters) and ``h0`` (B, H). They equal what autograd gives
    for ``L = (rnn(inputs, h0)[0] * output_grads).sum()``.
    """
    check_rank("output_grads", output_grads, 3, "(batch, time, hidden)")
    with torch.no_grad():
        states = unroll(rnn, inputs, h0)  # T + 1 tensors, each (B, H)
        for dim, other, size in ((0, "inputs", inputs.shape[0]), (1, "inputs (time)", inputs.shape[1])):
            check_same_size("output_grads", output_grads, dim, other, size)
        check_same_size("output_grads", output_grads, 2, "rnn.hidden_size", rnn.hidden_size)
        weight_hh = rnn.weight_hh_l0
        grads = {name: torch.zeros_like(parameter) for name, parameter in rnn.named_parameters()}
        delta = torch.zeros_like(states[0])  # (B, H): dL/dh_t through steps after t
        for t in range(inputs.shape[1], 0, -1):
            # Add the loss's own use of h_t to what flows back from later steps.
            delta = delta + output_grads[:, t - 1]
            # Through the tanh: tanh'(z) = 1 - tanh(z)^2 = 1 - h_t^2.
            pre = delta * (1 - states[t] ** 2)  # (B, H): dL/dz_t
            # Each weight was used at every step, so its gradient is a sum over steps.
            grads["weight_hh_l0"] += pre.T @ states[t - 1]
            grads["weight_ih_l0"] += pre.T @ inputs[:, t - 1]
            grads["bias_ih_l0"] += pre.sum(0)
            grads["bias_hh_l0"] += pre.sum(0)
            # Through W_h to the previous state: one more factor of the Jacobian product.
            delta = pre @ weight_hh  # (B, H): dL/dh_{t-1}
        grads["h0"] = delta
    return grads


class Chunk(NamedTuple):
    """``chunk_length`` consecutive steps of a stream; ``start`` is the position of its first step in the stream."""

    inputs: torch.Tensor
    targets: torch.Tensor
    start: int


def stream_chunks(inputs: torch.Tensor, targets: torch.Tensor, chunk_length: int) -> list[Chunk]:
    """Cut B parallel streams into consecutive chunks for truncated BPTT, in order (never shuffle them).

    inputs: (B, T, ...) and targets: (B, T, ...); each chunk holds (B, chunk_length, ...) of both (the last one
    may be shorter). Pass the list to ``Trainer.fit`` with a ``CarriedState`` loss.
    """
    check_tensor("inputs", inputs)
    check_tensor("targets", targets)
    if inputs.dim() < 2 or targets.dim() < 2:
        raise ValueError(
            f"inputs and targets must be (batch, time, ...), got shapes {tuple(inputs.shape)} and "
            f"{tuple(targets.shape)}"
        )
    check_same_size("targets", targets, 0, "inputs", inputs.shape[0])
    check_same_size("targets", targets, 1, "inputs (time)", inputs.shape[1])
    if not isinstance(chunk_length, int) or chunk_length < 1:
        raise ValueError(f"chunk_length must be a positive int, got {chunk_length!r}")
    length = inputs.shape[1]
    return [
        Chunk(inputs[:, start : start + chunk_length], targets[:, start : start + chunk_length], start)
        for start in range(0, length, chunk_length)
    ]


def detach_state(state: State | None) -> State | None:
    """Cut the graph behind a hidden state (a tensor, or a tuple such as an LSTM's ``(h, c)``), keeping its value."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple) and all(isinstance(part, torch.Tensor) for part in state):
        return tuple(part.detach() for part in state)
    raise TypeError(f"state must be a tensor, a tuple of tensors or None, got {type(state).__name__}")


class CarriedState:
    """A ``loss_fn`` for ``Trainer`` that trains with truncated BPTT over ``stream_chunks``.

    For each ``Chunk`` it calls ``model(chunk.inputs, state)``, which must return ``(outputs, new_state)`` as
    ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` do, and returns ``loss(outputs, chunk.targets)``. The new state is kept
    for the next chunk but detached: the forward pass remembers everything since the start of the stream, while
    gradients flow back at most to the start of the current chunk. The state starts afresh (None) at every chunk
    whose ``start`` is 0, i.e. at every epoch. Use one instance per loader (training and evaluation each their own).
    """

    def __init__(self, loss: Callable[[Any, torch.Tensor], torch.Tensor]) -> None:
        if not callable(loss):
            raise TypeError(f"loss must be callable (outputs, targets) -> scalar tensor, got {type(loss).__name__}")
        self.loss = loss
        self.state: State | None = None

    def __call__(self, model: nn.Module, chunk: Chunk) -> torch.Tensor:
        """The chunk's loss; the detached final state is stored for the next chunk."""
        if not isinstance(chunk, Chunk):
            raise TypeError(f"batches must be Chunk(inputs, targets, start) from stream_chunks, got {type(chunk)}")
        if chunk.start == 0:
            self.state = None
        outputs, state = model(chunk.inputs, self.state)
        self.state = detach_state(state)
        return self.loss(outputs, chunk.targets)

    def reset(self) -> None:
        """Forget the carried state (the next chunk starts from a zero state)."""
        self.state = None
