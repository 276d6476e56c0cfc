"""d2l 1.0.3 in this environment: the functions the course uses work with numpy 2 / matplotlib 3.11 / torch 2.x,
and agree with the companion where both have the same component.

d2l 1.0.3 pins numpy 1.23 and matplotlib 3.7; pyproject.toml lifts those pins, and these tests are the proof that
doing so is safe. Checked d2l functions and classes (``from d2l import torch as d2l``):

* text: ``d2l.Vocab`` (``__len__``, ``__getitem__``, ``to_tokens``, ``unk``, ``token_freqs``), ``d2l.tokenize``
  -- against ``companion.data.Vocab`` and ``CharTokenizer``
* masks: ``d2l.sequence_mask``, ``d2l.masked_softmax`` -- against ``companion.data.lengths_to_mask``
* devices: ``d2l.cpu``, ``d2l.num_gpus``, ``d2l.try_gpu``, ``d2l.try_all_gpus`` -- against
  ``companion.pick_device``
* plots: ``d2l.use_svg_display``, ``d2l.set_figsize``, ``d2l.set_axes``, ``d2l.plot``, ``d2l.show_heatmaps``
  (headless, saved as PNG)
* utilities: ``d2l.Timer``, ``d2l.Accumulator``, ``d2l.numpy``
"""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from d2l import torch as d2l
from hypothesis import given
from hypothesis import strategies as st

from companion import pick_device
from companion.data import PAD, UNK, CharTokenizer, Vocab, lengths_to_mask

LINES = ["the time machine, by h. g. wells", "", "i", "the time traveller (for so it will be convenient"]


@pytest.fixture
def rc():
    """d2l.set_figsize writes to the global rcParams: give each plotting test its own copy."""
    with plt.rc_context():
        yield


def test_d2l_is_the_version_the_course_pins():
    from importlib.metadata import version

    assert version("d2l") == "1.0.3"
    assert int(np.__version__.split(".")[0]) >= 2  # the pin d2l asks for (1.23) is lifted


# ---------------------------------------------------------------- text


def test_tokenize_char_equals_char_tokenizer():
    tokenizer = CharTokenizer()
    assert d2l.tokenize(LINES, "char") == [tokenizer.tokenize(line) for line in LINES]


@given(st.lists(st.text(max_size=30), max_size=5))
def test_tokenize_char_equals_char_tokenizer_on_any_text(lines):
    assert d2l.tokenize(lines, "char") == [CharTokenizer().tokenize(line) for line in lines]


def test_tokenize_word_splits_on_whitespace():
    assert d2l.tokenize(["a bc  d"], "word") == [["a", "bc", "d"]]


@pytest.mark.parametrize("min_freq", [1, 2, 3])
def test_vocab_has_the_same_tokens_as_the_companion(min_freq):
    lists = d2l.tokenize(LINES, "char")
    theirs = d2l.Vocab(lists, min_freq=min_freq)
    ours = Vocab.build(lists, min_freq=min_freq)
    assert set(theirs.idx_to_token) - {"<unk>"} == set(ours.id_to_token) - {PAD, UNK}
    assert len(theirs) == len(ours) - 1  # d2l has <unk> but no <pad>


def test_vocab_counts_agree_with_the_companions_ranking():
    lists = d2l.tokenize(LINES, "char")
    theirs = d2l.Vocab(lists)
    ours = Vocab.build(lists)
    by_count = sorted(theirs.token_freqs, key=lambda pair: (-pair[1], pair[0]))
    assert [token for token, _ in by_count] == ours.id_to_token[2:]


@given(st.lists(st.text(alphabet="abcdef ", min_size=1, max_size=20), min_size=1, max_size=5), st.data())
def test_vocab_getitem_and_to_tokens_round_trip(lines, data):
    vocab = d2l.Vocab(d2l.tokenize(lines, "char"))
    tokens = data.draw(st.lists(st.sampled_from(vocab.idx_to_token), min_size=2, max_size=12))
    indices = vocab[tokens]
    assert all(0 <= index < len(vocab) for index in indices)
    assert vocab.to_tokens(indices) == tokens
    assert vocab.to_tokens(torch.tensor(indices)) == tokens
    assert vocab.to_tokens(indices[0]) == tokens[0]


def test_vocab_unknown_token_maps_to_unk():
    vocab = d2l.Vocab([list("abc")])
    assert vocab["z"] == vocab.unk == vocab.idx_to_token.index("<unk>")
    assert vocab[["a", "z"]] == [vocab["a"], vocab.unk]


# ---------------------------------------------------------------- masks

lengths_lists = st.lists(st.integers(0, 8), min_size=1, max_size=6)


@given(lengths_lists, st.integers(0, 3), st.integers(1, 3))
def test_sequence_mask_zeroes_exactly_where_the_companion_mask_is_false(lengths, extra, features):
    valid = torch.tensor(lengths)
    time = max(lengths) + extra
    mask = lengths_to_mask(valid, time)  # (batch, time)
    X = torch.ones(len(lengths), time)
    assert torch.equal(d2l.sequence_mask(X.clone(), valid), mask.float())
    X3 = torch.randn(len(lengths), time, features)
    masked = d2l.sequence_mask(X3.clone(), valid, value=-7.0)
    assert torch.equal(masked[mask], X3[mask])
    assert (masked[~mask] == -7.0).all()


@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(1, 4), st.integers(0, 2), st.booleans())
def test_masked_softmax_matches_a_softmax_over_the_companion_mask(lengths, queries, extra, per_query):
    keys = max(lengths) + extra
    generator = torch.Generator().manual_seed(len(lengths) * 100 + keys)
    scores = torch.randn(len(lengths), queries, keys, generator=generator)  # (batch, queries, keys)
    valid = torch.tensor(lengths)  # (batch,)
    if per_query:  # (batch, queries): every query may see a different number of keys
        valid = torch.randint(1, keys + 1, (len(lengths), queries), generator=generator)
    rows = valid.reshape(-1) if per_query else valid.repeat_interleave(queries)  # (batch * queries,)
    mask = lengths_to_mask(rows, keys).reshape(len(lengths), queries, keys)

    weights = d2l.masked_softmax(scores.clone(), valid)
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    torch.testing.assert_close(weights, expected)
    assert (weights[~mask] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(lengths), queries))


def test_masked_softmax_without_lengths_is_a_plain_softmax():
    scores = torch.randn(2, 3, 4)
    torch.testing.assert_close(d2l.masked_softmax(scores, None), torch.softmax(scores, dim=-1))


# ---------------------------------------------------------------- devices


def test_try_gpu_agrees_with_pick_device_on_this_machine(no_course_device):
    assert d2l.cpu() == torch.device("cpu")
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("the CPU-only comparison needs a machine without CUDA or MPS")
    assert d2l.num_gpus() == 0
    assert d2l.try_gpu() == torch.device("cpu") == pick_device()
    assert d2l.try_all_gpus() == []


def test_try_gpu_and_pick_device_both_choose_cuda_when_present(monkeypatch, no_course_device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert d2l.try_gpu().type == pick_device().type == "cuda"
    assert d2l.try_gpu(1) == torch.device("cuda", 1)
    assert d2l.try_gpu(2) == torch.device("cpu")
    assert d2l.try_all_gpus() == [torch.device("cuda", 0), torch.device("cuda", 1)]


# ---------------------------------------------------------------- plots


@pytest.mark.usefixtures("rc")
def test_plot_renders_headless_and_saves_a_png(tmp_path):
    d2l.use_svg_display()
    assert matplotlib.get_backend().lower() == "agg"  # asking for SVG in Jupyter does not change the backend
    d2l.set_figsize((4, 3))
    assert tuple(plt.rcParams["figure.figsize"]) == (4, 3)
    x = torch.arange(0, 3, 0.1)
    d2l.plot(x, [torch.sin(x), torch.cos(x)], "x", "f(x)", legend=["sin", "cos"], xlim=[0, 3])
    ax = plt.gca()
    assert len(ax.get_lines()) == 2
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), torch.sin(x).numpy())
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["sin", "cos"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "f(x)")
    assert ax.get_xlim() == (0, 3)
    plt.gcf().savefig(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.usefixtures("rc")
def test_plot_of_one_series_and_log_scale_on_given_axes():
    _, ax = plt.subplots()
    d2l.plot(np.arange(1, 5), np.arange(1, 5) ** 2, yscale="log", axes=ax)
    assert len(ax.get_lines()) == 1
    assert ax.get_yscale() == "log"


@pytest.mark.usefixtures("rc")
def test_set_axes():
    _, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    d2l.set_axes(ax, "epoch", "loss", [1, 2], [1, 5], "linear", "log", ["train"])
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == ("epoch", "loss", "log")
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["train"]


@pytest.mark.usefixtures("rc")
def test_show_heatmaps_renders_headless_and_saves_a_png(tmp_path):
    weights = torch.softmax(torch.randn(2, 3, 4, 5), dim=-1)  # (rows, columns, queries, keys)
    d2l.show_heatmaps(weights, xlabel="keys", ylabel="queries", titles=["a", "b", "c"], figsize=(6, 4))
    figure = plt.gcf()
    heatmaps = [ax for ax in figure.axes if ax.get_images()]
    assert len(heatmaps) == 6
    assert len(figure.axes) == 7  # and one colorbar
    np.testing.assert_allclose(heatmaps[0].get_images()[0].get_array(), weights[0, 0].numpy())
    assert heatmaps[3].get_xlabel() == "keys"
    assert heatmaps[0].get_ylabel() == "queries"
    assert [ax.get_title() for ax in heatmaps[:3]] == ["a", "b", "c"]
    figure.savefig(tmp_path / "heatmaps.png")
    assert (tmp_path / "heatmaps.png").stat().st_size > 0


def test_numpy_detaches_tensors():
    values = torch.ones(2, requires_grad=True) * 2
    assert isinstance(d2l.numpy(values), np.ndarray)
    np.testing.assert_array_equal(d2l.numpy(values), [2.0, 2.0])


# ---------------------------------------------------------------- utilities


def test_timer_records_times():
    timer = d2l.Timer()
    first = timer.stop()
    timer.start()
    second = timer.stop()
    assert timer.times == [first, second]
    assert first >= 0
    assert second >= 0
    assert timer.sum() == pytest.approx(first + second)
    assert timer.avg() == pytest.approx((first + second) / 2)
    assert timer.cumsum() == pytest.approx([first, first + second])
    assert isinstance(timer.cumsum(), list)


def test_accumulator_sums_numbers_and_scalar_tensors():
    metric = d2l.Accumulator(3)
    metric.add(1, 2.5, torch.tensor(3.0))
    metric.add(np.float32(1.0), torch.tensor(0.5), 2)
    assert metric.data == [2.0, 3.0, 5.0]
    assert (metric[0], metric[2]) == (2.0, 5.0)
    assert all(type(value) is float for value in metric.data)
    metric.reset()
    assert metric.data == [0.0, 0.0, 0.0]
