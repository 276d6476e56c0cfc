"""The from-scratch RNN agrees with torch.nn.RNNCell, torch.nn.RNN (also on padded batches, stacked and
bidirectional) and d2l's RNNScratch; padding never changes the real steps; the shared pieces of the recurrent
interface (the state helpers and ``run_recurrent``) do what they say; bad input gets a clear error."""

import pytest
import torch
from d2l import torch as d2l
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from companion.recurrent_cells import (
    RNN,
    RNNCell,
    hidden_of,
    last_layer_state,
    map_state,
    num_directions,
    run_recurrent,
    time_loop,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}


def torch_rnn_on_padded(module: nn.RNN, inputs: torch.Tensor, lengths: torch.Tensor, h0=None):
    """nn.RNN over a padded batch through pack_padded_sequence: outputs (B, T, H) zero past each length."""
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    out, h_n = module(packed, h0)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=inputs.shape[1])
    return out, h_n


# ---------------------------------------------------------------- agreement with torch.nn


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_cell_agrees_with_nn_rnncell(bias, nonlinearity):
    torch.manual_seed(0)
    theirs = nn.RNNCell(5, 7, bias=bias, nonlinearity=nonlinearity)
    ours = RNNCell.from_torch(theirs)
    x, h = torch.randn(4, 5), torch.randn(4, 7)
    torch.testing.assert_close(ours(x, h), theirs(x, h), **TOL)
    torch.testing.assert_close(ours(x), theirs(x), **TOL)  # zero initial state


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("batch_first", [True, False])
def test_rnn_agrees_with_nn_rnn(num_layers, batch_first):
    torch.manual_seed(1)
    theirs = nn.RNN(3, 6, num_layers=num_layers, batch_first=batch_first)
    ours = RNN.from_torch(theirs)
    inputs, h0 = torch.randn(4, 9, 3), torch.randn(num_layers, 4, 6)  # (B, T, D), (L, B, H)
    expected, expected_h = theirs(inputs if batch_first else inputs.transpose(0, 1), h0)
    if not batch_first:
        expected = expected.transpose(0, 1)
    outputs, h_n = ours(inputs, h0)
    assert outputs.shape == (4, 9, 6)
    assert h_n.shape == (num_layers, 4, 6)
    torch.testing.assert_close(outputs, expected, **TOL)
    torch.testing.assert_close(h_n, expected_h, **TOL)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_rnn_agrees_with_packed_nn_rnn_on_a_padded_batch(num_layers):
    torch.manual_seed(2)
    theirs = nn.RNN(4, 5, num_layers=num_layers, batch_first=True)
    ours = RNN.from_torch(theirs)
    lengths = torch.tensor([6, 2, 9, 1, 4])
    inputs = torch.randn(5, 9, 4)
    h0 = torch.randn(num_layers, 5, 5)
    expected, expected_h = torch_rnn_on_padded(theirs, inputs, lengths, h0)
    outputs, h_n = ours(inputs, h0, lengths=lengths)
    torch.testing.assert_close(outputs, expected, **TOL)
    torch.testing.assert_close(h_n, expected_h, **TOL)
    for b, length in enumerate(lengths.tolist()):
        assert (outputs[b, length:] == 0).all()


@pytest.mark.parametrize("num_layers", [1, 2])
def test_bidirectional_rnn_agrees_with_packed_nn_rnn(num_layers):
    torch.manual_seed(5)
    theirs = nn.RNN(3, 4, num_layers=num_layers, bidirectional=True, batch_first=True)
    ours = RNN.from_torch(theirs)
    assert len(ours.cells) == 2 * num_layers
    lengths = torch.tensor([5, 1, 3])
    inputs, h0 = torch.randn(3, 5, 3), torch.randn(2 * num_layers, 3, 4)
    expected, expected_h = torch_rnn_on_padded(theirs, inputs, lengths, h0)
    outputs, h_n = ours(inputs, h0, lengths)
    assert outputs.shape == (3, 5, 8)
    torch.testing.assert_close(outputs, expected, **TOL)
    torch.testing.assert_close(h_n, expected_h, **TOL)


def test_h0_is_the_old_name_of_state():
    rnn, inputs, h0 = RNN(3, 4), torch.randn(2, 5, 3), torch.randn(1, 2, 4)
    torch.testing.assert_close(rnn(inputs, h0=h0)[0], rnn(inputs, h0)[0], rtol=0, atol=0)


def test_rnn_from_torch_keeps_dtype_and_gradients_flow():
    theirs = nn.RNN(2, 3, bias=False, nonlinearity="relu").double()
    ours = RNN.from_torch(theirs)
    assert ours.cells[0].weight_ih.dtype == torch.float64
    assert ours.cells[0].bias_ih is None
    inputs = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    outputs, _ = ours(inputs, lengths=torch.tensor([5, 3]))
    outputs.sum().backward()
    assert torch.isfinite(inputs.grad).all()
    assert (inputs.grad[1, 3:] == 0).all()  # padding has no influence on anything


def test_the_copy_is_independent_of_the_original():
    theirs = nn.RNN(2, 3)
    ours = RNN.from_torch(theirs)
    with torch.no_grad():
        theirs.weight_hh_l0.add_(1.0)
    assert not torch.equal(ours.cells[0].weight_hh, theirs.weight_hh_l0)


# ---------------------------------------------------------------- agreement with d2l


def test_rnn_agrees_with_d2l_rnn_scratch():
    torch.manual_seed(3)
    theirs = d2l.RNNScratch(num_inputs=4, num_hiddens=6, sigma=0.5)
    ours = RNN(4, 6)
    with torch.no_grad():  # d2l multiplies on the right (X @ W_xh) and keeps a single bias
        ours.cells[0].weight_ih.copy_(theirs.W_xh.T)
        ours.cells[0].weight_hh.copy_(theirs.W_hh.T)
        ours.cells[0].bias_ih.copy_(theirs.b_h)
        ours.cells[0].bias_hh.zero_()
    inputs, h0 = torch.randn(3, 8, 4), torch.randn(3, 6)  # batch-first
    outputs, state = theirs(inputs.transpose(0, 1), (h0,))  # d2l is time-major: (T, B, D)
    expected = torch.stack(outputs, dim=1)  # a list of T (B, H) -> (B, T, H)
    ours_outputs, ours_h = ours(inputs, h0[None])
    torch.testing.assert_close(ours_outputs, expected, **TOL)
    torch.testing.assert_close(ours_h[0], state, **TOL)


def test_cell_agrees_with_one_step_of_d2l():
    theirs = d2l.RNNScratch(num_inputs=3, num_hiddens=2, sigma=1.0)
    cell = RNNCell(3, 2)
    with torch.no_grad():
        cell.weight_ih.copy_(theirs.W_xh.T)
        cell.weight_hh.copy_(theirs.W_hh.T)
        cell.bias_ih.copy_(theirs.b_h)
        cell.bias_hh.zero_()
    x = torch.randn(5, 3)
    _, state = theirs(x[None])
    torch.testing.assert_close(cell(x), state, **TOL)


# ---------------------------------------------------------------- properties

sizes = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 3), st.integers(1, 5))  # B, T, D, H


@given(sizes, st.integers(1, 4), st.integers(0, 2**16), st.data())
def test_appending_padding_changes_no_real_step(shape, extra, seed, data):
    batch, time, features, hidden = shape
    generator = torch.Generator().manual_seed(seed)
    rnn = RNN(features, hidden, num_layers=data.draw(st.integers(1, 2)))
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch)))
    inputs = torch.randn(batch, time, features, generator=generator)
    garbage = 100 * torch.randn(batch, extra, features, generator=generator)  # anything at all in the padding
    outputs, h_n = rnn(inputs, lengths=lengths)
    padded_outputs, padded_h_n = rnn(torch.cat([inputs, garbage], dim=1), lengths=lengths)
    torch.testing.assert_close(padded_outputs[:, :time], outputs, **TOL)
    assert (padded_outputs[:, time:] == 0).all()
    torch.testing.assert_close(padded_h_n, h_n, **TOL)


@given(sizes, st.integers(0, 2**16))
def test_full_lengths_equal_no_lengths_and_the_final_state_is_the_last_output(shape, seed):
    batch, time, features, hidden = shape
    torch.manual_seed(seed)
    rnn = RNN(features, hidden)
    inputs = torch.randn(batch, time, features)
    outputs, h_n = rnn(inputs)
    assert outputs.shape == (batch, time, hidden)
    assert h_n.shape == (1, batch, hidden)
    torch.testing.assert_close(h_n[0], outputs[:, -1])
    same, same_h = rnn(inputs, lengths=torch.full((batch,), time))
    torch.testing.assert_close(same, outputs)
    torch.testing.assert_close(same_h, h_n)


@given(sizes, st.integers(0, 2**16), st.data())
def test_each_sequence_is_run_on_its_own(shape, seed, data):
    """A padded batch gives each sequence exactly what running it alone, unpadded, gives."""
    batch, time, features, hidden = shape
    torch.manual_seed(seed)
    rnn = RNN(features, hidden)
    lengths = data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch))
    inputs = torch.randn(batch, time, features)
    outputs, h_n = rnn(inputs, lengths=torch.tensor(lengths))
    for b, length in enumerate(lengths):
        alone, alone_h = rnn(inputs[b : b + 1, :length])
        torch.testing.assert_close(outputs[b : b + 1, :length], alone, **TOL)
        torch.testing.assert_close(h_n[:, b], alone_h[:, 0], **TOL)


@given(st.integers(1, 5), st.integers(1, 4), st.floats(0.1, 2.0))
def test_cell_state_stays_in_minus_one_one(batch, hidden, scale):
    cell = RNNCell(3, hidden)
    h = cell(scale * 50 * torch.randn(batch, 3))
    assert h.shape == (batch, hidden)
    assert (h.abs() <= 1).all()


def test_parameter_count_is_h_times_d_plus_h_plus_two():
    cell = RNNCell(input_size=10, hidden_size=20)
    assert sum(p.numel() for p in cell.parameters()) == 20 * (10 + 20 + 2)
    assert sum(p.numel() for p in RNN(10, 20).parameters()) == sum(p.numel() for p in nn.RNN(10, 20).parameters())


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"inputs": torch.randn(4, 3)},
            r"inputs must have 3 dimensions \(batch, time, input_size\), got shape \(4, 3\)",
        ),
        ({"inputs": torch.randn(2, 4, 5)}, r"inputs has size 5 in dimension 2.*input_size has size 3"),
        ({"inputs": torch.randn(0, 4, 3)}, r"inputs is an empty batch \(shape \(0, 4, 3\)\)"),
        ({"inputs": torch.randn(2, 0, 3)}, r"inputs has no time steps"),
        ({"h0": torch.randn(2, 6)}, r"h0 must have 3 dimensions \(num_layers, batch, hidden_size\)"),
        ({"h0": torch.randn(1, 3, 6)}, r"h0 has size 3 in dimension 1.*inputs' batch has size 2"),
        ({"h0": torch.randn(2, 2, 6)}, r"h0 has size 2 in dimension 0.*num_layers has size 1"),
        ({"h0": torch.randn(1, 2, 5)}, r"h0 has size 5 in dimension 2.*hidden_size has size 6"),
        ({"lengths": torch.tensor([[4, 4]])}, r"lengths must have 1 dimensions \(batch,\), got shape \(1, 2\)"),
        ({"lengths": torch.tensor([4, 4, 4])}, r"lengths has size 3 in dimension 0.*inputs' batch has size 2"),
        ({"lengths": torch.tensor([4.0, 2.0])}, r"lengths must hold integers, got dtype torch.float32"),
        ({"lengths": torch.tensor([5, 2])}, r"lengths must lie between 1 and inputs' time dimension 4, got .* 2 to 5"),
        ({"lengths": torch.tensor([0, 2])}, r"lengths must lie between 1 and .* got values from 0 to 2"),
        ({"lengths": [4, 2]}, r"lengths must be a torch.Tensor, got list"),
    ],
)
def test_rnn_errors_name_the_argument_and_its_shape(kwargs, message):
    rnn = RNN(3, 6)
    kwargs = {"inputs": torch.randn(2, 4, 3)} | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        rnn(**kwargs)


@pytest.mark.parametrize(
    ("x", "h", "message"),
    [
        (torch.randn(2, 4, 3), None, r"x must have 2 dimensions \(batch, input_size\), got shape \(2, 4, 3\)"),
        (torch.randn(2, 4), None, r"x has size 4 in dimension 1.*input_size has size 3"),
        (torch.randn(0, 3), None, r"x is an empty batch"),
        (torch.randn(2, 3), torch.randn(3, 6), r"h has size 3 in dimension 0.*x's batch has size 2"),
        (torch.randn(2, 3), torch.randn(2, 5), r"h has size 5 in dimension 1.*hidden_size has size 6"),
        (torch.randn(2, 3), torch.randn(1, 2, 6), r"h must have 2 dimensions"),
    ],
)
def test_cell_errors_name_the_argument_and_its_shape(x, h, message):
    with pytest.raises(ValueError, match=message):
        RNNCell(3, 6)(x, h)


def test_constructor_and_from_torch_errors():
    with pytest.raises(ValueError, match="hidden_size must be positive, got 0"):
        RNNCell(3, 0)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        RNNCell(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="num_layers must be positive"):
        RNN(3, 4, num_layers=0)
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.RNN, got LSTM"):
        RNN.from_torch(nn.LSTM(3, 4))
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.RNNCell, got RNN"):
        RNNCell.from_torch(nn.RNN(3, 4))
    with pytest.raises(ValueError, match="batch_first must be True"):
        RNN(3, 4, batch_first=False)
    with pytest.raises(TypeError, match="as state or as h0, not both"):
        RNN(3, 4)(torch.randn(1, 2, 3), torch.zeros(1, 1, 4), h0=torch.zeros(1, 1, 4))


# ---------------------------------------------------------------- the shared interface


def test_time_loop_backwards_starts_each_sequence_at_its_own_last_step():
    """Reading backwards with lengths is reading each reversed sequence alone, as packing does."""
    torch.manual_seed(6)
    cell = RNNCell(2, 3)
    inputs, lengths = torch.randn(3, 6, 2), torch.tensor([6, 2, 4])
    running = (torch.arange(6)[None, :] < lengths[:, None])[:, :, None]  # (B, T, 1)
    outputs, final = time_loop(cell, inputs, torch.zeros(3, 3), running, reverse=True)
    for b, length in enumerate(lengths.tolist()):
        alone, alone_final = time_loop(cell, inputs[b : b + 1, :length].flip(1), torch.zeros(1, 3))
        torch.testing.assert_close(outputs[b, :length], alone[0].flip(0), **TOL)
        torch.testing.assert_close(final[b], alone_final[0], **TOL)
        assert (outputs[b, length:] == 0).all()


def test_state_helpers_treat_a_tensor_and_an_lstm_pair_alike():
    h, c = torch.randn(4, 2, 3), torch.randn(4, 2, 3)  # (L * dirs, B, H) with L = 2, dirs = 2
    assert hidden_of(h) is h
    assert hidden_of((h, c)) is h
    flipped = map_state(lambda part: part.flip(1), (h, c))
    assert isinstance(flipped, tuple)
    torch.testing.assert_close(flipped[1], c.flip(1))
    torch.testing.assert_close(map_state(torch.add, h, c), h + c)
    torch.testing.assert_close(last_layer_state(h), h[-1])
    torch.testing.assert_close(last_layer_state((h, c), 2), torch.cat([h[2], h[3]], dim=-1))
    assert num_directions(nn.GRU(2, 3, bidirectional=True)) == 2
    assert num_directions(RNN(2, 3)) == 1


@pytest.mark.parametrize("twin", [nn.RNN, nn.LSTM, nn.GRU])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_run_recurrent_gives_torch_layers_the_lengths_argument(twin, bidirectional):
    torch.manual_seed(7)
    layer = twin(3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True)
    inputs, lengths = torch.randn(3, 5, 3), torch.tensor([2, 5, 1])
    outputs, state = run_recurrent(layer, inputs, None, lengths)
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    expected, expected_state = layer(packed)
    expected, _ = pad_packed_sequence(expected, batch_first=True, total_length=5)
    torch.testing.assert_close(outputs, expected)
    for got, want in zip(
        state if isinstance(state, tuple) else (state,),
        expected_state if isinstance(expected_state, tuple) else (expected_state,),
        strict=True,
    ):
        torch.testing.assert_close(got, want)
    full, _ = run_recurrent(layer, inputs)
    torch.testing.assert_close(full, layer(inputs)[0])


def test_run_recurrent_calls_any_other_module_through_the_interface():
    class Mean(nn.Module):
        """A stand-in for a Transformer encoder: (B, T, D) -> (B, T, D), the running mean; no state."""

        def forward(self, inputs, state=None, lengths=None):
            steps = torch.arange(1, inputs.shape[1] + 1)[None, :, None]
            return inputs.cumsum(1) / steps, None

    inputs = torch.randn(2, 4, 3)
    outputs, state = run_recurrent(Mean(), inputs, lengths=torch.tensor([4, 2]))
    assert state is None
    torch.testing.assert_close(outputs[:, -1], inputs.mean(1))


@pytest.mark.parametrize(
    ("layer", "kwargs", "error", "message"),
    [
        (nn.RNN(3, 4), {}, ValueError, r"layer must be batch-first"),
        (nn.RNN(3, 4, batch_first=True), {"inputs": torch.randn(2, 3)}, ValueError, r"inputs must have 3 dimensions"),
        (nn.RNN(3, 4, batch_first=True), {"state": torch.zeros(2, 2, 4)}, ValueError, r"h0 has size 2 in dimension 0"),
        (nn.LSTM(3, 4, batch_first=True), {"state": torch.zeros(1, 2, 4)}, TypeError, r"pair \(h0, c0\)"),
        (nn.GRU(3, 4, batch_first=True), {"state": (torch.zeros(1, 2, 4),) * 2}, TypeError, r"only an LSTM's"),
        (nn.GRU(3, 4, batch_first=True), {"lengths": torch.tensor([5, 1])}, ValueError, r"lengths must lie between"),
    ],
)
def test_run_recurrent_errors_name_the_argument(layer, kwargs, error, message):
    kwargs = {"inputs": torch.randn(2, 4, 3)} | kwargs
    with pytest.raises(error, match=message):
        run_recurrent(layer, **kwargs)
