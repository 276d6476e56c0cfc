"""What a student may be told about a graded submission: one Markdown file per student and exercise.

Each question's points and status, and for each *visible* test (the student has those in ``tests/``) whether it
passed and the message it failed with. Of the hidden tests only how many passed and the points they carried: never
their names, their code or their messages, which would tell the student what the hidden tests check.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from grading.gradebook import Report

if TYPE_CHECKING:
    from grading.grade import Exercise, Question

# What a question's status means, in the student's terms (the statuses are those of the gradebook).
MEANING = {
    "missing": "a function the tests need is not defined (renamed, deleted, or its cell raised)",
    "memory": "a call ran into the memory limit",
    "timeout": "a call ran past the time limit",
    "crashed": "Python stopped while a function ran (for example `exit()`)",
}
# A notebook that does not load gives every question the same status: said once, with what to look for.
NOT_LOADED = {
    "timeout": (
        "did not finish running within the time limit",
        "Look for an endless loop or a long computation outside the functions, or a cell waiting for input.",
    ),
    "crashed": (
        "stopped Python before its last cell",
        "Look for `exit()`, `quit()`, `sys.exit()` or `os._exit()` outside the functions.",
    ),
    "invalid": ("could not be read as a notebook", "Hand in the `.ipynb` file itself, saved from Jupyter."),
}
# The exceptions the grader's proxies raise: the student needs their message, not their name.
PREFIXES = ("WorkerGone: ", "StudentError: ")
WIDTH = 76  # a message's lines are wrapped, so that they read without scrolling sideways


def feedback_text(report: Report, exercise: Exercise) -> str:
    """The feedback on ``report`` (a submission of ``exercise``), as Markdown."""
    maximum = sum(row.max_points for row in report.rows)
    lines = [
        f"# {exercise.name}: feedback for {report.student}",
        "",
        f"Total: {_n(report.points)} of {_points(maximum)}.",
    ]
    statuses = {question["status"] for question in report.questions}
    not_loaded = len(statuses) == 1 and statuses <= set(NOT_LOADED) and not report.load_seconds
    if not_loaded:
        what, hint = NOT_LOADED[statuses.pop()]
        lines += ["", f"No question could be graded: your notebook {what} ({report.questions[0]['detail']}).", ""]
        lines += [hint, "Run it from a restarted kernel (Run All) before handing it in."]
    if report.cell_errors:
        lines += [
            "",
            "Cells that raised an error while your notebook ran from top to bottom (counting code cells):",
            "",
        ]
        lines += [
            f"- cell {error['cell']}: {error['error']}: {_one_line(error['message'])}" for error in report.cell_errors
        ]
    by_name = {question["question"]: question for question in report.questions}
    for question in exercise.questions:
        lines += ["", *_question(question, by_name.get(question.name), not_loaded)]
    return "\n".join(lines) + "\n"


def _question(question: Question, graded: dict | None, not_loaded: bool) -> list[str]:
    maximum = sum(test.points for test in question.tests)
    if graded is None:
        return [f"## {question.name}: not graded (of {_points(maximum)})"]
    lines = [f"## {question.name}: {_n(graded['points'])} of {_points(maximum)} ({graded['status']})", ""]
    if not_loaded:
        return [*lines, "Not graded: the notebook did not run (above)."]
    if graded["status"] in MEANING:
        lines += [f"The question scores 0: {MEANING[graded['status']]} ({graded['detail']}).", ""]
    results = {result["test"]: result for result in graded["tests"]}
    for test in question.tests:
        if test.hidden:
            continue
        result = results.get(test.name)
        if result is None:
            lines.append(f"- not run: `{test.name}` ({_points(test.points)})")
        elif result["passed"]:
            lines.append(f"- passed: `{test.name}` ({_points(test.points)})")
        else:
            lines += [f"- failed: `{test.name}` (0 of {_points(test.points)})", "", *_indented(result), ""]
    hidden = [test for test in question.tests if test.hidden]
    if hidden:
        passed = [test for test in hidden if results.get(test.name, {}).get("passed")]
        lines.append(
            f"- hidden tests: {len(passed)} of {len(hidden)} passed"
            f" ({_n(sum(test.points for test in passed))} of {_points(sum(test.points for test in hidden))})"
        )
    return lines


def _indented(result: dict) -> list[str]:
    """The first lines of a visible test's message, as a Markdown code block no wider than ``WIDTH``."""
    message = result.get("message", "")
    for prefix in PREFIXES:
        message = message.removeprefix(prefix)
    lines = []
    for line in message.splitlines()[:20]:
        # Broken at spaces only, so that no number or name is cut in two.
        wrapped = textwrap.wrap(
            line,
            WIDTH,
            initial_indent=" " * 6,
            subsequent_indent=" " * 8,
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines += wrapped or [""]
    return lines


def write_feedback(report: Report, exercise: Exercise, folder: Path) -> Path:
    """Write ``folder/<student>/<exercise>.md``; returns its path."""
    path = folder / report.student / f"{report.exercise}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(feedback_text(report, exercise))
    return path


def _n(value: float) -> str:
    return f"{value:g}"


def _points(value: float) -> str:
    return f"{_n(value)} point" + ("" if value == 1 else "s")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
