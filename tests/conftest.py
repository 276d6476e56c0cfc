"""Fixtures shared by the repository-level tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def toc_pages() -> list[str]:
    """Every page in _toc.yml, chapters and their sections, as a path without suffix (e.g. "book/appendix/data")."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [page for part in toc["parts"] for chapter in part["chapters"] for page in _pages(chapter)]


def _pages(entry: dict) -> list[str]:
    """The page of a toc entry and, depth first, the pages of its sections."""
    return [entry["file"]] + [page for section in entry.get("sections", []) for page in _pages(section)]
