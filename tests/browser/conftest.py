"""Fixtures for the browser tests: a headless Chromium (Debian's package, or any Chrome found) driven by playwright,
and a folder for the screenshots, named at the end of the run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.course_plugin import end_of_run

# `playwright install` downloads its own browser build, which CI cannot do: use the system's. ./course installs
# Debian's `chromium` with apt-get when none is found (see `setup_browser` there).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = pytest.StashKey[Path]()
SUMMARY = pytest.StashKey[list[str]]()  # lines for the end of the run: pages, requests, timings


def find_chromium() -> str | None:
    """COURSE_CHROMIUM if set, else the first Chromium or Chrome on PATH."""
    if configured := os.environ.get("COURSE_CHROMIUM"):
        return configured
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = find_chromium()
    if executable is None:
        message = (
            "NO CHROMIUM FOUND: the browser tests of the built site did not run. Install Debian's `chromium` "
            "(apt-get install chromium; ./course test does this itself when run as root), or point COURSE_CHROMIUM "
            "at a Chromium or Chrome binary."
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI the browser tests must run
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    request.config.stash[SCREENSHOTS] = folder
    return folder


@pytest.fixture(scope="session")
def browser_summary(request: pytest.FixtureRequest) -> list[str]:
    """Lines that the end of the pytest run prints (pages visited, requests per page, timings)."""
    return request.config.stash.setdefault(SUMMARY, [])


def pytest_sessionfinish(session: pytest.Session) -> None:
    # The end of the run prints these (under pytest-xdist the controller does, from every worker's lines).
    lines = end_of_run(session.config)
    lines += session.config.stash.get(SUMMARY, [])
    if SCREENSHOTS in session.config.stash:
        lines.append(f"browser tests: screenshots of every page in {session.config.stash[SCREENSHOTS]}")
