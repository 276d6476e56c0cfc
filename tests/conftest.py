"""Fixtures shared by the repository-level tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"


@pytest.fixture(scope="session")
def toc_pages() -> list[str]:
    """Every page in _toc.yml, chapters and their sections, as a path without suffix (e.g. "book/appendix/data")."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [page for part in toc["parts"] for chapter in part["chapters"] for page in _pages(chapter)]


def _pages(entry: dict) -> list[str]:
    """The page of a toc entry and, depth first, the pages of its sections."""
    return [entry["file"]] + [page for section in entry.get("sections", []) for page in _pages(section)]


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built book (its _build/html), built once per test session with exactly the command of `./course book`.

    The static checks (tests/test_book.py) and the browser tests (tests/browser/) share this one build. Only the
    output folder differs from `./course book`, so that a test run never overwrites the reader's _build/.
    Set COURSE_TEST_SITE to an already built _build/html to check it instead of building (while working on tests).
    """
    if prebuilt := os.environ.get("COURSE_TEST_SITE"):
        return Path(prebuilt).resolve()
    output = tmp_path_factory.mktemp("book")
    command = [JUPYTER_BOOK, "build", ROOT, "--path-output", output, "--all", "--warningiserror", "--keep-going"]
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return output / "_build" / "html"
