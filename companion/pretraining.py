"""Pre-training a Transformer on plain text, the two ways of Chapter 11: one stack of layers, two masks, two tasks.

* ``GPT`` (Radford et al. 2018, 2019), decoder-only: a causal mask lets position t read positions 0 .. t only, and
  the model predicts the next token everywhere at once. Generating, its KV cache is the state it carries
  (``companion.transformer.KVCache``), and its positions are read at the cache's offset, so a step costs one
  position's work and a sequence longer than the position table raises ``PositionTableError``.
* ``BERT`` (Devlin et al. 2019), encoder-only: no causal mask, every position reads both sides (padding aside), so
  predicting a token it can see would be trivial; instead ``mask_tokens`` hides 15 % of the positions (of those,
  80 % become ``[MASK]``, 10 % a random token, 10 % stay) and ``masked_lm_loss`` scores only those.

Both are ``TransformerLanguageModel``::

    ids (B, T) --token embedding + learned positions--> TransformerEncoder (a stack of companion.transformer
    layers; causal mask for GPT, padding mask for BERT) --> linear head, tied to the embedding --> logits (B, T, V)

with one ``LanguageModelConfig`` and GPT-2's initialisation. The original BERT placed its LayerNorms after the
sublayers (``norm_first=False``); GPT-2 before them, the default here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from companion.checks import check_rank, check_same_size, check_tensor
from companion.language_models import check_ids
from companion.masks import causal_mask, combine_masks, padding_mask
from companion.transformer import (
    BlockConfig,
    KVCache,
    TransformerEncoder,
    TransformerEncoderLayer,
    _check_count,
    check_indices,
    check_lengths,
)

IGNORE_INDEX = -100  # the label of a position the loss skips (torch's cross_entropy default)


@dataclass(frozen=True, kw_only=True)
class LanguageModelConfig(BlockConfig):
    """Every size and choice of a ``GPT`` or ``BERT`` (the fields of ``companion.transformer.BlockConfig`` and these).

    Args:
        vocab_size: V, ids ``0 .. V - 1`` (for BERT, the ``[MASK]`` id included).
        num_layers: Transformer layers in the stack.
        max_length: the position table's size: the longest sequence the model reads, prompt and generated
            tokens together.
        activation: ``"gelu"`` (GPT, BERT) or ``"relu"``.
        positions: ``"learned"`` (GPT, BERT) or ``"sinusoidal"``.

    GPT-2 small is ``LanguageModelConfig(vocab_size=50257, d_model=768, nhead=12, num_layers=12, max_length=1024,
    dropout=0.1)``; BERT-base has the same sizes with ``max_length=512, norm_first=False``.
    """

    vocab_size: int
    num_layers: int = 2
    max_length: int = 128
    activation: str = "gelu"
    positions: str = "learned"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_count("vocab_size", self.vocab_size)
        _check_count("num_layers", self.num_layers)


class TransformerLanguageModel(nn.Module):
    """What GPT and BERT share: token embedding + positions -> a ``TransformerEncoder`` stack -> a linear head.

    Initialised as GPT-2: every weight matrix and embedding from N(0, 0.02), zero biases, and the two projections
    that write into the residual stream (attention's ``out_proj``, the feed-forward block's ``linear2``) from
    N(0, 0.02 / sqrt(2 L)), so that the residual stream's variance does not grow with the number of layers L.

    Args:
        config: the sizes (``LanguageModelConfig``).
    """

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        if not isinstance(config, LanguageModelConfig):
            raise TypeError(f"config must be a LanguageModelConfig, got {type(config).__name__}")
        c = self.config = config
        self.vocab_size = c.vocab_size
        self.max_length = c.max_length  # the longest sequence it can score (decoders check requests against it)
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = c.make_positions()
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = TransformerEncoder(TransformerEncoderLayer(**c.layer_arguments), c.num_layers, c.final_norm())
        self.head = nn.Linear(c.d_model, c.vocab_size)  # scores every token of the vocabulary
        self.reset_parameters()
        if c.tie_embeddings:
            self.head.weight = self.token_embedding.weight  # (V, E): one matrix reads and writes the tokens

    def reset_parameters(self) -> None:
        """GPT-2's initialisation (see the class docstring)."""
        residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
        for name, parameter in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(parameter)
            elif name.endswith(("out_proj.weight", "linear2.weight")):
                nn.init.normal_(parameter, std=residual_std)
            elif parameter.dim() > 1:
                nn.init.normal_(parameter, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.LayerNorm) and module.weight is not None:
                nn.init.ones_(module.weight)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        c = self.config
        return f"vocab_size={c.vocab_size}, {'pre' if c.norm_first else 'post'}-LN, {c.positions} positions"

    def embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Token vectors plus the positions ``offset .. offset + T - 1``: ids (B, T) -> (B, T, E)."""
        return self.dropout(self.positions(self.token_embedding(ids), offset))  # (B, T, E)


@dataclass(frozen=True)
class GPTState:
    """A GPT's generation state: every layer's KV cache of the positions read so far.

    Attributes:
        caches: one ``KVCache`` per layer, keys and values (B, heads, t, d).
    """

    caches: tuple[KVCache, ...]

    @property
    def length(self) -> int:
        """t, the number of positions read: the position of the next token."""
        return self.caches[0].length

    @property
    def batch_size(self) -> int:
        """B, the number of sequences."""
        return self.caches[0].batch_size

    def select(self, indices: torch.Tensor) -> GPTState:
        """The state of sequences ``indices`` (N,), in that order (repeats allowed)."""
        return GPTState(tuple(cache.select(indices) for cache in self.caches))


class GPT(TransformerLanguageModel):
    """A decoder-only Transformer language model: each position predicts the next token from those up to itself.

    A generator in the course's sense (``companion.decoding``): ``model(ids, state) -> (logits, state)``, where the
    state is the KV cache, so ``decode``, ``sample``, greedy and beam search run on it unchanged; training calls
    ``model(inputs)`` and ignores the state (``companion.language_models.next_token_loss`` works as it is).
    """

    def forward(self, ids: torch.Tensor, state: GPTState | None = None) -> tuple[torch.Tensor, GPTState]:
        """Score the next token after every position.

        Args:
            ids: (B, T) ids at positions t .. t + T - 1, where t = ``state.length`` (0 without a state).
            state: the cache of the t positions before, from the previous call; None to start a new sequence.

        Returns:
            logits (B, T, V), where ``logits[b, i]`` scores the token after ``ids[b, : i + 1]`` (and everything read
            before), and the state after these positions. Raises ``PositionTableError`` past ``max_length``.
        """
        check_ids(ids, self.vocab_size, rank=2, layout="(batch, time)")
        if state is not None and not isinstance(state, GPTState):
            raise TypeError(f"state must be a GPTState from a previous call, or None, got {type(state).__name__}")
        if state is not None:
            check_same_size("ids", ids, 0, "the state's batch", state.batch_size)
        offset, time = (0 if state is None else state.length), ids.shape[1]
        x = self.embed(ids, offset)  # (B, T, E): raises PositionTableError past the table
        # A new position reads every cached one and the new ones up to itself, never a later one.
        mask = causal_mask(time, offset + time, device=ids.device)  # (T, t + T)
        hidden, caches = self.encoder(x, mask, caches=None if state is None else state.caches)  # (B, T, E)
        return self.head(hidden), GPTState(caches)  # (B, T, V)

    def reorder_state(self, state: GPTState, indices: torch.Tensor) -> GPTState:
        """The state of sequences ``indices`` (N,) of the batch, in that order, repeats allowed (beam search)."""
        if not isinstance(state, GPTState):
            raise TypeError(f"state must be a GPTState, got {type(state).__name__}")
        return state.select(check_indices(indices, state.batch_size))


class BERT(TransformerLanguageModel):
    """An encoder-only Transformer: every position reads the whole (unpadded) sequence, both sides of itself.

    Trained as a masked language model (``mask_tokens``, ``masked_lm_loss``); ``features`` gives the hidden states
    for a downstream task.
    """

    def features(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's hidden states: ids (B, T) with real lengths (B,) (None: all T) -> (B, T, E)."""
        check_ids(ids, self.vocab_size, rank=2, layout="(batch, time)")
        lengths = check_lengths(lengths, ids)
        hidden, _ = self.encoder(self.embed(ids), padding_mask(lengths, ids.shape[1]))  # (B, T, E)
        return hidden

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Scores for the token at every position: ids (B, T), lengths (B,) -> logits (B, T, V)."""
        return self.head(self.features(ids, lengths))  # (B, T, V)


@dataclass(frozen=True)
class MaskedTokens:
    """A batch for masked-LM training, from ``mask_tokens``.

    Attributes:
        inputs: (B, T) the ids the model reads: the originals, with the chosen positions masked or replaced.
        labels: (B, T) the original id at every chosen position, ``IGNORE_INDEX`` (-100) elsewhere.
        lengths: (B,) the real lengths, or None (every sequence fills the batch).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    lengths: torch.Tensor | None = None

    @property
    def chosen(self) -> torch.Tensor:
        """(B, T) bool, the positions the loss reads."""
        return self.labels != IGNORE_INDEX


def mask_tokens(
    ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    *,
    lengths: torch.Tensor | None = None,
    maskable: torch.Tensor | None = None,
    special_ids: Sequence[int] = (),
    rate: float = 0.15,
    generator: torch.Generator | None = None,
) -> MaskedTokens:
    """BERT's masking rule: choose ``rate`` of the positions, then mask 80 % of them, replace 10 %, keep 10 %.

    In each sequence, ``max(1, round(rate * n))`` of its n maskable positions are chosen uniformly without
    replacement (padding is never chosen, nor a position where ``maskable`` is False). Each chosen position
    independently becomes ``mask_id`` with probability 0.8, a token drawn uniformly from the vocabulary
    (``mask_id`` and ``special_ids`` excepted) with probability 0.1, or keeps its token (0.1): the model cannot
    tell which positions it will be scored on, nor trust that an unmasked token is right.

    Args:
        ids: (B, T) the original ids.
        mask_id: the ``[MASK]`` token's id.
        vocab_size: V; random replacements are drawn from ``0 .. V - 1``.
        lengths: (B,) real lengths (None: all T).
        maskable: (B, T) bool, False at positions never to choose (a start token, say).
        special_ids: ids never drawn as random replacements (padding, unknown).
        rate: the share of positions to choose.
        generator: a ``torch.Generator`` for reproducible draws (on the CPU).

    Returns:
        ``MaskedTokens(inputs, labels, lengths)``.
    """
    check_ids(ids, vocab_size, rank=2, layout="(batch, time)")
    lengths_given = lengths
    lengths = check_lengths(lengths, ids)
    if not 0 < rate < 1:
        raise ValueError(f"rate must lie in (0, 1), got {rate!r}")
    allowed = [token for token in range(vocab_size) if token != mask_id and token not in set(special_ids)]
    if not 0 <= mask_id < vocab_size or not allowed:
        raise ValueError(f"mask_id {mask_id} must be an id in [0, {vocab_size}) and leave some ids to draw from")
    candidates = padding_mask(lengths, ids.shape[1])[:, 0]  # (B, T): never padding
    if maskable is not None:
        check_tensor("maskable", maskable)
        if maskable.dtype != torch.bool or maskable.shape != ids.shape:
            raise ValueError(
                f"maskable must be bool of ids' shape {tuple(ids.shape)}, got {maskable.dtype} {tuple(maskable.shape)}"
            )
        candidates = combine_masks(candidates, maskable.to(ids.device))
    batch, time = ids.shape

    def uniform() -> torch.Tensor:
        return torch.rand(batch, time, generator=generator).to(ids.device)  # (B, T) in [0, 1)

    # Choose k_b positions per sequence: the k_b smallest random keys among its candidates.
    count = candidates.sum(1)  # (B,)
    k = torch.where(count > 0, torch.round(rate * count.double()).clamp(min=1), 0)  # (B,), as Python rounds
    keys = uniform().masked_fill(~candidates, 2.0)  # (B, T): non-candidates sort last
    ranks = keys.argsort(dim=1).argsort(dim=1)  # (B, T): each position's place in its sequence's order
    chosen = ranks < k[:, None]  # (B, T)
    # Then, for each chosen position: [MASK] (80 %), a random token (10 %) or itself (10 %).
    fate = uniform()  # (B, T)
    to_mask = chosen & (fate < 0.8)
    to_random = chosen & (fate >= 0.9)
    pool = torch.tensor(allowed, device=ids.device)
    random_ids = pool[torch.randint(len(allowed), (batch, time), generator=generator).to(ids.device)]  # (B, T)
    inputs = torch.where(to_mask, mask_id, torch.where(to_random, random_ids, ids))
    labels = torch.where(chosen, ids, IGNORE_INDEX)
    return MaskedTokens(inputs=inputs, labels=labels, lengths=lengths_given)


def masked_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the chosen positions only (labels != ``IGNORE_INDEX``): logits (B, T, V), labels (B, T).

    Nothing else enters: the logits at the other positions get no gradient.
    """
    check_rank("logits", logits, 3, "(batch, time, vocab)")
    check_rank("labels", labels, 2, "(batch, time)")
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits (B, T, V) {tuple(logits.shape)} and labels (B, T) {tuple(labels.shape)} disagree")
    if not (labels != IGNORE_INDEX).any():
        raise ValueError("labels choose no position (every label is IGNORE_INDEX); nothing to score")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def masked_lm_loss(model: nn.Module, batch: MaskedTokens) -> torch.Tensor:
    """The ``loss_fn`` for ``Trainer``: ``masked_token_loss`` of ``model(batch.inputs, batch.lengths)``."""
    return masked_token_loss(model(batch.inputs, batch.lengths), batch.labels)
