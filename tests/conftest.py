"""Fixtures shared by the repository-level tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.course_plugin import build_site, prebuilt_site

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def toc_pages() -> list[str]:
    """Every page in _toc.yml, chapters and their sections, as a path without suffix (e.g. "book/appendix/data")."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [page for part in toc["parts"] for chapter in part["chapters"] for page in _pages(chapter)]


def _pages(entry: dict) -> list[str]:
    """The page of a toc entry and, depth first, the pages of its sections."""
    return [entry["file"]] + [page for section in entry.get("sections", []) for page in _pages(section)]


@pytest.fixture(scope="session")
def site(request: pytest.FixtureRequest) -> Path:
    """The built book (its _build/html), built once per test run with the command of `./course book`.

    The static checks (tests/test_book.py) and the browser tests (tests/browser/) share this one build. It is made
    from the executions nbval made of the book's notebooks in this same run (tests/course_plugin.py says how), so
    each notebook executes once; the build executes whatever nbval did not run, as `./course book` would. It goes
    to this run's temporary folder, so a test run never overwrites the reader's _build/.
    Set COURSE_TEST_SITE to an already built _build/html to check it instead of building (while working on tests).
    """
    if prebuilt := os.environ.get("COURSE_TEST_SITE"):
        return prebuilt_site(prebuilt)
    return build_site(request.session)
