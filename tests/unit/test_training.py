"""companion.training: History, move_to and the Trainer (fitting, clipping, hooks, errors, checkpoints)."""

import dataclasses
import math
from collections import OrderedDict
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from companion.data import Examples, PairBatch
from companion.training import History, Trainer, loss_on, move_to

META = torch.device("meta")  # a device every machine has: moving to it proves a tensor was visited


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch
    return F.mse_loss(model(inputs), targets)


def regression_data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 3, generator=generator)  # (n, 3)
    true_weight = torch.tensor([[2.0, -1.0, 0.5]])  # (1, 3)
    targets = inputs @ true_weight.T + 0.3 + 0.01 * torch.randn(n, 1, generator=generator)  # (n, 1)
    return inputs, targets, true_weight


def fixed_batches(n: int = 32, batch_size: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    inputs, targets, _ = regression_data(n, seed)
    return list(zip(inputs.split(batch_size), targets.split(batch_size), strict=True))


def linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(3, 1)


def trainer_for(model: nn.Module, lr: float = 0.1, **options) -> Trainer:
    options.setdefault("progress", False)
    options.setdefault("device", "cpu")
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=lr), mse, **options)


# ---------------------------------------------------------------- History


def test_history_records_series_and_last():
    history = History([{"epoch": 1, "loss": 3.0}, {"epoch": 2, "loss": 2.0, "val": 5.0}, {"epoch": 3, "loss": 1.0}])
    assert len(history) == 3
    assert history.keys() == ["epoch", "loss", "val"]
    assert "val" in history
    assert "accuracy" not in history
    assert history.series("loss") == ([1, 2, 3], [3.0, 2.0, 1.0])
    assert history.series("val") == ([2], [5.0])
    assert history.last("loss") == 1.0
    assert repr(history) == "History(3 epochs, keys=['epoch', 'loss', 'val'])"


def test_history_copies_the_records_it_is_given():
    record = {"epoch": 1, "loss": 1.0}
    history = History([record])
    history.append(record)
    record["loss"] = 99.0
    assert history.series("loss") == ([1, 1], [1.0, 1.0])


def test_history_names_an_unknown_key():
    with pytest.raises(KeyError, match=r"key 'val_loss' was never recorded; recorded keys are \['epoch', 'loss'\]"):
        History([{"epoch": 1, "loss": 1.0}]).series("val_loss")
    with pytest.raises(KeyError, match=r"never recorded"):
        History().last("loss")


# ---------------------------------------------------------------- move_to


class Pair(NamedTuple):
    left: torch.Tensor
    right: torch.Tensor


@dataclasses.dataclass
class Labelled:
    data: torch.Tensor
    name: str


def test_move_to_moves_a_tensor():
    assert move_to(torch.ones(2), META).device == META


def test_move_to_walks_containers_and_keeps_their_types():
    batch = {
        "tuple": (torch.ones(1), 3),
        "list": [torch.ones(1), [torch.ones(2)]],
        "named": Pair(torch.ones(1), torch.zeros(1)),
        "examples": Examples(torch.ones(2, 3), torch.ones(2)),
        "pair": PairBatch(torch.ones(2, 3), torch.tensor([3, 1]), torch.ones(2, 2), torch.tensor([2, 2])),
        "dataclass": Labelled(torch.ones(1), "x"),
        "other": ("text", None, 1.5),
    }
    moved = move_to(batch, META)
    assert type(moved["tuple"]) is tuple
    assert moved["tuple"][1] == 3
    assert type(moved["list"]) is list
    assert type(moved["list"][1]) is list
    assert type(moved["named"]) is Pair
    assert type(moved["examples"]) is Examples
    assert type(moved["pair"]) is PairBatch
    assert type(moved["dataclass"]) is Labelled
    assert moved["dataclass"].name == "x"
    assert moved["other"] == ("text", None, 1.5)
    tensors = [
        moved["tuple"][0],
        moved["list"][0],
        moved["list"][1][0],
        *moved["named"],
        *moved["examples"],
        *dataclasses.astuple(moved["pair"]),
        moved["dataclass"].data,
    ]
    assert all(tensor.device == META for tensor in tensors)
    assert batch["tuple"][0].device.type == "cpu"  # the original batch is left where it was


def test_move_to_turns_any_mapping_into_a_dict():
    moved = move_to(OrderedDict(a=torch.ones(1)), META)
    assert moved["a"].device == META


# ---------------------------------------------------------------- fitting


def test_fit_learns_a_linear_regression_and_records_history():
    inputs, targets, true_weight = regression_data(128)
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=16, shuffle=True)
    model = linear()
    trainer = trainer_for(model, lr=0.1)
    history = trainer.fit(loader, epochs=15)
    assert history is trainer.history
    assert len(history) == trainer.epoch == 15
    losses = history.series("train_loss")[1]
    assert losses[-1] < 0.01 * losses[0]
    assert losses[-1] < 1e-3
    torch.testing.assert_close(model.weight.detach(), true_weight, atol=0.02, rtol=0)
    assert model.bias.item() == pytest.approx(0.3, abs=0.02)
    assert history.keys() == ["epoch", "train_loss", "grad_norm", "seconds"]
    assert [record["epoch"] for record in history.records] == list(range(1, 16))
    assert all(record["seconds"] >= 0 and record["grad_norm"] > 0 for record in history.records)


def test_train_loss_is_the_mean_over_the_epochs_batches():
    batches = fixed_batches()
    model = linear()
    with torch.no_grad():
        losses = [float(mse(model, batch)) for batch in batches]
    trainer = trainer_for(model, lr=0.0)  # no learning: every batch sees the initial weights
    trainer.fit(batches, epochs=1)
    assert trainer.history.last("train_loss") == pytest.approx(sum(losses) / len(losses))


def test_fit_continues_counting_epochs():
    trainer = trainer_for(linear())
    trainer.fit(fixed_batches(), epochs=2)
    trainer.fit(fixed_batches(), epochs=3)
    assert [record["epoch"] for record in trainer.history.records] == [1, 2, 3, 4, 5]


def test_fit_accepts_a_loader_without_len():
    class Stream:
        def __iter__(self):
            return iter(fixed_batches())

    trainer = trainer_for(linear())
    assert len(trainer.fit(Stream(), epochs=2)) == 2


def test_default_device_is_pick_device(no_course_device):
    from companion.device import pick_device

    model = linear()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mse, progress=False)
    assert trainer.device == pick_device()


def test_model_is_moved_to_the_trainers_device():
    model = linear()
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mse, device="meta", progress=False)
    assert model.weight.device == META


def test_batches_reach_loss_fn_on_the_trainers_device():
    seen = []

    def loss_fn(model, batch):
        seen.append(batch.source.device)
        return model(batch.source.float()).sum() * 0.0

    model = nn.Linear(2, 1)
    batch = PairBatch(torch.ones(1, 2, dtype=torch.long), torch.tensor([2]), torch.ones(1, 1), torch.tensor([1]))
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, device="cpu", progress=False).fit([batch], 1)
    assert seen == [torch.device("cpu")]


def test_progress_bar_can_be_turned_off(capsys):
    trainer_for(linear(), progress=False).fit(fixed_batches(), epochs=1)
    assert capsys.readouterr().err == ""
    trainer_for(linear(), progress=True).fit(fixed_batches(), epochs=2)
    shown = capsys.readouterr().err
    assert "training" in shown
    assert "8/8" in shown  # 4 steps per epoch, 2 epochs
    assert "train loss=" in shown  # the last epoch's loss, in the bar's postfix


# ---------------------------------------------------------------- gradient clipping


def test_clip_grad_norm_bounds_the_update_and_records_the_norm_before_clipping():
    inputs, targets = torch.randn(8, 3) * 10, torch.randn(8, 1) * 100  # a huge gradient
    model = linear()
    reference = linear()
    mse(reference, (inputs, targets)).backward()
    norm = torch.cat([p.grad.flatten() for p in reference.parameters()]).norm().item()
    lr, clip = 0.1, 0.5
    assert norm > 10 * clip

    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    history = trainer_for(model, lr=lr, clip_grad_norm=clip).fit([(inputs, targets)], epochs=1)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])

    assert history.last("grad_norm") == pytest.approx(norm, rel=1e-5)  # measured before clipping
    assert (after - before).norm().item() <= lr * clip * (1 + 1e-5)
    assert (after - before).norm().item() == pytest.approx(lr * clip, rel=1e-4)


def test_without_clipping_the_same_step_is_much_larger():
    inputs, targets = torch.randn(8, 3) * 10, torch.randn(8, 1) * 100
    model = linear()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    history = trainer_for(model, lr=0.1).fit([(inputs, targets)], epochs=1)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.1 * history.last("grad_norm"), rel=1e-4)


@pytest.mark.parametrize("clip", [0, -1.0, float("nan")])
def test_clip_grad_norm_must_be_positive(clip):
    with pytest.raises(ValueError, match=r"^clip_grad_norm must be positive or None, got "):
        trainer_for(linear(), clip_grad_norm=clip)


# ---------------------------------------------------------------- scheduler and hooks


def test_scheduler_steps_after_every_optimizer_step():
    model = linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = Trainer(model, optimizer, mse, scheduler=scheduler, device="cpu", progress=False)
    trainer.fit(fixed_batches(), epochs=1)  # 4 steps
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5**4)


def test_loss_on_hook_records_val_loss_in_eval_mode_without_gradients():
    train, valid = fixed_batches(seed=0), fixed_batches(seed=1)
    model = nn.Sequential(nn.Linear(3, 1), nn.Dropout(0.5))
    seen = []

    def spy(model: nn.Module) -> dict[str, float]:
        seen.append((model.training, torch.is_grad_enabled()))
        return {"spy": torch.tensor(2.5)}

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = Trainer(model, optimizer, mse, evaluate=[loss_on(valid, mse), spy], device="cpu", progress=False)
    history = trainer.fit(train, epochs=3)
    assert seen == [(False, False)] * 3
    assert model.training  # back in training mode afterwards
    assert history.keys() == ["epoch", "train_loss", "grad_norm", "seconds", "val_loss", "spy"]
    assert history.last("spy") == 2.5
    assert isinstance(history.last("spy"), float)
    model.eval()
    with torch.no_grad():
        expected = sum(float(mse(model, batch)) for batch in valid) / len(valid)
    assert history.last("val_loss") == pytest.approx(expected)
    val_losses = history.series("val_loss")[1]
    assert val_losses[-1] < val_losses[0]


def test_evaluate_accepts_one_hook_or_several():
    def one(model):
        return {"one": 1.0}

    def two(model):
        return {"two": 2.0}

    model = linear()
    single = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mse, evaluate=one, progress=False)
    several = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mse, evaluate=[one, two], progress=False)
    assert single.fit(fixed_batches(), 1).records[0]["one"] == 1.0
    assert {"one", "two"} <= set(several.fit(fixed_batches(), 1).records[0])


def test_eval_every_runs_hooks_only_on_those_epochs():
    calls = []
    model = linear()
    trainer = trainer_for(
        model, evaluate=lambda model: calls.append(1) or {"val_loss": float(len(calls))}, eval_every=2
    )
    history = trainer.fit(fixed_batches(), epochs=5)
    assert len(calls) == 2
    assert history.series("val_loss") == ([2, 4], [1.0, 2.0])
    trainer.fit(fixed_batches(), epochs=1)  # epoch 6 continues the count
    assert history.series("val_loss")[0] == [2, 4, 6]


def test_eval_every_must_be_at_least_one():
    with pytest.raises(ValueError, match=r"^eval_every must be at least 1, got 0$"):
        trainer_for(linear(), eval_every=0)


def test_loss_on_an_empty_loader_is_named():
    trainer = trainer_for(linear(), evaluate=loss_on([], mse, name="test_loss"))
    with pytest.raises(ValueError, match=r"^the loader for 'test_loss' produced no batches$"):
        trainer.fit(fixed_batches(), epochs=1)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("epochs", [0, -1])
def test_fit_needs_at_least_one_epoch(epochs):
    with pytest.raises(ValueError, match=rf"^epochs must be at least 1, got {epochs}$"):
        trainer_for(linear()).fit(fixed_batches(), epochs=epochs)


def test_empty_loader_is_an_error():
    with pytest.raises(ValueError, match=r"^train_loader produced no batches; is the dataset empty"):
        trainer_for(linear()).fit([], epochs=1)


def test_a_data_loader_that_drops_its_only_batch_is_an_error():
    inputs, targets, _ = regression_data(5)
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=8, drop_last=True)
    with pytest.raises(ValueError, match=r"train_loader produced no batches"):
        trainer_for(linear()).fit(loader, epochs=1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_raises_floating_point_error_naming_epoch_and_step(bad):
    batches = fixed_batches()
    poisoned = []  # the third batch gives a non-finite loss once this holds something

    def loss_fn(model, batch):
        loss = mse(model, batch)
        return loss * bad if poisoned and batch[0] is batches[2][0] else loss

    model = linear()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, device="cpu", progress=False)
    trainer.fit(batches, epochs=1)
    poisoned.append(True)
    with pytest.raises(FloatingPointError, match=rf"^loss is {bad} at epoch 2, step 3; try a smaller learning rate"):
        trainer.fit(batches, epochs=1)


def test_a_diverging_model_stops_with_floating_point_error():
    with pytest.raises(FloatingPointError, match=r"loss is (inf|nan) at epoch"):
        trainer_for(linear(), lr=1e3).fit(fixed_batches(), epochs=50)


def test_non_scalar_loss_is_refused():
    model = linear()

    def per_example(model, batch):
        return F.mse_loss(model(batch[0]), batch[1], reduction="none").squeeze(1)

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), per_example, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"^loss_fn must return a scalar tensor, got \(8,\)$"):
        trainer.fit(fixed_batches(), epochs=1)


def test_a_float_loss_is_refused():
    model = linear()

    def as_float(model, batch):
        return mse(model, batch).detach().item()

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), as_float, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"^loss_fn must return a scalar tensor, got float$"):
        trainer.fit(fixed_batches(), epochs=1)


# ---------------------------------------------------------------- checkpoints


def make_trainer(seed: int) -> Trainer:
    model = linear(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)  # momentum: optimizer state matters
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.7)
    return Trainer(model, optimizer, mse, scheduler=scheduler, device="cpu", progress=False)


def assert_same_training_state(resumed: Trainer, straight: Trainer) -> None:
    for (name, mine), (_, theirs) in zip(
        resumed.model.state_dict().items(), straight.model.state_dict().items(), strict=True
    ):
        assert torch.equal(mine, theirs), name  # bitwise
    for mine, theirs in zip(
        resumed.optimizer.state_dict()["state"].values(),
        straight.optimizer.state_dict()["state"].values(),
        strict=True,
    ):
        assert torch.equal(mine["momentum_buffer"], theirs["momentum_buffer"])
    assert resumed.scheduler.state_dict() == straight.scheduler.state_dict()
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]

    def without_time(history: History) -> list[dict[str, float]]:
        return [{key: value for key, value in record.items() if key != "seconds"} for record in history.records]

    assert without_time(resumed.history) == without_time(straight.history)


def test_checkpoint_resume_equals_training_straight_through(tmp_path):
    batches = fixed_batches()
    straight = make_trainer(seed=0)
    straight.fit(batches, epochs=4)

    first = make_trainer(seed=0)
    first.fit(batches, epochs=2)
    first.save_checkpoint(tmp_path / "half.pt")

    resumed = make_trainer(seed=123)  # other initial weights: the checkpoint must overwrite them
    resumed.load_checkpoint(str(tmp_path / "half.pt"))  # a str path works too
    assert resumed.epoch == 2
    assert resumed.history.records == first.history.records
    resumed.fit(batches, epochs=2)
    assert_same_training_state(resumed, straight)


def test_checkpoint_resume_with_shuffling_and_dropout_in_a_fresh_session(tmp_path):
    inputs, targets, _ = regression_data(40)

    def session() -> Trainer:
        torch.manual_seed(0)  # what the top of every notebook does
        model = nn.Sequential(nn.Dropout(0.2), nn.Linear(3, 1))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        return Trainer(model, optimizer, mse, device="cpu", progress=False)

    def loader() -> DataLoader:
        return DataLoader(TensorDataset(inputs, targets), batch_size=8, shuffle=True)

    straight = session()
    straight.fit(loader(), epochs=3)

    first = session()
    first.fit(loader(), epochs=2)
    first.save_checkpoint(tmp_path / "ckpt.pt")

    resumed = session()  # a new session re-seeds: only the checkpoint knows where the random stream was
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    resumed.fit(loader(), epochs=1)
    for mine, theirs in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    assert resumed.history.last("train_loss") == straight.history.last("train_loss")


def test_checkpoint_without_scheduler_round_trip(tmp_path):
    trainer = trainer_for(linear())
    trainer.fit(fixed_batches(), epochs=1)
    trainer.save_checkpoint(tmp_path / "plain.pt")
    other = trainer_for(linear(seed=5))
    other.load_checkpoint(tmp_path / "plain.pt")
    assert torch.equal(other.model.weight, trainer.model.weight)
    assert len(other.history) == 1


def test_loading_a_checkpoint_with_a_scheduler_into_a_trainer_without_one_is_refused(tmp_path):
    make_trainer(seed=0).save_checkpoint(tmp_path / "with.pt")
    with pytest.raises(ValueError, match=r"the checkpoint and this Trainer disagree on whether there is a scheduler"):
        trainer_for(linear()).load_checkpoint(tmp_path / "with.pt")


def test_a_refused_checkpoint_leaves_the_trainer_unchanged(tmp_path):
    make_trainer(seed=0).save_checkpoint(tmp_path / "with.pt")
    trainer = trainer_for(linear(seed=7))
    weight = trainer.model.weight.detach().clone()
    with pytest.raises(ValueError, match=r"scheduler"):
        trainer.load_checkpoint(tmp_path / "with.pt")
    assert torch.equal(trainer.model.weight, weight)


def test_checkpoint_of_a_different_model_is_refused(tmp_path):
    trainer_for(linear()).save_checkpoint(tmp_path / "linear.pt")
    bigger = nn.Linear(4, 1)
    trainer = Trainer(bigger, torch.optim.SGD(bigger.parameters(), lr=0.1), mse, device="cpu", progress=False)
    with pytest.raises(RuntimeError, match=r"size mismatch for weight"):
        trainer.load_checkpoint(tmp_path / "linear.pt")


def test_checkpoint_history_survives_as_plain_numbers(tmp_path):
    trainer = trainer_for(linear(), evaluate=lambda model: {"val_loss": 0.25})
    trainer.fit(fixed_batches(), epochs=2)
    trainer.save_checkpoint(tmp_path / "h.pt")
    restored = trainer_for(linear())
    restored.load_checkpoint(tmp_path / "h.pt")
    assert restored.history.series("val_loss") == ([1, 2], [0.25, 0.25])
    assert all(math.isfinite(record["train_loss"]) for record in restored.history.records)
