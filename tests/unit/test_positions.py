"""Position encodings: their defining properties (the sinusoid's fixed linear map between offsets, RoPE's scores that
depend only on the offset and its kept norms, ALiBi's slopes), agreement with d2l's PositionalEncoding, offsets that
agree with the full computation, and a named error past every table."""

import math

import pytest
import torch
from d2l import torch as d2l
from hypothesis import given
from hypothesis import strategies as st

from companion.positions import (
    ALiBi,
    LearnedPositions,
    PositionTableError,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositions,
    alibi_slopes,
    position_angles,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}


def shift_map(k: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The (dim, dim) block-diagonal matrix M_k that turns each (sin, cos) pair by k w_i: P[t + k] = M_k P[t]."""
    theta = position_angles(1, dim, base, offset=k)[0]  # (dim/2,) k w_i
    blocks = [
        torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
        for c, s in zip(theta.cos().tolist(), theta.sin().tolist(), strict=True)
    ]
    return torch.block_diag(*blocks)  # (dim, dim)


# ---------------------------------------------------------------- sinusoidal


def test_sinusoid_is_the_papers_formula_and_agrees_with_d2l():
    positions = SinusoidalPositions(16, max_length=50)
    table = positions.encodings(50)
    t, i = 7, 3
    assert table[t, 2 * i].item() == pytest.approx(math.sin(t / 10000 ** (2 * i / 16)), abs=1e-6)
    assert table[t, 2 * i + 1].item() == pytest.approx(math.cos(t / 10000 ** (2 * i / 16)), abs=1e-6)
    theirs = d2l.PositionalEncoding(16, dropout=0, max_len=50)
    x = torch.randn(2, 50, 16)
    torch.testing.assert_close(positions(x), theirs(x), **TOL)


@given(st.integers(0, 40), st.integers(0, 40), st.sampled_from([2, 8, 32]))
def test_the_sinusoid_has_one_fixed_linear_map_per_offset(t, k, dim):
    table = SinusoidalPositions(dim, max_length=100).table.double()
    recomputed = table.new_tensor(
        [[math.sin(n * w) if j % 2 == 0 else math.cos(n * w) for j, w in enumerate(_frequencies(dim))] for n in (t,)]
    )
    torch.testing.assert_close(table[t : t + 1], recomputed, atol=1e-6, rtol=0)
    # the same matrix M_k maps every position t to t + k
    torch.testing.assert_close(table[t + k], shift_map(k, dim) @ table[t], atol=1e-6, rtol=0)


def _frequencies(dim: int) -> list[float]:
    return [10000 ** (-2 * (j // 2) / dim) for j in range(dim)]


def test_sinusoid_offset_continues_the_table():
    positions = SinusoidalPositions(8, max_length=20)
    x = torch.zeros(1, 5, 8)
    torch.testing.assert_close(positions(x, offset=7)[0], positions.encodings(20)[7:12])
    assert "table" not in positions.state_dict()  # a fixed buffer, recomputed rather than saved


# ---------------------------------------------------------------- learned


def test_learned_positions_add_their_rows_and_only_used_rows_learn():
    positions = LearnedPositions(10, 4)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(positions(x, offset=2), x + positions.embedding.weight[2:5])
    positions(x, offset=2).sum().backward()
    used = positions.embedding.weight.grad.abs().sum(-1) > 0
    assert used.tolist() == [False, False, True, True, True] + [False] * 5


# ---------------------------------------------------------------- relative position bias


def test_relative_bias_looks_up_the_clipped_distance():
    bias = RelativePositionBias(num_heads=2, max_distance=2, max_length=10)
    with torch.no_grad():
        bias.bias.weight.copy_(torch.arange(10.0).reshape(5, 2))  # distance -2 .. 2 -> rows 0 .. 4
    table = bias(4)  # (1, 2, 4, 4)
    assert table.shape == (1, 2, 4, 4)
    distance = torch.arange(4)[None] - torch.arange(4)[:, None]  # j - i
    expected = (distance.clamp(-2, 2) + 2) * 2  # head 0 reads column 0 of row (clip(j - i) + 2)
    torch.testing.assert_close(table[0, 0], expected.float())
    torch.testing.assert_close(table[0, 1], expected.float() + 1)


def test_relative_bias_starts_at_zero_and_learns():
    bias = RelativePositionBias(3, 4)
    assert (bias(5) == 0).all()
    assert bias.bias.weight.requires_grad


# ---------------------------------------------------------------- ALiBi


def test_alibi_slopes_are_the_papers_geometric_sequences():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-n for n in range(1, 9)]))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]))
    torch.testing.assert_close(alibi_slopes(1), torch.tensor([2.0**-8]))
    for heads in (2, 4, 16, 32):
        slopes = alibi_slopes(heads)
        ratios = slopes[1:] / slopes[:-1]
        torch.testing.assert_close(ratios, torch.full_like(ratios, 2 ** (-8 / heads)))  # ratio = first slope
        assert slopes[0].item() == pytest.approx(2 ** (-8 / heads))


def test_alibi_slopes_for_other_head_counts_follow_the_papers_code():
    # n = 6: the 4 slopes of n = 4, then every other slope of n = 8 (2^-1, 2^-3)
    torch.testing.assert_close(alibi_slopes(6), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]))
    assert len(set(alibi_slopes(12).tolist())) == 12


def test_alibi_penalises_distance_linearly_per_head():
    alibi = ALiBi(4, max_length=10)
    bias = alibi(5)[0]  # (4, 5, 5)
    distance = (torch.arange(5)[None] - torch.arange(5)[:, None]).abs()
    for head, slope in enumerate(alibi_slopes(4).tolist()):
        torch.testing.assert_close(bias[head], -slope * distance.float())
    assert not list(alibi.parameters())


# ---------------------------------------------------------------- RoPE


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 40), st.sampled_from([2, 8, 16]))
def test_rope_scores_depend_only_on_the_offset_between_positions(m, n, shift, dim):
    rope = RotaryEmbedding(dim, max_length=200)
    generator = torch.Generator().manual_seed(m * 1000 + n)
    q, k = torch.randn(1, 1, dim, generator=generator), torch.randn(1, 1, dim, generator=generator)
    score = (rope(q, offset=m) * rope(k, offset=n)).sum()
    shifted = (rope(q, offset=m + shift) * rope(k, offset=n + shift)).sum()
    torch.testing.assert_close(shifted, score, atol=1e-4, rtol=1e-4)
    # and the score is q . R_{n - m} k: the query stays put, the key turns by the difference
    if n >= m:
        torch.testing.assert_close((q * rope(k, offset=n - m)).sum(), score, atol=1e-4, rtol=1e-4)


@given(st.integers(0, 100), st.sampled_from([2, 8, 64]))
def test_rope_preserves_norms(offset, dim):
    rope = RotaryEmbedding(dim, max_length=128)
    x = torch.randn(3, 2, 5, dim, generator=torch.Generator().manual_seed(offset))
    rotated = rope(x, offset=min(offset, 123))
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1), **TOL)


def test_rope_at_position_zero_is_the_identity_and_turns_adjacent_pairs():
    rope = RotaryEmbedding(4, max_length=8)
    x = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    torch.testing.assert_close(rope(x), x)
    turned = rope(x, offset=1)[0, 0]
    w1 = 10000 ** (-2 / 4)
    expected = torch.tensor([math.cos(1), math.sin(1), math.cos(w1), math.sin(w1)])
    torch.testing.assert_close(turned, expected, **TOL)


def test_rope_with_an_offset_equals_the_slice_of_the_full_rotation():
    rope = RotaryEmbedding(8, max_length=32)
    x = torch.randn(2, 3, 10, 8)  # (B, heads, T, d)
    full = rope(x)
    torch.testing.assert_close(rope(x[:, :, 6:], offset=6), full[:, :, 6:])


# ---------------------------------------------------------------- offsets for a KV cache, and the table's end


@pytest.mark.parametrize("make", [lambda: RelativePositionBias(2, 3, 16), lambda: ALiBi(2, 16)], ids=["rel", "alibi"])
def test_a_bias_for_one_query_against_a_cache_is_the_last_row_of_the_full_bias(make):
    encoding = make()
    with torch.no_grad():
        for parameter in encoding.parameters():
            parameter.normal_()
    full = encoding(9)  # (1, heads, 9, 9)
    for t in range(1, 10):
        torch.testing.assert_close(encoding(1, t), full[:, :, t - 1 : t, :t])
    torch.testing.assert_close(encoding(3, 9, offset=2), full[:, :, 2:5])


ENCODINGS = {
    "sinusoidal": (lambda: SinusoidalPositions(8, 16), lambda e, length, offset: e(torch.zeros(1, length, 8), offset)),
    "learned": (lambda: LearnedPositions(16, 8), lambda e, length, offset: e(torch.zeros(1, length, 8), offset)),
    "rotary": (lambda: RotaryEmbedding(8, 16), lambda e, length, offset: e(torch.zeros(1, length, 8), offset)),
    "relative": (lambda: RelativePositionBias(2, 4, 16), lambda e, length, offset: e(length, offset + length, offset)),
    "alibi": (lambda: ALiBi(2, 16), lambda e, length, offset: e(length, offset + length, offset)),
}


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_every_encoding_fails_with_a_named_error_past_its_table(name):
    make, call = ENCODINGS[name]
    encoding = make()
    call(encoding, 16, 0)
    call(encoding, 1, 15)
    with pytest.raises(PositionTableError, match=r"holds positions 0 \.\. 15 \(max_length=16\).*16 \.\. 16"):
        call(encoding, 1, 16)
    with pytest.raises(PositionTableError, match="build it with a larger max_length"):
        call(encoding, 17, 0)
    with pytest.raises(ValueError, match="offset must be a non-negative int"):
        call(encoding, 2, -1)


def test_position_errors_are_index_errors_and_inputs_are_checked():
    assert issubclass(PositionTableError, IndexError)
    with pytest.raises(ValueError, match="dim must be even"):
        SinusoidalPositions(7)
    with pytest.raises(ValueError, match="dim must be even"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match=r"x has size 6 in dimension -1.*the encoding's dim"):
        SinusoidalPositions(8)(torch.zeros(1, 3, 6))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        LearnedPositions(4, 8)(torch.zeros(3, 8))
