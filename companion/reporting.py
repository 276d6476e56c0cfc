"""Numbers from the executed cells into the prose: myst-nb's ``glue`` where the book is built, nothing elsewhere.

Every number a page's text quotes is computed by a cell and handed to the text with ``glue(name, value)``; the
Markdown then shows it with ``{glue:text}`name:.2f```. Where myst-nb is not installed (a student's Colab, where no
book is built) ``glue`` does nothing: the cells print what the text would quote.
"""

from __future__ import annotations

import math


def glue(name: str, value: object) -> None:
    """Record ``value`` under ``name`` for the book's ``{glue:text}`` roles, without displaying it in the cell.

    NumPy scalars and one-element tensors are stored as plain Python numbers: the roles format the value's text,
    and ``np.float64(0.5)`` or ``tensor(0.5000)`` is not a number to them.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    value = plain(value)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # no book build here: nothing reads the glued values
        return
    myst_glue(name, value, display=False)


def plain(value: object) -> object:
    """``value`` as a plain Python number if it is a NumPy scalar or a one-element tensor; anything else unchanged."""
    import numpy as np
    import torch

    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        return value.item()
    return value


def scientific(value: float, digits: int = 2) -> str:
    """``value`` in scientific notation for prose, e.g. ``scientific(2.66e-5) == "2.7 × 10⁻⁵"`` (digits significant).

    Values from 0.01 up to 10,000 are written plainly, rounded alike (``"470"``, ``"0.021"``, ``"1,200"``).
    """
    value = float(plain(value))
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    if -2 <= exponent <= 3:
        decimals = digits - 1 - exponent
        return f"{round(value, decimals):,.{max(decimals, 0)}f}"
    mantissa = round(value / 10**exponent, digits - 1)
    if abs(mantissa) >= 10:  # rounding carried into the next power of ten
        mantissa, exponent = mantissa / 10, exponent + 1
    superscript = str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{mantissa:.{digits - 1}f} × 10{superscript}"
