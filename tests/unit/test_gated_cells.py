"""The from-scratch LSTM and GRU agree with torch.nn (cells and layers, packed padded batches, stacked and
bidirectional, gradients included) and with d2l's GRU; they carry the twins' parameter names; padding never
changes the real steps; the forget-gate initialisations set what they say; bad input gets a clear error."""

import math

import pytest
import torch
from d2l import torch as d2l
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from companion.forecasting import RNNForecaster
from companion.gated_cells import (
    GRU,
    LSTM,
    GRUCell,
    LSTMCell,
    chrono_init_,
    gate_slice,
    gru_step,
    lstm_step,
    set_forget_bias_,
)
from companion.language_models import RNNLanguageModel
from companion.recurrent_cells import run_recurrent

TOL = {"atol": 1e-5, "rtol": 1e-5}
LAYERS = {"lstm": (LSTM, nn.LSTM), "gru": (GRU, nn.GRU)}
CELLS = {"lstm": (LSTMCell, nn.LSTMCell), "gru": (GRUCell, nn.GRUCell)}


def parts(state):
    """The tensors of a state: (h,) or (h, c)."""
    return state if isinstance(state, tuple) else (state,)


def random_state(kind, rows, batch, hidden):
    h = torch.randn(rows, batch, hidden)
    return (h, torch.randn(rows, batch, hidden)) if kind == "lstm" else h


# ---------------------------------------------------------------- cells


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_agrees_with_its_twin(kind, bias):
    ours_cls, twin_cls = CELLS[kind]
    torch.manual_seed(0)
    theirs = twin_cls(5, 7, bias=bias)
    ours = ours_cls.from_torch(theirs)
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in theirs.named_parameters()]
    x = torch.randn(4, 5)
    state = (torch.randn(4, 7), torch.randn(4, 7)) if kind == "lstm" else torch.randn(4, 7)
    for got, want in zip(parts(ours(x, state)), parts(theirs(x, state)), strict=True):
        torch.testing.assert_close(got, want, **TOL)
    for got, want in zip(parts(ours(x)), parts(theirs(x)), strict=True):  # zero initial state
        torch.testing.assert_close(got, want, **TOL)


def test_step_functions_are_what_the_cells_compute():
    torch.manual_seed(1)
    lstm, gru = nn.LSTMCell(3, 4), nn.GRUCell(3, 4)
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    for got, want in zip(lstm_step(x, (h, c), *lstm.parameters()), lstm(x, (h, c)), strict=True):
        torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(gru_step(x, h, *gru.parameters()), gru(x, h), **TOL)


def test_lstm_gates_do_what_their_names_say():
    """Forget gate open and input gate shut: the memory passes unchanged; the reverse: it is overwritten."""
    hidden = 3
    weight_ih, weight_hh, bias = torch.zeros(4 * hidden, 2), torch.zeros(4 * hidden, hidden), torch.zeros(4 * hidden)
    keep = bias.clone()
    keep[gate_slice("forget", hidden)] = 50.0  # f = 1
    keep[gate_slice("input", hidden)] = -50.0  # i = 0
    x, h, c = torch.randn(5, 2), torch.randn(5, hidden), torch.randn(5, hidden)
    _, kept = lstm_step(x, (h, c), weight_ih, weight_hh, keep, torch.zeros_like(keep))
    torch.testing.assert_close(kept, c)
    overwrite = -keep
    overwrite[gate_slice("cell", hidden)] = 50.0  # g = 1
    _, written = lstm_step(x, (h, c), weight_ih, weight_hh, overwrite, torch.zeros_like(keep))
    torch.testing.assert_close(written, torch.ones_like(c))


def test_gru_update_gate_keeps_the_old_state_in_pytorchs_convention():
    hidden = 3
    weight_ih, weight_hh, bias = torch.randn(3 * hidden, 2), torch.randn(3 * hidden, hidden), torch.zeros(3 * hidden)
    bias[gate_slice("update", hidden)] = 50.0  # z = 1
    x, h = torch.randn(4, 2), torch.randn(4, hidden)
    torch.testing.assert_close(gru_step(x, h, weight_ih, weight_hh, bias, torch.zeros_like(bias)), h)
    cell = nn.GRUCell(2, hidden)
    with torch.no_grad():
        for parameter, value in zip(
            cell.parameters(), (weight_ih, weight_hh, bias, torch.zeros_like(bias)), strict=True
        ):
            parameter.copy_(value)
    torch.testing.assert_close(cell(x, h), h)


# ---------------------------------------------------------------- layers against torch.nn


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_layer_agrees_with_its_twin_outputs_states_and_gradients(kind, num_layers, bidirectional, padded):
    ours_cls, twin_cls = LAYERS[kind]
    torch.manual_seed(2)
    theirs = twin_cls(4, 5, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    ours = ours_cls.from_torch(theirs)
    rows = num_layers * (2 if bidirectional else 1)
    inputs = torch.randn(5, 9, 4, requires_grad=True)
    state = map(lambda part: part.requires_grad_(), parts(random_state(kind, rows, 5, 5)))
    state = tuple(state) if kind == "lstm" else next(state)
    lengths = torch.tensor([6, 2, 9, 1, 4]) if padded else None

    expected, expected_state = run_recurrent(theirs, inputs, state, lengths)  # packed when padded
    outputs, final = ours(inputs, state, lengths)
    assert outputs.shape == (5, 9, 5 * (2 if bidirectional else 1))
    torch.testing.assert_close(outputs, expected, **TOL)
    for got, want in zip(parts(final), parts(expected_state), strict=True):
        assert got.shape == (rows, 5, 5)
        torch.testing.assert_close(got, want, **TOL)
    if padded:
        for b, length in enumerate(lengths.tolist()):
            assert (outputs[b, length:] == 0).all()

    weights = torch.randn_like(expected)
    leaves = [inputs, *parts(state)]

    def gradients(out, last, module):
        loss = (out * weights).sum() + sum((part**2).sum() for part in parts(last))
        return torch.autograd.grad(loss, leaves + list(module.parameters()))

    for got, want in zip(gradients(outputs, final, ours), gradients(expected, expected_state, theirs), strict=True):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_parameter_names_are_the_twins_and_from_torch_is_one_load_state_dict(kind):
    ours_cls, twin_cls = LAYERS[kind]
    theirs = twin_cls(3, 4, num_layers=2, bidirectional=True, bias=True)
    ours = ours_cls(3, 4, num_layers=2, bidirectional=True)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict())  # strict: every name matches
    theirs.load_state_dict(ours.state_dict())  # and back
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert str(ours) == str(theirs).replace(twin_cls.__name__, ours_cls.__name__)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_from_torch_keeps_dtype_device_and_copies(kind):
    ours_cls, twin_cls = LAYERS[kind]
    theirs = twin_cls(2, 3, bias=False).double()  # time-major: the weights are the same
    ours = ours_cls.from_torch(theirs)
    assert ours.weight_ih_l0.dtype == torch.float64
    assert not ours.bias
    assert not hasattr(ours, "bias_ih_l0")
    with torch.no_grad():
        theirs.weight_hh_l0.add_(1.0)
    assert not torch.equal(ours.weight_hh_l0, theirs.weight_hh_l0)
    outputs, _ = ours(torch.randn(2, 5, 2, dtype=torch.float64))
    assert outputs.dtype == torch.float64


def test_time_major_twin_gives_the_same_function():
    torch.manual_seed(3)
    theirs = nn.LSTM(3, 4)  # (T, B, D)
    ours = LSTM.from_torch(theirs)
    inputs = torch.randn(2, 6, 3)
    expected, (h, c) = theirs(inputs.transpose(0, 1))
    outputs, (our_h, our_c) = ours(inputs)
    torch.testing.assert_close(outputs, expected.transpose(0, 1), **TOL)
    torch.testing.assert_close(our_h, h, **TOL)
    torch.testing.assert_close(our_c, c, **TOL)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_between_layers_only_in_training(kind):
    ours_cls, twin_cls = LAYERS[kind]
    torch.manual_seed(4)
    theirs = twin_cls(3, 8, num_layers=2, dropout=0.5, batch_first=True)
    ours = ours_cls.from_torch(theirs)
    assert ours.dropout == 0.5
    inputs = torch.randn(4, 5, 3)
    ours.eval()
    theirs.eval()
    torch.testing.assert_close(ours(inputs)[0], theirs(inputs)[0], **TOL)
    ours.train()
    assert not torch.allclose(ours(inputs)[0], theirs(inputs)[0])


# ---------------------------------------------------------------- agreement with d2l


def test_gru_agrees_with_d2l_gru():
    """d2l 1.0.3 ships a stacked GRU (d2l.GRU, time-major, around nn.GRU); its LSTM and GRU written from scratch
    live only in the book's pages, not in the package."""
    torch.manual_seed(5)
    theirs = d2l.GRU(num_inputs=4, num_hiddens=6, num_layers=2)
    ours = GRU.from_torch(theirs.rnn)
    inputs, h0 = torch.randn(3, 7, 4), torch.randn(2, 3, 6)
    expected, expected_h = theirs(inputs.transpose(0, 1), h0)  # (T, B, H)
    outputs, h_n = ours(inputs, h0)
    torch.testing.assert_close(outputs, expected.transpose(0, 1), **TOL)
    torch.testing.assert_close(h_n, expected_h, **TOL)


# ---------------------------------------------------------------- properties

sizes = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 3), st.integers(1, 4))  # B, T, D, H


@given(st.sampled_from(["lstm", "gru"]), sizes, st.booleans(), st.integers(0, 2**16), st.data())
def test_each_padded_sequence_is_run_on_its_own(kind, shape, bidirectional, seed, data):
    """Padding, and whatever garbage it holds, changes nothing: each sequence gets what it gets alone."""
    batch, time, features, hidden = shape
    torch.manual_seed(seed)
    layer = LAYERS[kind][0](features, hidden, num_layers=data.draw(st.integers(1, 2)), bidirectional=bidirectional)
    lengths = data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch))
    inputs = torch.randn(batch, time, features)
    garbage = 100 * torch.randn(batch, 2, features)
    outputs, final = layer(torch.cat([inputs, garbage], 1), lengths=torch.tensor(lengths))
    assert (outputs[:, time:] == 0).all()
    for b, length in enumerate(lengths):
        alone, alone_final = layer(inputs[b : b + 1, :length])
        torch.testing.assert_close(outputs[b : b + 1, :length], alone, **TOL)
        for got, want in zip(parts(final), parts(alone_final), strict=True):
            torch.testing.assert_close(got[:, b], want[:, 0], **TOL)


@given(sizes, st.integers(0, 2**16))
def test_lstm_cell_state_moves_by_at_most_one_per_step_and_h_stays_in_minus_one_one(shape, seed):
    batch, time, features, hidden = shape
    torch.manual_seed(seed)
    cell = LSTMCell(features, hidden)
    h, c = torch.zeros(batch, hidden), torch.zeros(batch, hidden)
    for _ in range(time):
        new_h, new_c = cell(10 * torch.randn(batch, features), (h, c))
        # |c_t| <= f |c_{t-1}| + i |g| < |c_{t-1}| + 1
        assert (new_c.abs() <= c.abs() + 1).all()
        assert (new_h.abs() < 1).all()
        h, c = new_h, new_c


def test_parameter_counts():
    d, h = 10, 20
    assert sum(p.numel() for p in LSTMCell(d, h).parameters()) == 4 * (h * (d + h) + 2 * h)
    assert sum(p.numel() for p in GRUCell(d, h).parameters()) == 3 * (h * (d + h) + 2 * h)
    # a second bidirectional layer reads 2H features
    assert sum(p.numel() for p in GRU(d, h, 2, bidirectional=True).parameters()) == 2 * 3 * (
        h * (d + h) + 2 * h
    ) + 2 * 3 * (h * (2 * h + h) + 2 * h)


# ---------------------------------------------------------------- the forget gate's initialisation


@pytest.mark.parametrize("module", [nn.LSTM(3, 5, num_layers=2, bidirectional=True), LSTM(3, 5, num_layers=2)])
def test_set_forget_bias_sets_the_sum_of_both_biases(module):
    set_forget_bias_(module, 1.0)
    rows = gate_slice("forget", 5)
    for name, parameter in module.named_parameters():
        if name.startswith("bias_ih"):
            hh = getattr(module, name.replace("bias_ih", "bias_hh"))
            torch.testing.assert_close(parameter[rows] + hh[rows], torch.ones(5))
    x = torch.zeros(1, 3)
    gates = x @ module.weight_ih_l0.T + module.bias_ih_l0 + module.bias_hh_l0  # h = 0: the biases alone
    torch.testing.assert_close(torch.sigmoid(gates[0, rows]), torch.full((5,), 1 / (1 + math.exp(-1))))


def test_chrono_init_spreads_time_scales_up_to_max_lag():
    lstm = chrono_init_(nn.LSTM(2, 400), max_lag=50, generator=torch.Generator().manual_seed(0))
    forget = (lstm.bias_ih_l0 + lstm.bias_hh_l0)[gate_slice("forget", 400)]
    write = (lstm.bias_ih_l0 + lstm.bias_hh_l0)[gate_slice("input", 400)]
    torch.testing.assert_close(write, -forget)
    assert forget.min() >= 0
    assert forget.max() <= math.log(49) + 1e-6
    # the gate starts at u / (1 + u) with u uniform on [1, 49]: a memory of about 1 + u steps
    assert 20 < (1 + forget.exp()).mean().item() < 30
    ours = chrono_init_(LSTM(2, 4, bidirectional=True), max_lag=10)
    assert (ours.bias_ih_l0_reverse[gate_slice("forget", 4)] > 0).all()


def test_initialisation_errors():
    with pytest.raises(TypeError, match=r"must be a torch\.nn\.LSTM or companion\.gated_cells\.LSTM, got GRU"):
        set_forget_bias_(nn.GRU(2, 3), 1.0)
    with pytest.raises(ValueError, match="no biases"):
        chrono_init_(nn.LSTM(2, 3, bias=False), 10)
    with pytest.raises(ValueError, match="max_lag must be an int of at least 3"):
        chrono_init_(LSTM(2, 3), 2)
    with pytest.raises(ValueError, match="gate must be one of"):
        gate_slice("remember", 3)


# ---------------------------------------------------------------- the same interface everywhere


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_scratch_and_fused_layers_plug_into_the_language_model_and_the_forecaster(kind):
    ours_cls, twin_cls = LAYERS[kind]
    torch.manual_seed(6)
    fused = RNNLanguageModel(7, recurrent=twin_cls(7, 5, batch_first=True))
    scratch = RNNLanguageModel(7, recurrent=ours_cls.from_torch(fused.recurrent))
    scratch.head.load_state_dict(fused.head.state_dict())
    ids = torch.randint(0, 7, (3, 6))
    lengths = torch.tensor([6, 2, 4])
    torch.testing.assert_close(scratch(ids, lengths=lengths)[0], fused(ids, lengths=lengths)[0], **TOL)
    first, state = scratch(ids[:, :2])
    second, _ = scratch(ids[:, 2:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), scratch(ids)[0], **TOL)
    forecaster = RNNForecaster(horizon=2, recurrent=ours_cls(1, 4, bidirectional=True))
    assert forecaster(torch.randn(3, 10)).shape == (3, 2)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kind", "kwargs", "error", "message"),
    [
        ("lstm", {"state": torch.zeros(1, 2, 4)}, TypeError, r"an LSTM's state must be a pair \(h0, c0\) of tensors, "),
        ("lstm", {"state": (torch.zeros(1, 2, 4),)}, TypeError, r"pair \(h0, c0\).*got tuple"),
        ("lstm", {"state": (torch.zeros(1, 2, 4), torch.zeros(1, 3, 4))}, ValueError, r"c0 has size 3 in dimension 1"),
        ("lstm", {"state": (torch.zeros(2, 4), torch.zeros(2, 4))}, ValueError, r"h0 must have 3 dimensions"),
        ("gru", {"state": (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))}, TypeError, r"only an LSTM's state is a pair"),
        ("gru", {"state": torch.zeros(1, 2, 5)}, ValueError, r"h0 has size 5 in dimension 2.*hidden_size has size 4"),
        (
            "gru",
            {"inputs": torch.randn(2, 3)},
            ValueError,
            r"inputs must have 3 dimensions \(batch, time, input_size\)",
        ),
        ("gru", {"inputs": torch.randn(2, 3, 2)}, ValueError, r"inputs has size 2 in dimension 2"),
        ("lstm", {"lengths": torch.tensor([4, 0])}, ValueError, r"lengths must lie between 1 and inputs' time dim"),
        ("lstm", {"lengths": torch.tensor([9, 1])}, ValueError, r"got values from 1 to 9"),
        ("gru", {"lengths": torch.tensor([2.0, 1.0])}, TypeError, r"lengths must hold integers"),
        ("gru", {"lengths": torch.tensor([2, 1, 3])}, ValueError, r"lengths has size 3 in dimension 0"),
    ],
)
def test_layer_errors_name_the_argument_and_its_shape(kind, kwargs, error, message):
    layer = LAYERS[kind][0](3, 4)
    kwargs = {"inputs": torch.randn(2, 4, 3)} | kwargs
    with pytest.raises(error, match=message):
        layer(**kwargs)


def test_bidirectional_state_must_have_both_directions():
    with pytest.raises(ValueError, match=r"h0 has size 2 in dimension 0.*num_layers \* num_directions has size 4"):
        GRU(3, 4, num_layers=2, bidirectional=True)(torch.randn(1, 2, 3), torch.zeros(2, 1, 4))


def test_cell_errors():
    with pytest.raises(TypeError, match=r"an LSTM cell's state must be a pair \(h, c\)"):
        LSTMCell(3, 4)(torch.randn(2, 3), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="a GRU cell's state is one tensor"):
        GRUCell(3, 4)(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"c has size 5 in dimension 1.*hidden_size has size 4"):
        LSTMCell(3, 4)(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match=r"x must have 2 dimensions \(batch, input_size\)"):
        GRUCell(3, 4)(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="x is an empty batch"):
        LSTMCell(3, 4)(torch.randn(0, 3))


def test_constructor_and_from_torch_errors():
    with pytest.raises(ValueError, match="batch_first must be True"):
        LSTM(3, 4, batch_first=False)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        GRU(3, 4, dropout=1.0)
    with pytest.raises(ValueError, match="hidden_size must be positive"):
        GRUCell(3, 0)
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.LSTM, got GRU"):
        LSTM.from_torch(nn.GRU(3, 4))
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.GRUCell, got LSTMCell"):
        GRUCell.from_torch(nn.LSTMCell(3, 4))
    with pytest.raises(ValueError, match="without proj_size"):
        LSTM.from_torch(nn.LSTM(3, 4, proj_size=2))
