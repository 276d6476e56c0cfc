"""The whole instructor cycle for every exercise, and the submissions that try to decide their own grade.

One module-scoped build (``otter assign`` on every master) and one grading run over a folder of submissions made
from it: the solution, the untouched student version, a plausible wrong answer, and adversarial ones. Short time
limits keep it fast; nothing here is timed (``python -m grading.benchmark`` measures).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from grading import sandbox
from grading.build import build_all, find_leaks, hidden_tests, solution_lines
from grading.grade import grade_folder, grade_submission, hidden_paths, load_autograder
from grading.sandbox import Limits, isolation

ROOT = Path(__file__).resolve().parent.parent
MASTERS = sorted((ROOT / "exercises").glob("*.ipynb"))
NAMES = [master.stem for master in MASTERS]
LIMITS = Limits(load_seconds=20, question_seconds=6, submission_seconds=120, memory_bytes=2 * 1024**3)

# Plausible wrong answers per exercise: [(function, its wrong source, expected points per question), ...].
WRONG = {
    "ch01-recurrence": [
        (
            "rnn_step",
            "def rnn_step(x_t, h_prev, weight_ih, weight_hh, bias_ih, bias_hh):\n"
            "    return torch.tanh(x_t @ weight_ih.T + bias_ih + h_prev @ weight_hh.T)  # forgot bias_hh\n",
            [1, 0, 3, 3],
        ),
    ],
    "ch02-training-through-time": [
        (
            "clip_by_global_norm",
            "def clip_by_global_norm(grads, max_norm):\n"
            "    scale = max_norm / (global_norm(grads) + 1e-6)  # scales up small gradients too\n"
            "    return [g * scale for g in grads]\n",
            [2, 3, 3, 3],
        ),
    ],
    "ch05-seq2seq": [
        (
            "masked_sequence_loss",
            "def masked_sequence_loss(logits, targets, lengths):\n"
            "    real = torch.arange(targets.shape[1])[None, :] < lengths[:, None]\n"
            "    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction='none')\n"
            "    return ((per_token * real).sum(1) / lengths).mean()  # a mean of means: short targets weigh more\n",
            [2, 3, 3, 3],
        ),
    ],
    "ch06-decoding": [
        (
            "beam_step",
            "def beam_step(scores, step_log_probs, finished, end_id, beam_size):\n"
            "    vocab = step_log_probs.shape[1]\n"
            "    candidates = (scores[:, None] + step_log_probs).flatten()  # finished prefixes grow on\n"
            "    best = candidates.topk(beam_size)\n"
            "    return best.values, best.indices // vocab, best.indices % vocab\n",
            [2, 1, 3, 3],
        ),
    ],
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


JAILED = isolation()[2]
# Reads the master (its solution cells), the autograder's notebook and tests, the git history and another student's
# submission, and defines every function it finds there: without the jail it scores full marks
# (test_the_thief_would_win_without_the_jail), so its zero in the jail is the jail's doing.
STEAL = """
import json, os, subprocess

SOURCES = {sources!r}
GIT = {git!r}
stolen = []
for path in SOURCES:
    try:
        with open(path) as handle:
            text = handle.read()
        stolen.append(path)
        cells = json.loads(text)["cells"] if path.endswith(".ipynb") else []
    except Exception:
        continue
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith("def "):
            try:
                exec(source, globals())
            except Exception:
                pass
try:
    shown = subprocess.run(["git", "-C", GIT, "show", "HEAD:exercises/ch01-recurrence.ipynb"], capture_output=True)
    for cell in json.loads(shown.stdout)["cells"]:
        if cell["cell_type"] == "code" and "".join(cell["source"]).startswith("def "):
            exec("".join(cell["source"]), globals())
except Exception:
    pass
"""
# Overwrites, deletes and adds files in the masters' folder, the autograder (a test that always passes) and
# another submission (test_the_vandal_would_win_without_the_jail checks it does that outside the jail).
VANDAL = """
import os, shutil

for path in {overwrite!r}:
    try:
        with open(path, "w") as handle:
            handle.write("def test_anything(rnn_step):\\n    pass\\n")
    except OSError:
        pass
for path in {delete!r}:
    try:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    except OSError:
        pass
for folder in {add!r}:
    try:
        with open(os.path.join(folder, "planted.py"), "w") as handle:
            handle.write("planted")
    except OSError:
        pass
"""
# Tries to uncover what the jail hides: umount (plain, lazy, the binary), a new user and mount namespace first,
# a non-recursive bind of a folder that holds a hidden one, remounting read-write; then steals what it sees.
UNMOUNT = """
import ctypes, os, subprocess

libc = ctypes.CDLL(None, use_errno=True)
HIDDEN, ROOT = {hidden!r}, {root!r}
for path in HIDDEN:
    libc.umount2(path.encode(), 0)
    libc.umount2(path.encode(), 2)
    subprocess.run(["umount", "-l", path], capture_output=True)
libc.unshare(0x10000000 | 0x00020000)  # CLONE_NEWUSER | CLONE_NEWNS: all capabilities there
for path in HIDDEN:
    libc.umount2(path.encode(), 2)
    libc.mount(None, path.encode(), None, ctypes.c_ulong(32 | 4096), None)
os.makedirs("/tmp/peek", exist_ok=True)
libc.mount(ROOT.encode(), b"/tmp/peek", None, ctypes.c_ulong(4096), None)
libc.mount(None, ROOT.encode(), None, ctypes.c_ulong(32 | 4096), None)
for base in (ROOT, "/tmp/peek"):
    path = os.path.join(base, "exercises", "ch01-recurrence.ipynb")
    if os.path.exists(path):
        import json

        for cell in json.load(open(path))["cells"]:
            if cell["cell_type"] == "code" and "".join(cell["source"]).startswith("def "):
                exec("".join(cell["source"]), globals())
"""


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
    if JAILED:  # without the jail these would win (see the control tests) and the vandal would damage the repository
        add("steal-solutions", name, _fill(student, {}, [_steal(built, folder)]), [0, 0, 0, 0])
        add("vandal", name, _fill(student, {}, [_vandal(*_targets(built, folder))]), [0, 0, 0, 0])
        hidden = hidden_paths(folder, built / "autograder", folder / "gradebook")
        unmount = UNMOUNT.format(hidden=list(hidden), root=str(ROOT))
        add("unmount", name, _fill(student, {}, [unmount]), [0, 0, 0, 0])
    return expected


def _steal(built: Path, folder: Path) -> str:
    name = "ch01-recurrence"
    sources = [
        str(ROOT / "exercises" / f"{name}.ipynb"),
        str(built / "autograder" / name / f"{name}.ipynb"),
        str(built / "autograder" / name / "tests" / "q1.py"),
        str(folder / "solution" / f"{name}.ipynb"),
    ]
    return STEAL.format(sources=sources, git=str(ROOT))


def _targets(built: Path, folder: Path) -> tuple[list[str], list[str], list[str]]:
    """What the vandal overwrites, deletes, and adds a file to."""
    name, autograder = "ch01-recurrence", built / "autograder" / "ch01-recurrence"
    overwrite = [str(autograder / "tests" / "q1.py"), str(ROOT / "exercises" / f"{name}.ipynb")]
    delete = [str(folder / "solution" / f"{name}.ipynb"), str(autograder / "tests" / "q2.py")]
    return overwrite, delete, [str(ROOT / "exercises"), str(autograder / "tests"), str(folder / "wrong")]


def _vandal(overwrite: list[str], delete: list[str], add: list[str]) -> str:
    return VANDAL.format(overwrite=overwrite, delete=delete, add=add)


def _snapshot(paths: list[Path]) -> dict[str, str]:
    """The digest of every file under ``paths`` (what the vandal must not change)."""
    files = [file for path in paths for file in ([path] if path.is_file() else sorted(path.rglob("*")))]
    return {str(file): hashlib.sha256(file.read_bytes()).hexdigest() for file in files if file.is_file()}


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
    **({"steal-solutions": {"failed"}, "vandal": {"failed"}, "unmount": {"failed"}} if JAILED else {}),
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
    guarded = [ROOT / "exercises", built / "autograder", folder]
    masters = {path: path.read_bytes() for path in MASTERS}
    before = _snapshot(guarded)  # the gradebook folder does not exist yet
    started = time.monotonic()
    grade_folder(folder, built / "autograder", folder / "gradebook", LIMITS, jobs=2)
    seconds = time.monotonic() - started
    after = {path: digest for path, digest in _snapshot(guarded).items() if "/gradebook/" not in path}
    for path, content in masters.items():  # put the masters back before failing, should the jail have leaked
        if path.read_bytes() != content:
            path.write_bytes(content)
    for path in sorted(set(after) - set(before)):
        Path(path).unlink()
    assert after == before, "files changed while grading: " + ", ".join(
        sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path))
    )
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


@pytest.mark.parametrize("name", NAMES)
def test_untouched_student_notebook_passes_nbval(built: Path, name: str, tmp_path: Path) -> None:
    """What CI does to every notebook, done to what students get: the stubs unfilled, every cell must run."""
    folder = tmp_path / name
    shutil.copytree(built / "student" / name, folder)
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", f"{name}.ipynb"]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


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


def _jail_off(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = tuple(word for word in isolation()[0] if word != "--mount")
    monkeypatch.setattr(sandbox, "isolation", lambda: (prefix, "no jail (control)", False))


@pytest.mark.skipif(not JAILED, reason=f"no file-system jail here: {isolation()[1]}")
def test_the_thief_would_win_without_the_jail(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "ch01-recurrence"
    (tmp_path / "solution").mkdir()
    shutil.copy(built / "autograder" / name / f"{name}.ipynb", tmp_path / "solution" / f"{name}.ipynb")
    thief = tmp_path / "thief.ipynb"
    thief.write_text(json.dumps(_fill(built / "student" / name / f"{name}.ipynb", {}, [_steal(built, tmp_path)])))
    _jail_off(monkeypatch)
    report = grade_submission("thief", load_autograder(built / "autograder" / name), thief, LIMITS)
    assert [row.points for row in report.rows] == [row.max_points for row in report.rows], report.rows


@pytest.mark.skipif(not JAILED, reason=f"no file-system jail here: {isolation()[1]}")
def test_the_vandal_would_win_without_the_jail(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same code, aimed at copies: outside the jail it rewrites, deletes and plants files.
    name = "ch01-recurrence"
    copy = tmp_path / "copy"
    shutil.copytree(built / "autograder" / name, copy / "autograder")
    (copy / "exercises").mkdir()
    shutil.copy(MASTERS[0], copy / "exercises")
    overwrite = [str(copy / "autograder" / "tests" / "q1.py"), str(copy / "exercises" / MASTERS[0].name)]
    delete = [str(copy / "autograder" / "tests" / "q2.py")]
    vandal = tmp_path / "vandal.ipynb"
    cells = [_vandal(overwrite, delete, [str(copy / "exercises")])]
    vandal.write_text(json.dumps(_fill(built / "student" / name / f"{name}.ipynb", {}, cells)))
    before = _snapshot([copy])
    _jail_off(monkeypatch)
    grade_submission("vandal", load_autograder(built / "autograder" / name), vandal, LIMITS)
    after = _snapshot([copy])
    assert str(copy / "exercises" / "planted.py") in after
    assert delete[0] not in after
    assert all(after[path] != before[path] for path in overwrite)


def test_the_grader_says_whether_the_files_are_protected(graded: tuple[dict, dict, float]) -> None:
    _, gradebook, _ = graded
    assert ("NOT PROTECTED" in gradebook["sandbox"]) != JAILED, gradebook["sandbox"]


def test_the_scratch_tmpfs_never_covers_the_workers_own_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone under /tmp (as on many CI machines) keeps its venv there: covering /tmp would hide it from the worker."""
    from grading import jail

    monkeypatch.setattr(jail.sys, "prefix", "/tmp/clone/.venv")
    assert "/tmp" not in jail._scratch_points()
    monkeypatch.setattr(jail.sys, "prefix", "/opt/clone/.venv")
    monkeypatch.setattr(jail.sys, "base_prefix", "/opt/python")
    monkeypatch.setattr(jail, "__file__", "/opt/clone/grading/jail.py")
    assert "/tmp" in jail._scratch_points()
