"""The whole instructor cycle for every exercise, and the submissions that try to decide their own grade.

One module-scoped build (``otter assign`` on every master) and one grading run over a folder of submissions made
from it: the solution, the untouched student version, a plausible wrong answer, and adversarial ones. Short time
limits keep it fast; nothing here is timed (``python -m grading.benchmark`` measures).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from grading.build import build_all, find_leaks, hidden_tests, solution_lines
from grading.grade import grade_folder, load_autograder
from grading.sandbox import Limits, isolation

ROOT = Path(__file__).resolve().parent.parent
MASTERS = sorted((ROOT / "exercises").glob("*.ipynb"))
NAMES = [master.stem for master in MASTERS]
LIMITS = Limits(load_seconds=20, question_seconds=6, submission_seconds=120, memory_bytes=2 * 1024**3)

# A plausible wrong answer per exercise: (function, its wrong source, expected points per question).
WRONG = {
    "ch01-recurrence": (
        "rnn_step",
        "def rnn_step(x_t, h_prev, weight_ih, weight_hh, bias_ih, bias_hh):\n"
        "    return torch.tanh(x_t @ weight_ih.T + bias_ih + h_prev @ weight_hh.T)  # forgot bias_hh\n",
        [1, 0, 3, 3],
    ),
    "ch02-training-through-time": (
        "clip_by_global_norm",
        "def clip_by_global_norm(grads, max_norm):\n"
        "    scale = max_norm / (global_norm(grads) + 1e-6)  # scales up small gradients too\n"
        "    return [g * scale for g in grads]\n",
        [2, 3, 3, 3],
    ),
}

PATCH_COMPARISONS = """
import torch
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None
"""
PATCH_NUMPY = """
import numpy.testing
numpy.testing.assert_allclose = lambda *args, **kwargs: None
numpy.allclose = lambda *args, **kwargs: True
"""
PATCH_BUILTINS = """
import builtins
builtins.abs = lambda x: 0
builtins.all = lambda x: True
builtins.isinstance = lambda *args: True
"""
FAKE_SCORE = """
print("q1 results: All test cases passed!")
print("q2 results: All test cases passed!")
print("Total: 13/13 (100%)")
grader.check = lambda *args, **kwargs: print("All test cases passed!")
"""
MEMORY_BOMB = "hog = []\nwhile True:\n    hog.append(bytearray(4 * 1024**3))\n"
# 4 GiB at a time: over the 2 GiB cap at once (unbounded, it would fill the RAM).
# At top level it runs in a function, so its hoard is freed once MemoryError ends it.
TOP_BOMB = "def bomb():\n" + "\n".join("    " + line for line in MEMORY_BOMB.splitlines()) + "\n\n\nbomb()\n"


def _cells(notebook: dict) -> list[dict]:
    return notebook["cells"]


def _solutions(autograder: Path, name: str) -> dict[str, str]:
    notebook = json.loads((autograder / f"{name}.ipynb").read_text())
    found = {}
    for cell in _cells(notebook):
        source = "".join(cell["source"])
        match = re.match(r"def (\w+)\(", source)
        if cell["cell_type"] == "code" and match:
            found[match.group(1)] = source
    return found


def _fill(student: Path, answers: dict[str, str], extra: list[str] = (), drop_checks: bool = False) -> dict:
    """The student notebook with some answer cells replaced, extra cells appended, check cells maybe dropped."""
    notebook = json.loads(student.read_text())
    cells = []
    for cell in _cells(notebook):
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


def _submissions(built: Path, folder: Path) -> dict[tuple[str, str], list]:
    """Write every submission; returns the expected points per question (None: just zero everywhere)."""
    expected = {}

    def add(student: str, name: str, notebook: dict, points: list | None) -> None:
        (folder / student).mkdir(parents=True, exist_ok=True)
        (folder / student / f"{name}.ipynb").write_text(json.dumps(notebook))
        expected[(student, name)] = points

    for name in NAMES:
        student = built / "student" / name / f"{name}.ipynb"
        solutions = _solutions(built / "autograder" / name, name)
        full = [question.max_points for question in load_autograder(built / "autograder" / name).questions]
        function, wrong_source, wrong_points = WRONG[name]
        add("solution", name, _fill(student, solutions), full)
        add("untouched", name, _fill(student, {}), [0] * len(full))
        add("wrong", name, _fill(student, {**solutions, function: wrong_source}), wrong_points)

    # Adversarial submissions, on chapter 1 (rnn_step, rnn_forward, masked_perplexity, temperature_softmax).
    name = "ch01-recurrence"
    student = built / "student" / name / f"{name}.ipynb"
    solutions = _solutions(built / "autograder" / name, name)
    wrong = {**solutions, "rnn_step": WRONG[name][1]}
    add("patch-allclose", name, _fill(student, wrong, [PATCH_COMPARISONS]), [1, 0, 3, 3])
    add("patch-allclose-stubs", name, _fill(student, {}, [PATCH_COMPARISONS]), [0, 0, 0, 0])
    add("patch-numpy", name, _fill(student, {}, [PATCH_NUMPY]), [0, 0, 0, 0])
    add("patch-builtins", name, _fill(student, {}, [PATCH_BUILTINS]), [0, 0, 0, 0])
    fake_tests = "def test_rnn_step_shape(rnn_step):\n    pass\n\n\nassert True  # all tests pass\n"
    edited = _fill(student, {}, [fake_tests])
    for cell in _cells(edited):
        if "".join(cell["source"]).startswith("grader.check("):
            cell["source"] = 'print("All test cases passed!")'
    add("edited-tests", name, edited, [0, 0, 0, 0])
    add("deleted-tests", name, _fill(student, {}, drop_checks=True), [0, 0, 0, 0])
    add("fake-score", name, _fill(student, {}, [FAKE_SCORE]), [0, 0, 0, 0])
    add("exit-top", name, _fill(student, solutions, ["exit()"]), [0, 0, 0, 0])
    add("os-exit-top", name, _fill(student, solutions, ["import os\n\nos._exit(0)"]), [0, 0, 0, 0])
    add("loop-top", name, _fill(student, solutions, ["while True:\n    pass"]), [0, 0, 0, 0])
    exit_in = "def rnn_forward(*args):\n    exit()\n"
    add("exit-in-function", name, _fill(student, {**solutions, "rnn_forward": exit_in}), [3, 0, 3, 3])
    os_exit_in = "def masked_perplexity(*args):\n    import os\n\n    os._exit(0)\n"
    add("os-exit-in-function", name, _fill(student, {**solutions, "masked_perplexity": os_exit_in}), [3, 4, 0, 3])
    loop_in = "def temperature_softmax(*args):\n    while True:\n        pass\n"
    add("loop-in-function", name, _fill(student, {**solutions, "temperature_softmax": loop_in}), [3, 4, 3, 0])
    bomb_in = "def temperature_softmax(*args):\n" + "\n".join("    " + line for line in MEMORY_BOMB.splitlines())
    add("memory-bomb-in-function", name, _fill(student, {**solutions, "temperature_softmax": bomb_in}), [3, 4, 3, 0])
    add("memory-bomb-top", name, _fill(student, solutions, [TOP_BOMB]), [3, 4, 3, 3])
    return expected


EXPECTED_STATUS = {
    "solution": {"passed"},
    "untouched": {"failed"},
    "patch-allclose-stubs": {"failed"},
    "patch-numpy": {"failed"},
    "patch-builtins": {"failed", "crashed"},  # a worker whose isinstance lies cannot even encode its replies
    "edited-tests": {"failed"},
    "deleted-tests": {"failed"},
    "fake-score": {"failed"},
    "exit-top": {"crashed"},
    "os-exit-top": {"crashed"},
    "loop-top": {"timeout"},
}
# The status of the question whose function misbehaves; the other questions of these submissions pass.
EXPECTED_BAD_QUESTION = {
    "exit-in-function": ("q2", "crashed"),
    "os-exit-in-function": ("q3", "crashed"),
    "loop-in-function": ("q4", "timeout"),
    "memory-bomb-in-function": ("q4", "memory"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exercises")
    build_all(MASTERS, out)
    return out


@pytest.fixture(scope="module")
def graded(built: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, float]:
    folder = tmp_path_factory.mktemp("submissions")
    expected = _submissions(built, folder)
    started = time.monotonic()
    grade_folder(folder, built / "autograder", folder / "gradebook", LIMITS, jobs=2)
    seconds = time.monotonic() - started
    gradebook = json.loads((folder / "gradebook" / "gradebook.json").read_text())
    print(f"\ngraded {len(expected)} submissions in {seconds:.1f} s ({isolation()[1]})")
    for report in gradebook["submissions"]:
        statuses = " ".join(f"{q['question']}={q['status']}:{q['points']:g}" for q in report["questions"])
        print(f"  {report['student']:26} {report['exercise']:28} {statuses}")
    return expected, gradebook, seconds


def _rows(gradebook: dict, student: str, exercise: str) -> list[dict]:
    return [row for row in gradebook["rows"] if row["student"] == student and row["exercise"] == exercise]


def test_build_puts_student_and_autograder_folders_apart(built: Path) -> None:
    for name in NAMES:
        assert (built / "student" / name / f"{name}.ipynb").exists()
        assert sorted(path.name for path in (built / "autograder" / name / "tests").glob("q*.py"))
        questions = load_autograder(built / "autograder" / name).questions
        assert 3 <= len(questions) <= 5, name
        for question in questions:
            assert any(test.hidden for test in question.tests), f"{name} {question.name} has no hidden test"
            assert any(not test.hidden for test in question.tests), f"{name} {question.name} has no visible test"


@pytest.mark.parametrize("name", NAMES)
def test_no_solution_and_no_hidden_test_reaches_students(built: Path, name: str, tmp_path: Path) -> None:
    master = ROOT / "exercises" / f"{name}.ipynb"
    student, autograder = built / "student" / name, built / "autograder" / name
    assert solution_lines(master), "the leak check found no solution lines to look for"
    assert hidden_tests(autograder), "the leak check found no hidden tests to look for"
    assert find_leaks(master, student, autograder) == []
    # The check can fail: plant a solution line and a hidden test name in a copy.
    planted = tmp_path / "student"
    shutil.copytree(student, planted)
    (planted / "notes.txt").write_text(solution_lines(master)[0] + "\n" + hidden_tests(autograder)[0])
    assert len(find_leaks(master, planted, autograder)) == 2


@pytest.mark.parametrize("name", NAMES)
def test_student_notebook_runs_top_to_bottom_and_gives_feedback(built: Path, name: str, tmp_path: Path) -> None:
    folder = tmp_path / name
    shutil.copytree(built / "student" / name, folder)
    notebook = nbformat.reads(json.dumps(_fill(folder / f"{name}.ipynb", {})), as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    checks = [cell for cell in notebook.cells if cell.source.startswith("grader.check(")]
    assert checks, "the student notebook has no grader.check cells"
    assert all("passed" not in _text(cell) or "failed" in _text(cell) for cell in checks)
    # Filled with the solutions, every visible check reports success in the student's own kernel.
    solved = _fill(folder / f"{name}.ipynb", _solutions(built / "autograder" / name, name))
    notebook = nbformat.reads(json.dumps(solved), as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    for cell in notebook.cells:
        if cell.source.startswith("grader.check("):
            assert "passed" in _text(cell), _text(cell)


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts += [str(value) for value in output.get("data", {}).values()]
    return "\n".join(parts)


def test_every_submission_gets_exactly_the_points_it_earned(graded: tuple[dict, dict, float]) -> None:
    expected, gradebook, _ = graded
    for (student, exercise), points in expected.items():
        rows = _rows(gradebook, student, exercise)
        assert [row["points"] for row in rows] == points, (student, exercise, rows)


@pytest.mark.parametrize("name", NAMES)
def test_instructor_cycle(graded: tuple[dict, dict, float], name: str) -> None:
    _, gradebook, _ = graded
    solution = _rows(gradebook, "solution", name)
    assert all(row["points"] == row["max_points"] > 0 for row in solution)
    assert sum(row["points"] for row in _rows(gradebook, "untouched", name)) == 0
    wrong = sum(row["points"] for row in _rows(gradebook, "wrong", name))
    assert 0 < wrong < sum(row["max_points"] for row in solution)
    assert {row["status"] for row in _rows(gradebook, "wrong", name)} & {"partial", "failed"}


@pytest.mark.parametrize("student", sorted(EXPECTED_STATUS))
def test_submission_status(graded: tuple[dict, dict, float], student: str) -> None:
    _, gradebook, _ = graded
    rows = _rows(gradebook, student, "ch01-recurrence")
    assert rows
    assert {row["status"] for row in rows} <= EXPECTED_STATUS[student], rows


@pytest.mark.parametrize("student", sorted(EXPECTED_BAD_QUESTION))
def test_a_misbehaving_function_costs_only_its_question(graded: tuple[dict, dict, float], student: str) -> None:
    _, gradebook, _ = graded
    question, status = EXPECTED_BAD_QUESTION[student]
    for row in _rows(gradebook, student, "ch01-recurrence"):
        if row["question"] == question:
            assert (row["status"], row["points"]) == (status, 0), row
        else:
            assert row["status"] == "passed", row


def test_gradebook_csv_has_the_documented_columns(graded: tuple[dict, dict, float]) -> None:
    _, gradebook, _ = graded
    assert set(gradebook["rows"][0]) == {"student", "exercise", "question", "points", "max_points", "status"}
    assert gradebook["sandbox"] == isolation()[1]
