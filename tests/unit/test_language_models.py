"""RNNLanguageModel: shapes, one-hot and embedding inputs, state carrying, pluggable recurrent layers, errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion.language_models import RNNLanguageModel, check_ids, detach_state, next_token_loss

V, H = 11, 7


@pytest.fixture
def model():
    torch.manual_seed(0)
    return RNNLanguageModel(V, H)


def ids(batch=3, time=5, seed=0):
    return torch.randint(0, V, (batch, time), generator=torch.Generator().manual_seed(seed))


def test_logits_and_state_shapes(model):
    logits, state = model(ids(3, 5))
    assert logits.shape == (3, 5, V)
    assert state.shape == (1, 3, H)
    assert isinstance(model.recurrent, nn.RNN)
    assert model.recurrent.batch_first


def test_one_hot_model_equals_its_formula(model):
    """logits = head(tanh-RNN(one_hot(ids))), computed by hand from the weights."""
    x = ids(2, 4)
    rnn = model.recurrent
    h = torch.zeros(2, H)
    expected = []
    for t in range(4):
        x_t = F.one_hot(x[:, t], V).float()  # (B, V)
        h = torch.tanh(x_t @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.T + rnn.bias_hh_l0)
        expected.append(h @ model.head.weight.T + model.head.bias)
    logits, state = model(x)
    torch.testing.assert_close(logits, torch.stack(expected, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state[0], h, rtol=1e-5, atol=1e-5)


def test_embedding_inputs():
    model = RNNLanguageModel(V, H, embedding_dim=4)
    assert model.recurrent.input_size == 4
    logits, _ = model(ids())
    assert logits.shape == (3, 5, V)
    assert "embedding_dim=4" in repr(model)


def test_carrying_the_state_equals_one_long_pass(model):
    x = ids(2, 10)
    whole, final = model(x)
    first, state = model(x[:, :6])
    second, state = model(x[:, 6:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    torch.testing.assert_close(state, final)


def test_a_fresh_state_forgets_the_past(model):
    x = ids(2, 10)
    _, state = model(x[:, :6])
    carried, _ = model(x[:, 6:], state)
    fresh, _ = model(x[:, 6:])
    assert not torch.allclose(carried, fresh)


def test_detach_state_cuts_the_graph_for_tensors_and_tuples(model):
    _, state = model(ids())
    assert state.requires_grad
    assert not detach_state(state).requires_grad
    pair = (state, state * 2)
    assert all(not part.requires_grad for part in detach_state(pair))
    assert detach_state(None) is None
    with pytest.raises(TypeError, match="state must be"):
        detach_state("h")


@pytest.mark.parametrize("layer", ["gru", "lstm", "rnn2"])
def test_other_recurrent_layers_plug_in(layer):
    recurrent = {
        "gru": nn.GRU(V, H, batch_first=True),
        "lstm": nn.LSTM(V, H, batch_first=True),
        "rnn2": nn.RNN(V, H, num_layers=2, batch_first=True),
    }[layer]
    model = RNNLanguageModel(V, recurrent=recurrent)
    assert model.hidden_size == H
    x = ids(2, 8)
    whole, _ = model(x)
    first, state = model(x[:, :3])
    second, _ = model(x[:, 3:], state)
    assert whole.shape == (2, 8, V)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)


class LoopRNN(nn.Module):
    """A minimal from-scratch RNN with nn.RNN's interface, as companion.recurrent_cells provides."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.cell = nn.RNNCell(input_size, hidden_size)

    def forward(self, inputs, h0=None):
        h = inputs.new_zeros(inputs.shape[0], self.hidden_size) if h0 is None else h0[0]
        outputs = []
        for t in range(inputs.shape[1]):
            h = self.cell(inputs[:, t], h)
            outputs.append(h)
        return torch.stack(outputs, 1), h[None]


def test_a_from_scratch_layer_with_the_same_weights_gives_the_same_logits():
    torch.manual_seed(1)
    fused = RNNLanguageModel(V, H)
    scratch = RNNLanguageModel(V, recurrent=LoopRNN(V, H))
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(scratch.recurrent.cell, name).copy_(getattr(fused.recurrent, f"{name}_l0"))
        scratch.head.load_state_dict(fused.head.state_dict())
    x = ids(3, 6)
    torch.testing.assert_close(scratch(x)[0], fused(x)[0], rtol=1e-5, atol=1e-5)


def test_next_token_loss_is_the_mean_cross_entropy(model):
    x, y = ids(2, 5, seed=1), ids(2, 5, seed=2)
    logits, _ = model(x)
    expected = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    torch.testing.assert_close(next_token_loss(model, (x, y)), expected)


def test_training_lowers_the_loss_on_a_repeating_text():
    torch.manual_seed(0)
    model = RNNLanguageModel(4, 16, embedding_dim=8)
    text = torch.arange(4).repeat(10)[None]  # 0 1 2 3 0 1 2 3 ...
    batch = (text[:, :-1], text[:, 1:])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = next_token_loss(model, batch).item()
    for _ in range(60):
        optimizer.zero_grad()
        next_token_loss(model, batch).backward()
        optimizer.step()
    assert next_token_loss(model, batch).item() < 0.1 < first


# ---------------------------------------------------------------- errors


def test_ids_out_of_vocabulary_are_named(model):
    with pytest.raises(ValueError, match=r"ids holds ids \[11\] outside the vocabulary \[0, 11\)"):
        model(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[-1, 2]]))


def test_ids_of_the_wrong_rank_dtype_or_size(model):
    with pytest.raises(ValueError, match=r"ids must have 2 dimensions \(batch, time\), got shape \(5,\)"):
        model(torch.arange(5))
    with pytest.raises(TypeError, match=r"ids must hold integers, got dtype torch\.float32"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="ids is empty"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        check_ids([[1, 2]], V, 2, "(batch, time)")


def test_constructor_errors():
    with pytest.raises(ValueError, match="vocab_size must be positive"):
        RNNLanguageModel(0, H)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        RNNLanguageModel(3.0, H)
    with pytest.raises(ValueError, match="pass hidden_size"):
        RNNLanguageModel(V)
    with pytest.raises(ValueError, match=r"recurrent\.input_size is 5"):
        RNNLanguageModel(V, recurrent=nn.RNN(5, H, batch_first=True))
    with pytest.raises(ValueError, match="batch-first"):
        RNNLanguageModel(V, recurrent=nn.RNN(V, H))
    with pytest.raises(ValueError, match="bidirectional"):
        RNNLanguageModel(V, recurrent=nn.GRU(V, H, batch_first=True, bidirectional=True))
    with pytest.raises(ValueError, match=r"hidden_size is 3 but recurrent\.hidden_size is 7"):
        RNNLanguageModel(V, 3, recurrent=nn.RNN(V, H, batch_first=True))
    with pytest.raises(TypeError, match=r"attribute 'input_size'; Linear has not"):
        RNNLanguageModel(V, recurrent=nn.Linear(V, H))
    with pytest.raises(TypeError, match=r"must be a torch\.nn\.Module"):
        RNNLanguageModel(V, recurrent="rnn")


def test_agrees_with_d2l_rnnlm_given_the_same_weights():
    """d2l.RNNLM is the same model (one-hot -> nn.RNN -> linear), time-major inside: same weights, same logits."""
    from d2l import torch as d2l

    torch.manual_seed(2)
    ours = RNNLanguageModel(V, H)
    theirs = d2l.RNNLM(d2l.RNN(V, H), vocab_size=V)
    theirs(torch.zeros(1, 1, dtype=torch.long))  # materialise d2l's LazyLinear head
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(theirs.rnn.rnn, name).copy_(getattr(ours.recurrent, name))
        theirs.linear.load_state_dict(ours.head.state_dict())
    x, y = ids(4, 9, seed=3), ids(4, 9, seed=4)
    torch.testing.assert_close(ours(x)[0], theirs(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(next_token_loss(ours, (x, y)), theirs.loss(theirs(x), y), rtol=1e-5, atol=1e-5)
