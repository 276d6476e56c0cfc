"""Turn otter master notebooks into what an instructor hands out and what they keep.

For each master ``exercises/<name>.ipynb``, ``otter assign`` writes a student notebook (solutions replaced by
``...``, visible tests only) and an autograder (every test, hidden ones included, and the solution notebook).
They land in ``<out>/student/<name>/`` and ``<out>/autograder/<name>/``. Before anything is kept, the student folder
is searched for every line of solution code and every hidden test: a leak stops the build.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MIN_LEAK_CHARS = 12  # shorter solution lines (``h = h0``) are too common to mean a leak


def assign(master: Path, out: Path) -> tuple[Path, Path]:
    """Run ``otter assign`` on one master; returns the student and autograder folders."""
    name = master.stem
    student, autograder = out / "student" / name, out / "autograder" / name
    with tempfile.TemporaryDirectory() as scratch:
        otter = Path(sys.executable).parent / "otter"
        command = [str(otter), "assign", str(master.resolve()), scratch]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"otter assign failed on {master}:\n{result.stdout}\n{result.stderr}")
        leaks = find_leaks(master, Path(scratch) / "student", Path(scratch) / "autograder")
        if leaks:
            raise RuntimeError(f"{master}: the student version would leak:\n" + "\n".join(leaks))
        for source, target in ((Path(scratch) / "student", student), (Path(scratch) / "autograder", autograder)):
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target)
    return student, autograder


def build_all(masters: list[Path], out: Path, jobs: int | None = None) -> list[tuple[str, Path, Path]]:
    """Assign every master, ``jobs`` at a time (default: one per core); returns ``(name, student folder, autograder
    folder)`` for each, in the order of ``masters``."""
    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:  # each assignment is an otter process
        return list(pool.map(lambda master: (master.stem, *assign(master, out)), masters))


def solution_lines(master: Path) -> list[str]:
    """The lines between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` in the master's code cells."""
    lines, inside = [], False
    for cell in json.loads(master.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in "".join(cell["source"]).splitlines():
            stripped = line.strip()
            if re.match(r"#\s*BEGIN SOLUTION", stripped):
                inside = True
            elif re.match(r"#\s*END SOLUTION", stripped):
                inside = False
            elif inside or stripped.endswith("# SOLUTION"):
                lines.append(stripped)
    return [line for line in lines if len(line) >= MIN_LEAK_CHARS]


def _test_functions(autograder: Path) -> list[tuple[ast.FunctionDef, list[str]]]:
    """Each test function of the autograder's tests, with its source lines (stripped, ``def`` line first)."""
    functions = []
    for path in sorted((autograder / "tests").glob("*.py")):
        source = path.read_text()
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef):
                lines = (ast.get_source_segment(source, node) or "").splitlines()
                functions.append((node, [line.strip() for line in lines]))
    return functions


def hidden_tests(autograder: Path) -> list[str]:
    """Name and statement lines of every hidden test function in the autograder's tests."""
    found = []
    for node, lines in _test_functions(autograder):
        if _is_hidden(node):
            found.append(f"def {node.name}(")
            # Imports reveal nothing (and the notebook has the same ones).
            found += [line for line in lines[1:] if len(line) >= MIN_LEAK_CHARS and not _is_import(line)]
    return found


def _is_import(line: str) -> bool:
    return line.startswith(("import ", "from "))


def _is_hidden(node: ast.FunctionDef) -> bool:
    for decorator in node.decorator_list:
        for keyword in getattr(decorator, "keywords", []):
            if keyword.arg == "hidden" and isinstance(keyword.value, ast.Constant) and keyword.value.value is True:
                return True
    return False


def find_leaks(master: Path, student: Path, autograder: Path) -> list[str]:
    """Every solution line or hidden-test line found in any file of the student folder (metadata included)."""
    secrets = set(solution_lines(master)) | set(hidden_tests(autograder))
    # A line a visible test also has is no secret.
    shared = {line for node, lines in _test_functions(autograder) if not _is_hidden(node) for line in lines}
    leaks = []
    for path in sorted(p for p in student.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        if path.suffix == ".ipynb":  # search the decoded strings too (JSON escapes quotes and newlines)
            text += "\n" + "\n".join(_strings(json.loads(text)))
        for secret in sorted(secrets - shared):
            if secret in text:
                leaks.append(f"{path.relative_to(student)}: {secret}")
    return leaks


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    return []


def solution_functions(notebook: Path) -> dict[str, str]:
    """The source of each code cell that defines a function (``def name(``) in ``notebook``, by name: in the
    autograder's notebook, the solutions."""
    found = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        source = "".join(cell["source"])
        match = re.match(r"def (\w+)\(", source)
        if cell["cell_type"] == "code" and match:
            found[match.group(1)] = source
    return found


def answered(student: Path, answers: dict[str, str], extra: list[str] = (), drop_checks: bool = False) -> dict:
    """The student notebook with the cells defining ``answers``' functions replaced by those sources, ``extra``
    code cells appended and, with ``drop_checks``, its ``grader.check`` cells removed: a submission, for tests and
    benchmarks."""
    notebook = json.loads(student.read_text())
    cells = []
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        match = re.match(r"def (\w+)\(", source)
        if match and match.group(1) in answers:
            cell = {**cell, "source": answers[match.group(1)]}
        if drop_checks and source.startswith("grader.check("):
            continue
        cells.append(cell)
    for source in extra:
        cells.append({"cell_type": "code", "metadata": {}, "source": source, "outputs": [], "execution_count": None})
    return {**notebook, "cells": cells}
