"""companion.attention_seq2seq: Chapter 5's model when there is no score, attention that never reads padding,
alignments equal to the weights of step-by-step generation, beam search with attention, named errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.attention import AdditiveAttention, ConcatAttention, DotProductAttention, GeneralAttention
from companion.attention_seq2seq import alignment, attention_seq2seq, score_attention
from companion.decoding import beam_search, greedy
from companion.seq2seq import Seq2Seq, Seq2SeqConfig

SOURCE_V, TARGET_V, END = 11, 9, 2
# Bahdanau, and Luong with each score, with and without input feeding.
ARCHITECTURES = [
    ("additive", {"attention_step": "before"}),
    ("dot", {}),
    ("general", {}),
    ("concat", {}),
    ("general", {"input_feeding": True}),
    ("dot", {"input_feeding": True}),
]


def config(**choices):
    return Seq2SeqConfig(SOURCE_V, TARGET_V, **({"embedding_dim": 6, "hidden_size": 8} | choices))


def model_with(score, seed=0, **choices):
    torch.manual_seed(seed)
    return attention_seq2seq(config(**choices), score).eval()


def padded_sources(lengths, seed=0, extra=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    source = torch.randint(1, SOURCE_V, (len(lengths), int(lengths.max()) + extra), generator=g)
    source[torch.arange(source.shape[1])[None, :] >= lengths[:, None]] = 0  # padding id 0
    return source, lengths


def prefixes(batch, time, seed=1):
    return torch.randint(1, TARGET_V, (batch, time), generator=torch.Generator().manual_seed(seed))


def test_without_a_score_it_is_chapter_5s_model_weight_for_weight():
    torch.manual_seed(4)
    chapter5 = Seq2Seq(config()).eval()
    plain = model_with(None, seed=4)
    assert plain.decoder.attention is None
    assert plain.state_dict().keys() == chapter5.state_dict().keys()
    for name, tensor in chapter5.state_dict().items():
        assert torch.equal(plain.state_dict()[name], tensor), name
    source, lengths = padded_sources([4, 2])
    torch.testing.assert_close(
        plain(prefixes(2, 5), plain.encode(source, lengths))[0],
        chapter5(prefixes(2, 5), chapter5.encode(source, lengths))[0],
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize(
    ("score", "kind"),
    [
        ("additive", AdditiveAttention),
        ("dot", DotProductAttention),
        ("general", GeneralAttention),
        ("concat", ConcatAttention),
    ],
)
def test_each_score_is_the_attention_module_of_its_name(score, kind):
    module = score_attention(score, 8, 8)
    assert type(module) is kind
    if score == "dot":
        assert module.scaled is False, "Luong's dot score is not scaled"


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(range(len(ARCHITECTURES))),
    st.lists(st.integers(1, 6), min_size=1, max_size=4),
    st.integers(0, 3),
    st.integers(0, 1000),
)
def test_attention_never_reads_padding(architecture, lengths, extra, seed):
    score, choices = ARCHITECTURES[architecture]
    model = model_with(score, seed=seed % 5, **choices)
    source, lengths = padded_sources(lengths, seed=seed, extra=extra)
    prefix = prefixes(len(lengths), 4, seed=seed)
    clean = model.encode(source, lengths)
    logits, state = model(prefix, clean)
    # Garbage in the encoder's outputs at padded positions changes nothing, and gets weight exactly zero.
    padded = ~clean.encoder_mask
    noisy = clean.select(torch.arange(len(lengths)))
    noisy.encoder_outputs = clean.encoder_outputs.masked_fill(padded[..., None], 1e4)
    noisy_logits, _ = model(prefix, noisy)
    torch.testing.assert_close(noisy_logits, logits, rtol=0, atol=0)
    assert (state.weights.masked_select(padded[:, None, :].expand_as(state.weights)) == 0).all()
    torch.testing.assert_close(state.weights.sum(-1), torch.ones(len(lengths), 4))
    # Each sequence in the padded batch reads as if it were alone, unpadded.
    for b, length in enumerate(lengths.tolist()):
        alone, alone_state = model(prefix[b : b + 1], model.encode(source[b : b + 1, :length]))
        torch.testing.assert_close(alone, logits[b : b + 1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone_state.weights[0], state.weights[b, :, :length], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("score", "choices"), ARCHITECTURES)
def test_the_alignment_is_the_weights_of_generating_step_by_step(score, choices):
    model = model_with(score, **choices)
    source, lengths = padded_sources([5, 3, 4])
    prefix = prefixes(3, 6)
    state, steps = model.encode(source, lengths), []
    for t in range(prefix.shape[1]):
        _, state = model(prefix[:, t : t + 1], state)
        steps.append(state.weights)  # (B, 1, S): returned with each step's state
    torch.testing.assert_close(alignment(model, source, lengths, prefix), torch.cat(steps, 1), atol=1e-6, rtol=1e-5)
    assert not any(name.startswith("weights") for name in vars(model.decoder.attention)), "weights stored"


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(range(len(ARCHITECTURES))), st.integers(0, 1000), st.sampled_from([0.0, 0.8]))
def test_a_beam_of_one_is_greedy_with_attention(architecture, seed, alpha):
    score, choices = ARCHITECTURES[architecture]
    model = model_with(score, seed=seed % 7, **choices)
    source, lengths = padded_sources([5, 2, 4], seed=seed)
    prompt = torch.zeros(3, 1, dtype=torch.long) + 1
    wide = greedy(model, prompt, 7, END, state=model.encode(source, lengths))
    one = beam_search(model, prompt, 7, END, beam_size=1, alpha=alpha, state=model.encode(source, lengths))
    assert torch.equal(one.ids, wide.ids)
    torch.testing.assert_close(one.log_probs, wide.log_probs)


@pytest.mark.parametrize(("score", "choices"), ARCHITECTURES)
def test_beam_search_over_a_padded_batch_follows_each_source(score, choices):
    # Beam search reorders the state, the index into the encoder's outputs included: batched equals alone.
    model = model_with(score, seed=3, **choices)
    source, lengths = padded_sources([5, 2, 4], seed=9)
    prompt = torch.ones(3, 1, dtype=torch.long)
    together = beam_search(model, prompt, 6, END, beam_size=3, state=model.encode(source, lengths))
    for b, length in enumerate(lengths.tolist()):
        alone = beam_search(
            model, prompt[b : b + 1], 6, END, beam_size=3, state=model.encode(source[b : b + 1, :length])
        )
        width = alone.ids.shape[-1]
        assert torch.equal(together.ids[b, :, :width], alone.ids[0])
        torch.testing.assert_close(together.log_probs[b], alone.log_probs[0], atol=1e-5, rtol=1e-5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="score"):
        attention_seq2seq(config(), "multiplicative")
    with pytest.raises(ValueError, match=r"score='dot'.*size 8.*size 16"):
        attention_seq2seq(config(bidirectional=True), "dot")
    with pytest.raises(TypeError, match="config must be a Seq2SeqConfig"):
        attention_seq2seq({"hidden_size": 8}, "dot")
    with pytest.raises(ValueError, match="input_feeding"):
        attention_seq2seq(config(attention_step="before", input_feeding=True), "additive")
    with pytest.raises(ValueError, match="with an attention module"):
        alignment(model_with(None), *padded_sources([3]), prefixes(1, 2))
    model = model_with("general")
    source, lengths = padded_sources([3, 2])
    with pytest.raises(ValueError, match="lengths"):
        alignment(model, source, torch.tensor([3, 9]), prefixes(2, 2))
    with pytest.raises(ValueError, match="ids"):
        alignment(model, source, lengths, prefixes(2, 2) + TARGET_V)
    # A bidirectional encoder works with every score that learns its map.
    for score in ("additive", "general", "concat"):
        bidirectional = model_with(
            score, bidirectional=True, attention_step="before" if score == "additive" else "after"
        )
        weights = alignment(bidirectional, source, lengths, prefixes(2, 3))
        assert weights.shape == (2, 3, 3)


def test_number_lists_grow_in_content_and_split_by_value():
    from companion.data import number_list_pairs

    splits = number_list_pairs("de", "digits", count=600, longest=5, seed=3)
    pairs = splits.train + splits.valid + splits.test
    assert len({source for source, _ in pairs}) == len(pairs), "a list appears twice"
    assert {target.count(",") + 1 for _, target in pairs} == {1, 2, 3, 4, 5}
    assert ("fünfundsiebzig, neunundsechzig", "75, 69") in pairs  # German says the units first
    for source, target in pairs:
        assert len(source.split(", ")) == len(target.split(", "))
    assert not {s for s, _ in splits.train} & {s for s, _ in splits.test}
    assert number_list_pairs("de", "digits", count=600, longest=5, seed=3) == splits  # reproducible
    with pytest.raises(ValueError, match="longest"):
        number_list_pairs(longest=0)
