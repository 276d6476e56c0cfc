"""Shared set-up for the unit tests: a headless matplotlib, no figure left open, and modest hypothesis runs."""

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display on CI, and PNGs render the same everywhere

import matplotlib.pyplot as plt
import pytest
from hypothesis import settings

# Property tests stay fast (the whole unit suite runs in well under a minute on 2 cores) and write no database.
settings.register_profile("unit", max_examples=60, deadline=None, database=None)
settings.load_profile("unit")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def no_course_device(monkeypatch):
    """Run as if ``COURSE_DEVICE`` were unset, whatever the shell running the tests says."""
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
