"""The forecasting helpers: windows line up with their origins, the baselines compute what they claim, the RNN
forecaster has the right shapes and learns a sine wave with the Trainer, and bad input gets a clear error."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion import seed_everything
from companion.forecasting import (
    RNNForecaster,
    autoregression_forecasts,
    direct_linear_forecasts,
    forecast_errors,
    forecast_loss,
    forecast_windows,
    last_value_forecasts,
    mean_forecasts,
    seasonal_naive_forecasts,
)
from companion.training import Trainer


@given(st.integers(3, 40), st.integers(1, 6), st.integers(1, 4))
def test_windows_start_at_their_origin(length, window, horizon):
    values = torch.arange(length, dtype=torch.float32)
    if window + horizon > length:
        with pytest.raises(ValueError, match="is longer than values"):
            forecast_windows(values, window, horizon)
        return
    inputs, targets = forecast_windows(values, window, horizon)
    assert inputs.shape == (length - window - horizon + 1, window)
    assert targets.shape == (length - window - horizon + 1, horizon)
    for i in range(len(inputs)):
        origin = i + window
        assert torch.equal(inputs[i], values[origin - window : origin])
        assert torch.equal(targets[i], values[origin : origin + horizon])


def test_last_value_repeats_the_value_before_the_origin():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(last_value_forecasts(values, [1, 3], 2), [[1.0, 1.0], [3.0, 3.0]])


def test_mean_forecast_is_the_mean_of_the_history_before_the_origin():
    values = np.array([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_array_equal(mean_forecasts(values, [2, 4], 3), [[2.0] * 3, [4.0] * 3])


@given(st.integers(1, 6), st.integers(1, 14))
def test_seasonal_naive_repeats_the_last_season(period, horizon):
    values = np.arange(40.0)
    origins = [20, 30]
    forecasts = seasonal_naive_forecasts(values, origins, horizon, period)
    assert forecasts.shape == (2, horizon)
    for row, origin in zip(forecasts, origins, strict=True):
        for step in range(horizon):
            source = int(row[step])  # values[i] == i: the forecast names the year it copied
            assert source < origin  # only the history
            assert (origin + step - source) % period == 0  # the same phase of the season
            assert origin - source <= period  # of the latest season seen


def test_seasonal_naive_of_a_periodic_series_is_exact():
    values = np.tile([1.0, 5.0, 2.0], 10)
    origins = [6, 7, 20]
    expected = np.stack([values[o : o + 4] for o in origins])
    np.testing.assert_array_equal(seasonal_naive_forecasts(values, origins, 4, 3), expected)


def test_direct_linear_forecast_recovers_a_linear_recursion_at_every_step():
    values = np.zeros(200)
    values[:2] = [1.0, 0.5]
    for t in range(2, 200):  # a noiseless AR(2): the direct fit for step i is exact
        values[t] = 0.3 + 0.9 * values[t - 1] - 0.5 * values[t - 2]
    origins = [150, 170]
    forecasts = direct_linear_forecasts(values[:140], values, origins, horizon=4, lags=[1, 2])
    expected = np.stack([values[o : o + 4] for o in origins])
    np.testing.assert_allclose(forecasts, expected, atol=1e-8)


def test_autoregression_iterates_the_fitted_recursion():
    rng = np.random.default_rng(0)
    values = np.zeros(400)
    for t in range(1, 400):  # an AR(1) with mean 2: x_t - 2 = 0.8 (x_{t-1} - 2) + noise
        values[t] = 2 + 0.8 * (values[t - 1] - 2) + rng.normal(scale=0.1)
    forecasts, lags = autoregression_forecasts(values[:300], values, [310, 350], horizon=3, max_lag=1)
    assert lags == [1]
    from statsmodels.tsa.ar_model import AutoReg

    const, phi = AutoReg(values[:300], lags=1).fit().params
    for row, origin in zip(forecasts, (310, 350), strict=True):
        expected, last = [], values[origin - 1]
        for _ in range(3):  # each step feeds back the previous forecast, never the true value
            last = const + phi * last
            expected.append(last)
        np.testing.assert_allclose(row, expected, rtol=1e-10)
    assert abs(phi - 0.8) < 0.1


def test_forecast_errors_per_horizon():
    errors = forecast_errors(np.array([[1.0, 2.0], [3.0, 2.0]]), np.array([[0.0, 2.0], [0.0, 0.0]]))
    np.testing.assert_allclose(errors["rmse"], [np.sqrt(5), np.sqrt(2)])
    np.testing.assert_allclose(errors["mae"], [2.0, 1.0])


@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 3), st.integers(1, 2))
def test_forecaster_shapes(batch, time, horizon, num_layers):
    model = RNNForecaster(hidden_size=5, horizon=horizon, num_layers=num_layers)
    assert model(torch.randn(batch, time)).shape == (batch, horizon)


@pytest.fixture
def one_thread():
    """A model this small gains nothing from a second thread, and loses much when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_forecaster_learns_a_sine_wave_with_the_trainer():
    generator = seed_everything(0)
    series = torch.sin(torch.arange(300, dtype=torch.float32) * 2 * torch.pi / 12)  # period 12
    inputs, targets = forecast_windows(series, window=24, horizon=3)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(inputs, targets), batch_size=64, shuffle=True, generator=generator
    )
    model = RNNForecaster(hidden_size=16, horizon=3)
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), 1e-2), forecast_loss, device="cpu", progress=False)
    history = trainer.fit(loader, epochs=15)
    naive = ((inputs[:, -1:] - targets) ** 2).mean().item()  # the last-value forecast's squared error
    assert history.last("train_loss") < 0.05 * naive


def test_errors():
    model = RNNForecaster(hidden_size=4, horizon=2)
    with pytest.raises(ValueError, match=r"history must have 2 dimensions \(batch, time\), got shape \(3, 5, 1\)"):
        model(torch.randn(3, 5, 1))
    with pytest.raises(ValueError, match=r"history must hold at least one value per sequence, got shape \(0, 5\)"):
        model(torch.randn(0, 5))
    with pytest.raises(ValueError, match=r"targets has size 3 in dimension 1.*the model's horizon has size 2"):
        forecast_loss(model, (torch.randn(2, 5), torch.randn(2, 3)))
    with pytest.raises(ValueError, match=r"values must have 1 dimensions \(time,\)"):
        forecast_windows(torch.randn(10, 1), 3, 1)
    with pytest.raises(ValueError, match="horizon must be positive, got 0"):
        forecast_windows(torch.randn(10), 3, 0)
    with pytest.raises(ValueError, match="origins must lie between 1 and the series length 4, got 0 to 2"):
        last_value_forecasts(np.arange(4.0), [0, 2], 1)
    with pytest.raises(ValueError, match="origins is empty"):
        last_value_forecasts(np.arange(4.0), [], 1)
    with pytest.raises(ValueError, match="period must be a positive int, got 0"):
        seasonal_naive_forecasts(np.arange(10.0), [5], 2, 0)
    with pytest.raises(ValueError, match="origins must lie between 3 and the series length 10, got 2 to 5"):
        seasonal_naive_forecasts(np.arange(10.0), [2, 5], 2, 3)
    with pytest.raises(ValueError, match="lags must be a non-empty list of positive ints"):
        direct_linear_forecasts(np.arange(10.0), np.arange(10.0), [5], 2, [])
    with pytest.raises(ValueError, match="too short to fit 3 lags"):
        direct_linear_forecasts(np.arange(6.0), np.arange(10.0), [5], 2, [1, 2, 3])
    with pytest.raises(ValueError, match=r"forecasts and actual must both be \(origins, horizon\)"):
        forecast_errors(np.zeros((2, 3)), np.zeros((2, 2)))
