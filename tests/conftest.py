"""Fixtures shared by the repository-level tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def toc_pages() -> list[str]:
    """Every page listed in _toc.yml, as a path without suffix (e.g. "book/appendix/data")."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]
