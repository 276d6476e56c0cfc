"""Masks: one convention (True = may attend), the flips to torch.nn's, and the two properties every mask must keep:
a causal mask never lets a position see the future, and padding never changes the outputs of real positions."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from companion.attention import MultiHeadAttention, scaled_dot_product_attention
from companion.data import lengths_to_mask
from companion.masks import (
    causal_mask,
    check_mask,
    combine_masks,
    fully_masked,
    padding_mask,
    to_attn_mask,
    to_key_padding_mask,
)

# ---------------------------------------------------------------- building masks


def test_padding_mask_marks_the_real_keys_and_broadcasts_over_queries():
    mask = padding_mask(torch.tensor([3, 1, 0]), 4)
    assert mask.shape == (3, 1, 4)
    assert mask.dtype == torch.bool
    assert mask[:, 0].tolist() == [[True, True, True, False], [True, False, False, False], [False] * 4]
    assert torch.equal(mask[:, 0], lengths_to_mask(torch.tensor([3, 1, 0]), 4))


def test_causal_mask_is_the_lower_triangle_for_self_attention():
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())


def test_causal_mask_puts_the_queries_at_the_end_of_the_keys_by_default():
    # one new query against a cache of 5 keys: it may see all of them
    assert causal_mask(1, 5).tolist() == [[True] * 5]
    # two new queries at positions 3 and 4 of 5 keys
    assert causal_mask(2, 5).tolist() == [[True] * 4 + [False], [True] * 5]
    # an explicit offset: the first query is at position 1
    assert causal_mask(2, 5, offset=1).tolist() == [[True, True, False, False, False], [True, True, True, False, False]]
    # offset 0 is the alignment of F.scaled_dot_product_attention(is_causal=True)
    assert torch.equal(causal_mask(3, 5, offset=0), torch.ones(3, 5, dtype=torch.bool).tril())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [((-1,), "query_length"), ((3, 2), "offset"), ((2, 4, -1), "offset"), ((2.0,), "query_length")],
)
def test_causal_mask_rejects_bad_sizes(arguments, message):
    with pytest.raises(ValueError, match=message):
        causal_mask(*arguments)


def test_combine_masks_is_a_broadcast_and_that_skips_none():
    combined = combine_masks(padding_mask(torch.tensor([2, 3]), 3), None, causal_mask(3))
    assert combined.shape == (2, 3, 3)
    assert combined[0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    assert torch.equal(combined[1], causal_mask(3))
    assert combine_masks(None, None) is None


def test_fully_masked_finds_queries_with_nothing_to_attend_to():
    mask = combine_masks(padding_mask(torch.tensor([0, 2]), 2), causal_mask(2))  # (2, 2, 2)
    assert fully_masked(mask)[..., 0].tolist() == [[True, True], [False, False]]


def test_check_mask_names_the_argument_and_what_was_expected():
    with pytest.raises(TypeError, match=r"mask must be a bool tensor, True where a query may attend.*float32"):
        check_mask("mask", torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"mask has shape \(2, 4\), which does not broadcast to \(5, 2, 3\)"):
        check_mask("mask", torch.ones(2, 4, dtype=torch.bool), (5, 2, 3))
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        check_mask("mask", [[True]])
    check_mask("mask", torch.ones(1, 3, dtype=torch.bool), (5, 2, 3))


# ---------------------------------------------------------------- the flips to torch.nn's convention


def test_key_padding_mask_is_true_at_padding():
    lengths = torch.tensor([2, 3])
    expected = torch.tensor([[False, False, True], [False, False, False]])
    assert torch.equal(to_key_padding_mask(padding_mask(lengths, 3)), expected)
    assert torch.equal(to_key_padding_mask(lengths_to_mask(lengths, 3)), expected)
    with pytest.raises(ValueError, match="dimensions"):
        to_key_padding_mask(torch.ones(2, 3, 3, dtype=torch.bool))


def test_attn_mask_is_true_where_attention_is_not_allowed_and_has_a_row_per_head():
    assert torch.equal(to_attn_mask(causal_mask(3)), ~causal_mask(3))
    mask = combine_masks(padding_mask(torch.tensor([1, 3]), 3), causal_mask(3))  # (2, 3, 3)
    flipped = to_attn_mask(mask, num_heads=2)
    assert flipped.shape == (4, 3, 3)
    for b in range(2):
        for h in range(2):
            assert torch.equal(flipped[b * 2 + h], ~mask[b])  # torch's layout: batch major, head minor
    # a padding mask's query axis of size 1 is written out for every query
    flipped = to_attn_mask(padding_mask(torch.tensor([1, 3]), 3), num_heads=2, query_length=4)
    assert flipped.shape == (4, 4, 3)
    assert flipped[0].tolist() == [[False, True, True]] * 4


def test_flipped_masks_give_nn_multiheadattention_the_same_answer_as_ours():
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(8, 2, batch_first=True)
    ours = MultiHeadAttention.from_torch(theirs)
    x, lengths = torch.randn(3, 5, 8), torch.tensor([5, 2, 4])
    pad = padding_mask(lengths, 5)
    expected, _ = theirs(x, x, x, key_padding_mask=to_key_padding_mask(pad), attn_mask=to_attn_mask(causal_mask(5)))
    got, _ = ours(x, x, x, combine_masks(pad, causal_mask(5)))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- properties

sizes = st.tuples(st.integers(1, 3), st.integers(1, 7), st.sampled_from([1, 2, 4]))


def _causal_attentions(embed: int, heads: int):
    """Every path of the companion that takes a causal mask, as f(x (B, T, E), mask) -> out (B, T, E)."""
    module = MultiHeadAttention(embed, heads)
    return {
        "scratch": lambda x, mask: scaled_dot_product_attention(x, x, x, mask)[0],
        "fused": lambda x, mask: scaled_dot_product_attention(x, x, x, mask, fused=True)[0],
        "multi-head": lambda x, mask: module(x, x, x, mask)[0],
        "multi-head fused": lambda x, mask: module(x, x, x, mask, need_weights=False)[0],
    }


@given(sizes, st.data())
def test_a_causal_mask_never_lets_a_position_see_the_future(size, data):
    batch, time, heads = size
    position = data.draw(st.integers(0, time - 1))
    torch.manual_seed(time * 10 + heads)
    x = torch.randn(batch, time, 4 * heads)
    changed = x.clone()
    changed[:, position + 1 :] = 100 * torch.randn_like(changed[:, position + 1 :])  # rewrite the future
    for name, attention in _causal_attentions(4 * heads, heads).items():
        before, after = attention(x, causal_mask(time)), attention(changed, causal_mask(time))
        torch.testing.assert_close(after[:, : position + 1], before[:, : position + 1], msg=name)


@given(sizes, st.data())
def test_no_output_depends_on_a_later_input_by_autograd(size, data):
    batch, time, heads = size
    torch.manual_seed(time + heads)
    x = torch.randn(batch, time, 4 * heads, requires_grad=True)
    for name, attention in _causal_attentions(4 * heads, heads).items():
        query = data.draw(st.integers(0, time - 1))
        (grad,) = torch.autograd.grad(attention(x, causal_mask(time))[:, query].sum(), x)
        assert (grad[:, query + 1 :] == 0).all(), name
        assert torch.isfinite(grad).all(), name


@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(0, 3), st.booleans())
def test_padding_never_changes_the_outputs_of_real_positions(lengths, extra, causal):
    torch.manual_seed(sum(lengths) + extra)
    module = MultiHeadAttention(8, 2)
    time = max(lengths) + extra
    batch = 100 * torch.randn(len(lengths), time, 8)  # padding filled with large junk
    sequences = [torch.randn(1, length, 8) for length in lengths]
    for b, sequence in enumerate(sequences):
        batch[b, : lengths[b]] = sequence[0]
    mask = padding_mask(torch.tensor(lengths), time)
    if causal:
        mask = combine_masks(mask, causal_mask(time))
    for need_weights in (True, False):
        padded, _ = module(batch, batch, batch, mask, need_weights=need_weights)
        for b, sequence in enumerate(sequences):
            alone, _ = module(sequence, sequence, sequence, causal_mask(lengths[b]) if causal else None)
            torch.testing.assert_close(padded[b, : lengths[b]], alone[0], atol=1e-5, rtol=1e-5)
