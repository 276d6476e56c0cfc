"""Translation pairs with real reordering, generated offline from CLDR dates (babel) and numbers in words (num2words).

``date_pairs("en_US", "fr")`` gives pairs like ("November 22, 2026", "22 novembre 2026"): the day moves from the
middle to the front. ``number_pairs("en", "de")`` gives ("twenty-four", "vierundzwanzig"): German says the units
first. Both are split into train/validation/test *by value*, so no date or number in the test set was ever seen in
training, and a value keeps its split when the range grows (the split is a stable hash of the value, not a shuffle).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

Value = TypeVar("Value")
Pair = tuple[str, str]


@dataclass(frozen=True)
class TranslationSplits:
    """Source/target sentence pairs split into ``train``, ``valid`` and ``test`` with disjoint underlying values."""

    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]
    source_language: str
    target_language: str

    def __repr__(self) -> str:
        return (
            f"TranslationSplits({self.source_language} -> {self.target_language}: "
            f"train={len(self.train)}, valid={len(self.valid)}, test={len(self.test)})"
        )


def split_by_value(
    values: Iterable[Value], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[list[Value], list[Value], list[Value]]:
    """Assign each value to train, validation or test by a seeded hash of its ``repr``.

    The assignment of a value never depends on the other values, so it is the same on every machine, and growing
    the range only adds values.
    """
    if len(fractions) != 3 or any(share < 0 for share in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative shares summing to 1, got {fractions!r}")
    bounds = (fractions[0], fractions[0] + fractions[1])
    splits: tuple[list[Value], list[Value], list[Value]] = ([], [], [])
    for value in values:
        position = _unit_hash(f"{seed}:{value!r}")
        index = 0 if position < bounds[0] else 1 if position < bounds[1] else 2
        splits[index].append(value)
    return splits


def _unit_hash(key: str) -> float:
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def make_splits(
    values: Iterable[Value],
    to_source: Callable[[Value], str],
    to_target: Callable[[Value], str],
    source_language: str,
    target_language: str,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> TranslationSplits:
    """Render each value in both languages and split the pairs by value."""
    parts = split_by_value(values, fractions, seed)
    train, valid, test = ([(to_source(value), to_target(value)) for value in part] for part in parts)
    return TranslationSplits(train, valid, test, source_language, target_language)


def date_pairs(
    source_locale: str = "en_US",
    target_locale: str = "fr",
    start: dt.date = dt.date(1950, 1, 1),
    end: dt.date = dt.date(2049, 12, 31),
    date_format: str = "long",
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> TranslationSplits:
    """Every date from ``start`` to ``end`` written in two CLDR locales, e.g. "November 22, 2026" -> "22 novembre 2026".

    ``date_format`` is a CLDR width ("short", "medium", "long", "full") or a babel pattern such as "d MMMM y".
    """
    from babel.dates import format_date

    source, target = _locale("source_locale", source_locale), _locale("target_locale", target_locale)
    if end < start:
        raise ValueError(f"end ({end}) must not be before start ({start})")
    days = (start + dt.timedelta(days=offset) for offset in range((end - start).days + 1))
    return make_splits(
        days,
        lambda day: format_date(day, date_format, locale=source),
        lambda day: format_date(day, date_format, locale=target),
        source_locale,
        target_locale,
        fractions,
        seed,
    )


def _locale(argument: str, name: str):
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError) as error:
        raise ValueError(f"{argument} {name!r} is not a CLDR locale such as 'en_US', 'fr', 'de' or 'zh'") from error


DIGITS = "digits"


def number_pairs(
    source_language: str = "en",
    target_language: str = "de",
    low: int = 0,
    high: int = 9999,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> TranslationSplits:
    """Every integer from ``low`` to ``high`` in words, e.g. ("twenty-four", "vierundzwanzig") for en -> de.

    A language is a num2words code ("en", "de", "fr", "ja", ...) or ``"digits"`` for the plain numeral "24".
    """
    if high < low:
        raise ValueError(f"high ({high}) must not be below low ({low})")
    return make_splits(
        range(low, high + 1),
        _number_writer("source_language", source_language),
        _number_writer("target_language", target_language),
        source_language,
        target_language,
        fractions,
        seed,
    )


def _number_writer(argument: str, language: str) -> Callable[[int], str]:
    from num2words import CONVERTER_CLASSES, num2words

    if language == DIGITS:
        return str
    if language not in CONVERTER_CLASSES:
        raise ValueError(f"{argument} {language!r} is not supported by num2words; use 'digits' or e.g. 'en', 'de'")
    return lambda number: num2words(number, lang=language)


def number_list_pairs(
    source_language: str = "en",
    target_language: str = "de",
    count: int = 12000,
    longest: int = 8,
    high: int = 99,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> TranslationSplits:
    """Lists of 1 to ``longest`` numbers (0 to ``high``) in words: ("twenty-four, seven", "vierundzwanzig, sieben").

    Unlike one number, whose words say a few digits whatever their length, a list says more the longer it is: the
    task where a fixed-size summary of the source must run out of room (Chapter 7). ``count`` lists are drawn with a
    ``random.Random(seed)`` (their length uniform in 1 .. ``longest``; repeats dropped) and split by value.
    """
    import random

    if longest < 1 or count < 1 or high < 0:
        raise ValueError(f"longest ({longest}) and count ({count}) must be positive and high ({high}) non-negative")
    # Each number's words once, not once per list.
    write_source = [_number_writer("source_language", source_language)(n) for n in range(high + 1)].__getitem__
    write_target = [_number_writer("target_language", target_language)(n) for n in range(high + 1)].__getitem__
    draw = random.Random(seed)
    lists = dict.fromkeys(
        tuple(draw.randint(0, high) for _ in range(draw.randint(1, longest))) for _ in range(count)
    )  # ordered and without repeats
    return make_splits(
        lists,
        lambda numbers: ", ".join(map(write_source, numbers)),
        lambda numbers: ", ".join(map(write_target, numbers)),
        source_language,
        target_language,
        fractions,
        seed,
    )
