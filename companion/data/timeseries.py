"""Real time series that ship with statsmodels (public domain), for the forecasting experiments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from companion.checks import check_choice


@dataclass(frozen=True)
class Series:
    """One univariate series: ``values[i]`` was observed at ``time[i]`` (a decimal year)."""

    name: str
    time: np.ndarray  # (T,) float64, decimal years
    values: np.ndarray  # (T,) float32
    unit: str
    source: str

    def __len__(self) -> int:
        return len(self.values)


def _sunspots() -> Series:
    from statsmodels.datasets import sunspots

    frame = sunspots.load_pandas().data
    return Series(
        name="sunspots",
        time=frame["YEAR"].to_numpy(np.float64),
        values=frame["SUNACTIVITY"].to_numpy(np.float32),
        unit="yearly mean sunspot number",
        source="statsmodels.datasets.sunspots (1700-2008, public domain)",
    )


def _co2() -> Series:
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data["co2"].interpolate()  # 59 missing weeks, filled linearly
    index = frame.index
    time = index.year + (index.day_of_year - 1) / np.where(index.is_leap_year, 366, 365)
    return Series(
        name="co2",
        time=np.asarray(time, np.float64),
        values=frame.to_numpy(np.float32),
        unit="ppm CO2, Mauna Loa, weekly",
        source="statsmodels.datasets.co2 (1958-2001, public domain)",
    )


SERIES = {"sunspots": _sunspots, "co2": _co2}


def load_series(name: str = "sunspots") -> Series:
    """Load ``"sunspots"`` (309 yearly values) or ``"co2"`` (2284 weekly values, gaps interpolated)."""
    check_choice("name", name, tuple(SERIES))
    return SERIES[name]()


@dataclass(frozen=True)
class Standardizer:
    """Scale a series to mean 0 and standard deviation 1 using statistics of the training part only."""

    mean: float
    std: float

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardizer:
        """Mean and standard deviation of ``values`` (a constant series gets scale 1)."""
        if len(values) < 2:
            raise ValueError(f"values must hold at least 2 observations to fit a scale, got {len(values)}")
        return cls(float(np.mean(values)), float(np.std(values)) or 1.0)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale ``values`` to the standard units."""
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Map standardized values (e.g. a forecast) back to the series' units."""
        return values * self.std + self.mean
