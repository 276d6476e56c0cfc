"""The notation appendix names every size letter that the companion's docstrings and shape comments use."""

import re
from pathlib import Path

import companion

ROOT = Path(__file__).resolve().parents[2]
NOTATION = ROOT / "book" / "appendix" / "notation.md"
# A shape as the companion writes it: (B, T, H), (B, [heads,] Tq, S), (G*H, D), (B, T, dirs * H) ...
SHAPE = re.compile(r"\((?:[A-Za-z][A-Za-z0-9_]*|\[heads,\])(?:\s*[,*+]\s*(?:[A-Za-z0-9_]+|\[heads,\]))*,?\s*\)")
# Size letters: a capital with at most one lower-case letter (B, Tq, Dv) and the two named sizes.
SIZE = re.compile(r"\b(?:[A-Z][a-z]?|heads|dirs|d)\b")


def documented_symbols() -> set[str]:
    symbols = set()
    for line in NOTATION.read_text(encoding="utf-8").split("## Vectors")[0].splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            symbols.update(re.findall(r"`([^`]+)`", first))
    return symbols


def companion_sizes() -> dict[str, str]:
    found = {}
    for path in sorted(Path(companion.__file__).parent.rglob("*.py")):
        for shape in SHAPE.findall(path.read_text(encoding="utf-8")):
            for symbol in SIZE.findall(shape):
                found.setdefault(symbol, f"{path.name}: {shape}")
    return found


def test_the_notation_table_is_read():
    assert {"B", "T", "D", "H", "V", "S", "Tq", "heads"} <= documented_symbols()


def test_every_size_in_the_companion_is_in_the_notation_table():
    missing = {symbol: where for symbol, where in companion_sizes().items() if symbol not in documented_symbols()}
    assert not missing, f"add these sizes to {NOTATION.relative_to(ROOT)}: {missing}"
