"""Forecasting a univariate time series: an RNN forecaster and the baselines it must beat.

Every method forecasts from the same *origins*: a forecast made at origin ``o`` may use ``values[:o]`` and predicts
``values[o : o + horizon]``. The RNN reads the last ``window`` values and outputs all ``horizon`` values at once
(a *direct* multi-step forecast). The baselines: the mean of the history; the last value (naive); the value one
season earlier (seasonal naive); the linear autoregression, statsmodels' ``AutoReg``, fitted once on the training
years and *iterated* forward from each origin (feeding back its own forecasts); and a direct linear regression,
one per horizon step on the same lags, which separates "direct against iterated" from "RNN against linear".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion.checks import check_positive, check_rank, check_same_size
from companion.data.batching import sliding_windows
from companion.recurrent_cells import last_layer_state, num_directions, run_recurrent


def forecast_windows(values: torch.Tensor, window: int, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (history, future) pair of a series.

    values: (T,). Returns inputs (N, window) and targets (N, horizon) with N = T - window - horizon + 1; pair ``i``
    has origin ``i + window``: ``inputs[i] = values[i : i + window]``, ``targets[i]`` the next ``horizon`` values.
    """
    check_rank("values", values, 1, "(time,)")
    check_positive("window", window)
    check_positive("horizon", horizon)
    if window + horizon > len(values):
        raise ValueError(f"window + horizon = {window + horizon} is longer than values (length {len(values)})")
    pairs = sliding_windows(values, window + horizon)  # (N, window + horizon)
    return pairs[:, :window], pairs[:, window:]  # (N, window), (N, horizon)


class RNNForecaster(nn.Module):
    """An RNN reads a window of past values; a linear layer maps its last state to the next ``horizon`` values.

    Uses the fused ``torch.nn.RNN`` by default (the from-scratch ``companion.recurrent_cells.RNN`` computes the
    same thing, one Python step at a time). ``recurrent=`` takes any other batch-first recurrent layer whose
    ``input_size`` is 1, from scratch or ``torch.nn`` (an LSTM, a GRU): the head then reads the last layer's final
    hidden state, both directions side by side for a bidirectional layer.
    """

    def __init__(
        self, hidden_size: int = 32, horizon: int = 1, num_layers: int = 1, *, recurrent: nn.Module | None = None
    ) -> None:
        super().__init__()
        check_positive("horizon", horizon)
        self.horizon = horizon
        if recurrent is None:
            recurrent = nn.RNN(1, hidden_size, num_layers=num_layers, batch_first=True)
        elif getattr(recurrent, "input_size", None) != 1:
            raise ValueError(f"recurrent must read one value per step (input_size=1), got {recurrent}")
        self.rnn = recurrent
        self.head = nn.Linear(num_directions(recurrent) * recurrent.hidden_size, horizon)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """history: (B, T) past values, oldest first. Returns (B, horizon), the forecast of the next values."""
        check_rank("history", history, 2, "(batch, time)")
        if history.shape[0] == 0 or history.shape[1] == 0:
            raise ValueError(f"history must hold at least one value per sequence, got shape {tuple(history.shape)}")
        _, state = run_recurrent(self.rnn, history[:, :, None])  # a tensor (L, B, H), or an LSTM's (h, c)
        # The last layer's final state summarises the whole window; the head reads the future off it.
        return self.head(last_layer_state(state, num_directions(self.rnn)))  # (B, horizon)


def forecast_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean squared error of ``model(inputs)`` against ``targets``, for ``Trainer(loss_fn=...)``.

    batch: ``(inputs, targets)``, (B, window) and (B, horizon).
    """
    inputs, targets = batch
    forecast = model(inputs)  # (B, horizon)
    check_same_size("targets", targets, 1, "the model's horizon", forecast.shape[1])
    return F.mse_loss(forecast, targets)


def last_value_forecasts(values: np.ndarray, origins: Sequence[int], horizon: int) -> np.ndarray:
    """The naive forecast: from origin ``o``, every future value equals ``values[o - 1]``. Returns (N, horizon)."""
    check_positive("horizon", horizon)
    _check_origins(origins, len(values), 0)
    return np.repeat(np.asarray(values)[np.asarray(origins) - 1, None], horizon, axis=1)  # (N, horizon)


def mean_forecasts(values: np.ndarray, origins: Sequence[int], horizon: int) -> np.ndarray:
    """The mean forecast: from origin ``o``, every future value is the mean of ``values[:o]``. Returns (N, horizon)."""
    check_positive("horizon", horizon)
    _check_origins(origins, len(values), 0)
    means = np.array([np.mean(np.asarray(values, np.float64)[:origin]) for origin in origins])  # (N,)
    return np.repeat(means[:, None], horizon, axis=1)  # (N, horizon)


def seasonal_naive_forecasts(values: np.ndarray, origins: Sequence[int], horizon: int, period: int) -> np.ndarray:
    """The seasonal naive forecast: each future value equals the last observed value one ``period`` earlier.

    Step ``i`` ahead of origin ``o`` (i = 0 .. horizon - 1) is ``values[o + i - period * (i // period + 1)]``, the
    same phase of the latest season before ``o``. Returns (N, horizon).
    """
    check_positive("horizon", horizon)
    if not isinstance(period, int | np.integer) or period < 1:
        raise ValueError(f"period must be a positive int, got {period!r}")
    _check_origins(origins, len(values), period)
    steps = np.arange(horizon)
    back = period * (steps // period + 1) - steps  # (horizon,): how far before o + i the value is taken
    return np.asarray(values)[np.asarray(origins)[:, None] - back[None, :]]  # (N, horizon)


def autoregression_forecasts(
    train: np.ndarray, values: np.ndarray, origins: Sequence[int], horizon: int, max_lag: int = 20
) -> tuple[np.ndarray, list[int]]:
    """Forecasts of a linear autoregression (statsmodels ``AutoReg``) fitted on ``train`` only.

    The lags are chosen by AIC (``ar_select_order`` up to ``max_lag``); the fitted coefficients are then applied to
    the whole series ``values`` (without refitting) and iterated ``horizon`` steps from each origin, feeding back
    their own forecasts. Returns the forecasts (N, horizon) and the chosen lags.
    """
    from statsmodels.tsa.ar_model import AutoReg, ar_select_order

    check_positive("horizon", horizon)
    train, values = np.asarray(train, np.float64), np.asarray(values, np.float64)
    lags = ar_select_order(train, maxlag=max_lag, ic="aic").ar_lags or [1]
    _check_origins(origins, len(values), max(lags))
    fitted = AutoReg(train, lags=lags).fit().apply(values, refit=False)
    forecasts = [fitted.predict(start=o, end=o + horizon - 1, dynamic=True) for o in origins]
    return np.stack(forecasts), list(lags)  # (N, horizon)


def direct_linear_forecasts(
    train: np.ndarray, values: np.ndarray, origins: Sequence[int], horizon: int, lags: Sequence[int]
) -> np.ndarray:
    """A *direct* linear forecast: one least-squares regression per horizon step on the same ``lags``.

    Step ``i`` ahead is ``c_i + sum_l phi_{i,l} values[o - l]`` for each lag ``l``, fitted on every origin of
    ``train`` whose ``horizon`` following values are also in ``train``. Nothing is fed back, so errors cannot
    compound; the price is a separate fit per step. Returns the forecasts (N, horizon).
    """
    check_positive("horizon", horizon)
    lags = np.asarray(sorted(lags))
    if len(lags) == 0 or lags[0] < 1:
        raise ValueError(f"lags must be a non-empty list of positive ints, got {list(lags)}")
    train, values = np.asarray(train, np.float64), np.asarray(values, np.float64)
    _check_origins(origins, len(values), int(lags[-1]))
    fit_origins = np.arange(lags[-1], len(train) - horizon + 1)
    if len(fit_origins) <= len(lags) + 1:
        raise ValueError(f"train (length {len(train)}) is too short to fit {len(lags)} lags for {horizon} steps")

    def design(series: np.ndarray, at: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(at)), series[at[:, None] - lags[None, :]]])  # (N, 1 + lags)

    targets = train[fit_origins[:, None] + np.arange(horizon)[None, :]]  # (M, horizon)
    coefficients, *_ = np.linalg.lstsq(design(train, fit_origins), targets, rcond=None)  # (1 + lags, horizon)
    return design(values, np.asarray(origins)) @ coefficients  # (N, horizon)


def forecast_errors(forecasts: np.ndarray, actual: np.ndarray) -> dict[str, np.ndarray]:
    """Root mean squared error and mean absolute error per horizon step: ``{"rmse": (horizon,), "mae": (horizon,)}``.

    forecasts, actual: (N, horizon), in the series' own units.
    """
    forecasts, actual = np.asarray(forecasts, np.float64), np.asarray(actual, np.float64)
    if forecasts.ndim != 2 or forecasts.shape != actual.shape:
        raise ValueError(
            f"forecasts and actual must both be (origins, horizon), got {forecasts.shape} and {actual.shape}"
        )
    errors = forecasts - actual  # (N, horizon)
    return {"rmse": np.sqrt((errors**2).mean(axis=0)), "mae": np.abs(errors).mean(axis=0)}


def _check_origins(origins: Sequence[int], length: int, lowest: int) -> None:
    if len(origins) == 0:
        raise ValueError("origins is empty; expected at least one forecast origin")
    if min(origins) < max(lowest, 1) or max(origins) > length:
        raise ValueError(
            f"origins must lie between {max(lowest, 1)} and the series length {length}, "
            f"got {min(origins)} to {max(origins)}"
        )
