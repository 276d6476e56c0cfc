"""Sequence to sequence: a recurrent encoder reads the source, a recurrent decoder writes the target.

The encoder turns the source ids (B, S) into outputs (B, S, H) and a final state. Its last layer's final state is
the *context vector* c, of length H (the encoder's hidden size, a free choice): everything the decoder learns about
the source passes through it. The decoder starts from the encoder's final state and predicts the target one token
at a time, each from the tokens before it; by default it also reads c at every step, beside the previous token
(Cho et al. 2014; ``feed_context=False`` keeps only the start, as Sutskever et al. 2014 did)::

    source (B, S) --embed--> (B, S, E) --encoder RNN--> memory (B, S, H), final state (L, B, H) -> c (B, H)
    prefix (B, T) --embed--> (B, T, E) --[; c]--> decoder RNN from the final state --> (B, T, H) --linear--> (B, T, V)

``Seq2Seq`` follows the course's generation interface (``companion.decoding``): ``state = model.encode(source,
lengths)``, then ``model(target_prefix, state) -> (logits, state)``. With the whole gold prefix that is teacher
forcing in one call; with one token at a time it is generation, and ``model.reorder_state(state, indices)`` lets
beam search follow the beams it keeps.

**The slot for attention (Chapter 7).** The state carries the encoder's outputs (``memory``, (B, S, H_enc)) and the
source mask ((B, S) bool, True at real tokens) besides the decoder's recurrent state, and the decoder takes an
optional ``attention`` module, called as ``attention(query (B, Tq, Hq), key (B, S, Hk), value (B, S, Hv), mask)
-> (out (B, Tq, Hv), weights (B, Tq, S))`` with a bool mask broadcastable to (B, Tq, S), True where a query may
attend. Without it the decoder runs the fused recurrent layer over the whole prefix at once. With it,
``Seq2SeqConfig.attention_step`` says where attention enters the step:

* ``"after"`` (Luong): the RNN steps first, then its new state ``h_t`` queries the memory; the context ``c_t`` and
  ``h_t`` are combined, ``tanh(W_c [h_t; c_t])``, before the head. Without input feeding the RNN does not depend on
  the contexts, so this too runs over the whole prefix at once; with ``input_feeding`` the combined vector of step
  ``t`` is also an input of step ``t + 1``, which needs the step-by-step loop.
* ``"before"`` (Bahdanau): the previous state ``h_{t-1}`` queries the memory and the context is an input of the RNN
  step, ``h_t = RNN([y_{t-1}; c_t], h_{t-1})``; the head reads ``tanh(W_c [h_t; c_t])``. Step by step. This is the
  plain decoder with ``feed_context`` where the fixed c has become a c_t computed afresh at every step.

The plain model of Chapter 5 and the attention models of Chapter 7 differ only in that module, that setting and
the combination layer ``W_c``.

Recurrent layers follow the course's interface ``layer(inputs (B, T, D), state=None, lengths=None) -> (outputs
(B, T, dirs * H), state)``, state in torch's layout ((dirs * L, B, H), an LSTM's ``(h, c)``). The defaults are the
fused ``torch.nn.GRU`` / ``nn.LSTM``; ``run_recurrent`` is the one adapter that gives them the ``lengths`` argument
(through ``pack_padded_sequence``), and any layer that already has it (the from-scratch layers) is called as is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from companion.checks import check_choice, check_integer_dtype, check_rank, check_same_size, check_tensor
from companion.language_models import check_ids, reorder_recurrent_state

RecurrentState = Any  # a tensor (dirs * L, B, H) for an RNN or GRU, a tuple (h, c) of two for an LSTM
CELLS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}
ATTENTION_STEPS = ("after", "before")


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Every size and choice of a ``Seq2Seq`` model.

    Args:
        source_vocab_size: ids the encoder reads, ``0 .. source_vocab_size - 1``.
        target_vocab_size: V, ids the decoder reads and scores.
        embedding_dim: E, the length of each token's learned vector (source and target each have a table).
        hidden_size: H, the encoder's and the decoder's hidden size: the length of the context vector.
        num_layers: stacked recurrent layers in the encoder and in the decoder.
        cell: ``"gru"``, ``"lstm"`` or ``"rnn"``: which fused ``torch.nn`` layer the defaults build.
        bidirectional: a bidirectional encoder (memory (B, S, 2H)); its two final states are joined by a
            ``tanh(linear)`` bridge into the decoder's initial state, and side by side into the context vector.
        feed_context: without attention, the decoder reads the context vector at every step beside the previous
            token (Cho et al. 2014); False: it only starts from the encoder's final state (Sutskever et al. 2014).
            With attention it has no effect: ``attention_step`` and ``input_feeding`` say what the RNN reads.
        dropout: dropout on the embeddings and before the head (0 disables it).
        pad_id: the padding id of both vocabularies (``companion.data.Vocab`` uses 0).
        attention_step: where an ``attention`` module enters the decoder step, ``"after"`` (Luong) or
            ``"before"`` (Bahdanau); ignored without attention.
        input_feeding: feed the previous step's combined vector back into the RNN (Luong; ``"after"`` only).
    """

    source_vocab_size: int
    target_vocab_size: int
    embedding_dim: int = 32
    hidden_size: int = 128
    num_layers: int = 1
    cell: str = "gru"
    bidirectional: bool = False
    feed_context: bool = True
    dropout: float = 0.0
    pad_id: int = 0
    attention_step: str = "after"
    input_feeding: bool = False

    def __post_init__(self) -> None:
        for name in ("source_vocab_size", "target_vocab_size", "embedding_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        check_choice("cell", self.cell, tuple(CELLS))
        check_choice("attention_step", self.attention_step, ATTENTION_STEPS)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if not 0 <= self.pad_id < min(self.source_vocab_size, self.target_vocab_size):
            raise ValueError(f"pad_id {self.pad_id} must be an id of both vocabularies")
        if self.input_feeding and self.attention_step != "after":
            raise ValueError("input_feeding is Luong's and needs attention_step='after'")

    @property
    def memory_size(self) -> int:
        """The length of each encoder output: H, or 2H for a bidirectional encoder."""
        return self.hidden_size * (2 if self.bidirectional else 1)


@dataclass
class Seq2SeqState:
    """What the decoder carries from one call to the next; ``Seq2Seq.encode`` makes the first one.

    Attributes:
        hidden: the decoder's recurrent state in torch's layout, (L, B, H) or an LSTM's ``(h, c)``.
        context: (B, H_enc) the context vector, the encoder's last layer at each source's last token (both
            directions side by side for a bidirectional encoder).
        encoder_outputs: (B0, S, H_enc) the encoder's outputs for the B0 sources that were encoded.
        encoder_mask: (B0, S) bool, True at their real tokens.
        rows: (B,) which encoded source each of the B sequences reads (beam search gives one source several
            sequences); None when sequence i reads source i.
        feed: (B, H) the previous step's combined vector, for input feeding; None otherwise.
        weights: (B, T, S) the attention weights of the positions the last call produced; None without attention.

    ``memory`` (B, S, H_enc) and ``source_mask`` (B, S) give each sequence its source's outputs and mask: the keys
    and values of attention, and where it may look. Reordering a state (``select``) only reorders ``rows``, so beam
    search does not copy the encoder's outputs at every step.
    """

    hidden: RecurrentState
    context: torch.Tensor
    encoder_outputs: torch.Tensor
    encoder_mask: torch.Tensor
    rows: torch.Tensor | None = None
    feed: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    @property
    def memory(self) -> torch.Tensor:
        """(B, S, H_enc) the encoder's outputs for each sequence, zero at padded positions."""
        return self.encoder_outputs if self.rows is None else self.encoder_outputs.index_select(0, self.rows)

    @property
    def source_mask(self) -> torch.Tensor:
        """(B, S) bool, True at the real tokens of each sequence's source."""
        return self.encoder_mask if self.rows is None else self.encoder_mask.index_select(0, self.rows)

    @property
    def batch_size(self) -> int:
        """B, the number of sequences (or beams) the state holds."""
        return self.context.shape[0]

    def select(self, indices: torch.Tensor) -> Seq2SeqState:
        """The state of the sequences ``indices`` (N,) (repeats allowed, as beam search needs), in that order."""

        def pick(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return tensor.index_select(0, indices) if tensor is not None else None  # batch-first parts

        return Seq2SeqState(
            hidden=reorder_recurrent_state(self.hidden, indices),
            context=pick(self.context),
            encoder_outputs=self.encoder_outputs,
            encoder_mask=self.encoder_mask,
            rows=indices if self.rows is None else pick(self.rows),
            feed=pick(self.feed),
            weights=pick(self.weights),
        )


def run_recurrent(
    layer: nn.Module,
    inputs: torch.Tensor,
    state: RecurrentState | None = None,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, RecurrentState]:
    """Run any recurrent layer through the course's interface: inputs (B, T, D) -> (outputs (B, T, dirs * H), state).

    A fused ``torch.nn.RNN``/``GRU``/``LSTM`` (batch-first) has no ``lengths`` argument: a padded batch goes through
    ``pack_padded_sequence``, so each sequence stops at its length (its final state is that of its last real step,
    and its outputs past it are zero). Any other layer is called as ``layer(inputs, state, lengths=lengths)``.
    """
    if not isinstance(layer, nn.RNNBase):
        return layer(inputs, state, lengths=lengths)
    if lengths is None:
        return layer(inputs, state)
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, state = layer(packed, state)  # the final state comes back in the batch's own order
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=inputs.shape[1])  # (B, T, dirs * H)
    return outputs, state


def fused_recurrent(
    cell: str, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False
) -> nn.RNNBase:
    """The fused, batch-first ``torch.nn`` layer named by ``cell`` (``"gru"``, ``"lstm"`` or ``"rnn"``)."""
    check_choice("cell", cell, tuple(CELLS))
    return CELLS[cell](input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)


class Encoder(nn.Module):
    """Embed the source and run a recurrent layer over it: ids (B, S) -> memory (B, S, dirs * H), final state."""

    def __init__(
        self, vocab_size: int, embedding_dim: int, rnn: nn.Module, pad_id: int = 0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.rnn = rnn
        self.dropout = nn.Dropout(dropout)

    def forward(self, source: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, RecurrentState]:
        """source (B, S) ids, lengths (B,) -> outputs (B, S, dirs * H) (zero past each length), final state."""
        inputs = self.dropout(self.embedding(source))  # (B, S, E)
        return run_recurrent(self.rnn, inputs, None, lengths)


class Decoder(nn.Module):
    """Embed the target prefix, run a recurrent layer from the carried state, score the next token.

    Without ``attention`` the RNN reads each token's embedding (and the context vector, with ``feed_context``) and
    the head reads the RNN's outputs; with it, the head reads ``tanh(W_c [h_t; c_t])``, the combination of the
    RNN's output and the attention context (see the module docstring for where attention enters the step).
    """

    def __init__(self, config: Seq2SeqConfig, rnn: nn.Module, attention: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.target_vocab_size, config.embedding_dim, padding_idx=config.pad_id)
        self.rnn = rnn
        self.attention = attention
        self.dropout = nn.Dropout(config.dropout)
        hidden, memory = config.hidden_size, config.memory_size
        # The combination layer exists only with attention: the plain model's head reads h_t directly.
        self.combine = nn.Linear(hidden + memory, hidden) if attention is not None else None
        self.head = nn.Linear(hidden, config.target_vocab_size)

    @property
    def steps_one_at_a_time(self) -> bool:
        """Whether a step's RNN input depends on attention (Bahdanau, or input feeding): then the prefix is looped."""
        return self.attention is not None and (self.config.attention_step == "before" or self.config.input_feeding)

    def forward(self, ids: torch.Tensor, state: Seq2SeqState) -> tuple[torch.Tensor, Seq2SeqState]:
        """ids (B, T), state -> logits (B, T, V) for the token after each position, and the state after them."""
        inputs = self.dropout(self.embedding(ids))  # (B, T, E)
        if self.attention is None and self.config.feed_context:
            # The same context vector beside every token: (B, T, E + H_enc).
            inputs = torch.cat([inputs, state.context[:, None].expand(-1, inputs.shape[1], -1)], dim=-1)
        if self.steps_one_at_a_time:
            return self._step_by_step(inputs, state)
        outputs, hidden = run_recurrent(self.rnn, inputs, state.hidden)  # (B, T, H): fused over the whole prefix
        if self.attention is None:
            return self.head(self.dropout(outputs)), replace(state, hidden=hidden)
        # Luong without input feeding: every h_t queries the memory at once.
        context, weights = self._attend(outputs, state)  # (B, T, H_enc), (B, T, S)
        combined = torch.tanh(self.combine(torch.cat([outputs, context], dim=-1)))  # (B, T, H)
        return self.head(self.dropout(combined)), replace(state, hidden=hidden, weights=weights)

    def _step_by_step(self, inputs: torch.Tensor, state: Seq2SeqState) -> tuple[torch.Tensor, Seq2SeqState]:
        logits, weights = [], []
        for t in range(inputs.shape[1]):
            step_logits, state = self._step(inputs[:, t : t + 1], state)  # (B, 1, V)
            logits.append(step_logits)
            weights.append(state.weights)
        return torch.cat(logits, dim=1), replace(state, weights=torch.cat(weights, dim=1))  # (B, T, V), (B, T, S)

    def _step(self, x: torch.Tensor, state: Seq2SeqState) -> tuple[torch.Tensor, Seq2SeqState]:
        """One step with attention: x (B, 1, E) -> logits (B, 1, V)."""
        rnn_input = x
        if self.config.attention_step == "before":
            # Bahdanau: the previous state asks where to look, and the RNN reads what it found.
            context, weights = self._attend(top_layer(state.hidden)[:, None], state)  # (B, 1, H_enc), (B, 1, S)
            rnn_input = torch.cat([x, context], dim=-1)  # (B, 1, E + H_enc)
        elif self.config.input_feeding:
            # Luong's input feeding: the RNN also reads the combined vector of the previous step.
            rnn_input = torch.cat([x, state.feed[:, None]], dim=-1)  # (B, 1, E + H)
        output, hidden = run_recurrent(self.rnn, rnn_input, state.hidden)  # (B, 1, H)
        if self.config.attention_step == "after":
            # Luong: the new state asks where to look.
            context, weights = self._attend(output, state)  # (B, 1, H_enc), (B, 1, S)
        combined = torch.tanh(self.combine(torch.cat([output, context], dim=-1)))  # (B, 1, H)
        feed = combined[:, 0] if self.config.input_feeding else None  # (B, H)
        return self.head(self.dropout(combined)), replace(state, hidden=hidden, feed=feed, weights=weights)

    def _attend(self, query: torch.Tensor, state: Seq2SeqState) -> tuple[torch.Tensor, torch.Tensor]:
        mask = state.source_mask[:, None, :]  # (B, 1, S): every query may look at every real source token
        memory = state.memory  # (B, S, H_enc): the keys and the values
        return self.attention(query, memory, memory, mask)


def top_layer(hidden: RecurrentState) -> torch.Tensor:
    """The last layer's hidden state (B, H) from a state in torch's layout ((L, B, H), or an LSTM's ``(h, c)``)."""
    h = hidden[0] if isinstance(hidden, tuple) else hidden
    return h[-1]  # (B, H)


class Seq2Seq(nn.Module):
    """An encoder-decoder over token ids, following the course's generation interface.

    Args:
        config: the sizes and choices (``Seq2SeqConfig``).
        attention: an optional module ``attention(query, key, value, mask) -> (out, weights)`` (Chapter 7).
        encoder_rnn, decoder_rnn: recurrent layers with the course's interface (``run_recurrent``), e.g. the
            from-scratch GRU; by default the fused ``torch.nn`` layer named by ``config.cell``. The encoder's reads
            E-vectors; the decoder's reads E (+ H_enc before-attention, + H with input feeding) and has
            ``config.num_layers`` layers of ``config.hidden_size``.

    ``encode(source, lengths)`` returns the first ``Seq2SeqState``; ``forward(ids, state)`` returns ``(logits,
    state)``; ``reorder_state(state, indices)`` picks and repeats sequences of a state for beam search.
    """

    def __init__(
        self,
        config: Seq2SeqConfig,
        attention: nn.Module | None = None,
        *,
        encoder_rnn: nn.Module | None = None,
        decoder_rnn: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"config must be a Seq2SeqConfig, got {type(config).__name__}")
        self.config = config
        self.vocab_size = config.target_vocab_size  # what it generates (decoding checks prompts against it)
        c = config
        decoder_input = c.embedding_dim
        if (attention is None and c.feed_context) or (attention is not None and c.attention_step == "before"):
            decoder_input += c.memory_size  # the context vector, fixed or attended
        elif attention is not None and c.input_feeding:
            decoder_input += c.hidden_size
        encoder_rnn = encoder_rnn or fused_recurrent(
            c.cell, c.embedding_dim, c.hidden_size, c.num_layers, c.bidirectional
        )
        decoder_rnn = decoder_rnn or fused_recurrent(c.cell, decoder_input, c.hidden_size, c.num_layers)
        _check_layer("encoder_rnn", encoder_rnn, c.embedding_dim, c.hidden_size)
        _check_layer("decoder_rnn", decoder_rnn, decoder_input, c.hidden_size)
        self.encoder = Encoder(c.source_vocab_size, c.embedding_dim, encoder_rnn, c.pad_id, c.dropout)
        self.decoder = Decoder(c, decoder_rnn, attention)
        # A bidirectional encoder's two final states are joined into one of the decoder's size.
        self.bridge = nn.Linear(2 * c.hidden_size, c.hidden_size) if c.bidirectional else None

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        c = self.config
        attention = "none" if self.decoder.attention is None else f"{c.attention_step}, input_feeding={c.input_feeding}"
        return f"context vector of {c.hidden_size} ({c.cell}), attention: {attention}"

    def encode(self, source: torch.Tensor, lengths: torch.Tensor | None = None) -> Seq2SeqState:
        """Read the source: ids (B, S) with real lengths (B,) (None: all S long) -> the decoder's first state."""
        check_ids(source, self.config.source_vocab_size, rank=2, layout="(batch, source_time)", name="source")
        batch, time = source.shape
        lengths = _checked_lengths(lengths, batch, time, source.device)
        memory, final = self.encoder(source, lengths)  # (B, S, H_enc), (dirs * L, B, H)
        mask = torch.arange(time, device=source.device)[None, :] < lengths[:, None]  # (B, S)
        h = final[0] if isinstance(final, tuple) else final  # an LSTM's context is its h, not its cell c
        directions = 2 if self.config.bidirectional else 1
        context = torch.cat(list(h[-directions:]), dim=-1)  # (B, H_enc): the last layer, each direction
        hidden = self._bridge(final)
        feed = None
        if self.decoder.attention is not None and self.config.input_feeding:
            feed = memory.new_zeros(batch, self.config.hidden_size)  # (B, H): nothing attended before the first step
        return Seq2SeqState(hidden, context, encoder_outputs=memory, encoder_mask=mask, feed=feed)

    def _bridge(self, final: RecurrentState) -> RecurrentState:
        if self.bridge is None:
            return final  # the context vector: the encoder's final state, the decoder's first
        layers = self.config.num_layers

        def join(h: torch.Tensor) -> torch.Tensor:
            both = h.view(layers, 2, *h.shape[1:])  # (L, 2, B, H): torch puts the directions of a layer together
            return torch.tanh(self.bridge(torch.cat([both[:, 0], both[:, 1]], dim=-1)))  # (L, B, H)

        return tuple(join(part) for part in final) if isinstance(final, tuple) else join(final)

    def forward(self, ids: torch.Tensor, state: Seq2SeqState) -> tuple[torch.Tensor, Seq2SeqState]:
        """Score the next target token after each position of ``ids``.

        Args:
            ids: (B, T) target ids: the whole gold prefix (teacher forcing) or the last generated token.
            state: from ``encode``, or from the previous call to continue the same sequences.

        Returns:
            logits (B, T, V), where ``logits[b, t]`` scores the token after ``ids[b, : t + 1]``, and the new state.
        """
        check_ids(ids, self.vocab_size, rank=2, layout="(batch, time)")
        if not isinstance(state, Seq2SeqState):
            raise TypeError(
                f"state must be the Seq2SeqState from model.encode(source, lengths), got {type(state).__name__}"
            )
        check_same_size("ids", ids, 0, "the state's batch", state.batch_size)
        return self.decoder(ids, state)

    def reorder_state(self, state: Seq2SeqState, indices: torch.Tensor) -> Seq2SeqState:
        """The state of sequences ``indices`` (N,) of ``state``, in that order (``companion.decoding``'s protocol)."""
        return state.select(indices)


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the real target tokens only: padding (``mask`` False) adds nothing.

    Args:
        logits: (B, T, V). targets: (B, T) ids. mask: (B, T) bool, True at the tokens to score.

    Returns:
        A scalar: the sum of the masked tokens' losses divided by their number (every real token weighs the same,
        whatever the length of its sequence).
    """
    check_rank("logits", logits, 3, "(batch, time, vocab)")
    check_rank("targets", targets, 2, "(batch, time)")
    check_integer_dtype("targets", targets)
    check_tensor("mask", mask)
    if mask.dtype != torch.bool or mask.shape != targets.shape:
        raise ValueError(
            f"mask must be bool with targets' shape {tuple(targets.shape)}, got {mask.dtype} {tuple(mask.shape)}"
        )
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits (B, T, V) {tuple(logits.shape)} and targets (B, T) {tuple(targets.shape)} disagree")
    if not mask.any():
        raise ValueError("mask selects no token; nothing to score")
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T)
    return per_token[mask].sum() / mask.sum()


def teacher_forcing_loss(model: Seq2Seq, batch: Any) -> torch.Tensor:
    """The ``loss_fn`` for ``Trainer``: ``sequence_loss`` of the model fed the gold target prefix.

    ``batch`` has ``source`` (B, S), ``source_lengths`` (B,), ``target`` (B, T) and ``target_lengths`` (B,), as
    ``companion.data.PairBatch`` does; each target starts with the start token and ends with the end token. The
    decoder reads ``target[:, :-1]`` and learns to predict ``target[:, 1:]``.
    """
    logits, _ = model(batch.target[:, :-1], model.encode(batch.source, batch.source_lengths))  # (B, T - 1, V)
    labels = batch.target[:, 1:]  # (B, T - 1)
    mask = torch.arange(labels.shape[1], device=labels.device)[None, :] < (batch.target_lengths[:, None] - 1)
    return sequence_loss(logits, labels, mask)


def count_parameters(model: nn.Module) -> int:
    """The number of trainable numbers in ``model``."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def _checked_lengths(lengths: torch.Tensor | None, batch: int, time: int, device: torch.device) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), time, dtype=torch.long, device=device)
    check_rank("lengths", lengths, 1, "(batch,)")
    check_integer_dtype("lengths", lengths)
    check_same_size("lengths", lengths, 0, "source's batch", batch)
    shortest, longest = int(lengths.min()), int(lengths.max())
    if shortest < 1 or longest > time:
        raise ValueError(f"lengths must lie between 1 and source's time dimension {time}, got {shortest} to {longest}")
    return lengths.to(device)


def _check_layer(name: str, layer: nn.Module, input_size: int, hidden_size: int) -> None:
    if not isinstance(layer, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(layer).__name__}")
    for attribute, expected in (("input_size", input_size), ("hidden_size", hidden_size)):
        value = getattr(layer, attribute, None)
        if value != expected:
            raise ValueError(f"{name}.{attribute} is {value}, but the model needs {expected}")
    if not getattr(layer, "batch_first", True):
        raise ValueError(f"{name} must be batch-first (batch_first=True): the model passes (B, T, D) inputs")
