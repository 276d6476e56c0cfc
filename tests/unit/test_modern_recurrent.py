"""minGRU's scan equals its loop (and the recurrence written out), padding never changes the real steps, it plugs
into the course's models; causal linear attention computed at once equals its RNN form; bad input gets a clear
error."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.language_models import RNNLanguageModel
from companion.memory import SequenceClassifier
from companion.modern_recurrent import (
    MinGRU,
    causal_linear_attention,
    elu_feature_map,
    g,
    linear_attention_recurrent,
    log_g,
    min_gru_loop,
    min_gru_scan,
)
from companion.recurrent_cells import run_recurrent

TOL = {"atol": 1e-5, "rtol": 1e-5}


def test_g_is_positive_continuous_and_log_g_is_its_log():
    x = torch.linspace(-30, 30, 601, dtype=torch.float64)
    assert (g(x) > 0).all()
    torch.testing.assert_close(g(torch.tensor([0.0])), torch.tensor([0.5]))
    torch.testing.assert_close(log_g(x), torch.log(g(x)))


def test_the_loop_is_the_recurrence_written_out():
    gates, candidates, h0 = torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 4)
    h = h0
    for t in range(3):
        z = torch.sigmoid(gates[:, t])
        h = (1 - z) * h + z * g(candidates[:, t])
    torch.testing.assert_close(min_gru_loop(gates, candidates, h0)[:, -1], h)


@given(
    batch=st.integers(1, 3),
    time=st.integers(1, 40),
    hidden=st.integers(1, 5),
    scale=st.floats(0.1, 5.0),
    seed=st.integers(0, 2**16),
)
def test_the_scan_equals_the_loop(batch, time, hidden, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    gates, candidates, h0 = (
        scale * torch.randn(*shape, generator=generator, dtype=torch.float64)
        for shape in ((batch, time, hidden), (batch, time, hidden), (batch, hidden))
    )
    torch.testing.assert_close(min_gru_scan(gates, candidates, h0), min_gru_loop(gates, candidates, h0))


def test_the_scan_stays_finite_and_close_over_long_sequences_in_float32():
    gates, candidates, h0 = 3 * torch.randn(2, 500, 8), 3 * torch.randn(2, 500, 8), torch.randn(2, 8)
    scan = min_gru_scan(gates, candidates, h0)
    assert torch.isfinite(scan).all()
    torch.testing.assert_close(scan, min_gru_loop(gates, candidates, h0), atol=1e-4, rtol=1e-4)


def test_gradients_of_scan_and_loop_agree():
    layer = MinGRU(3, 4, num_layers=2).double()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    grads = []
    for parallel in (True, False):
        layer.parallel = parallel
        layer.zero_grad()
        outputs, state = layer(x)
        (outputs.square().sum() + state.sum()).backward()
        grads.append([p.grad.clone() for p in layer.parameters()])
    for scan, loop in zip(*grads, strict=True):
        torch.testing.assert_close(scan, loop)


@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4), layers=st.integers(1, 3), parallel=st.booleans())
def test_padding_never_changes_the_real_steps(lengths, layers, parallel):
    torch.manual_seed(0)
    layer = MinGRU(3, 5, num_layers=layers, parallel=parallel)
    time = max(lengths)
    x = torch.randn(len(lengths), time, 3)
    h0 = torch.randn(layers, len(lengths), 5)
    outputs, state = layer(x, h0, lengths=torch.tensor(lengths))
    assert outputs.shape == (len(lengths), time, 5)
    assert state.shape == (layers, len(lengths), 5)
    for b, length in enumerate(lengths):
        alone, alone_state = layer(x[b : b + 1, :length], h0[:, b : b + 1])
        torch.testing.assert_close(outputs[b, :length], alone[0], **TOL)
        torch.testing.assert_close(state[:, b], alone_state[:, 0], **TOL)
        assert (outputs[b, length:] == 0).all()


def test_a_state_carries_on_a_sequence():
    layer = MinGRU(2, 3, num_layers=2)
    x = torch.randn(2, 8, 2)
    whole, whole_state = layer(x)
    first, state = layer(x[:, :5])
    rest, rest_state = layer(x[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, **TOL)
    torch.testing.assert_close(rest_state, whole_state, **TOL)


def test_it_plugs_into_the_course_models():
    layer = MinGRU(10, 6, num_layers=2)
    outputs, state = run_recurrent(layer, torch.randn(2, 4, 10), None, torch.tensor([4, 2]))
    assert outputs.shape == (2, 4, 6)
    assert state.shape == (2, 2, 6)
    logits, _ = RNNLanguageModel(10, recurrent=layer)(torch.randint(10, (2, 4)))
    assert logits.shape == (2, 4, 10)
    assert SequenceClassifier(layer, 10, 8)(torch.randint(10, (3, 5))).shape == (3, 8)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda m: m(torch.randn(2, 3)), ValueError, "inputs must have 3 dimensions"),
        (lambda m: m(torch.randn(2, 3, 5)), ValueError, "input_size"),
        (lambda m: m(torch.randn(2, 0, 4)), ValueError, "at least one step"),
        (lambda m: m(torch.randn(2, 3, 4), torch.randn(2, 2, 5)), ValueError, "hidden_size"),
        (lambda m: m(torch.randn(2, 3, 4), (torch.randn(1, 2, 6),) * 2), TypeError, "one tensor h0"),
        (lambda m: m(torch.randn(2, 3, 4), lengths=torch.tensor([3.0, 1.0])), TypeError, "lengths must hold"),
        (lambda m: m(torch.randn(2, 3, 4), lengths=torch.tensor([4, 1])), ValueError, "lengths must lie"),
        (lambda m: m(torch.randn(2, 3, 4), lengths=torch.tensor([3])), ValueError, "lengths has size 1"),
    ],
)
def test_bad_input_gets_a_named_error(call, error, words):
    with pytest.raises(error, match=words):
        call(MinGRU(4, 6, num_layers=2))


def test_bad_sizes_get_a_named_error():
    with pytest.raises(ValueError, match="hidden_size must be positive"):
        MinGRU(3, 0)
    with pytest.raises(TypeError, match="num_layers must be an int"):
        MinGRU(3, 4, num_layers=1.5)


@given(batch=st.integers(1, 3), time=st.integers(1, 12), keys=st.integers(1, 5), values=st.integers(1, 5))
def test_causal_linear_attention_is_an_rnn(batch, time, keys, values):
    torch.manual_seed(batch * 1000 + time * 10 + keys)
    q, k = torch.randn(batch, time, keys, dtype=torch.float64), torch.randn(batch, time, keys, dtype=torch.float64)
    v = torch.randn(batch, time, values, dtype=torch.float64)
    outputs, (S, z) = linear_attention_recurrent(q, k, v)
    torch.testing.assert_close(causal_linear_attention(q, k, v), outputs)
    phi_k = elu_feature_map(k)
    torch.testing.assert_close(S, phi_k.transpose(1, 2) @ v)
    torch.testing.assert_close(z, phi_k.sum(1))


def test_linear_attention_never_reads_the_future():
    q, k, v = torch.randn(1, 6, 3), torch.randn(1, 6, 3), torch.randn(1, 6, 2)
    changed = v.clone()
    changed[:, 4:] += 10
    torch.testing.assert_close(causal_linear_attention(q, k, v)[:, :4], causal_linear_attention(q, k, changed)[:, :4])


@pytest.mark.parametrize(
    ("shapes", "words"),
    [
        (((2, 3), (2, 3, 4), (2, 3, 4)), "queries must have 3 dimensions"),
        (((2, 3, 4), (2, 3, 5), (2, 3, 4)), "keys has size 5"),
        (((2, 3, 4), (2, 3, 4), (1, 3, 4)), "values has size 1"),
        (((2, 3, 4), (2, 4, 4), (2, 3, 4)), "keys has size 4"),
    ],
)
def test_linear_attention_names_bad_shapes(shapes, words):
    tensors = [torch.randn(*shape) for shape in shapes]
    for function in (causal_linear_attention, linear_attention_recurrent):
        with pytest.raises(ValueError, match=words):
            function(*tensors)
