"""companion.checks: every helper accepts good input silently and names the argument, shape and expectation."""

import pytest
import torch

from companion.checks import check_choice, check_not_empty, check_positive, check_rank, check_same_size, check_tensor


def test_check_tensor_accepts_tensors_and_names_the_type_it_got():
    check_tensor("x", torch.zeros(2))
    with pytest.raises(TypeError, match=r"^inputs must be a torch\.Tensor, got list$"):
        check_tensor("inputs", [1, 2])
    with pytest.raises(TypeError, match=r"got ndarray"):
        check_tensor("inputs", __import__("numpy").zeros(2))


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 3, 4)])
def test_check_rank_accepts_the_right_rank(shape):
    check_rank("x", torch.zeros(shape), len(shape), "(...)")


def test_check_rank_names_argument_rank_layout_and_shape():
    with pytest.raises(
        ValueError, match=r"^inputs must have 3 dimensions \(batch, time, features\), got shape \(4, 7\)$"
    ):
        check_rank("inputs", torch.zeros(4, 7), 3, "(batch, time, features)")


def test_check_rank_rejects_non_tensors_with_a_type_error():
    with pytest.raises(TypeError, match=r"lengths must be a torch\.Tensor, got tuple"):
        check_rank("lengths", (1, 2), 1, "(batch,)")


def test_check_same_size():
    check_same_size("mask", torch.zeros(4, 5), 1, "keys", 5)
    with pytest.raises(
        ValueError,
        match=r"^mask has size 6 in dimension 1 \(shape \(4, 6\)\), but keys has size 5; they must match$",
    ):
        check_same_size("mask", torch.zeros(4, 6), 1, "keys", 5)


@pytest.mark.parametrize("items", [[1], "a", (0,), {"k": 1}])
def test_check_not_empty_accepts_non_empty(items):
    check_not_empty("batch", items)


@pytest.mark.parametrize("items", [[], "", (), {}])
def test_check_not_empty_rejects_empty(items):
    with pytest.raises(ValueError, match=r"^batch is empty; expected at least one item$"):
        check_not_empty("batch", items)


@pytest.mark.parametrize("value", [1, 0.5, 1e-12])
def test_check_positive_accepts_positive(value):
    check_positive("lr", value)


@pytest.mark.parametrize("value", [0, -1, -0.5, float("nan")])
def test_check_positive_rejects_zero_negative_and_nan(value):
    with pytest.raises(ValueError, match=rf"^lr must be positive, got {value!r}$"):
        check_positive("lr", value)


def test_check_choice():
    check_choice("name", "b", ("a", "b"))
    with pytest.raises(ValueError, match=r"^name must be one of \('a', 'b'\), got 'c'$"):
        check_choice("name", "c", ("a", "b"))
