"""Numbers for the prose: ``glue`` checks its name and never displays anything; ``scientific`` writes numbers the
way the text quotes them."""

import numpy as np
import pytest
import torch

from companion.reporting import glue, plain, scientific


def test_glue_needs_a_name():
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        glue("", 1.0)


def test_glue_displays_nothing_outside_a_notebook(capsys):
    glue("a_number", 1.5)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (2.66e-5, 2, "2.7 × 10⁻⁵"),
        (1.38e4, 2, "1.4 × 10⁴"),
        (470.2, 2, "470"),
        (0.0206, 2, "0.021"),
        (1234.5, 2, "1,200"),
        (9.96e-6, 2, "1.0 × 10⁻⁵"),
        (-3.2e-9, 2, "-3.2 × 10⁻⁹"),
        (1.18e7, 3, "1.18 × 10⁷"),
        (0.0, 2, "0"),
    ],
)
def test_scientific(value, digits, text):
    assert scientific(value, digits) == text


def test_plain_turns_numpy_and_tensor_scalars_into_python_numbers():
    assert repr(plain(np.float64(0.5))) == "0.5"
    assert repr(plain(np.int64(3))) == "3"
    assert repr(plain(torch.tensor(2.5))) == "2.5"
    assert plain("text") == "text"
    assert plain([1, 2]) == [1, 2]
    assert scientific(np.float64(2.66e-5)) == "2.7 × 10⁻⁵"
