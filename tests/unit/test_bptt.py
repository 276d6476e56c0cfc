"""Backpropagation through time: the recurrent matrix has the radius asked for, the measured gradient norms are
exactly a^n in the linear regime, the explicit unroll is nn.RNN, and truncated BPTT really cuts the graph."""

import math

import pytest
import torch
from torch import nn

from companion.bptt import (
    CarriedState,
    Chunk,
    detach_state,
    gradient_norms,
    jacobian_product_norms,
    manual_bptt,
    recurrent_matrix,
    rnn_with_radius,
    spectral_radius,
    stream_chunks,
    unroll,
)
from companion.training import Trainer


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", ["orthogonal", "gaussian"])
@pytest.mark.parametrize("radius", [0.5, 0.9, 1.1, 2.0])
def test_recurrent_matrix_has_the_spectral_radius_asked_for(kind: str, radius: float) -> None:
    matrix = recurrent_matrix(32, radius, kind, generator())
    assert matrix.shape == (32, 32)
    assert spectral_radius(matrix) == pytest.approx(radius, rel=1e-5)


def test_scaled_orthogonal_matrix_stretches_every_vector_by_the_radius() -> None:
    matrix = recurrent_matrix(16, 0.9, generator=generator()).double()
    singular_values = torch.linalg.svdvals(matrix)
    assert torch.allclose(singular_values, torch.full((16,), 0.9, dtype=torch.float64), atol=1e-6)


def test_recurrent_matrix_is_reproducible_from_a_generator() -> None:
    assert torch.equal(
        recurrent_matrix(8, 1.0, generator=generator(3)), recurrent_matrix(8, 1.0, generator=generator(3))
    )


def test_unroll_with_tanh_gives_exactly_the_states_of_nn_rnn() -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(3, 5, batch_first=True)
    inputs, h0 = torch.randn(4, 7, 3), torch.randn(4, 5)
    states = unroll(rnn, inputs, h0)
    outputs, last = rnn(inputs, h0[None])
    assert len(states) == 8
    assert torch.equal(states[0], h0)
    assert torch.allclose(torch.stack(states[1:], dim=1), outputs, atol=1e-6)
    assert torch.allclose(states[-1], last[0], atol=1e-6)


@pytest.mark.parametrize("radius", [0.9, 1.1])
def test_linear_gradient_norm_is_exactly_a_to_the_n(radius: float) -> None:
    rnn = rnn_with_radius(2, 32, radius, generator=generator())
    inputs = torch.randn(3, 100, 2, generator=generator(1))
    norms = gradient_norms(rnn, inputs, activation="linear")
    assert norms.shape == (101,)
    expected = torch.tensor([radius**n for n in range(101)], dtype=torch.float64)
    assert torch.allclose(norms, expected, rtol=1e-5)
    assert norms[100].item() == pytest.approx(radius**100, rel=1e-5)


def test_gradient_norm_agrees_with_autograd_on_h0_of_nn_rnn() -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(3, 6, batch_first=True)
    inputs, direction = torch.randn(1, 9, 3), torch.nn.functional.normalize(torch.randn(6), dim=0)
    h0 = torch.randn(1, 6, requires_grad=True)
    _, last = rnn(inputs, h0[None])
    (last[0] @ direction).sum().backward()
    norms = gradient_norms(rnn, inputs, h0, direction=direction)
    assert norms[9].item() == pytest.approx(h0.grad.norm().item(), rel=1e-5)
    assert norms[0].item() == pytest.approx(1.0)


def test_tanh_shrinks_the_gradient_below_the_linear_one() -> None:
    rnn = rnn_with_radius(2, 32, 1.1, generator=generator())
    inputs = torch.randn(4, 50, 2, generator=generator(1))
    tanh, linear = gradient_norms(rnn, inputs), gradient_norms(rnn, inputs, activation="linear")
    assert (tanh <= linear * (1 + 1e-5)).all()  # |tanh'| <= 1 at every step
    assert tanh[50] < linear[50] / 10


@pytest.mark.parametrize("activation", ["tanh", "linear"])
def test_jacobian_product_norms_are_the_spectral_norms_of_autograd_jacobians(activation: str) -> None:
    rnn = rnn_with_radius(2, 5, 1.3, kind="gaussian", generator=generator()).double()
    inputs, h0 = torch.randn(2, 6, 2, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    norms = jacobian_product_norms(rnn, inputs, h0, activation)
    assert norms.shape == (7,)
    assert norms[0].item() == pytest.approx(1.0)
    for n in (1, 3, 6):
        start = unroll(rnn, inputs, h0, activation)[6 - n]  # h_{T-n}, (B, H)
        per_example = []
        for b in range(2):

            def last_state(h: torch.Tensor, b: int = b, n: int = n) -> torch.Tensor:
                rest = inputs[b : b + 1, 6 - n :]  # the steps after T - n
                return unroll(rnn, rest, h[None], activation)[-1][0]  # (H,)

            jacobian = torch.autograd.functional.jacobian(last_state, start[b])  # (H, H)
            per_example.append(torch.linalg.matrix_norm(jacobian, ord=2))
        assert norms[n].item() == pytest.approx(torch.stack(per_example).mean().item(), rel=1e-9)


def test_jacobian_product_norms_of_an_orthogonal_linear_rnn_are_a_to_the_n() -> None:
    rnn = rnn_with_radius(2, 16, 0.9, generator=generator())
    norms = jacobian_product_norms(rnn, torch.randn(3, 40, 2, generator=generator(1)), activation="linear")
    assert torch.allclose(norms, torch.tensor([0.9**n for n in range(41)], dtype=torch.float64), rtol=1e-5)


def test_a_non_normal_matrix_can_grow_the_gradient_although_its_radius_is_below_one() -> None:
    rnn = rnn_with_radius(2, 32, 0.9, kind="gaussian", generator=generator())
    norms = jacobian_product_norms(rnn, torch.randn(3, 10, 2, generator=generator(1)), activation="linear")
    assert norms[1] > 1  # |W_h| > 1 > 0.9: one step can stretch some vector
    assert (norms[1:] > torch.tensor([0.9**n for n in range(1, 11)], dtype=torch.float64)).all()


def test_gradient_norms_does_not_leave_gradients_on_the_rnn() -> None:
    rnn = rnn_with_radius(2, 4, 0.9, generator=generator())
    gradient_norms(rnn, torch.randn(2, 5, 2))
    assert all(parameter.grad is None for parameter in rnn.parameters())


def test_bad_input_is_named() -> None:
    rnn = rnn_with_radius(2, 4, 0.9, generator=generator())
    with pytest.raises(
        ValueError, match=r"inputs must have 3 dimensions \(batch, time, features\), got shape \(5, 2\)"
    ):
        gradient_norms(rnn, torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"inputs has size 3 in dimension 2.*rnn.input_size has size 2"):
        gradient_norms(rnn, torch.randn(1, 5, 3))
    with pytest.raises(ValueError, match=r"h0 has size 7 in dimension 1.*rnn.hidden_size"):
        unroll(rnn, torch.randn(1, 5, 2), torch.randn(1, 7))
    with pytest.raises(ValueError, match="direction must be a unit vector"):
        gradient_norms(rnn, torch.randn(1, 5, 2), direction=torch.ones(4))
    with pytest.raises(ValueError, match="activation must be one of"):
        gradient_norms(rnn, torch.randn(1, 5, 2), activation="relu")
    with pytest.raises(ValueError, match="one-layer"):
        gradient_norms(nn.RNN(2, 4, num_layers=2, batch_first=True), torch.randn(1, 5, 2))
    with pytest.raises(TypeError, match=r"rnn must be a torch\.nn\.RNN, got LSTM"):
        unroll(nn.LSTM(2, 4, batch_first=True), torch.randn(1, 5, 2))
    with pytest.raises(ValueError, match="spectral_radius must be positive"):
        recurrent_matrix(4, 0.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        recurrent_matrix(4, 1.0, kind="uniform")
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        recurrent_matrix(0, 1.0)
    with pytest.raises(ValueError, match="matrix has size 3 in dimension 1"):
        spectral_radius(torch.randn(2, 3))


def test_stream_chunks_cut_the_stream_in_order() -> None:
    inputs, targets = torch.arange(20).reshape(2, 10), torch.arange(20).reshape(2, 10) + 100
    chunks = stream_chunks(inputs, targets, 4)
    assert [chunk.start for chunk in chunks] == [0, 4, 8]
    assert [chunk.inputs.shape[1] for chunk in chunks] == [4, 4, 2]
    assert torch.equal(torch.cat([chunk.inputs for chunk in chunks], dim=1), inputs)
    assert torch.equal(torch.cat([chunk.targets for chunk in chunks], dim=1), targets)


def test_stream_chunks_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="chunk_length must be a positive int, got 0"):
        stream_chunks(torch.zeros(2, 5), torch.zeros(2, 5), 0)
    with pytest.raises(ValueError, match="targets has size 4 in dimension 1"):
        stream_chunks(torch.zeros(2, 5), torch.zeros(2, 4), 2)
    with pytest.raises(ValueError, match=r"must be \(batch, time, \.\.\.\)"):
        stream_chunks(torch.zeros(5), torch.zeros(5), 2)


def test_detach_state_cuts_tensors_and_tuples() -> None:
    h = torch.ones(2, 3, requires_grad=True) * 2
    assert detach_state(None) is None
    assert not detach_state(h).requires_grad
    detached = detach_state((h, h + 1))
    assert isinstance(detached, tuple)
    assert not any(part.requires_grad for part in detached)
    assert torch.equal(detached[1], h + 1)
    with pytest.raises(TypeError, match="state must be a tensor"):
        detach_state([h])


class Echo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(1, 8, batch_first=True)
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, state = self.rnn(x, state)
        return self.out(outputs), state


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def test_carried_state_carries_the_value_but_cuts_the_graph() -> None:
    torch.manual_seed(0)
    model = Echo()
    inputs = torch.randn(2, 6, 1, requires_grad=True)
    first, second = stream_chunks(inputs, torch.zeros(2, 6, 1), 3)
    loss = CarriedState(mse)
    loss(model, first)
    carried = loss.state
    assert not carried.requires_grad
    # The forward pass remembers: the carried state is the state after the first chunk ...
    _, full_state = model.rnn(inputs)
    _, state_after_first = model.rnn(inputs[:, :3])
    assert torch.allclose(carried, state_after_first.detach())
    # ... but the second chunk's loss sends no gradient back into the first chunk's inputs.
    loss(model, second).backward()
    assert inputs.grad is not None
    assert torch.count_nonzero(inputs.grad[:, :3]) == 0
    assert torch.count_nonzero(inputs.grad[:, 3:]) > 0
    # and over the whole stream, the carried state gives the outputs of one uninterrupted run
    assert torch.allclose(loss.state, full_state.detach(), atol=1e-6)


def test_carried_state_resets_at_the_start_of_the_stream() -> None:
    torch.manual_seed(0)
    model = Echo()
    chunks = stream_chunks(torch.randn(2, 4, 1), torch.zeros(2, 4, 1), 2)
    loss = CarriedState(mse)
    first_loss = loss(model, chunks[0]).item()
    loss(model, chunks[1])
    assert loss.state is not None
    assert loss(model, chunks[0]).item() == first_loss  # start == 0: from a zero state again
    loss.reset()
    assert loss.state is None


def test_carried_state_trains_with_the_trainer() -> None:
    torch.manual_seed(0)
    model = Echo()
    inputs = torch.randn(4, 60, 1, generator=generator(2))
    targets = torch.roll(inputs, 1, dims=1)  # echo the previous step
    trainer = Trainer(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-2),
        CarriedState(mse),
        clip_grad_norm=1.0,
        progress=False,
        device="cpu",
    )
    history = trainer.fit(stream_chunks(inputs, targets, 10), epochs=12)
    assert history.last("train_loss") < history.series("train_loss")[1][0] / 2
    assert math.isfinite(history.last("grad_norm"))


def test_carried_state_bad_input_is_named() -> None:
    with pytest.raises(TypeError, match="loss must be callable"):
        CarriedState(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="batches must be Chunk"):
        CarriedState(mse)(Echo(), (torch.zeros(1, 2, 1), torch.zeros(1, 2, 1)))
    assert Chunk(torch.zeros(1), torch.zeros(1), 0).start == 0


def test_manual_bptt_equals_autograd_through_nn_rnn() -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(3, 5, batch_first=True)
    inputs, h0, output_grads = torch.randn(4, 9, 3), torch.randn(4, 5), torch.randn(4, 9, 5)
    h0_leaf = h0.clone().requires_grad_(True)
    outputs, _ = rnn(inputs, h0_leaf[None])
    (outputs * output_grads).sum().backward()
    manual = manual_bptt(rnn, inputs, output_grads, h0)
    for name, parameter in rnn.named_parameters():
        assert torch.allclose(manual[name], parameter.grad, atol=1e-5), name
    assert torch.allclose(manual["h0"], h0_leaf.grad, atol=1e-5)


def test_manual_bptt_bad_input_is_named() -> None:
    rnn = nn.RNN(3, 5, batch_first=True)
    with pytest.raises(ValueError, match="output_grads has size 4 in dimension 2"):
        manual_bptt(rnn, torch.randn(2, 6, 3), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="output_grads has size 5 in dimension 1"):
        manual_bptt(rnn, torch.randn(2, 6, 3), torch.randn(2, 5, 5))


def test_rnn_with_radius_is_determined_by_its_generator() -> None:
    first = rnn_with_radius(3, 8, 0.9, generator=generator(5))
    torch.manual_seed(123)  # the global stream must not matter
    second = rnn_with_radius(3, 8, 0.9, generator=generator(5))
    for (name, a), (_, b) in zip(first.named_parameters(), second.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert first.weight_ih_l0.abs().max() <= 1 / math.sqrt(8)
    assert torch.count_nonzero(first.bias_hh_l0) == 0
