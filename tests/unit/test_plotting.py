"""companion.plotting: training curves from a History and heatmaps (rendered headless with Agg)."""

import re

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes

from companion.plotting import plot_heatmap, plot_history
from companion.training import History


def make_history(epochs: int = 4, val_every: int = 2) -> History:
    return History(
        {"epoch": epoch, "train_loss": 1 / epoch, **({"val_loss": 2 / epoch} if epoch % val_every == 0 else {})}
        for epoch in range(1, epochs + 1)
    )


def test_backend_is_headless():
    assert matplotlib.get_backend().lower() == "agg"


def test_plot_history_draws_one_line_per_recorded_key(tmp_path):
    ax = plot_history(make_history(), title="losses")
    assert isinstance(ax, Axes)
    assert [line.get_label() for line in ax.get_lines()] == ["train loss", "val loss"]
    train, val = ax.get_lines()
    assert list(train.get_xdata()) == [1, 2, 3, 4]
    assert list(train.get_ydata()) == [1, 1 / 2, 1 / 3, 1 / 4]
    assert list(val.get_xdata()) == [2, 4]  # recorded every other epoch only
    assert list(val.get_ydata()) == [1, 1 / 2]
    assert ax.get_xlabel() == "epoch"
    assert ax.get_title() == "losses"
    assert ax.get_yscale() == "linear"
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["train loss", "val loss"]
    ax.figure.savefig(tmp_path / "history.png")
    assert (tmp_path / "history.png").stat().st_size > 0


def test_plot_history_skips_keys_never_recorded():
    history = make_history(val_every=100)  # no validation at all
    ax = plot_history(history)
    assert [line.get_label() for line in ax.get_lines()] == ["train loss"]


def test_plot_history_with_chosen_keys_on_a_given_axes_in_log_scale():
    _, given = plt.subplots()
    history = History({"epoch": epoch, "grad_norm": 10.0**epoch, "seconds": 0.1} for epoch in (1, 2, 3))
    ax = plot_history(history, keys=["grad_norm"], ax=given, log_y=True)
    assert ax is given
    assert len(ax.get_lines()) == 1
    assert ax.get_yscale() == "log"
    assert ax.get_title() == ""


def test_plot_history_marks_points_only_for_short_histories():
    assert plot_history(make_history(epochs=5)).get_lines()[0].get_marker() == "o"
    assert plot_history(make_history(epochs=40)).get_lines()[0].get_marker() in ("None", "", None)


def test_plot_history_refuses_when_no_key_was_recorded():
    with pytest.raises(ValueError, match=r"none of keys \['accuracy'\] was recorded; the history has \['epoch', "):
        plot_history(make_history(), keys=("accuracy",))


def test_plot_history_error_leaves_no_figure_behind():
    before = plt.get_fignums()
    with pytest.raises(ValueError, match=r"none of keys"):
        plot_history(make_history(), keys=("accuracy",))
    assert plt.get_fignums() == before


def test_plot_history_of_an_empty_history_is_refused():
    with pytest.raises(
        ValueError, match=r"none of keys \['train_loss', 'val_loss'\] was recorded; the history has \[\]"
    ):
        plot_history(History())


def test_plot_heatmap_of_a_tensor_with_labels(tmp_path):
    weights = torch.softmax(torch.randn(3, 4, requires_grad=True), dim=-1)  # (queries, keys), needs detach
    ax = plot_heatmap(weights, x_labels=list("abcd"), y_labels=["x", "y", "z"], title="attention")
    (image,) = ax.get_images()
    np.testing.assert_allclose(image.get_array(), weights.detach().numpy())
    assert [label.get_text() for label in ax.get_xticklabels()] == list("abcd")
    assert [label.get_text() for label in ax.get_yticklabels()] == ["x", "y", "z"]
    assert ax.get_title() == "attention"
    assert len(ax.figure.axes) == 2  # the heatmap and its colorbar
    ax.figure.savefig(tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 0


def test_plot_heatmap_of_an_array_without_colorbar_on_a_given_axes():
    _, given = plt.subplots()
    ax = plot_heatmap(np.eye(3), ax=given, colorbar=False, cmap="Reds")
    assert ax is given
    assert len(ax.figure.axes) == 1
    assert ax.get_images()[0].get_cmap().name == "Reds"


def test_plot_heatmap_accepts_nested_lists():
    ax = plot_heatmap([[0.0, 1.0], [1.0, 0.0]])
    assert ax.get_images()[0].get_array().shape == (2, 2)


@pytest.mark.parametrize("shape", [(2, 3, 4), (5,), ()])
def test_plot_heatmap_refuses_a_matrix_that_is_not_2d(shape):
    expected = re.escape(f"matrix must have 2 dimensions (rows, columns), got shape {shape!r}")
    with pytest.raises(ValueError, match=rf"^{expected}$"):
        plot_heatmap(torch.zeros(shape))


def test_plot_heatmap_refuses_the_wrong_number_of_labels():
    with pytest.raises(ValueError, match=r"^x_labels has 3 labels but matrix \(2, 4\) needs 4$"):
        plot_heatmap(torch.zeros(2, 4), x_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"^y_labels has 1 labels but matrix \(2, 4\) needs 2$"):
        plot_heatmap(torch.zeros(2, 4), y_labels=["a"])


def test_plot_heatmap_fixed_scale_draws_a_constant_matrix_in_its_own_colour():
    ax = plot_heatmap(torch.ones(2, 3), vmin=0, vmax=1, cmap="Greys", colorbar=False)
    image = ax.images[0]
    assert image.get_clim() == (0, 1)
    assert np.allclose(image.to_rgba(1.0), image.cmap(1.0))  # black for Greys, not the colour of the minimum


def memory_results() -> dict:
    def row(model, lag, accuracies, status="run"):
        if status != "run":
            return {"task": "blank", "model": model, "lag": lag, "status": status, "reason": "at chance"}
        mean = sum(accuracies) / len(accuracies)
        return {"task": "blank", "model": model, "lag": lag, "status": "run", "mean": mean,
                "min": min(accuracies), "max": max(accuracies), "chance": 0.125}  # fmt: skip

    rows = [row("rnn", 5, [1.0, 0.9]), row("rnn", 50, [0.2, 0.1]), row("rnn", 500, [], "skipped")]
    return {"rows": [*rows, row("gru", 5, [1.0, 1.0]), row("gru", 50, [0.9, 0.7])]}


def test_memory_curves_draw_one_line_per_model_with_its_spread_and_chance():
    from companion.plotting import MODEL_COLORS, plot_memory_curves

    ax = plot_memory_curves(memory_results(), "blank", ["rnn", "gru"], labels={"rnn": "RNN"}, title="blank")
    lines = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(lines) == 2
    assert np.allclose(lines[0].get_ydata(), [0.95, 0.15])  # the means; the skipped lag is left out
    assert matplotlib.colors.same_color(lines[1].get_color(), MODEL_COLORS["gru"])
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["5", "50"]
    assert any(line.get_linestyle() == ":" and np.allclose(line.get_ydata(), 0.125) for line in ax.get_lines())
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["chance", "RNN", "gru"]
    assert plot_memory_curves(memory_results(), "blank", ["rnn"], legend=False).get_legend() is None
    with pytest.raises(ValueError, match="no rows for task 'blank' and model 'lstm'"):
        plot_memory_curves(memory_results(), "blank", ["lstm"])
