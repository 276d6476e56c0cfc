"""companion.data.batching: padding, lengths and masks, seq2seq batches, windows and language-model pairs."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from companion.data import (
    PairBatch,
    lengths_to_mask,
    next_token_pairs,
    pad_batch,
    pair_collator,
    sliding_windows,
    unpad,
)

sequences = st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=12), min_size=1, max_size=8)
lengths_tensors = st.lists(st.integers(0, 12), min_size=1, max_size=10).map(torch.tensor)


# ---------------------------------------------------------------- pad_batch / unpad


def test_pad_batch_example():
    padded, lengths = pad_batch([[5, 6, 7], [8], [9, 10]])
    assert padded.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    assert padded.dtype == lengths.dtype == torch.long


def test_pad_batch_accepts_tensors_and_a_pad_id():
    padded, lengths = pad_batch([torch.tensor([1, 2]), torch.tensor([3])], pad_id=-1)
    assert padded.tolist() == [[1, 2], [3, -1]]
    assert lengths.tolist() == [2, 1]


@given(sequences, st.integers(-5, 100))
def test_pad_batch_shape_padding_and_unpad_round_trip(seqs, pad_id):
    padded, lengths = pad_batch(seqs, pad_id=pad_id)
    assert padded.shape == (len(seqs), max(map(len, seqs)))
    assert lengths.tolist() == [len(seq) for seq in seqs]
    mask = lengths_to_mask(lengths, padded.shape[1])
    assert (padded[~mask] == pad_id).all()
    assert [row.tolist() for row in unpad(padded, lengths)] == seqs


def test_pad_batch_refuses_an_empty_batch():
    with pytest.raises(ValueError, match=r"^sequences is empty; expected at least one item$"):
        pad_batch([])


def test_pad_batch_refuses_an_empty_sequence_and_says_which():
    with pytest.raises(ValueError, match=r"^sequences\[1\] is empty; every sequence needs at least one token$"):
        pad_batch([[1, 2], [], [3]])


def test_pad_batch_refuses_a_2d_sequence():
    with pytest.raises(ValueError, match=r"sequences\[0\] must have 1 dimensions \(time,\), got shape \(2, 3\)"):
        pad_batch([torch.zeros(2, 3, dtype=torch.long)])


def test_pad_batch_refuses_token_strings_with_a_clear_error():
    with pytest.raises((TypeError, ValueError), match=r"sequences\[0\]"):
        pad_batch([["h", "i"]])


def test_unpad_keeps_trailing_feature_dimensions():
    padded = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    rows = unpad(padded, torch.tensor([3, 1]))
    assert [row.shape for row in rows] == [(3, 4), (1, 4)]
    assert torch.equal(rows[1], padded[1, :1])


def test_unpad_refuses_a_batch_size_mismatch():
    with pytest.raises(
        ValueError, match=r"padded must be \(batch, time, \.\.\.\) with batch = len\(lengths\) = 3, got shape \(2, 4\)"
    ):
        unpad(torch.zeros(2, 4), torch.tensor([1, 2, 3]))


def test_unpad_refuses_a_1d_padded_tensor():
    with pytest.raises(ValueError, match=r"padded must be \(batch, time, \.\.\.\).*got shape \(4,\)"):
        unpad(torch.zeros(4), torch.tensor([1, 2, 3, 4]))


def test_unpad_refuses_2d_lengths_and_non_tensors():
    with pytest.raises(ValueError, match=r"lengths must have 1 dimensions \(batch,\), got shape \(2, 1\)"):
        unpad(torch.zeros(2, 4), torch.tensor([[1], [2]]))
    with pytest.raises(TypeError, match=r"padded must be a torch\.Tensor, got list"):
        unpad([[1, 2]], torch.tensor([2]))


@pytest.mark.parametrize("lengths", [[-1, 2], [5, 2]])
def test_unpad_refuses_lengths_outside_the_time_dimension(lengths):
    with pytest.raises(ValueError, match=r"lengths"):
        unpad(torch.arange(6).reshape(2, 3), torch.tensor(lengths))


# ---------------------------------------------------------------- lengths_to_mask


def test_lengths_to_mask_example():
    assert lengths_to_mask(torch.tensor([2, 0, 3])).tolist() == [
        [True, True, False],
        [False, False, False],
        [True, True, True],
    ]


@given(lengths_tensors, st.integers(0, 5))
def test_mask_sums_to_lengths_and_is_true_exactly_before_each_length(lengths, extra):
    max_length = int(lengths.max()) + extra
    mask = lengths_to_mask(lengths, max_length)
    assert mask.dtype == torch.bool
    assert mask.shape == (len(lengths), max_length)
    assert torch.equal(mask.sum(1), lengths)
    for b, length in enumerate(lengths.tolist()):
        for t in range(max_length):
            assert bool(mask[b, t]) == (t < length)


@given(lengths_tensors)
def test_default_max_length_is_the_longest(lengths):
    assert lengths_to_mask(lengths).shape == (len(lengths), int(lengths.max()))


def test_lengths_to_mask_of_an_empty_batch():
    assert lengths_to_mask(torch.zeros(0, dtype=torch.long), 4).shape == (0, 4)


def test_lengths_to_mask_refuses_2d_lengths():
    with pytest.raises(ValueError, match=r"^lengths must have 1 dimensions \(batch,\), got shape \(2, 3\)$"):
        lengths_to_mask(torch.ones(2, 3, dtype=torch.long))


def test_lengths_to_mask_refuses_a_list():
    with pytest.raises(TypeError, match=r"lengths must be a torch\.Tensor, got list"):
        lengths_to_mask([1, 2])


def test_lengths_to_mask_refuses_a_max_length_shorter_than_the_longest():
    with pytest.raises(ValueError, match=r"max_length \(2\) is shorter than the longest sequence in lengths \(3\)"):
        lengths_to_mask(torch.tensor([1, 3]), max_length=2)


def test_lengths_to_mask_refuses_negative_lengths():
    with pytest.raises(ValueError, match=r"lengths must be non-negative, got minimum -2"):
        lengths_to_mask(torch.tensor([3, -2]))


def test_lengths_to_mask_refuses_float_lengths():
    with pytest.raises((TypeError, ValueError), match=r"lengths"):
        lengths_to_mask(torch.tensor([1.5, 2.0]))


# ---------------------------------------------------------------- PairBatch and pair_collator


def test_pair_collator_example():
    batch = pair_collator(pad_id=0)([([1, 2, 3], [4]), ([5], [6, 7])])
    assert isinstance(batch, PairBatch)
    assert batch.source.tolist() == [[1, 2, 3], [5, 0, 0]]
    assert batch.target.tolist() == [[4, 0], [6, 7]]
    assert batch.source_lengths.tolist() == [3, 1]
    assert batch.target_lengths.tolist() == [1, 2]


@given(sequences, sequences)
def test_pair_batch_masks_match_lengths(sources, targets):
    pairs = list(zip(sources, targets, strict=False))
    batch = pair_collator()(pairs)
    assert batch.source_mask.shape == batch.source.shape
    assert batch.target_mask.shape == batch.target.shape
    assert torch.equal(batch.source_mask.sum(1), batch.source_lengths)
    assert torch.equal(batch.target_mask.sum(1), batch.target_lengths)
    assert torch.equal(batch.source != 0, batch.source_mask)  # ids are >= 1, so padding is exactly the zeros
    assert torch.equal(batch.target != 0, batch.target_mask)


def test_pair_batch_masks_cover_the_padded_time_even_if_longer():
    batch = PairBatch(
        torch.ones(2, 5, dtype=torch.long),
        torch.tensor([2, 3]),
        torch.ones(2, 4, dtype=torch.long),
        torch.tensor([1, 1]),
    )
    assert batch.source_mask.shape == (2, 5)
    assert batch.target_mask.tolist() == [[True, False, False, False]] * 2


def test_pair_batch_to_moves_every_tensor_and_keeps_the_type():
    batch = pair_collator()([([1, 2], [3]), ([4], [5, 6])]).to("meta")
    assert isinstance(batch, PairBatch)
    assert {tensor.device.type for tensor in vars(batch).values()} == {"meta"}


def test_pair_collator_works_as_a_data_loader_collate_fn():
    pairs = [([1] * n, [2] * (5 - n)) for n in range(1, 5)]
    batches = list(DataLoader(pairs, batch_size=3, collate_fn=pair_collator()))
    assert [batch.source.shape for batch in batches] == [(3, 3), (1, 4)]
    assert batches[1].target_lengths.tolist() == [1]


def test_pair_collator_refuses_an_empty_list():
    with pytest.raises(ValueError, match=r"^pairs is empty; expected at least one item$"):
        pair_collator()([])


def test_pair_collator_names_an_empty_sequence():
    with pytest.raises(ValueError, match=r"sequences\[1\] is empty"):
        pair_collator()([([1], [2]), ([3], [])])


# ---------------------------------------------------------------- sliding_windows and next_token_pairs


@given(st.integers(1, 30), st.data())
def test_sliding_windows_shape_and_content(time, data):
    size = data.draw(st.integers(1, time))
    step = data.draw(st.integers(1, 6))
    features = data.draw(st.integers(0, 2))
    sequence = torch.arange(time * (features or 1)).reshape(time, *([features] if features else []))
    windows = sliding_windows(sequence, size, step)
    assert windows.shape == ((time - size) // step + 1, size, *sequence.shape[1:])
    for index, window in enumerate(windows):
        assert torch.equal(window, sequence[index * step : index * step + size])


def test_sliding_windows_is_a_view():
    sequence = torch.arange(10.0)
    windows = sliding_windows(sequence, 4, 2)
    sequence[5] = -1.0
    assert windows[1, 3] == -1.0
    assert windows[2, 1] == -1.0


def test_sliding_windows_errors():
    with pytest.raises(TypeError, match=r"sequence must be a torch\.Tensor, got list"):
        sliding_windows([1, 2, 3], 2)
    with pytest.raises(ValueError, match=r"sequence must have at least 1 dimension \(time, \.\.\.\), got a scalar"):
        sliding_windows(torch.tensor(3), 1)
    with pytest.raises(ValueError, match=r"size must be between 1 and the sequence length 5, got 0"):
        sliding_windows(torch.arange(5), 0)
    with pytest.raises(ValueError, match=r"size must be between 1 and the sequence length 5, got 6"):
        sliding_windows(torch.arange(5), 6)
    with pytest.raises(ValueError, match=r"step must be at least 1, got 0"):
        sliding_windows(torch.arange(5), 2, step=0)


@given(st.integers(2, 60), st.data())
def test_next_token_pairs_shift_by_one(time, data):
    length = data.draw(st.integers(1, time - 1))
    step = data.draw(st.one_of(st.none(), st.integers(1, 7)))
    ids = torch.randint(0, 100, (time,), generator=torch.Generator().manual_seed(time))
    inputs, targets = next_token_pairs(ids, length, step)
    stride = step or length  # the default: windows that do not overlap
    assert inputs.shape == targets.shape == ((time - length - 1) // stride + 1, length)
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    for index in range(len(inputs)):
        start = index * stride
        assert torch.equal(inputs[index], ids[start : start + length])
        assert torch.equal(targets[index], ids[start + 1 : start + length + 1])


def test_next_token_pairs_example():
    inputs, targets = next_token_pairs(torch.arange(10), 3)
    assert inputs.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert targets.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_next_token_pairs_refuses_2d_ids():
    with pytest.raises(ValueError, match=r"ids must have 1 dimensions \(time,\), got shape \(2, 5\)"):
        next_token_pairs(torch.zeros(2, 5, dtype=torch.long), 2)


def test_next_token_pairs_refuses_a_length_that_leaves_no_target():
    with pytest.raises(ValueError, match=r"length must be between 1 and len\(ids\) - 1 = 4, got 5"):
        next_token_pairs(torch.arange(5), 5)


@pytest.mark.parametrize("length", [0, -1])
def test_next_token_pairs_names_a_bad_length(length):
    with pytest.raises(ValueError, match=r"^length must be"):
        next_token_pairs(torch.arange(10), length)


def test_next_token_pairs_refuses_step_zero():
    with pytest.raises(ValueError, match=r"step must be at least 1 or None, got 0"):
        next_token_pairs(torch.arange(10), 3, step=0)
