"""companion.data.timeseries: the statsmodels series and the Standardizer."""

import dataclasses
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from companion.data import Series, Standardizer, load_series


@pytest.fixture(scope="module")
def sunspots() -> Series:
    return load_series("sunspots")


@pytest.fixture(scope="module")
def co2() -> Series:
    return load_series("co2")


def test_default_series_is_sunspots():
    assert load_series().name == "sunspots"


def test_sunspots(sunspots):
    assert len(sunspots) == len(sunspots.values) == len(sunspots.time) == 309
    np.testing.assert_array_equal(sunspots.time, np.arange(1700, 2009, dtype=np.float64))
    assert sunspots.values.dtype == np.float32
    assert sunspots.time.dtype == np.float64
    assert not np.isnan(sunspots.values).any()
    assert sunspots.values.min() >= 0
    assert 150 < sunspots.values.max() < 200  # the 1957 maximum, about 190
    assert "public domain" in sunspots.source
    assert sunspots.unit


def test_co2(co2):
    assert co2.name == "co2"
    assert len(co2) == len(co2.time) == 2284
    assert co2.values.dtype == np.float32
    assert co2.time.dtype == np.float64
    assert not np.isnan(co2.values).any()  # the missing weeks are interpolated, including at the ends
    assert np.all(np.diff(co2.time) > 0)
    assert 1958 < co2.time[0] < 1959
    assert 2001 < co2.time[-1] < 2002
    np.testing.assert_allclose(np.diff(co2.time), 7 / 365.25, rtol=0.01)  # weekly
    assert 310 < co2.values.min() < co2.values.max() < 380
    assert co2.values[-52:].mean() > co2.values[:52].mean() + 40  # the Keeling curve rises


def test_co2_uses_no_deprecated_pandas_api():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        load_series("co2")


def test_series_is_frozen(sunspots):
    with pytest.raises(dataclasses.FrozenInstanceError):
        sunspots.name = "other"


def test_unknown_series_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^name must be one of \('sunspots', 'co2'\), got 'ozone'$"):
        load_series("ozone")


def test_standardizer_gives_mean_zero_and_std_one(sunspots):
    scaler = Standardizer.fit(sunspots.values)
    scaled = scaler.transform(sunspots.values)
    assert abs(float(scaled.mean())) < 1e-5
    assert float(scaled.std()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(scaler.inverse(scaled), sunspots.values, rtol=1e-5)


def test_standardizer_uses_the_statistics_of_what_it_was_fitted_on():
    train, test = np.array([0.0, 2.0, 4.0]), np.array([10.0])
    scaler = Standardizer.fit(train)
    assert scaler.mean == 2.0
    assert scaler.std == pytest.approx(np.sqrt(8 / 3))
    np.testing.assert_allclose(scaler.transform(test), (10.0 - 2.0) / np.sqrt(8 / 3))


def test_constant_series_gets_unit_scale_instead_of_dividing_by_zero():
    scaler = Standardizer.fit(np.full(5, 3.0))
    assert scaler == Standardizer(mean=3.0, std=1.0)
    np.testing.assert_array_equal(scaler.transform(np.full(2, 3.0)), [0.0, 0.0])


@pytest.mark.parametrize("values", [np.array([]), np.array([1.0])])
def test_standardizer_needs_two_observations(values):
    with pytest.raises(
        ValueError, match=rf"values must hold at least 2 observations to fit a scale, got {len(values)}"
    ):
        Standardizer.fit(values)


@given(arrays(np.float64, st.integers(2, 50), elements=st.floats(-1e4, 1e4)))
def test_standardizer_round_trip(values):
    scaler = Standardizer.fit(values)
    assert scaler.std > 0
    np.testing.assert_allclose(scaler.inverse(scaler.transform(values)), values, rtol=1e-9, atol=1e-7)
