"""The Transformer (Vaswani et al. 2017): attention and a position-wise feed-forward network, each inside a residual
connection with layer normalisation, stacked; an encoder stack reads the source and a decoder stack writes the
target, attending to its own past (causally) and to the encoder's output.

One layer, with its normalisation in either place (``norm_first``)::

    post-LN (the paper):      x = LN(x + SelfAttention(x))         x = LN(x + FFN(x))
    pre-LN (GPT-2 onwards):   x = x + SelfAttention(LN(x))         x = x + FFN(LN(x))

    FFN(x) = W_2 act(W_1 x + b_1) + b_2, at every position on its own (512 -> 2048 -> 512 in the paper)

A decoder layer has a cross-attention sublayer between the two, whose queries come from the target and whose keys
and values come from the encoder's output (the *memory*).

**Torch's twins.** ``TransformerEncoderLayer``, ``TransformerDecoderLayer``, ``TransformerEncoder`` and
``TransformerDecoder`` keep the constructors and parameter names of their ``torch.nn`` namesakes (``self_attn``,
``multihead_attn``, ``linear1``, ``linear2``, ``norm1`` ... ``layers.0.``, ``norm``), so ``from_torch`` is one
``load_state_dict``. They are batch-first and take masks in the course's convention (``companion.masks``: bool,
True where a query may attend). Each returns ``(output, cache)``: what it computed and what a later call needs.

**The KV cache.** Generating token t, a self-attention layer needs the keys and values of tokens 0 .. t - 1 again;
they do not change (a causal mask keeps earlier positions from seeing later ones), so each layer keeps them in a
``KVCache`` and projects only the new token: one decoding step costs one position's work, not t positions'. The
cross-attention's keys and values (the projected memory) are computed once per source. Caches are values, never
changed in place: a call returns a new one, so a beam search may extend one state in several ways.

**Scratch and fused.** Every layer runs its attention through ``companion.attention.MultiHeadAttention.attend``:
from scratch (``fused=False``: the page's path, which also returns the attention weights) or with
``torch.nn.functional.scaled_dot_product_attention`` (``fused=True``, the default: the path that trains). The two
are the same code with one switch, ``set_fused(model, fused)``.

**The encoder-decoder** ``Transformer`` follows the course's generation interface (``companion.decoding``):
``state = model.encode(source, lengths)``, then ``model(target_prefix, state) -> (logits, state)``, and
``model.reorder_state(state, indices)`` for beam search.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from companion.attention import MultiHeadAttention
from companion.checks import check_choice, check_integer_dtype, check_rank, check_same_size, check_tensor
from companion.language_models import check_ids
from companion.masks import causal_mask, padding_mask
from companion.positions import LearnedPositions, SinusoidalPositions

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu}
POSITIONS = ("sinusoidal", "learned")


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True, kw_only=True)
class BlockConfig:
    """The sizes and choices shared by every stack of Transformer layers (the models' configs extend it).

    Args:
        d_model: E, the width of every position's vector (512 in the paper).
        nhead: attention heads; must divide ``d_model``.
        dim_feedforward: the feed-forward block's hidden width (2048 in the paper); None means ``4 * d_model``.
        dropout: dropout on the embeddings, the attention weights and every sublayer's output (0 disables it).
        activation: the feed-forward block's nonlinearity, ``"relu"`` (the paper) or ``"gelu"`` (GPT, BERT).
        layer_norm_eps: the LayerNorm's epsilon.
        norm_first: pre-LN (True) or post-LN (False, the paper). A pre-LN stack ends with one more LayerNorm.
        bias: biases in the linear layers and LayerNorms (torch's ``bias``).
        max_length: the most positions a sequence may have (the position table's size).
        positions: ``"sinusoidal"`` (the paper's fixed table) or ``"learned"`` (GPT, BERT).
        tie_embeddings: the output layer shares its weight with the (target) token embedding (Press & Wolf 2017).
    """

    d_model: int = 64
    nhead: int = 4
    dim_feedforward: int | None = None
    dropout: float = 0.0
    activation: str = "relu"
    layer_norm_eps: float = 1e-5
    norm_first: bool = True
    bias: bool = True
    max_length: int = 256
    positions: str = "sinusoidal"
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("d_model", "nhead", "max_length"):
            _check_count(name, getattr(self, name))
        if self.dim_feedforward is None:
            # A frozen dataclass: the derived default is written once, here.
            object.__setattr__(self, "dim_feedforward", 4 * self.d_model)
        _check_count("dim_feedforward", self.dim_feedforward)
        if self.d_model % self.nhead:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by nhead ({self.nhead})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("positions", self.positions, POSITIONS)
        if self.positions == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"sinusoidal positions need an even d_model, got {self.d_model}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}")

    @property
    def layer_arguments(self) -> dict[str, object]:
        """The constructor arguments of one ``TransformerEncoderLayer`` or ``TransformerDecoderLayer``."""
        return {
            "d_model": self.d_model,
            "nhead": self.nhead,
            "dim_feedforward": self.dim_feedforward,
            "dropout": self.dropout,
            "activation": self.activation,
            "layer_norm_eps": self.layer_norm_eps,
            "norm_first": self.norm_first,
            "bias": self.bias,
        }

    def final_norm(self) -> nn.LayerNorm | None:
        """The LayerNorm that closes a pre-LN stack (its residual stream is never normalised otherwise); None for
        post-LN, whose every layer already ends with one."""
        return nn.LayerNorm(self.d_model, eps=self.layer_norm_eps, bias=self.bias) if self.norm_first else None

    def make_positions(self) -> SinusoidalPositions | LearnedPositions:
        """A new position encoding of ``max_length`` positions, of the kind ``positions`` names."""
        if self.positions == "sinusoidal":
            return SinusoidalPositions(self.d_model, self.max_length)
        return LearnedPositions(self.max_length, self.d_model)


@dataclass(frozen=True, kw_only=True)
class TransformerConfig(BlockConfig):
    """Every size and choice of the encoder-decoder ``Transformer`` (the fields of ``BlockConfig``, and these).

    Args:
        source_vocab_size: ids the encoder reads, ``0 .. source_vocab_size - 1``.
        target_vocab_size: V, ids the decoder reads and scores.
        num_encoder_layers: layers in the encoder stack (6 in the paper).
        num_decoder_layers: layers in the decoder stack (6 in the paper).

    The paper's base model is ``TransformerConfig(source_vocab_size=..., target_vocab_size=..., d_model=512,
    nhead=8, dim_feedforward=2048, dropout=0.1, num_encoder_layers=6, num_decoder_layers=6, norm_first=False)``.
    """

    source_vocab_size: int
    target_vocab_size: int
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("source_vocab_size", "target_vocab_size", "num_encoder_layers", "num_decoder_layers"):
            _check_count(name, getattr(self, name))


# ---------------------------------------------------------------- the feed-forward block and the caches


def feed_forward(
    x: torch.Tensor,
    linear1: nn.Linear,
    linear2: nn.Linear,
    activation: Callable[[torch.Tensor], torch.Tensor],
    dropout: nn.Module,
) -> torch.Tensor:
    """The position-wise feed-forward network ``W_2 act(W_1 x + b_1) + b_2``: (..., E) -> (..., E).

    Every position goes through the same two layers on its own: the one place in a Transformer layer where a
    position's features mix with each other, but never with another position's. ``dropout`` acts on the hidden
    (..., dim_feedforward) activations, as in torch's layers.
    """
    return linear2(dropout(activation(linear1(x))))  # (..., E) -> (..., F) -> (..., E)


class FeedForward(nn.Module):
    """The position-wise feed-forward block on its own: ``linear2(dropout(act(linear1(x))))``.

    The Transformer layers hold the same two layers under the same names (torch's ``linear1`` and ``linear2``) and
    call the same ``feed_forward`` function.

    Args:
        d_model: E, the width in and out.
        dim_feedforward: F, the hidden width (4 E in the paper).
        dropout: dropout on the hidden activations.
        activation: ``"relu"`` or ``"gelu"``.
        bias: biases in both layers.
    """

    def __init__(
        self, d_model: int, dim_feedforward: int, dropout: float = 0.0, activation: str = "relu", bias: bool = True
    ) -> None:
        super().__init__()
        _check_count("d_model", d_model)
        _check_count("dim_feedforward", dim_feedforward)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)  # (F, E): E -> F
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)  # (E, F): F -> E
        self.activation = _activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., E) -> (..., E), each position on its own."""
        check_tensor("x", x)
        check_same_size("x", x, -1, "d_model", self.linear1.in_features)
        return feed_forward(x, self.linear1, self.linear2, self.activation, self.dropout)


@dataclass(frozen=True)
class KVCache:
    """The keys and values one attention layer has projected so far, per head: (B, heads, t, d) each.

    ``extend`` returns a new cache with more positions; ``select`` picks sequences of the batch (beam search).
    """

    keys: torch.Tensor
    values: torch.Tensor

    def __post_init__(self) -> None:
        check_rank("keys", self.keys, 4, "(batch, heads, time, head_dim)")
        check_rank("values", self.values, 4, "(batch, heads, time, head_dim)")
        for dim in range(3):
            check_same_size("values", self.values, dim, f"keys' dimension {dim}", self.keys.shape[dim])

    @property
    def length(self) -> int:
        """t, the number of positions cached."""
        return self.keys.shape[2]

    @property
    def batch_size(self) -> int:
        """B, the number of sequences cached."""
        return self.keys.shape[0]

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> KVCache:
        """The cache with ``keys``, ``values`` (B, heads, T, d) appended after its t positions: (B, heads, t + T, d)."""
        return KVCache(torch.cat([self.keys, keys], dim=2), torch.cat([self.values, values], dim=2))

    def select(self, indices: torch.Tensor) -> KVCache:
        """The cache of sequences ``indices`` (N,), in that order (repeats allowed): (N, heads, t, d) each."""
        return KVCache(self.keys.index_select(0, indices), self.values.index_select(0, indices))


@dataclass(frozen=True)
class DecoderLayerState:
    """What one decoder layer carries from one call to the next.

    Attributes:
        cache: its self-attention's keys and values of the target positions read so far; None before the first.
        memory: its cross-attention's keys and values, the projected encoder output (B, heads, S, d), fixed.
        weights: (B, heads, T, S) the cross-attention weights of the T positions of the last call (where each
            target position looked in the source), or None on the fused path or before the first call.
    """

    cache: KVCache | None
    memory: KVCache
    weights: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """The number of target positions read so far."""
        return 0 if self.cache is None else self.cache.length

    def select(self, indices: torch.Tensor) -> DecoderLayerState:
        """The state of sequences ``indices`` (N,), in that order (repeats allowed)."""
        return DecoderLayerState(
            cache=None if self.cache is None else self.cache.select(indices),
            memory=self.memory.select(indices),
            weights=None if self.weights is None else self.weights.index_select(0, indices),
        )


def self_attention(
    attention: MultiHeadAttention,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    cache: KVCache | None,
    fused: bool,
) -> tuple[torch.Tensor, KVCache]:
    """Self-attention of ``x`` (B, T, E) over the cached positions and its own, causal or not as ``mask`` says.

    Only the T new positions are projected; their keys and values are appended to ``cache`` (None: nothing read
    yet), and the queries attend to all t + T keys. ``mask`` is broadcastable to (B, heads, T, t + T).

    Returns:
        out (B, T, E) and the cache of all t + T positions.
    """
    q, k, v = attention.project(x, x, x)  # (B, heads, T, d) each
    cache = KVCache(k, v) if cache is None else cache.extend(k, v)  # (B, heads, t + T, d) each
    out, _ = attention.attend(q, cache.keys, cache.values, mask, need_weights=not fused)  # (B, T, E)
    return out, cache


# ---------------------------------------------------------------- layers


class TransformerEncoderLayer(nn.Module):
    """Self-attention then the feed-forward block, each in a residual connection with a LayerNorm.

    ``torch.nn.TransformerEncoderLayer``'s constructor (batch-first always; ``activation`` by name) and parameter
    names. With a causal mask and a cache it is also a GPT block.

    Args:
        d_model: E.
        nhead: heads.
        dim_feedforward: the feed-forward block's hidden width.
        dropout: on the attention weights, the feed-forward hidden layer and each sublayer's output.
        activation: ``"relu"`` or ``"gelu"``.
        layer_norm_eps: the LayerNorms' epsilon.
        norm_first: pre-LN (True) or post-LN (False, torch's and the paper's default).
        bias: biases in the linear layers and LayerNorms.
        fused: attention through ``F.scaled_dot_product_attention`` (True) or from scratch (False).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        norm_first: bool = False,
        bias: bool = True,
        *,
        fused: bool = True,
    ) -> None:
        super().__init__()
        # The construction order is torch's, so that the same seed draws the same initial weights.
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)  # (F, E)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)  # (E, F)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = _activation(activation)
        self.fused = fused

    def extra_repr(self) -> str:
        """Shown by ``print(layer)``."""
        return f"norm_first={self.norm_first}, fused={self.fused}"

    def forward(
        self, src: torch.Tensor, mask: torch.Tensor | None = None, *, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """One layer.

        Args:
            src: (B, T, E), the T new positions.
            mask: bool, True where a query may attend, broadcastable to (B, heads, T, t + T): ``padding_mask``
                (B, 1, T) for an encoder, ``causal_mask(T, t + T)`` for a decoder-only model.
            cache: the keys and values of the t positions before ``src`` (a KV cache), or None.

        Returns:
            ``(out, cache)``: out (B, T, E), and the cache of all t + T positions.
        """
        _check_inputs("src", src, self.linear1.in_features, cache)
        x = src
        if self.norm_first:
            attended, cache = self_attention(self.self_attn, self.norm1(x), mask, cache, self.fused)
            x = x + self.dropout1(attended)
            x = x + self.dropout2(self._feed_forward(self.norm2(x)))
        else:
            attended, cache = self_attention(self.self_attn, x, mask, cache, self.fused)
            x = self.norm1(x + self.dropout1(attended))
            x = self.norm2(x + self.dropout2(self._feed_forward(x)))
        return x, cache

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return feed_forward(x, self.linear1, self.linear2, self.activation, self.dropout)

    @classmethod
    def from_torch(cls, module: nn.TransformerEncoderLayer) -> TransformerEncoderLayer:
        """A copy of ``module``, a ``torch.nn.TransformerEncoderLayer`` (either ``batch_first``), on its device."""
        if not isinstance(module, nn.TransformerEncoderLayer):
            raise TypeError(f"module must be a torch.nn.TransformerEncoderLayer, got {type(module).__name__}")
        return _copied(cls(**_torch_layer_arguments(module)), module)


class TransformerDecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the memory, then the feed-forward block, each in a residual
    connection with a LayerNorm.

    ``torch.nn.TransformerDecoderLayer``'s constructor (batch-first always; ``activation`` by name) and parameter
    names: ``self_attn``, ``multihead_attn`` (the cross-attention), ``linear1``, ``linear2``, ``norm1`` .. ``norm3``.
    Arguments as ``TransformerEncoderLayer``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        norm_first: bool = False,
        bias: bool = True,
        *,
        fused: bool = True,
    ) -> None:
        super().__init__()
        # torch's construction order (the same seed draws the same weights).
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias)
        self.multihead_attn = MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)  # (F, E)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)  # (E, F)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = _activation(activation)
        self.fused = fused

    def extra_repr(self) -> str:
        """Shown by ``print(layer)``."""
        return f"norm_first={self.norm_first}, fused={self.fused}"

    def project_memory(self, memory: torch.Tensor) -> KVCache:
        """The cross-attention's keys and values of the encoder output ``memory`` (B, S, E): (B, heads, S, d) each.

        They depend on the source only, so a generating decoder computes them once, not at every step.
        """
        _check_inputs("memory", memory, self.linear1.in_features)
        _, keys, values = self.multihead_attn.project(None, memory, memory)  # (B, heads, S, d) each
        return KVCache(keys, values)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        *,
        state: DecoderLayerState | None = None,
    ) -> tuple[torch.Tensor, DecoderLayerState]:
        """One layer.

        Args:
            tgt: (B, T, E), the T new target positions.
            memory: (B, S, E), the encoder's output; leave it out when ``state`` holds its projection.
            mask: bool, broadcastable to (B, heads, T, t + T), True where a target position may attend to an
                earlier one: ``causal_mask(T, t + T)``.
            memory_mask: bool, broadcastable to (B, heads, T, S), True at the source positions a target position
                may attend to: ``padding_mask(source_lengths)`` (B, 1, S).
            state: from the previous call (or ``TransformerDecoder.start``), or None to start afresh from
                ``memory``.

        Returns:
            ``(out, state)``: out (B, T, E), and the state after these positions.
        """
        if (memory is None) == (state is None):
            raise ValueError("pass the encoder's memory (B, S, E) or the state of a previous call, exactly one")
        if state is None:
            state = DecoderLayerState(cache=None, memory=self.project_memory(memory))
        if not isinstance(state, DecoderLayerState):
            raise TypeError(f"state must be a DecoderLayerState, got {type(state).__name__}")
        _check_inputs("tgt", tgt, self.linear1.in_features, state.cache)
        check_same_size("tgt", tgt, 0, "the memory's batch", state.memory.batch_size)
        x, cache = tgt, state.cache
        if self.norm_first:
            attended, cache = self_attention(self.self_attn, self.norm1(x), mask, cache, self.fused)
            x = x + self.dropout1(attended)
            context, weights = self._cross_attention(self.norm2(x), state.memory, memory_mask)
            x = x + self.dropout2(context)
            x = x + self.dropout3(self._feed_forward(self.norm3(x)))
        else:
            attended, cache = self_attention(self.self_attn, x, mask, cache, self.fused)
            x = self.norm1(x + self.dropout1(attended))
            context, weights = self._cross_attention(x, state.memory, memory_mask)
            x = self.norm2(x + self.dropout2(context))
            x = self.norm3(x + self.dropout3(self._feed_forward(x)))
        return x, DecoderLayerState(cache=cache, memory=state.memory, weights=weights)

    def _cross_attention(
        self, x: torch.Tensor, memory: KVCache, memory_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # The target asks (queries from x); the source answers (the memory's cached keys and values).
        q, _, _ = self.multihead_attn.project(x, None, None)  # (B, heads, T, d)
        return self.multihead_attn.attend(q, memory.keys, memory.values, memory_mask, need_weights=not self.fused)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return feed_forward(x, self.linear1, self.linear2, self.activation, self.dropout)

    @classmethod
    def from_torch(cls, module: nn.TransformerDecoderLayer) -> TransformerDecoderLayer:
        """A copy of ``module``, a ``torch.nn.TransformerDecoderLayer`` (either ``batch_first``), on its device."""
        if not isinstance(module, nn.TransformerDecoderLayer):
            raise TypeError(f"module must be a torch.nn.TransformerDecoderLayer, got {type(module).__name__}")
        return _copied(cls(**_torch_layer_arguments(module)), module)


# ---------------------------------------------------------------- stacks


class TransformerEncoder(nn.Module):
    """``num_layers`` copies of ``encoder_layer`` one after the other, then ``norm`` if given (pre-LN needs one).

    ``torch.nn.TransformerEncoder``'s constructor and parameter names (``layers.0.``, ``norm.``). Like torch, it
    copies ``encoder_layer``, so every layer starts from the same weights until a model re-initialises them.
    """

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(encoder_layer, TransformerEncoderLayer):
            raise TypeError(f"encoder_layer must be a TransformerEncoderLayer, got {type(encoder_layer).__name__}")
        _check_count("num_layers", num_layers)
        self.layers = nn.ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self,
        src: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        caches: Sequence[KVCache | None] | None = None,
    ) -> tuple[torch.Tensor, tuple[KVCache, ...]]:
        """Every layer in turn.

        Args:
            src: (B, T, E).
            mask: as ``TransformerEncoderLayer``'s, the same for every layer.
            caches: one ``KVCache`` (or None) per layer, from a previous call; None: nothing read yet.

        Returns:
            ``(out, caches)``: out (B, T, E) and each layer's cache after these positions.
        """
        caches = _per_layer("caches", caches, self.num_layers)
        x, new_caches = src, []
        for layer, cache in zip(self.layers, caches, strict=True):
            x, cache = layer(x, mask, cache=cache)
            new_caches.append(cache)
        return (x if self.norm is None else self.norm(x)), tuple(new_caches)

    @classmethod
    def from_torch(cls, module: nn.TransformerEncoder) -> TransformerEncoder:
        """A copy of ``module`` (a ``torch.nn.TransformerEncoder``), its final norm included."""
        if not isinstance(module, nn.TransformerEncoder):
            raise TypeError(f"module must be a torch.nn.TransformerEncoder, got {type(module).__name__}")
        layer = TransformerEncoderLayer(**_torch_layer_arguments(module.layers[0]))
        return _copied(cls(layer, len(module.layers), _copied_norm(module.norm)), module)


class TransformerDecoder(nn.Module):
    """``num_layers`` copies of ``decoder_layer``, then ``norm`` if given: ``torch.nn.TransformerDecoder``'s
    constructor and parameter names."""

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(decoder_layer, TransformerDecoderLayer):
            raise TypeError(f"decoder_layer must be a TransformerDecoderLayer, got {type(decoder_layer).__name__}")
        _check_count("num_layers", num_layers)
        self.layers = nn.ModuleList(copy.deepcopy(decoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = norm

    def start(self, memory: torch.Tensor) -> tuple[DecoderLayerState, ...]:
        """The first state of every layer for the encoder output ``memory`` (B, S, E): its projected keys and values,
        no target positions yet."""
        return tuple(DecoderLayerState(cache=None, memory=layer.project_memory(memory)) for layer in self.layers)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        *,
        states: Sequence[DecoderLayerState] | None = None,
    ) -> tuple[torch.Tensor, tuple[DecoderLayerState, ...]]:
        """Every layer in turn.

        Args:
            tgt: (B, T, E).
            memory: (B, S, E) the encoder's output, or None when ``states`` (from ``start`` or a previous call)
                hold its projection.
            mask, memory_mask: as ``TransformerDecoderLayer``'s, the same for every layer.
            states: one ``DecoderLayerState`` per layer.

        Returns:
            ``(out, states)``: out (B, T, E) and every layer's state after these positions.
        """
        if (memory is None) == (states is None):
            raise ValueError("pass the encoder's memory (B, S, E) or the states of a previous call, exactly one")
        if states is None:
            states = self.start(memory)
        states = _per_layer("states", states, self.num_layers)
        x, new_states = tgt, []
        for layer, state in zip(self.layers, states, strict=True):
            x, state = layer(x, None, mask, memory_mask, state=state)
            new_states.append(state)
        return (x if self.norm is None else self.norm(x)), tuple(new_states)

    @classmethod
    def from_torch(cls, module: nn.TransformerDecoder) -> TransformerDecoder:
        """A copy of ``module`` (a ``torch.nn.TransformerDecoder``), its final norm included."""
        if not isinstance(module, nn.TransformerDecoder):
            raise TypeError(f"module must be a torch.nn.TransformerDecoder, got {type(module).__name__}")
        layer = TransformerDecoderLayer(**_torch_layer_arguments(module.layers[0]))
        return _copied(cls(layer, len(module.layers), _copied_norm(module.norm)), module)


# ---------------------------------------------------------------- the encoder-decoder model


@dataclass(frozen=True)
class TransformerState:
    """What the encoder-decoder ``Transformer`` carries between calls; ``Transformer.encode`` makes the first one.

    Attributes:
        memory: (B, S, E) the encoder's output.
        source_mask: (B, S) bool, True at the real source tokens.
        layers: one ``DecoderLayerState`` per decoder layer: its KV cache and the projected memory.
    """

    memory: torch.Tensor
    source_mask: torch.Tensor
    layers: tuple[DecoderLayerState, ...]

    @property
    def batch_size(self) -> int:
        """B, the number of sequences (or beams) the state holds."""
        return self.memory.shape[0]

    @property
    def length(self) -> int:
        """The number of target tokens read so far: the position of the next one."""
        return self.layers[0].length

    @property
    def weights(self) -> tuple[torch.Tensor, ...] | None:
        """Per decoder layer, the cross-attention weights (B, heads, T, S) of the positions the last call read;
        None on the fused path (``set_fused(model, False)`` computes them) or before the first call."""
        if any(layer.weights is None for layer in self.layers):
            return None
        return tuple(layer.weights for layer in self.layers)

    def select(self, indices: torch.Tensor) -> TransformerState:
        """The state of sequences ``indices`` (N,), in that order (repeats allowed, as beam search needs)."""
        return TransformerState(
            memory=self.memory.index_select(0, indices),
            source_mask=self.source_mask.index_select(0, indices),
            layers=tuple(layer.select(indices) for layer in self.layers),
        )


class Transformer(nn.Module):
    """The encoder-decoder Transformer over token ids, following the course's generation interface.

    ::

        source (B, S) --embed * sqrt(E) + positions--> encoder stack --> memory (B, S, E)
        prefix (B, T) --embed * sqrt(E) + positions--> decoder stack (causal, attends to memory) --linear--> (B, T, V)

    ``encode(source, lengths)`` returns the first ``TransformerState``; ``forward(ids, state)`` returns ``(logits,
    state)``, reading the whole gold prefix at once (teacher forcing) or one token after another (generation,
    through the KV cache); ``reorder_state(state, indices)`` follows the beams of a beam search.

    Initialisation as ``torch.nn.Transformer`` (Xavier-uniform on every matrix), embeddings from N(0, 1/E) so that
    ``sqrt(E)`` times them has unit-variance entries, like the sinusoid it is added to.

    Args:
        config: every size and choice (``TransformerConfig``).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        c = self.config = config
        self.vocab_size = c.target_vocab_size  # what it generates (decoders check prompts against it)
        self.max_length = c.max_length  # the longest prefix it can score (decoders check requests against it)
        self.source_embedding = nn.Embedding(c.source_vocab_size, c.d_model)
        self.target_embedding = nn.Embedding(c.target_vocab_size, c.d_model)
        self.source_positions = c.make_positions()
        self.target_positions = c.make_positions()
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = TransformerEncoder(
            TransformerEncoderLayer(**c.layer_arguments), c.num_encoder_layers, c.final_norm()
        )
        self.decoder = TransformerDecoder(
            TransformerDecoderLayer(**c.layer_arguments), c.num_decoder_layers, c.final_norm()
        )
        self.head = nn.Linear(c.d_model, c.target_vocab_size)  # scores every target token
        self.reset_parameters()
        if c.tie_embeddings:
            self.head.weight = self.target_embedding.weight  # (V, E): one matrix reads and writes the tokens

    def reset_parameters(self) -> None:
        """Xavier-uniform on every matrix (``torch.nn.Transformer``'s), N(0, 1/E) on the embeddings."""
        for name, parameter in self.named_parameters():
            if parameter.dim() > 1 and not name.endswith("embedding.weight"):
                nn.init.xavier_uniform_(parameter)
        for embedding in (self.source_embedding, self.target_embedding):
            nn.init.normal_(embedding.weight, std=self.config.d_model**-0.5)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        c = self.config
        return f"{'pre' if c.norm_first else 'post'}-LN, {c.positions} positions, tie_embeddings={c.tie_embeddings}"

    def _embed(self, ids: torch.Tensor, embedding: nn.Embedding, positions: nn.Module, offset: int) -> torch.Tensor:
        # The paper scales the embeddings by sqrt(E) before adding the positions.
        return self.dropout(positions(embedding(ids) * math.sqrt(self.config.d_model), offset))  # (B, T, E)

    def encode(self, source: torch.Tensor, lengths: torch.Tensor | None = None) -> TransformerState:
        """Read the source: ids (B, S) with real lengths (B,) (None: all S long) -> the decoder's first state.

        Raises ``PositionTableError`` if S exceeds ``config.max_length``.
        """
        check_ids(source, self.config.source_vocab_size, rank=2, layout="(batch, source_time)", name="source")
        lengths = check_lengths(lengths, source)
        mask = padding_mask(lengths, source.shape[1])  # (B, 1, S): no query may look at padding
        x = self._embed(source, self.source_embedding, self.source_positions, 0)  # (B, S, E)
        memory, _ = self.encoder(x, mask)  # (B, S, E)
        return TransformerState(memory=memory, source_mask=mask[:, 0], layers=self.decoder.start(memory))

    def forward(self, ids: torch.Tensor, state: TransformerState) -> tuple[torch.Tensor, TransformerState]:
        """Score the next target token after each position of ``ids``.

        Args:
            ids: (B, T) target ids, at positions ``state.length`` .. ``state.length + T - 1``: the whole gold
                prefix (teacher forcing) or the tokens generated since the last call.
            state: from ``encode``, or from the previous call to continue the same sequences.

        Returns:
            logits (B, T, V), where ``logits[b, t]`` scores the token after ``ids[b, : t + 1]`` (and everything
            read before), and the new state. Raises ``PositionTableError`` past ``config.max_length`` positions.
        """
        check_ids(ids, self.vocab_size, rank=2, layout="(batch, time)")
        if not isinstance(state, TransformerState):
            raise TypeError(
                f"state must be the TransformerState from model.encode(source, lengths), got {type(state).__name__}"
            )
        check_same_size("ids", ids, 0, "the state's batch", state.batch_size)
        offset, time = state.length, ids.shape[1]
        x = self._embed(ids, self.target_embedding, self.target_positions, offset)  # (B, T, E)
        # Each new position may attend to every earlier one (cached or new) and to itself, never to a later one.
        mask = causal_mask(time, offset + time, device=ids.device)  # (T, t + T)
        memory_mask = state.source_mask[:, None, :]  # (B, 1, S)
        out, layers = self.decoder(x, None, mask, memory_mask, states=state.layers)  # (B, T, E)
        return self.head(out), replace(state, layers=layers)  # (B, T, V)

    def reorder_state(self, state: TransformerState, indices: torch.Tensor) -> TransformerState:
        """The state of sequences ``indices`` (N,) of the batch, in that order, repeats allowed (the generator
        protocol of ``companion.decoding``: beam search follows its beams with it)."""
        if not isinstance(state, TransformerState):
            raise TypeError(f"state must be a TransformerState, got {type(state).__name__}")
        return state.select(check_indices(indices, state.batch_size))


# ---------------------------------------------------------------- generation without a cache, switches, measurements


@dataclass(frozen=True)
class PrefixState:
    """``NoCache``'s state: the model's own starting state (None, or an encoded source) and every id read so far."""

    start: object
    ids: torch.Tensor | None = None


class NoCache(nn.Module):
    """A generator that keeps no KV cache: every call reads the whole prefix again, from the model's starting state.

    The same interface as the model it wraps (``companion.decoding`` runs either), so generating with
    ``NoCache(model)`` and with ``model`` compares the cache with plain recomputation: the same tokens, and a cost
    per step that grows with the prefix instead of staying constant. ``encode`` is passed through.

    Args:
        model: a generator (``model(ids, state) -> (logits, state)``) whose ``forward`` accepts the state it starts
            from (None for a language model, ``model.encode(...)`` for an encoder-decoder).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.vocab_size = getattr(model, "vocab_size", None)
        self.max_length = getattr(model, "max_length", None)

    def encode(self, *args: object, **kwargs: object) -> PrefixState:
        """The wrapped model's ``encode``, as the start of a ``PrefixState``."""
        return PrefixState(start=self.model.encode(*args, **kwargs))

    def forward(self, ids: torch.Tensor, state: PrefixState | None = None) -> tuple[torch.Tensor, PrefixState]:
        """Read ``ids`` (B, T) after the prefix of ``state``: logits (B, T, V) for the new positions, and the state."""
        state = PrefixState(start=None) if state is None else state
        prefix = ids if state.ids is None else torch.cat([state.ids, ids], dim=1)  # (B, t + T)
        logits, _ = self.model(prefix, state.start)  # (B, t + T, V): everything again
        return logits[:, -ids.shape[1] :], PrefixState(start=state.start, ids=prefix)

    def reorder_state(self, state: PrefixState, indices: torch.Tensor) -> PrefixState:
        """Sequences ``indices`` (N,) of the state: its prefixes and the model's own starting state."""
        start = state.start if state.start is None else self.model.reorder_state(state.start, indices)
        ids = None if state.ids is None else state.ids.index_select(0, indices)
        return PrefixState(start=start, ids=ids)


def set_fused(model: nn.Module, fused: bool) -> nn.Module:
    """Switch every Transformer layer inside ``model`` to fused attention (True) or the scratch path (False).

    Both compute the same function (to float rounding); only the scratch path forms, and so can return, the
    attention weights. Returns ``model``.
    """
    if not isinstance(fused, bool):
        raise TypeError(f"fused must be a bool, got {type(fused).__name__}")
    for module in model.modules():
        if isinstance(module, TransformerEncoderLayer | TransformerDecoderLayer):
            module.fused = fused
    return model


def layer_gradient_norms(layers: Iterable[nn.Module]) -> list[float]:
    """The gradient norm of each layer's parameters, after a ``backward()``: ``[|dL/d theta_l|, ...]``.

    ``layers`` is e.g. ``model.encoder.layers``; a parameter without a gradient counts as zero. This is the
    measurement of Xiong et al. (2020): at initialisation a post-LN stack's gradients grow towards its last layers
    (its first layers' shrink with depth), a pre-LN stack's stay within a small factor of each other
    (``benchmarks/layer_norm_placement.py`` measures both).
    """
    norms = []
    for layer in layers:
        grads = [parameter.grad.detach().float() for parameter in layer.parameters() if parameter.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item() if grads else 0.0)
    return norms


def warmup_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, decay: str = "constant"
) -> torch.optim.lr_scheduler.LambdaLR:
    """A learning rate that rises linearly from 0 to the optimizer's over ``warmup_steps`` steps, then stays there
    (``decay="constant"``) or falls as ``1 / sqrt(step)`` (``"inverse_sqrt"``: the paper's schedule).

    The paper's peak learning rate is ``d_model ** -0.5 * warmup_steps ** -0.5`` (with ``warmup_steps = 4000``).
    ``warmup_steps = 0`` means no warm-up: the full rate from the first step. Step the scheduler after every
    optimizer step (the Trainer's ``scheduler`` does).
    """
    check_choice("decay", decay, ("constant", "inverse_sqrt"))
    if not isinstance(warmup_steps, int) or isinstance(warmup_steps, bool) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative int, got {warmup_steps!r}")

    def factor(step: int) -> float:
        # step counts the optimizer steps already taken, so the first step uses factor(0).
        n = step + 1
        rise = 1.0 if warmup_steps == 0 else min(1.0, n / warmup_steps)
        fall = 1.0 if decay == "constant" else math.sqrt(max(warmup_steps, 1) / max(n, warmup_steps))
        return rise * fall

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------- checks and plumbing


def check_lengths(lengths: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
    """The real length of every sequence of the padded ``ids`` (B, T): (B,) integers in [1, T] (None: all T)."""
    batch, time = ids.shape
    if lengths is None:
        return torch.full((batch,), time, dtype=torch.long, device=ids.device)
    check_rank("lengths", lengths, 1, "(batch,)")
    check_integer_dtype("lengths", lengths)
    check_same_size("lengths", lengths, 0, "the batch of ids", batch)
    if int(lengths.min()) < 1 or int(lengths.max()) > time:
        raise ValueError(f"lengths must lie in [1, {time}] (the padded length), got {lengths.tolist()[:8]}")
    return lengths.to(ids.device)


def check_indices(indices: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Sequence indices (N,) for ``reorder_state``: integers in [0, batch_size), repeats allowed."""
    check_rank("indices", indices, 1, "(N,)")
    check_integer_dtype("indices", indices)
    if len(indices) == 0:
        raise ValueError("indices is empty; expected at least one sequence to keep")
    if int(indices.min()) < 0 or int(indices.max()) >= batch_size:
        raise ValueError(f"indices must lie in [0, {batch_size}) (the state's batch), got {indices.tolist()[:8]}")
    return indices.long()


def _check_inputs(name: str, x: torch.Tensor, d_model: int, cache: KVCache | None = None) -> None:
    check_rank(name, x, 3, "(batch, time, d_model)")
    check_same_size(name, x, 2, "d_model", d_model)
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); expected at least one sequence")
    if cache is not None:
        if not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache, got {type(cache).__name__}")
        check_same_size(name, x, 0, "the cache's batch", cache.batch_size)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _per_layer(name: str, items: Sequence | None, num_layers: int) -> Sequence:
    if items is None:
        return (None,) * num_layers
    if len(items) != num_layers:
        raise ValueError(f"{name} must hold one entry per layer ({num_layers}), got {len(items)}")
    return items


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    check_choice("activation", name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name]


def _torch_layer_arguments(module: nn.TransformerEncoderLayer | nn.TransformerDecoderLayer) -> dict[str, object]:
    """Our constructor's arguments for a copy of torch's layer ``module``."""
    activation = module.activation
    names = {F.relu: "relu", F.gelu: "gelu"}
    if isinstance(activation, nn.ReLU):
        activation = F.relu
    if isinstance(activation, nn.GELU) and activation.approximate == "none":
        activation = F.gelu
    if activation not in names:
        raise ValueError(f"only relu and gelu activations can be copied, got {activation!r}")
    return {
        "d_model": module.self_attn.embed_dim,
        "nhead": module.self_attn.num_heads,
        "dim_feedforward": module.linear1.out_features,
        "dropout": module.dropout.p,
        "activation": names[activation],
        "layer_norm_eps": module.norm1.eps,
        "norm_first": module.norm_first,
        "bias": module.linear1.bias is not None,
    }


def _copied_norm(norm: nn.Module | None) -> nn.LayerNorm | None:
    if norm is None:
        return None
    if not isinstance(norm, nn.LayerNorm):
        raise TypeError(f"only a LayerNorm can close a copied stack, got {type(norm).__name__}")
    return nn.LayerNorm(norm.normalized_shape, eps=norm.eps, bias=norm.bias is not None)


def _copied(copy_: nn.Module, module: nn.Module) -> nn.Module:
    first = next(module.parameters())
    copy_.to(device=first.device, dtype=first.dtype)
    copy_.load_state_dict(module.state_dict())  # the same names, so one load_state_dict
    return copy_
