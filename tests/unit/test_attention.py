"""Attention agrees with F.scaled_dot_product_attention, torch.nn.MultiheadAttention and d2l's attention classes to
1e-5 on padded, causal and fully masked inputs; a query with nothing to attend to gets zeros, never NaN; the weights
are returned, never stored; the KV-cache and rotary recipes of the module docstring give the full computation."""

import math

import pytest
import torch
import torch.nn.functional as F
from d2l import torch as d2l
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from companion.attention import (
    AdditiveAttention,
    ConcatAttention,
    DotProductAttention,
    GeneralAttention,
    MultiHeadAttention,
    masked_softmax,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)
from companion.masks import causal_mask, combine_masks, padding_mask, to_attn_mask, to_key_padding_mask
from companion.positions import ALiBi, RotaryEmbedding

TOL = {"atol": 1e-5, "rtol": 1e-5}
LENGTHS = torch.tensor([6, 3, 0, 1])  # the third sequence has no keys at all: every query fully masked


def mask_cases(time: int = 6) -> dict[str, torch.Tensor | None]:
    pad = padding_mask(LENGTHS, time)
    return {
        "none": None,
        "padded": pad,
        "causal": causal_mask(time),
        "padded and causal": combine_masks(pad, causal_mask(time)),
        # query 0 of sequence 1 is fully masked, the others see one key each
        "per query": torch.eye(time, dtype=torch.bool)[None].repeat(4, 1, 1).index_fill(1, torch.tensor([0]), False),
    }


def has_keys(mask: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    """(B, [h,] Tq) bool: the queries that have at least one key to attend to."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    return mask.expand(*shape, mask.shape[-1]).any(-1)


# ---------------------------------------------------------------- masked softmax


def test_masked_softmax_zeroes_masked_keys_and_fully_masked_rows():
    scores = torch.randn(2, 3, 4, requires_grad=True)
    mask = padding_mask(torch.tensor([3, 0]), 4)
    weights = masked_softmax(scores, mask)
    assert not torch.isnan(weights).any()
    assert (weights[0, :, 3] == 0).all()
    assert (weights[1] == 0).all()
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(3))
    torch.testing.assert_close(weights[0, :, :3], torch.softmax(scores[0, :, :3], -1))
    weights.pow(2).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad[1] == 0).all()


def test_masked_softmax_without_a_mask_is_the_softmax():
    scores = torch.randn(2, 5)
    torch.testing.assert_close(masked_softmax(scores), torch.softmax(scores, -1))


def test_the_plain_softmax_of_a_fully_masked_row_is_nan():
    # what masked_softmax repairs
    assert torch.isnan(torch.softmax(torch.full((3,), float("-inf")), -1)).all()


# ---------------------------------------------------------------- scaled dot-product attention


@pytest.mark.parametrize("case", list(mask_cases()))
@pytest.mark.parametrize("heads", [None, 2])
def test_scratch_and_fused_agree_with_torch_scaled_dot_product_attention(case, heads):
    torch.manual_seed(0)
    shape = (4, heads) if heads else (4,)
    query, key, value = torch.randn(*shape, 6, 8), torch.randn(*shape, 6, 8), torch.randn(*shape, 6, 5)
    mask = mask_cases()[case]
    reference_mask = mask[:, None] if heads and mask is not None and mask.dim() == 3 else mask
    expected = F.scaled_dot_product_attention(query, key, value, attn_mask=reference_mask)
    live = has_keys(reference_mask, query.shape[:-1])  # (B, [h,] Tq)
    for fused in (False, True):
        out, weights = scaled_dot_product_attention(query, key, value, mask, fused=fused)
        assert out.shape == (*shape, 6, 5)
        assert not torch.isnan(out).any()
        torch.testing.assert_close(out[live], expected[live], **TOL)
        assert (out[~live] == 0).all(), "a query with nothing to attend to returns zeros"
        if fused:
            assert weights is None
        else:
            assert weights.shape == (*shape, 6, 6)
            torch.testing.assert_close(weights[live].sum(-1), torch.ones(int(live.sum())), **TOL)
            assert (weights[~live] == 0).all()


def test_scratch_is_the_formula():
    torch.manual_seed(1)
    query, key, value = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 7)
    out, weights = scaled_dot_product_attention(query, key, value)
    expected_weights = torch.softmax(query @ key.transpose(1, 2) / 2, dim=-1)  # sqrt(4) = 2
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(out, expected_weights @ value)
    out, _ = scaled_dot_product_attention(query, key, value, scale=1.0)
    torch.testing.assert_close(out, torch.softmax(query @ key.transpose(1, 2), -1) @ value)


@pytest.mark.parametrize("fused", [False, True])
def test_gradients_are_finite_through_fully_masked_queries_and_agree(fused):
    torch.manual_seed(2)
    tensors = [torch.randn(4, 6, 8, requires_grad=True) for _ in range(3)]
    mask = combine_masks(padding_mask(LENGTHS, 6), causal_mask(6))
    out, _ = scaled_dot_product_attention(*tensors, mask, fused=fused)
    grads = torch.autograd.grad(out.pow(2).sum(), tensors)
    assert all(torch.isfinite(grad).all() for grad in grads)
    assert all((grad[2] == 0).all() for grad in grads), "a sequence without keys gets no gradient"
    reference = [tensor.detach().clone().requires_grad_(True) for tensor in tensors]
    expected = F.scaled_dot_product_attention(*reference, attn_mask=mask)
    expected_grads = torch.autograd.grad(expected[[0, 1, 3]].pow(2).sum(), reference)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad[[0, 1, 3]], expected_grad[[0, 1, 3]], **TOL)


@pytest.mark.parametrize("fused", [False, True])
def test_score_bias_is_added_to_the_scores(fused):
    torch.manual_seed(3)
    query, key, value = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    bias = ALiBi(3, 16)(5)  # (1, 3, 5, 5)
    mask = padding_mask(torch.tensor([5, 2]), 5)
    expected = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.masked_fill(~mask[:, None], -math.inf))
    out, _ = scaled_dot_product_attention(query, key, value, mask, score_bias=bias, fused=fused)
    torch.testing.assert_close(out, expected, **TOL)


def test_dropout_drops_the_output_but_the_weights_come_back_whole():
    torch.manual_seed(4)
    query, key, value = torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    plain, weights = scaled_dot_product_attention(query, key, value)
    dropped, dropped_weights = scaled_dot_product_attention(query, key, value, dropout_p=0.5)
    assert not torch.allclose(plain, dropped)
    torch.testing.assert_close(weights, dropped_weights)
    with pytest.raises(ValueError, match="dropout_p"):
        scaled_dot_product_attention(query, key, value, dropout_p=1.0)


@pytest.mark.parametrize(
    ("shapes", "mask", "error", "message"),
    [
        (((2, 4), (2, 5, 4), (2, 5, 4)), None, ValueError, r"query must have 3 or 4 dimensions.*\(2, 4\)"),
        (((2, 3, 4), (3, 5, 4), (3, 5, 4)), None, ValueError, r"key has size 3 in dimension 0.*query's dimension 0"),
        (((2, 3, 4), (2, 5, 4), (2, 6, 4)), None, ValueError, r"value has size 6.*key's length"),
        (((2, 3, 4), (2, 5, 3), (2, 5, 4)), None, ValueError, r"key has size 3.*query's last dimension"),
        (((0, 3, 4), (0, 5, 4), (0, 5, 4)), None, ValueError, "empty batch"),
        (((2, 3, 4), (2, 5, 4), (2, 5, 4)), torch.ones(2, 3, 5), TypeError, "bool"),
        (((2, 3, 4), (2, 5, 4), (2, 5, 4)), torch.ones(2, 3, 4, dtype=torch.bool), ValueError, "does not broadcast"),
    ],
)
def test_bad_input_gets_a_clear_error(shapes, mask, error, message):
    tensors = [torch.randn(shape) for shape in shapes]
    with pytest.raises(error, match=message):
        scaled_dot_product_attention(*tensors, mask)


# ---------------------------------------------------------------- score functions (chapter 7's modules)


def score_modules(query_size: int = 6, key_size: int = 6) -> dict[str, nn.Module]:
    return {
        "additive": AdditiveAttention(query_size, key_size, 5),
        "dot": DotProductAttention(scaled=False),
        "scaled dot": DotProductAttention(),
        "general": GeneralAttention(query_size, key_size),
        "concat": ConcatAttention(query_size, key_size, 5),
    }


@pytest.mark.parametrize("name", list(score_modules()))
def test_every_score_function_masks_padding_and_returns_zeros_for_no_keys(name):
    torch.manual_seed(5)
    module = score_modules()[name]
    query, keys = torch.randn(4, 1, 6), torch.randn(4, 6, 6, requires_grad=True)  # a decoder step, encoder outputs
    out, weights = module(query, keys, keys, padding_mask(LENGTHS, 6))
    assert out.shape == (4, 1, 6)
    assert weights.shape == (4, 1, 6)
    assert not torch.isnan(out).any()
    for b, length in enumerate(LENGTHS.tolist()):
        assert (weights[b, :, length:] == 0).all()
        torch.testing.assert_close(weights[b].sum(), torch.tensor(float(length > 0)))
    assert (out[2] == 0).all()
    out.pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in [keys, *module.parameters()])
    assert (keys.grad[2] == 0).all()


def test_each_score_is_its_formula():
    torch.manual_seed(6)
    q, k = torch.randn(2, 3, 6), torch.randn(2, 4, 6)
    modules = score_modules()
    torch.testing.assert_close(modules["dot"].score(q, k), torch.einsum("bqd,bkd->bqk", q, k))
    torch.testing.assert_close(modules["scaled dot"].score(q, k), torch.einsum("bqd,bkd->bqk", q, k) / math.sqrt(6))
    general = modules["general"]
    torch.testing.assert_close(general.score(q, k), torch.einsum("bqd,de,bke->bqk", q, general.W_a.weight, k))
    additive = modules["additive"]
    hidden = torch.tanh(additive.W_q(q)[:, :, None] + additive.W_k(k)[:, None])
    torch.testing.assert_close(additive.score(q, k), hidden @ additive.w_v.weight[0])
    concat = modules["concat"]
    pairs = torch.cat([q[:, :, None].expand(-1, -1, 4, -1), k[:, None].expand(-1, 3, -1, -1)], dim=-1)  # [q; k]
    expected = concat.v_a(torch.tanh(concat.W_a(pairs))).squeeze(-1)
    torch.testing.assert_close(concat.score(q, k), expected, **TOL)


def test_luong_concat_is_bahdanau_additive_with_the_weights_side_by_side():
    torch.manual_seed(7)
    additive, concat = AdditiveAttention(3, 5, 4), ConcatAttention(3, 5, 4)
    with torch.no_grad():
        concat.W_a.weight.copy_(torch.cat([additive.W_q.weight, additive.W_k.weight], dim=1))
        concat.v_a.weight.copy_(additive.w_v.weight)
    q, k = torch.randn(2, 2, 3), torch.randn(2, 7, 5)
    torch.testing.assert_close(concat.score(q, k), additive.score(q, k), **TOL)


def test_general_with_the_identity_is_dot():
    general = GeneralAttention(4, 4)
    with torch.no_grad():
        general.W_a.weight.copy_(torch.eye(4))
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    torch.testing.assert_close(general.score(q, k), DotProductAttention(scaled=False).score(q, k))


def test_score_modules_check_their_sizes():
    with pytest.raises(ValueError, match="the module's query_size"):
        AdditiveAttention(3, 5, 4)(torch.randn(2, 1, 4), torch.randn(2, 6, 5), torch.randn(2, 6, 5))
    with pytest.raises(ValueError, match="the module's key_size"):
        GeneralAttention(3, 5)(torch.randn(2, 1, 3), torch.randn(2, 6, 4), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="query's last dimension"):
        DotProductAttention()(torch.randn(2, 1, 3), torch.randn(2, 6, 4), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match=r"query must have 3 dimensions"):
        DotProductAttention()(torch.randn(2, 2, 1, 3), torch.randn(2, 2, 6, 3), torch.randn(2, 2, 6, 3))


# ---------------------------------------------------------------- d2l's attention classes


@pytest.mark.parametrize("per_query", [False, True])
def test_dot_product_attention_agrees_with_d2l(per_query):
    torch.manual_seed(8)
    query, key, value = torch.randn(3, 4, 6), torch.randn(3, 5, 6), torch.randn(3, 5, 2)
    valid = torch.tensor([[1, 2, 5, 3], [5, 5, 4, 1], [2, 2, 2, 2]]) if per_query else torch.tensor([2, 5, 1])
    theirs = d2l.DotProductAttention(dropout=0)
    expected = theirs(query, key, value, valid)
    rows = valid.reshape(-1) if per_query else valid.repeat_interleave(4)
    mask = torch.arange(5)[None] < rows[:, None]
    out, weights = DotProductAttention()(query, key, value, mask.reshape(3, 4, 5))
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(weights, theirs.attention_weights, **TOL)


def test_additive_attention_agrees_with_d2l_after_one_load_state_dict():
    torch.manual_seed(9)
    query, key, value = torch.randn(2, 3, 4), torch.randn(2, 6, 5), torch.randn(2, 6, 3)
    valid = torch.tensor([6, 2])
    theirs = d2l.AdditiveAttention(num_hiddens=7, dropout=0)
    expected = theirs(query, key, value, valid)  # the first call sizes its lazy layers
    ours = AdditiveAttention(4, 5, 7)
    ours.load_state_dict(theirs.state_dict())
    out, weights = ours(query, key, value, padding_mask(valid, 6))
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(weights, theirs.attention_weights, **TOL)


def test_multi_head_attention_agrees_with_d2l():
    torch.manual_seed(10)
    x, valid = torch.randn(3, 5, 8), torch.tensor([5, 3, 1])
    theirs = d2l.MultiHeadAttention(num_hiddens=8, num_heads=2, dropout=0)
    expected = theirs(x, x, x, valid)
    ours = MultiHeadAttention(8, 2, bias=False)
    with torch.no_grad():
        ours.in_proj_weight.copy_(torch.cat([theirs.W_q.weight, theirs.W_k.weight, theirs.W_v.weight]))
        ours.out_proj.weight.copy_(theirs.W_o.weight)
    out, _ = ours(x, x, x, padding_mask(valid, 5))
    torch.testing.assert_close(out, expected, **TOL)


def test_split_and_merge_heads_agree_with_d2l():
    module = d2l.MultiHeadAttention(num_hiddens=12, num_heads=3, dropout=0)
    x = torch.randn(2, 5, 12)
    torch.testing.assert_close(split_heads(x, 3).reshape(6, 5, 4), module.transpose_qkv(x))
    torch.testing.assert_close(merge_heads(split_heads(x, 3)), x)
    with pytest.raises(ValueError, match="do not split into 5 heads"):
        split_heads(x, 5)


# ---------------------------------------------------------------- torch.nn.MultiheadAttention


def torch_pair(embed: int = 8, heads: int = 2, **kwargs) -> tuple[nn.MultiheadAttention, MultiHeadAttention]:
    torch.manual_seed(11)
    theirs = nn.MultiheadAttention(embed, heads, batch_first=True, **kwargs)
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.normal_(0, 0.5)  # non-zero biases too
    return theirs, MultiHeadAttention.from_torch(theirs)


@pytest.mark.parametrize("case", list(mask_cases()))
@pytest.mark.parametrize("need_weights", [True, False])
def test_multi_head_attention_agrees_with_nn_multiheadattention(case, need_weights):
    theirs, ours = torch_pair()
    x = torch.randn(4, 6, 8)
    mask = mask_cases()[case]
    expected, expected_weights = theirs(
        x, x, x, attn_mask=None if mask is None else to_attn_mask(mask, 2, 6), average_attn_weights=False
    )
    out, weights = ours(x, x, x, mask, need_weights=need_weights)
    live = has_keys(mask, (4, 6))  # (B, Tq)
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out[live], expected[live], **TOL)
    # every head returns zeros for a query with no keys; out_proj turns them into its bias
    assert (out[~live] == ours.out_proj.bias).all()
    assert weights is None or (weights.transpose(1, 2)[~live] == 0).all()
    if need_weights:
        assert weights.shape == (4, 2, 6, 6)
        live_heads = live[:, None].expand(4, 2, 6)
        torch.testing.assert_close(weights[live_heads], expected_weights[live_heads], **TOL)
    else:
        assert weights is None


def test_nn_multiheadattention_itself_returns_nan_for_a_query_with_no_keys():
    theirs, ours = torch_pair()
    x = torch.randn(4, 6, 8)
    expected, _ = theirs(x, x, x, key_padding_mask=to_key_padding_mask(padding_mask(LENGTHS, 6)))
    assert torch.isnan(expected[2]).all()  # what our zeros replace
    out, _ = ours(x, x, x, padding_mask(LENGTHS, 6))
    assert (out[2] == ours.out_proj.bias).all()
    q, k, v = ours.project(x, x, x)
    heads, _ = scaled_dot_product_attention(q, k, v, padding_mask(LENGTHS, 6))
    assert (heads[2] == 0).all()


def test_cross_attention_with_other_key_and_value_sizes_and_gradients_agree():
    theirs, ours = torch_pair(kdim=5, vdim=3)
    assert {name for name, _ in ours.named_parameters()} == {name for name, _ in theirs.named_parameters()}
    query, key, value = torch.randn(2, 4, 8), torch.randn(2, 7, 5), torch.randn(2, 7, 3)
    lengths = torch.tensor([7, 2])
    expected, _ = theirs(query, key, value, key_padding_mask=to_key_padding_mask(padding_mask(lengths, 7)))
    out, _ = ours(query, key, value, padding_mask(lengths, 7))
    torch.testing.assert_close(out, expected, **TOL)
    grads = torch.autograd.grad(out.pow(2).sum(), list(ours.parameters()))
    expected_grads = torch.autograd.grad(expected.pow(2).sum(), list(theirs.parameters()))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, **TOL)


def test_from_torch_copies_biasless_double_modules_and_refuses_extras():
    theirs = nn.MultiheadAttention(6, 3, bias=False, batch_first=False).double()
    ours = MultiHeadAttention.from_torch(theirs)
    assert ours.in_proj_bias is None
    assert ours.in_proj_weight.dtype == torch.float64
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    expected, _ = theirs(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1))
    torch.testing.assert_close(ours(x, x, x)[0], expected.transpose(0, 1))
    with pytest.raises(ValueError, match="add_bias_kv"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(6, 3, add_bias_kv=True))
    with pytest.raises(TypeError, match=r"torch\.nn\.MultiheadAttention"):
        MultiHeadAttention.from_torch(nn.Linear(2, 2))


def test_parameter_names_and_initialisation_are_torchs():
    torch.manual_seed(12)
    ours = MultiHeadAttention(8, 4)
    torch.manual_seed(12)
    theirs = nn.MultiheadAttention(8, 4)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, msg=name)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 4)


def test_dropout_is_applied_only_while_training():
    torch.manual_seed(13)
    module = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 5, 8)
    module.eval()
    first, second = module(x, x, x)[0], module(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(first, second, **TOL)
    module.train()
    assert not torch.allclose(module(x, x, x)[0], first)


def test_weights_are_returned_never_stored():
    torch.manual_seed(14)
    x = torch.randn(2, 5, 8)
    for module in [MultiHeadAttention(8, 2), *score_modules(8, 8).values()]:
        before = set(vars(module))
        module(x, x, x, causal_mask(5))
        assert set(vars(module)) == before
        assert not [name for name, value in vars(module).items() if isinstance(value, torch.Tensor)]


def test_multi_head_errors_name_the_argument():
    module = MultiHeadAttention(8, 2, kdim=5)
    with pytest.raises(ValueError, match=r"key has size 8 in dimension 2.*kdim"):
        module(torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match=r"k must have 4 dimensions"):
        module.attend(torch.randn(2, 2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 2, 3, 4))
    with pytest.raises(ValueError, match=r"q has size 3 in dimension 1.*num_heads"):
        module.attend(torch.randn(2, 3, 3, 4), torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4))


# ---------------------------------------------------------------- the recipes for chapter 7 and Part V


def test_one_decoder_step_against_encoder_outputs_is_one_row_of_the_full_attention():
    torch.manual_seed(15)
    attention = AdditiveAttention(4, 6, 5)
    hidden, encoder_outputs = torch.randn(3, 7, 4), torch.randn(3, 9, 6)
    source_mask = padding_mask(torch.tensor([9, 4, 1]), 9)
    full, full_weights = attention(hidden, encoder_outputs, encoder_outputs, source_mask)
    for t in range(7):
        step, weights = attention(hidden[:, t : t + 1], encoder_outputs, encoder_outputs, source_mask)
        torch.testing.assert_close(step[:, 0], full[:, t], **TOL)
        torch.testing.assert_close(weights[:, 0], full_weights[:, t], **TOL)


@given(st.integers(1, 8), st.booleans(), st.booleans())
def test_a_kv_cache_with_rotary_positions_gives_the_full_causal_attention(time, rotary, need_weights):
    torch.manual_seed(time)
    attention, rope = MultiHeadAttention(8, 2), RotaryEmbedding(4, max_length=16)
    x = torch.randn(2, time, 8)

    def rotated(q, k, offset):
        return (rope(q, offset), rope(k, offset)) if rotary else (q, k)

    q, k, v = attention.project(x, x, x)
    q, k = rotated(q, k, 0)
    full, _ = attention.attend(q, k, v, causal_mask(time))
    cache_k, cache_v, steps = x.new_zeros(2, 2, 0, 4), x.new_zeros(2, 2, 0, 4), []
    for t in range(time):
        q, k, v = attention.project(x[:, t : t + 1], x[:, t : t + 1], x[:, t : t + 1])  # (B, h, 1, d) each
        q, k = rotated(q, k, t)
        cache_k, cache_v = torch.cat([cache_k, k], dim=2), torch.cat([cache_v, v], dim=2)  # (B, h, t + 1, d)
        # one query at position t against t + 1 cached keys: the causal mask with the default offset allows all
        step, _ = attention.attend(q, cache_k, cache_v, causal_mask(1, t + 1), need_weights=need_weights)
        steps.append(step)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_project_skips_what_is_not_asked_for():
    attention = MultiHeadAttention(8, 2)
    q, k, v = attention.project(torch.randn(2, 3, 8), None, None)
    assert q.shape == (2, 2, 3, 4)
    assert k is None
    assert v is None
