"""Language models: given the tokens so far, a probability distribution over the next token.

``RNNLanguageModel`` is the recurrent one of Part I: token ids -> input vectors (one-hot or a learned embedding) ->
a recurrent layer -> a linear head that scores every token of the vocabulary::

    ids (B, T) --one-hot/embedding--> (B, T, D) --recurrent--> (B, T, H) --linear--> logits (B, T, V)

The recurrent layer is any module with the course's recurrent interface (``companion.recurrent_cells``), batch-first:
``layer(inputs, state, lengths)`` returns ``(outputs, final_state)``, and it has ``input_size`` and ``hidden_size``
attributes. By default the model builds the fused ``nn.RNN`` (fast, used for training); pass ``recurrent=`` to use
the from-scratch ``companion`` RNN, LSTM or GRU, or ``torch.nn.LSTM`` / ``GRU``, without changing anything else
(``run_recurrent`` calls them all the same way). The state is passed through untouched, so an LSTM's ``(h, c)``
pair works as well as an RNN's ``h``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from companion.bptt import detach_state  # noqa: F401 (part of this module's API: carry a state between batches)
from companion.checks import check_integer_dtype, check_positive, check_rank
from companion.recurrent_cells import State, run_recurrent  # State: a tensor (L, B, H), or an LSTM's (h, c)


class RNNLanguageModel(nn.Module):
    """A recurrent language model over a vocabulary of ``vocab_size`` tokens.

    Args:
        vocab_size: V, the number of token ids (ids are ``0 .. V - 1``).
        hidden_size: H, the hidden state's length, for the default ``nn.RNN``; leave it out when passing
            ``recurrent`` (its ``hidden_size`` is used).
        embedding_dim: D for a learned ``nn.Embedding``; ``None`` feeds one-hot vectors (D = V), as d2l's RNNLM does.
        recurrent: a batch-first layer with ``nn.RNN``'s interface whose ``input_size`` is D; default
            ``nn.RNN(D, hidden_size, num_layers, batch_first=True)``.
        num_layers: layers of the default ``nn.RNN``.

    ``forward(ids, state=None)`` takes ids (B, T) and returns ``(logits, state)``: logits (B, T, V) and the final
    state, which can be passed to the next call to continue the same sequences (call ``detach_state`` on it between
    training batches to stop backpropagation at the batch boundary).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int | None = None,
        *,
        embedding_dim: int | None = None,
        recurrent: nn.Module | None = None,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        _check_count("vocab_size", vocab_size)
        if embedding_dim is not None:
            _check_count("embedding_dim", embedding_dim)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        input_size = embedding_dim if embedding_dim is not None else vocab_size
        # A learned table of D-vectors, or None for one-hot inputs (computed on the fly, nothing to learn).
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if embedding_dim is not None else None
        self.recurrent = _recurrent_layer(recurrent, input_size, hidden_size, num_layers)
        self.hidden_size: int = self.recurrent.hidden_size
        self.head = nn.Linear(self.hidden_size, vocab_size)  # scores every token from the hidden state

    def extra_repr(self) -> str:
        """Shown by ``print(model)``: the vocabulary size and how tokens enter."""
        inputs = "one-hot" if self.embedding is None else f"embedding_dim={self.embedding_dim}"
        return f"vocab_size={self.vocab_size}, {inputs}"

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input vectors of ids (B, T): (B, T, D), one-hot when there is no embedding (D = V)."""
        if self.embedding is not None:
            return self.embedding(ids)  # (B, T, D)
        # Writing the ones straight into a float tensor is several times faster than F.one_hot(ids).float(),
        # which first builds an int64 tensor of the same size and then converts it.
        one_hot = ids.new_zeros(*ids.shape, self.vocab_size, dtype=self.head.weight.dtype)  # (B, T, V)
        return one_hot.scatter_(-1, ids.unsqueeze(-1), 1.0)  # (B, T, V)

    def forward(
        self, ids: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Score the next token after every position.

        Args:
            ids: (B, T) integer token ids in ``[0, vocab_size)``.
            state: the recurrent layer's state from a previous call, or None to start from zeros.
            lengths: (B,) the real length of each padded sequence, or None (all T long); logits past a length are
                those of a zero hidden state, so mask them out of the loss.

        Returns:
            logits (B, T, V), where ``logits[b, t]`` scores the token that follows ``ids[b, :t + 1]``, and the final
            state (for ``nn.RNN``: (num_layers, B, H)).
        """
        check_ids(ids, self.vocab_size, rank=2, layout="(batch, time)")
        inputs = self.embed(ids)  # (B, T, D)
        outputs, state = run_recurrent(self.recurrent, inputs, state, lengths)  # (B, T, H), final state
        return self.head(outputs), state  # (B, T, V)

    def reorder_state(self, state: State, indices: torch.Tensor) -> State:
        """The state of sequences ``indices`` (N,) of the batch, in that order (for beam search, see
        ``companion.decoding``): the recurrent state's batch dimension is picked, repeats allowed."""
        return reorder_recurrent_state(state, indices)


def reorder_recurrent_state(state: State, indices: torch.Tensor) -> State:
    """Pick sequences ``indices`` (N,) from a recurrent state in torch's layout: (layers, B, H) -> (layers, N, H).

    An LSTM's ``(h, c)`` has each part picked; ``None`` (a state not yet started) stays ``None``.
    """
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.index_select(1, indices)  # torch's layout: the batch is dimension 1
    if isinstance(state, tuple) and all(isinstance(part, torch.Tensor) for part in state):
        return tuple(part.index_select(1, indices) for part in state)
    raise TypeError(f"state must be a tensor, a tuple of tensors or None, got {type(state).__name__}")


def next_token_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy (nats per token) of ``model`` on ``batch = (inputs, targets)``, both (B, T) ids.

    The ``loss_fn`` for ``Trainer`` and ``loss_on``; its exponential is the perplexity.
    """
    inputs, targets = batch
    logits, _ = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))  # (B*T, V) against (B*T,)


def check_ids(ids: torch.Tensor, vocab_size: int, rank: int, layout: str, name: str = "ids") -> None:
    """Raise unless ``ids`` is an integer tensor of ``rank`` dimensions with every id in ``[0, vocab_size)``."""
    check_rank(name, ids, rank, layout)
    check_integer_dtype(name, ids)
    if ids.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ids.shape)}); expected at least one token")
    smallest, largest = torch.aminmax(ids)  # one pass over the ids
    if smallest.item() < 0 or largest.item() >= vocab_size:
        bad = ids[(ids < 0) | (ids >= vocab_size)][:5].tolist()
        raise ValueError(
            f"{name} holds ids {bad} outside the vocabulary [0, {vocab_size}) (shape {tuple(ids.shape)}); "
            "was the text encoded with another Vocab?"
        )


def _check_count(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    check_positive(name, value)


def _recurrent_layer(
    recurrent: nn.Module | None, input_size: int, hidden_size: int | None, num_layers: int
) -> nn.Module:
    """The default fused ``nn.RNN``, or ``recurrent`` after checking that it fits the model."""
    if recurrent is None:
        if hidden_size is None:
            raise ValueError("pass hidden_size (for the default nn.RNN) or a recurrent layer")
        _check_count("hidden_size", hidden_size)
        _check_count("num_layers", num_layers)
        return nn.RNN(input_size, hidden_size, num_layers, batch_first=True)
    if not isinstance(recurrent, nn.Module):
        raise TypeError(f"recurrent must be a torch.nn.Module, got {type(recurrent).__name__}")
    for attribute in ("input_size", "hidden_size"):
        if not hasattr(recurrent, attribute):
            raise TypeError(f"recurrent must have nn.RNN's attribute {attribute!r}; {type(recurrent).__name__} has not")
    if recurrent.input_size != input_size:
        raise ValueError(
            f"recurrent.input_size is {recurrent.input_size}, but the model feeds it vectors of size {input_size} "
            "(embedding_dim, or vocab_size for one-hot inputs)"
        )
    if hidden_size is not None and hidden_size != recurrent.hidden_size:
        raise ValueError(f"hidden_size is {hidden_size} but recurrent.hidden_size is {recurrent.hidden_size}")
    if not getattr(recurrent, "batch_first", True):
        raise ValueError("recurrent must be batch-first (batch_first=True): the model passes (B, T, D) inputs")
    if getattr(recurrent, "bidirectional", False):
        raise ValueError("recurrent must not be bidirectional: a language model may not read the tokens it predicts")
    if getattr(recurrent, "proj_size", 0):
        raise ValueError("recurrent must have proj_size=0: the head reads hidden states of size hidden_size")
    return recurrent
