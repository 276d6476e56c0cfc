"""companion.seq2seq: shapes, padding, teacher forcing in one call, state carrying and reordering, the loss that
ignores padding, the attention slot (each placement, step by step and whole prefix), any recurrent layer, errors."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from companion.recurrent_cells import RNN
from companion.seq2seq import (
    Seq2Seq,
    Seq2SeqConfig,
    Seq2SeqState,
    fused_recurrent,
    run_recurrent,
    sequence_loss,
    teacher_forcing_loss,
)

SOURCE_V, TARGET_V = 11, 9


def config(**choices):
    return Seq2SeqConfig(SOURCE_V, TARGET_V, **({"embedding_dim": 6, "hidden_size": 8} | choices))


def model_with(seed=0, attention=None, **choices):
    torch.manual_seed(seed)
    return Seq2Seq(config(**choices), attention).eval()


class DotAttention(nn.Module):
    """The attention interface of COURSE.md section 3, as simply as possible (Chapter 7 writes the real ones)."""

    def forward(self, query, key, value, mask):
        scores = query @ key.transpose(1, 2) / math.sqrt(key.shape[-1])  # (B, Tq, S)
        weights = torch.softmax(scores.masked_fill(~mask, -math.inf), dim=-1)
        return weights @ value, weights  # (B, Tq, Hv), (B, Tq, S)


def padded_sources(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    source = torch.randint(1, SOURCE_V, (len(lengths), int(lengths.max())), generator=g)
    source[torch.arange(source.shape[1])[None, :] >= lengths[:, None]] = 0  # padding id 0
    return source, lengths


def targets(batch, time, seed=1):
    return torch.randint(1, TARGET_V, (batch, time), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- shapes and the state


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_shapes_of_the_state_and_the_logits(cell):
    model = model_with(cell=cell, num_layers=2)
    source, lengths = padded_sources([5, 3, 1])
    state = model.encode(source, lengths)
    assert isinstance(state, Seq2SeqState)
    assert state.memory.shape == (3, 5, 8)
    assert state.source_mask.dtype == torch.bool
    assert state.source_mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4]
    parts = state.hidden if cell == "lstm" else (state.hidden,)
    assert all(part.shape == (2, 3, 8) for part in parts)  # torch's layout (layers, B, H)
    logits, after = model(targets(3, 4), state)
    assert logits.shape == (3, 4, TARGET_V)
    assert isinstance(after, Seq2SeqState)
    assert after.weights is None  # no attention, no weights


@pytest.mark.parametrize("hidden_size", [4, 16, 48])
def test_the_context_vector_is_as_long_as_the_hidden_size(hidden_size):
    model = model_with(hidden_size=hidden_size)
    state = model.encode(*padded_sources([4, 2]))
    assert state.context.shape == (2, hidden_size)
    torch.testing.assert_close(state.context, state.hidden[-1])  # the encoder's last state


def test_memory_is_zero_past_each_length_and_padding_changes_nothing():
    model = model_with()
    source, lengths = padded_sources([6, 2, 4])
    state = model.encode(source, lengths)
    assert (state.memory[1, 2:] == 0).all()
    assert (state.memory[2, 4:] == 0).all()
    noisy = source.clone()
    noisy[~state.source_mask] = 7  # other ids where the padding is: the lengths say to ignore them
    again = model.encode(noisy, lengths)
    torch.testing.assert_close(again.hidden, state.hidden)
    torch.testing.assert_close(again.memory, state.memory)


@given(st.lists(st.integers(1, 7), min_size=1, max_size=5), st.integers(0, 100))
def test_a_padded_batch_encodes_each_sequence_as_if_alone(lengths, seed):
    model = model_with(seed % 3)
    source, lengths_t = padded_sources(lengths, seed)
    state = model.encode(source, lengths_t)
    for b, length in enumerate(lengths):
        alone = model.encode(source[b : b + 1, :length])
        torch.testing.assert_close(alone.hidden[:, 0], state.hidden[:, b], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone.memory[0], state.memory[b, :length], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", [None, "after", "before", "feeding"])
def test_teacher_forcing_in_one_call_equals_one_token_at_a_time(attention):
    choices = {"attention_step": "before"} if attention == "before" else {}
    if attention == "feeding":
        choices = {"input_feeding": True}
    model = model_with(attention=DotAttention() if attention else None, **choices)
    source, lengths = padded_sources([5, 2, 3])
    prefix = targets(3, 6)
    whole, _ = model(prefix, model.encode(source, lengths))
    state, pieces = model.encode(source, lengths), []
    for t in range(prefix.shape[1]):
        step, state = model(prefix[:, t : t + 1], state)
        pieces.append(step)
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, atol=1e-5, rtol=1e-5)


def test_the_plain_decoder_runs_the_fused_layer_once_over_the_prefix():
    model = model_with()
    calls = []
    model.decoder.rnn.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape))
    model(targets(2, 7), model.encode(*padded_sources([3, 3])))
    assert calls == [(2, 7, 6 + 8)]  # every step reads its token's embedding and the context vector


def test_reorder_state_picks_and_repeats_sequences():
    for cell in ("gru", "lstm"):
        model = model_with(cell=cell, attention=DotAttention(), input_feeding=True)
        source, lengths = padded_sources([4, 2, 3])
        state = model.encode(source, lengths)
        _, state = model(targets(3, 2), state)  # some steps in: feed and weights are set too
        indices = torch.tensor([2, 0, 0])
        picked = model.reorder_state(state, indices)
        _, direct = model(targets(3, 2)[indices], model.encode(source[indices], lengths[indices]))
        for got, want in ((picked.memory, direct.memory), (picked.feed, direct.feed), (picked.weights, direct.weights)):
            torch.testing.assert_close(got, want)
        torch.testing.assert_close(picked.hidden, direct.hidden)
        assert picked.source_mask.tolist() == direct.source_mask.tolist()


# ---------------------------------------------------------------- attention


@pytest.mark.parametrize(
    "choices", [{}, {"attention_step": "before"}, {"input_feeding": True}, {"bidirectional": True}]
)
def test_attention_weights_are_a_distribution_over_real_source_tokens(choices):
    attention = DotAttention() if not choices.get("bidirectional") else None
    model = model_with(attention=attention, **choices)
    source, lengths = padded_sources([5, 2])
    logits, state = model(targets(2, 3), model.encode(source, lengths))
    if attention is None:  # bidirectional, plain: memory of 2H and a bridge into the decoder
        assert state.memory.shape == (2, 5, 16)
        assert state.hidden.shape == (1, 2, 8)
        return
    assert state.weights.shape == (2, 3, 5)
    torch.testing.assert_close(state.weights.sum(-1), torch.ones(2, 3))
    assert (state.weights[1, :, 2:] == 0).all(), "attention looked at padding"
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_the_plain_and_attention_models_differ_only_in_attention_and_its_combination():
    plain, attending = model_with(), model_with(attention=DotAttention())
    extra = set(dict(attending.named_parameters())) - set(dict(plain.named_parameters()))
    assert extra == {"decoder.combine.weight", "decoder.combine.bias"}


# ---------------------------------------------------------------- any recurrent layer


def test_run_recurrent_packs_a_fused_layer_and_calls_others_with_lengths():
    torch.manual_seed(3)
    fused = nn.RNN(4, 5, batch_first=True)
    scratch = RNN.from_torch(fused)
    inputs = torch.randn(3, 6, 4)
    lengths = torch.tensor([6, 2, 4])
    out_fused, h_fused = run_recurrent(fused, inputs, None, lengths)
    out_scratch, h_scratch = run_recurrent(scratch, inputs, None, lengths)
    torch.testing.assert_close(out_fused, out_scratch, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_fused, h_scratch, atol=1e-5, rtol=1e-5)
    assert (out_fused[1, 2:] == 0).all()


def test_a_from_scratch_layer_plugs_in_without_change():
    fused_model = model_with(cell="rnn")
    scratch_model = Seq2Seq(
        config(cell="rnn"),
        encoder_rnn=RNN.from_torch(fused_model.encoder.rnn),
        decoder_rnn=RNN.from_torch(fused_model.decoder.rnn),
    )
    # The recurrent layers carry their weights already (from_torch); copy the rest.
    rest = {name: value for name, value in fused_model.state_dict().items() if ".rnn." not in name}
    assert not scratch_model.load_state_dict(rest, strict=False).unexpected_keys
    source, lengths = padded_sources([4, 1, 3])
    prefix = targets(3, 5)
    want, _ = fused_model(prefix, fused_model.encode(source, lengths))
    got, _ = scratch_model(prefix, scratch_model.encode(source, lengths))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- the loss


def test_sequence_loss_is_the_mean_over_real_tokens_only():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 4, TARGET_V, generator=g)
    labels = torch.randint(0, TARGET_V, (2, 4), generator=g)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    real = torch.nn.functional.cross_entropy(logits[mask], labels[mask])
    torch.testing.assert_close(sequence_loss(logits, labels, mask), real)
    scrambled = logits.clone()
    scrambled[~mask] = 100 * torch.randn(int((~mask).sum()), TARGET_V, generator=g)
    torch.testing.assert_close(sequence_loss(scrambled, labels, mask), real)


@given(st.lists(st.integers(2, 6), min_size=1, max_size=4), st.integers(0, 4))
def test_teacher_forcing_loss_ignores_extra_padding(target_lengths, extra):
    model = model_with()
    batch_size = len(target_lengths)
    source, source_lengths = padded_sources([3] * batch_size)
    lengths = torch.tensor(target_lengths)
    target = targets(batch_size, int(lengths.max()) + extra, seed=2)
    target[torch.arange(target.shape[1])[None, :] >= lengths[:, None]] = 0

    class Batch:
        pass

    tight, wide = Batch(), Batch()
    for batch, width in ((tight, int(lengths.max())), (wide, target.shape[1])):
        batch.source, batch.source_lengths, batch.target_lengths = source, source_lengths, lengths
        batch.target = target[:, :width]
    torch.testing.assert_close(teacher_forcing_loss(model, tight), teacher_forcing_loss(model, wide))


# ---------------------------------------------------------------- errors


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="hidden_size must be a positive int, got 0"):
        config(hidden_size=0)
    with pytest.raises(ValueError, match="cell must be one of"):
        config(cell="transformer")
    with pytest.raises(ValueError, match="attention_step must be one of"):
        config(attention_step="during")
    with pytest.raises(ValueError, match="input_feeding is Luong's"):
        config(attention_step="before", input_feeding=True)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        config(dropout=1.0)
    with pytest.raises(TypeError, match="config must be a Seq2SeqConfig"):
        Seq2Seq({"hidden_size": 8})


def test_bad_inputs_are_named():
    model = model_with()
    source, lengths = padded_sources([3, 2])
    with pytest.raises(ValueError, match=r"source holds ids \[11\] outside the vocabulary \[0, 11\)"):
        model.encode(torch.tensor([[1, 11]]))
    with pytest.raises(ValueError, match="source must have 2 dimensions"):
        model.encode(source[0])
    with pytest.raises(ValueError, match="lengths must lie between 1 and source's time dimension 3"):
        model.encode(source, torch.tensor([4, 2]))
    with pytest.raises(ValueError, match="lengths has size 3 in dimension 0"):
        model.encode(source, torch.tensor([3, 2, 1]))
    state = model.encode(source, lengths)
    with pytest.raises(ValueError, match=r"ids holds ids \[9\] outside the vocabulary \[0, 9\)"):
        model(torch.tensor([[9], [1]]), state)
    with pytest.raises(ValueError, match=r"ids has size 3 in dimension 0 .* but the state's batch has size 2"):
        model(targets(3, 1), state)
    with pytest.raises(TypeError, match=r"state must be the Seq2SeqState from model\.encode"):
        model(targets(2, 1), None)
    with pytest.raises(ValueError, match="mask must be bool"):
        sequence_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2))
    with pytest.raises(ValueError, match="mask selects no token"):
        sequence_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.bool))


def test_a_layer_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match=r"encoder_rnn\.hidden_size is 5, but the model needs 8"):
        Seq2Seq(config(), encoder_rnn=fused_recurrent("gru", 6, 5))
    with pytest.raises(ValueError, match=r"decoder_rnn\.input_size is 6, but the model needs 14"):
        Seq2Seq(config(attention_step="before"), DotAttention(), decoder_rnn=fused_recurrent("gru", 6, 8))
    with pytest.raises(ValueError, match="must be batch-first"):
        Seq2Seq(config(), encoder_rnn=nn.GRU(6, 8))


def test_reordering_shares_the_encoder_outputs_instead_of_copying_them():
    model = model_with()
    state = model.encode(*padded_sources([4, 2]))
    picked = model.reorder_state(model.reorder_state(state, torch.tensor([1, 1, 0])), torch.tensor([2, 0]))
    assert picked.encoder_outputs is state.encoder_outputs
    assert picked.rows.tolist() == [0, 1]
    torch.testing.assert_close(picked.memory, state.memory)
    assert picked.batch_size == 2


def test_where_the_context_enters_the_decoder():
    every_step, start_only = model_with(), model_with(feed_context=False)
    assert every_step.decoder.rnn.input_size == 6 + 8  # the embedding and the context vector
    assert start_only.decoder.rnn.input_size == 6
    source, lengths = padded_sources([4, 3])
    prefix = targets(2, 3)
    state = every_step.encode(source, lengths)
    changed = Seq2SeqState(state.hidden, torch.zeros_like(state.context), state.encoder_outputs, state.encoder_mask)
    with torch.no_grad():
        assert not torch.allclose(every_step(prefix, state)[0], every_step(prefix, changed)[0])
        plain_state = start_only.encode(source, lengths)
        blank = Seq2SeqState(
            plain_state.hidden,
            torch.zeros_like(plain_state.context),
            plain_state.encoder_outputs,
            plain_state.encoder_mask,
        )
        torch.testing.assert_close(start_only(prefix, plain_state)[0], start_only(prefix, blank)[0])


def test_a_bidirectional_context_joins_both_directions():
    model = model_with(bidirectional=True)
    state = model.encode(*padded_sources([5, 2]))
    assert state.context.shape == (2, 16)
    assert model.decoder.rnn.input_size == 6 + 16
