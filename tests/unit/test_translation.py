"""companion.data.translation: date and number pairs from babel and num2words, split by value."""

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from num2words import num2words

from companion.data import TranslationSplits, date_pairs, number_pairs, split_by_value
from companion.data.translation import make_splits


@pytest.fixture(scope="module")
def dates() -> TranslationSplits:
    return date_pairs()  # en_US -> fr, 1950-2049


@pytest.fixture(scope="module")
def numbers() -> TranslationSplits:
    return number_pairs()  # en -> de, 0-9999


def splits_holding(pair, splits: TranslationSplits) -> list[str]:
    return [name for name in ("train", "valid", "test") if pair in getattr(splits, name)]


# ---------------------------------------------------------------- split_by_value

values_lists = st.lists(st.integers(-(10**6), 10**6), unique=True, max_size=200)


@given(values_lists, st.integers(0, 100))
def test_split_is_a_partition_that_keeps_the_order(values, seed):
    train, valid, test = split_by_value(values, seed=seed)
    assert sorted(train + valid + test) == sorted(values)
    assert not (set(train) & set(valid))
    assert not (set(train) & set(test))
    assert not (set(valid) & set(test))
    for part in (train, valid, test):
        assert part == [value for value in values if value in set(part)]


@given(values_lists, values_lists)
def test_adding_values_never_moves_a_value_to_another_split(values, more):
    before = split_by_value(values)
    after = split_by_value(values + [value for value in more if value not in set(values)])
    for old, new in zip(before, after, strict=True):
        assert set(old) <= set(new)


def test_split_sizes_follow_the_fractions():
    train, valid, test = split_by_value(range(20000), (0.6, 0.3, 0.1))
    assert len(train) / 20000 == pytest.approx(0.6, abs=0.015)
    assert len(valid) / 20000 == pytest.approx(0.3, abs=0.015)
    assert len(test) / 20000 == pytest.approx(0.1, abs=0.015)


def test_split_is_deterministic_and_depends_on_the_seed():
    assert split_by_value(range(500), seed=3) == split_by_value(range(500), seed=3)
    assert split_by_value(range(500), seed=3) != split_by_value(range(500), seed=4)


def test_split_with_a_zero_share():
    train, valid, test = split_by_value(range(100), (1.0, 0.0, 0.0))
    assert (train, valid, test) == (list(range(100)), [], [])


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.3, -0.1), (0.5, 0.2, 0.2), (0.25, 0.25, 0.25, 0.25)])
def test_split_refuses_bad_fractions(fractions):
    with pytest.raises(ValueError, match=r"^fractions must be three non-negative shares summing to 1, got \("):
        split_by_value([1, 2, 3], fractions)


def test_make_splits_renders_each_value_in_both_languages():
    splits = make_splits(range(50), str, lambda number: "#" * number, "digits", "tally")
    assert (splits.source_language, splits.target_language) == ("digits", "tally")
    assert sorted(splits.train + splits.valid + splits.test) == sorted((str(n), "#" * n) for n in range(50))
    assert [source for source, _ in splits.train] == [str(n) for n in split_by_value(range(50))[0]]


# ---------------------------------------------------------------- date_pairs


def test_default_date_pairs_hold_the_example_in_exactly_one_split(dates):
    assert splits_holding(("November 22, 2026", "22 novembre 2026"), dates) in (["train"], ["valid"], ["test"])


def test_default_date_pairs_cover_1950_to_2049(dates):
    assert len(dates.train) + len(dates.valid) + len(dates.test) == (dt.date(2050, 1, 1) - dt.date(1950, 1, 1)).days
    assert len(dates.test) / 36524 == pytest.approx(0.1, abs=0.01)
    assert (dates.source_language, dates.target_language) == ("en_US", "fr")
    assert repr(dates).startswith("TranslationSplits(en_US -> fr: train=")


def test_date_test_sources_never_appear_in_training(dates):
    train_sources = {source for source, _ in dates.train}
    assert not train_sources & {source for source, _ in dates.test}
    assert not train_sources & {source for source, _ in dates.valid}
    assert not {target for _, target in dates.train} & {target for _, target in dates.test}


def test_date_pairs_are_the_same_every_time(dates):
    assert date_pairs(start=dt.date(1950, 1, 1), end=dt.date(1950, 12, 31)).test == [
        pair for pair in dates.test if pair[0].endswith("1950")
    ]


def test_date_pairs_in_other_locales_and_formats():
    day = dt.date(2026, 11, 22)
    zh = date_pairs("en_US", "zh", start=day, end=day, fractions=(1.0, 0.0, 0.0))
    assert zh.train == [("November 22, 2026", "2026年11月22日")]
    de = date_pairs("fr", "de", start=day, end=day, date_format="d MMMM y", fractions=(1.0, 0.0, 0.0))
    assert de.train == [("22 novembre 2026", "22 November 2026")]


def test_a_growing_date_range_keeps_every_date_in_its_split():
    small = date_pairs(start=dt.date(2000, 1, 1), end=dt.date(2000, 3, 31))
    large = date_pairs(start=dt.date(1999, 10, 1), end=dt.date(2000, 6, 30))
    for name in ("train", "valid", "test"):
        assert set(getattr(small, name)) <= set(getattr(large, name))


def test_splits_are_frozen(dates):
    with pytest.raises(dataclasses.FrozenInstanceError):
        dates.train = []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"source_locale": "xx_YY"}, r"^source_locale 'xx_YY' is not a CLDR locale such as 'en_US'"),
        ({"target_locale": "klingon"}, r"^target_locale 'klingon' is not a CLDR locale"),
        ({"target_locale": ""}, r"^target_locale '' is not a CLDR locale"),
        ({"source_locale": None}, r"^source_locale None is not a CLDR locale"),
    ],
)
def test_date_pairs_refuse_unknown_locales(arguments, message):
    with pytest.raises(ValueError, match=message):
        date_pairs(**arguments)


def test_date_pairs_refuse_an_empty_range():
    with pytest.raises(ValueError, match=r"^end \(2000-01-01\) must not be before start \(2000-01-02\)$"):
        date_pairs(start=dt.date(2000, 1, 2), end=dt.date(2000, 1, 1))


# ---------------------------------------------------------------- number_pairs


def test_default_number_pairs_hold_the_example(numbers):
    assert len(splits_holding(("twenty-four", "vierundzwanzig"), numbers)) == 1
    assert len(numbers.train) + len(numbers.valid) + len(numbers.test) == 10000
    assert (numbers.source_language, numbers.target_language) == ("en", "de")


def test_number_test_sources_never_appear_in_training(numbers):
    assert not {source for source, _ in numbers.train} & {source for source, _ in numbers.test}
    assert not {source for source, _ in numbers.valid} & {source for source, _ in numbers.test}


def test_number_splits_follow_split_by_value(numbers):
    _, _, test_values = split_by_value(range(10000))
    assert len(numbers.test) == len(test_values)
    assert numbers.test[0] == (num2words(test_values[0], lang="en"), num2words(test_values[0], lang="de"))


def test_digits_is_a_language():
    splits = number_pairs("digits", "en", low=20, high=30, fractions=(1.0, 0.0, 0.0))
    assert ("24", "twenty-four") in splits.train
    assert len(splits.train) == 11
    both = number_pairs("digits", "digits", low=0, high=9, fractions=(1.0, 0.0, 0.0))
    assert both.train == [(str(n), str(n)) for n in range(10)]


def test_number_pairs_in_french_and_japanese():
    splits = number_pairs("fr", "ja", low=24, high=24, fractions=(0.0, 0.0, 1.0))
    assert splits.test == [("vingt-quatre", "二十四")]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"source_language": "xx"}, r"^source_language 'xx' is not supported by num2words; use 'digits' or e\.g\."),
        ({"target_language": "klingon"}, r"^target_language 'klingon' is not supported by num2words"),
        ({"low": 5, "high": 4}, r"^high \(4\) must not be below low \(5\)$"),
    ],
)
def test_number_pairs_errors(arguments, message):
    with pytest.raises(ValueError, match=message):
        number_pairs(**arguments)
