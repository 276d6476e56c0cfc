"""Attention in seq2seq (Chapter 7): Chapter 5's encoder-decoder with a score function in its attention slot.

``companion.seq2seq.Seq2Seq`` already takes an optional ``attention(query, key, value, mask) -> (out, weights)``
module and ``Seq2SeqConfig.attention_step`` says where it enters the decoder step; this module only builds the
right ``companion.attention`` score for a config, so that the two architectures of the chapter are::

    Bahdanau et al. 2015:  config(attention_step="before"),                      score "additive"
        s_{t-1} -> weights over h_1..h_S -> c_t;  s_t = GRU([y_{t-1}; c_t], s_{t-1})
    Luong et al. 2015:     config(attention_step="after", input_feeding=...),    score "dot" | "general" | "concat"
        s_t = GRU([y_{t-1}; h~_{t-1}], s_{t-1}) -> weights over h_1..h_S -> c_t;  h~_t = tanh(W_c [s_t; c_t])

with the scores (q is the decoder state, k an encoder output)::

    additive  w_v^T tanh(W_q q + W_k k)      dot  q^T k      general  q^T W_a k      concat  v_a^T tanh(W_a [q; k])

Without a score (``score=None``) the model is Chapter 5's, weight for weight. The weights of each decoder step come
back in the state (``state.weights``, (B, T, S)), never stored on a module; ``alignment`` collects them for the
tokens of a whole output in one teacher-forced call, which gives the same weights as generating step by step.
"""

from __future__ import annotations

import torch

from companion.attention import AdditiveAttention, Attention, ConcatAttention, DotProductAttention, GeneralAttention
from companion.checks import check_choice
from companion.seq2seq import Seq2Seq, Seq2SeqConfig

SCORES = ("additive", "dot", "general", "concat")


def score_attention(score: str, query_size: int, key_size: int, hidden_size: int | None = None) -> Attention:
    """The ``companion.attention`` module of a score function, sized for queries (.., Dq) and keys (.., Dk).

    Args:
        score: one of ``SCORES``. ``"dot"`` is Luong's, unscaled, and has no weights: it needs Dq == Dk.
        query_size: Dq, the decoder's hidden size.
        key_size: Dk, the length of each encoder output.
        hidden_size: the width of the additive and concat scoring networks (default: Dq).
    """
    check_choice("score", score, SCORES)
    hidden_size = hidden_size or query_size
    if score == "dot":
        if query_size != key_size:
            raise ValueError(
                f"score='dot' compares the decoder state (size {query_size}) with encoder outputs of size {key_size}: "
                "they must be equal (a bidirectional encoder doubles the outputs); use 'general', which learns the map"
            )
        return DotProductAttention(scaled=False)
    if score == "general":
        return GeneralAttention(query_size, key_size)
    if score == "concat":
        return ConcatAttention(query_size, key_size, hidden_size)
    return AdditiveAttention(query_size, key_size, hidden_size)


def attention_seq2seq(config: Seq2SeqConfig, score: str | None) -> Seq2Seq:
    """A ``Seq2Seq`` with the attention of ``score`` (``SCORES``) in its slot, or Chapter 5's model for None.

    Where attention enters the decoder step and whether Luong's input feeding is on are ``config``'s
    ``attention_step`` and ``input_feeding``. The score module is built before the model, so with the same seed
    ``attention_seq2seq(config, None)`` and ``Seq2Seq(config)`` draw the same weights.
    """
    if not isinstance(config, Seq2SeqConfig):
        raise TypeError(f"config must be a Seq2SeqConfig, got {type(config).__name__}")
    if score is None:
        return Seq2Seq(config)
    return Seq2Seq(config, score_attention(score, config.hidden_size, config.memory_size))


def alignment(model: Seq2Seq, source: torch.Tensor, lengths: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """Where the decoder looked: attention weights (B, T, S) for each position of ``prefix`` (B, T).

    ``prefix`` is the start token followed by the output tokens (a reference, or a decoded output); row ``t`` of
    ``weights[b]`` is the distribution over source positions the decoder used to write the token after
    ``prefix[b, : t + 1]``. It is zero at padded source positions. Computed without gradients, in eval mode.
    """
    if not isinstance(model, Seq2Seq) or model.decoder.attention is None:
        raise ValueError("model must be a Seq2Seq with an attention module (attention_seq2seq(config, score))")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, state = model(prefix, model.encode(source, lengths))
    finally:
        model.train(was_training)
    return state.weights  # (B, T, S)
