"""Checks on the repository itself: the lock and environment.yml agree, the code is linted and formatted, notebooks
are stored clean, and pytest collects what it should."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NOTEBOOK_FOLDERS = ("book", "exercises")

# The first code cell of every notebook (tagged remove-cell, so the book hides it): on Colab it installs the
# companion, with d2l for the book's chapters and with otter-grader (for grader.check) for the exercises. One exact
# text per family. Exercise masters may open with otter's "# ASSIGNMENT CONFIG" raw cell, which otter assign removes.
COLAB_CELL = """\
# On Colab, install the companion and d2l (locally they are there).
import sys

if "google.colab" in sys.modules:
    %pip install --quiet "rnn-to-transformer @ git+https://github.com/rnn-to-transformer/course"
    %pip install --quiet --no-deps d2l==1.0.3  # keep Colab's numpy"""
EXERCISE_COLAB_CELL = """\
# On Colab, install the companion and otter-grader (locally they are there).
import sys

if "google.colab" in sys.modules:
    %pip install --quiet "rnn-to-transformer @ git+https://github.com/rnn-to-transformer/course"
    %pip install --quiet otter-grader==7.0.0"""


def tracked_notebooks() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.ipynb"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [ROOT / name for name in listed if name.startswith(NOTEBOOK_FOLDERS)]


NOTEBOOKS = tracked_notebooks()


def run(*command: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], cwd=ROOT, capture_output=True, text=True)


def test_environment_yml_matches_the_lock() -> None:
    result = run(sys.executable, "tools/environment_yml.py", "--check")
    assert result.returncode == 0, result.stderr


def test_environment_yml_is_valid_conda_yaml_for_python_311() -> None:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    dependencies = environment["dependencies"]
    assert "python=3.11" in dependencies
    pip_section = next(item["pip"] for item in dependencies if isinstance(item, dict))
    assert "-e ." in pip_section
    assert any(line.startswith("d2l==1.0.3") for line in pip_section)
    assert not any(line.startswith("numpy==1.23") for line in pip_section), "d2l's numpy pin was not lifted"


def test_lock_is_up_to_date_with_pyproject() -> None:
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` (so ./course test) sets UV
    assert uv, "uv not found; run the tests through ./course test"
    result = run(uv, "lock", "--check", "--offline")
    assert result.returncode == 0, result.stderr


# --no-cache: ruff would write a cache beside each ruff.toml (exercises/.ruff_cache), and the grading tests, which
# may run at the same time on another worker, check that nothing in exercises/ changes while they grade.
def test_ruff_lint() -> None:
    result = run(BIN / "ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run(BIN / "ruff", "format", "--no-cache", "--check", ".")
    assert result.returncode == 0, "run ./course fix\n" + result.stdout + result.stderr


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: str(path.relative_to(ROOT)))
def test_notebook_is_stored_clean(notebook: Path) -> None:
    cells = json.loads(notebook.read_text())["cells"]
    dirty = [index for index, cell in enumerate(cells) if cell.get("outputs") or cell.get("execution_count")]
    assert not dirty, f"cells {dirty} hold outputs: run ./course fix (the book build executes notebooks)"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: str(path.relative_to(ROOT)))
def test_notebook_starts_with_the_colab_cell(notebook: Path) -> None:
    content = json.loads(notebook.read_text())
    exercise = notebook.is_relative_to(ROOT / "exercises")
    cells = content["cells"]
    if exercise and cells[0]["cell_type"] == "raw":
        assert "".join(cells[0]["source"]).startswith("# ASSIGNMENT CONFIG"), "only otter's config may come first"
        cells = cells[1:]
    first = cells[0]
    assert first["cell_type"] == "code"
    assert "".join(first["source"]) == (EXERCISE_COLAB_CELL if exercise else COLAB_CELL)
    assert "remove-cell" in first["metadata"].get("tags", [])
    assert content["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize(
    "notebook",
    [path for path in NOTEBOOKS if path.is_relative_to(ROOT / "book")],
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_book_notebook_asserts_its_claims(notebook: Path) -> None:
    code = "\n".join("".join(cell["source"]) for cell in json.loads(notebook.read_text())["cells"])
    assert "\nassert " in code or code.startswith("assert ")


def test_every_book_page_is_in_the_toc_and_every_toc_entry_exists(toc_pages: list[str]) -> None:
    for entry in toc_pages:
        assert [path for path in (ROOT / f"{entry}.md", ROOT / f"{entry}.ipynb") if path.exists()], entry
    pages = {
        str(path.relative_to(ROOT).with_suffix(""))
        for suffix in ("*.md", "*.ipynb")
        for path in (ROOT / "book").rglob(suffix)
        if "_build" not in path.parts and ".ipynb_checkpoints" not in path.parts
    }
    assert pages == set(toc_pages), "pages and _toc.yml disagree"


def test_pytest_collects_notebooks_but_not_build_outputs(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    cell = {"cell_type": "code", "source": "1 + 1", "metadata": {}, "outputs": [], "execution_count": None}
    notebook = json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 4})
    for folder in ("book", "exercises", "_build/jupyter_execute/book"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "page.ipynb").write_text(notebook)
    (tmp_path / "tests").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    collected = {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}
    assert collected == {"book/page.ipynb", "exercises/page.ipynb"}, result.stdout


def test_the_bibliography_parses_with_unique_keys() -> None:
    """references.bib merges by union (.gitattributes), which can drop an entry's closing brace when two branches
    add entries at the same place; sphinxcontrib-bibtex then fails the whole book build on it."""
    from pybtex.database import parse_file

    bib = ROOT / "book" / "references.bib"
    entries = parse_file(bib).entries  # raises on a missing brace and on a duplicate key
    starts = [line for line in bib.read_text().splitlines() if line.startswith("@")]
    assert len(entries) == len(starts), f"{len(starts)} entries written, {len(entries)} parsed"
