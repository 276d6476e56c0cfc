"""Modern recurrent models: minGRU, and causal linear attention read as an RNN.

**minGRU** (Feng et al. 2024, "Were RNNs all we needed?") is a GRU whose gates read only the input::

    z_t = sigmoid(x_t W_z^T + b_z)                      how much of the memory to overwrite at step t
    h~_t = g(x_t W_h^T + b_h)                            what to write, g(a) = a + 1/2 (a >= 0), sigmoid(a) (a < 0)
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

Nothing on the right reads h_{t-1} except the one product, so h_t = a_t * h_{t-1} + b_t with a_t = 1 - z_t and
b_t = z_t * h~_t known for every step in advance. Its solution, h_t = A_t h_0 + sum_{s <= t} (A_t / A_s) b_s with
A_t = prod_{r <= t} a_r, is computed for all t at once by cumulative sums in log space (``min_gru_scan``: a_t and
b_t are positive, which is why g keeps h~ positive); ``min_gru_loop`` takes the same steps one at a time, and the
two agree to rounding. ``MinGRU`` stacks such layers behind the course's recurrent interface
(``companion.recurrent_cells``): ``layer(inputs (B, T, D), state=None, lengths=None) -> (outputs (B, T, H), h_n
(num_layers, B, H))``, outputs zero past each length, h_n the state at each sequence's last real step.

**Linear attention** (Katharopoulos et al. 2020) replaces softmax(q k^T) by phi(q) phi(k)^T with phi(x) = elu(x) + 1.
Causal, it is an RNN whose state is a matrix: S_t = S_{t-1} + phi(k_t) v_t^T and z_t = z_{t-1} + phi(k_t), read
out as y_t = phi(q_t)^T S_t / phi(q_t)^T z_t. ``causal_linear_attention`` computes all positions at once with a
causal mask (the Transformer's way); ``linear_attention_recurrent`` runs the state update step by step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from companion.checks import check_integer_dtype, check_positive, check_rank, check_same_size, check_tensor
from companion.masks import causal_mask, lengths_to_mask
from companion.recurrent_cells import check_state

# ---------------------------------------------------------------- minGRU


def g(x: torch.Tensor) -> torch.Tensor:
    """minGRU's candidate activation, positive everywhere and continuous: x + 1/2 for x >= 0, sigmoid(x) below."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x), computed without forming g(x) (stable for very negative x)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def min_gru_loop(gates: torch.Tensor, candidates: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The minGRU recurrence one step at a time.

    Args:
        gates: (B, T, H) pre-activations of the update gate z.
        candidates: (B, T, H) pre-activations of the candidate h~.
        h0: (B, H) the state before the first step.

    Returns:
        (B, T, H) the state after every step.
    """
    h, outputs = h0, []
    for z, h_tilde in zip(torch.sigmoid(gates).unbind(1), g(candidates).unbind(1), strict=True):
        # Keep 1 - z of the memory, overwrite z of it with the candidate.
        h = (1 - z) * h + z * h_tilde  # (B, H)
        outputs.append(h)
    return torch.stack(outputs, dim=1)  # (B, T, H)


def min_gru_scan(gates: torch.Tensor, candidates: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The same recurrence for all steps at once: h_t = A_t h_0 + sum_{s <= t} (A_t / A_s) z_s h~_s in log space.

    Args and returns as ``min_gru_loop``. log(1 - z) = -softplus(a) and log z = -softplus(-a) for z = sigmoid(a).
    """
    log_keep = -F.softplus(gates)  # (B, T, H): log a_t = log(1 - z_t)
    log_write = -F.softplus(-gates) + log_g(candidates)  # (B, T, H): log b_t = log(z_t h~_t)
    log_a = torch.cumsum(log_keep, dim=1)  # (B, T, H): log A_t
    written = torch.exp(log_a + torch.logcumsumexp(log_write - log_a, dim=1))  # (B, T, H)
    return written + torch.exp(log_a) * h0[:, None, :]  # (B, T, H): h_0 may have any sign


class MinGRU(nn.Module):
    """Stacked minGRU layers behind the course's recurrent interface (batch-first, unidirectional).

    Args:
        input_size: D, the features of each input vector.
        hidden_size: H, the state's length.
        num_layers: layers stacked; layer k > 0 reads the outputs of layer k - 1.
        parallel: compute each layer with ``min_gru_scan`` (True) or ``min_gru_loop`` (False); same results.

    Each layer holds one ``nn.Linear`` (``linears[k]``, weight (2H, D_k)): its first H outputs are the update gate's
    pre-activations, the last H the candidate's. ``forward(inputs (B, T, D), state=None, lengths=None)`` returns
    ``(outputs (B, T, H), h_n (num_layers, B, H))``; ``state`` is h_0 (num_layers, B, H) or None (zeros);
    ``lengths`` (B,) marks a padded batch: outputs are zero past each length and h_n is each sequence's state at its
    last real step (the steps are causal, so padding never changes them).
    """

    batch_first = True
    bidirectional = False

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, parallel: bool = True) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            check_positive(name, value)
        self.input_size, self.hidden_size, self.num_layers, self.parallel = (
            input_size,
            hidden_size,
            num_layers,
            parallel,
        )
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.linears = nn.ModuleList(nn.Linear(size, 2 * hidden_size) for size in sizes)

    def extra_repr(self) -> str:
        """Shown by ``print(layer)``."""
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, parallel={self.parallel}"

    def forward(
        self, inputs: torch.Tensor, state: torch.Tensor | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run every layer over the sequences; see the class docstring for shapes."""
        batch, time = self._check(inputs, state, lengths)
        if state is None:
            state = inputs.new_zeros(self.num_layers, batch, self.hidden_size)  # (L, B, H)
        recurrence = min_gru_scan if self.parallel else min_gru_loop
        x, finals = inputs, []
        last = (lengths - 1).to(inputs.device) if lengths is not None else torch.full((batch,), time - 1)
        for linear, h0 in zip(self.linears, state, strict=True):
            gates, candidates = linear(x).chunk(2, dim=-1)  # (B, T, H) each
            x = recurrence(gates, candidates, h0)  # (B, T, H)
            finals.append(x[torch.arange(batch), last.to(x.device)])  # (B, H): the last real step
        if lengths is not None:
            x = x * lengths_to_mask(lengths.to(x.device), time)[:, :, None]  # (B, T, H), zero past each length
        return x, torch.stack(finals)  # (B, T, H), (L, B, H)

    def _check(self, inputs: torch.Tensor, state: torch.Tensor | None, lengths: torch.Tensor | None) -> tuple[int, int]:
        check_rank("inputs", inputs, 3, "(batch, time, input_size)")
        check_same_size("inputs", inputs, 2, "input_size", self.input_size)
        batch, time = inputs.shape[:2]
        if batch == 0 or time == 0:
            raise ValueError(f"inputs must hold at least one step of one sequence, got shape {tuple(inputs.shape)}")
        if state is not None:
            check_state(state, 1, self.num_layers, 1, batch, self.hidden_size)
        if lengths is not None:
            check_tensor("lengths", lengths)
            check_rank("lengths", lengths, 1, "(batch,)")
            check_integer_dtype("lengths", lengths)
            check_same_size("lengths", lengths, 0, "inputs' batch", batch)
            if int(lengths.min()) < 1 or int(lengths.max()) > time:
                raise ValueError(
                    f"lengths must lie between 1 and inputs' time dimension {time}, "
                    f"got values from {int(lengths.min())} to {int(lengths.max())}"
                )
        return batch, time


# ---------------------------------------------------------------- linear attention


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1: positive, so every attention weight phi(q)^T phi(k) is positive."""
    return F.elu(x) + 1


def causal_linear_attention(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Causal linear attention for all positions at once, as a Transformer computes attention.

    Args:
        queries: (B, T, Dk). keys: (B, T, Dk). values: (B, T, Dv).
        eps: added to each row's normaliser.

    Returns:
        (B, T, Dv): y_t = sum_{s <= t} w_ts v_s / sum_{s <= t} w_ts with w_ts = phi(q_t)^T phi(k_s).
    """
    _check_qkv(queries, keys, values)
    weights = elu_feature_map(queries) @ elu_feature_map(keys).transpose(1, 2)  # (B, T, T)
    weights = weights * causal_mask(queries.shape[1], device=queries.device)  # (B, T, T): no future keys
    return (weights @ values) / (weights.sum(-1, keepdim=True) + eps)  # (B, T, Dv)


def linear_attention_recurrent(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The same attention as an RNN: a (Dk, Dv) state S and a (Dk,) normaliser z updated once per step.

    Args as ``causal_linear_attention``. Returns ``(outputs (B, T, Dv), (S_T (B, Dk, Dv), z_T (B, Dk)))``.
    """
    _check_qkv(queries, keys, values)
    batch, _, key_size = keys.shape
    S = keys.new_zeros(batch, key_size, values.shape[-1])  # (B, Dk, Dv)
    z = keys.new_zeros(batch, key_size)  # (B, Dk)
    outputs = []
    steps = zip(elu_feature_map(queries).unbind(1), elu_feature_map(keys).unbind(1), values.unbind(1), strict=True)
    for q, k, v in steps:
        # Add this step's key-value outer product to the memory, and its key to the normaliser.
        S = S + k[:, :, None] * v[:, None, :]  # (B, Dk, Dv)
        z = z + k  # (B, Dk)
        # Read the memory with the query.
        outputs.append((q[:, None, :] @ S)[:, 0] / ((q * z).sum(-1, keepdim=True) + eps))  # (B, Dv)
    return torch.stack(outputs, dim=1), (S, z)  # (B, T, Dv)


def _check_qkv(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
    check_rank("queries", queries, 3, "(batch, time, key_size)")
    check_rank("keys", keys, 3, "(batch, time, key_size)")
    check_rank("values", values, 3, "(batch, time, value_size)")
    for dim, what in ((0, "batch"), (1, "time"), (2, "key_size")):
        check_same_size("keys", keys, dim, f"queries' {what}", queries.shape[dim])
    for dim, what in ((0, "batch"), (1, "time")):
        check_same_size("values", values, dim, f"keys' {what}", keys.shape[dim])
