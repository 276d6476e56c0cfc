"""The gradebook of a grading folder: written as submissions finish, so that an interrupted run keeps its work.

Files in the gradebook folder (``--out``):

* ``gradebook.jsonl``: one line per graded submission, its whole :class:`Report`, appended (and flushed to disk) the
  moment the submission is graded. It is the record a rerun reads to skip what is already graded.
* ``gradebook.csv``: one row per student, exercise and question (:data:`COLUMNS`), appended likewise, then rewritten
  in order at the end of the run.
* ``gradebook.json``: at the end of a run (an interrupted one too), every row and report, the sandbox and limits.
* ``lms.csv``: one row per student, one column per exercise with its total, for a learning-management system.
* ``feedback/<student>/<exercise>.md``: what the student may see (:mod:`grading.feedback`).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

COLUMNS = ("student", "exercise", "question", "points", "max_points", "status")


@dataclass
class Row:
    """One line of the gradebook."""

    student: str
    exercise: str
    question: str
    points: float
    max_points: float
    status: str


@dataclass
class Report:
    """The gradebook rows of one submission and what happened while grading it."""

    student: str
    exercise: str
    rows: list[Row]
    questions: list[dict] = field(default_factory=list)
    cell_errors: list = field(default_factory=list)
    loads: int = 0  # how many times its notebook was run (1; 0 when it is not a notebook)
    load_seconds: list[float] = field(default_factory=list)
    grade_seconds: float = 0.0
    # CPU time of the submission's worker (its question processes included) and of the grader's tests.
    cpu_seconds: float = 0.0
    grader_cpu_seconds: float = 0.0
    output_tail: str = ""
    # What was graded, and how: a rerun grades a submission again when its notebook or its tests changed.
    submission_sha256: str = ""
    tests_sha256: str = ""
    sandbox: str = ""
    limits: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """``(student, exercise)``: a gradebook holds one report per key."""
        return self.student, self.exercise

    @property
    def points(self) -> float:
        """The total of its questions' points."""
        return sum(row.points for row in self.rows)

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        """The report that ``asdict`` turned into ``data`` (unknown keys, from other versions, are dropped)."""
        known = {item.name for item in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        return cls(**{**values, "rows": [Row(**row) for row in data["rows"]]})


class Gradebook:
    """The reports of a gradebook folder, kept on disk as they come (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.records: dict[tuple[str, str], Report] = {}
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "gradebook.jsonl"
        if path.exists():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                try:
                    report = Report.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    # The line a killed run was writing: its submission is graded again.
                    print(f"{path}:{number}: not a whole record, ignored", file=sys.stderr)
                    continue
                self.records[report.key] = report
        self._rewrite()

    def drop(self, keys: set[tuple[str, str]]) -> None:
        """Forget the reports of ``keys`` (to grade them again)."""
        if keys & set(self.records):
            for key in keys:
                self.records.pop(key, None)
            self._rewrite()

    def add(self, report: Report) -> None:
        """Record one graded submission: on disk before this returns."""
        self.records[report.key] = report
        with open(self.folder / "gradebook.jsonl", "a") as handle:
            handle.write(json.dumps(asdict(report)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with open(self.folder / "gradebook.csv", "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=COLUMNS).writerows(asdict(row) for row in report.rows)

    def reports(self) -> list[Report]:
        """Every report, by student then exercise."""
        return [self.records[key] for key in sorted(self.records)]

    def _rewrite(self) -> None:
        """Both line files from the reports held (atomically: a kill leaves the old file or the new one)."""
        reports = self.reports()
        _replace(self.folder / "gradebook.jsonl", "".join(json.dumps(asdict(report)) + "\n" for report in reports))
        self._write_csv(reports)

    def _write_csv(self, reports: list[Report]) -> None:
        temporary = self.folder / "gradebook.csv.part"
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(asdict(row) for report in reports for row in report.rows)
        os.replace(temporary, self.folder / "gradebook.csv")

    def finish(self, exercises: list[str], summary: dict) -> None:
        """Write the ordered CSV, ``gradebook.json`` (``summary`` plus every row and report) and ``lms.csv``."""
        reports = self.reports()
        self._write_csv(reports)
        content = {
            **summary,
            "rows": [asdict(row) for report in reports for row in report.rows],
            "submissions": [{k: v for k, v in asdict(report).items() if k != "rows"} for report in reports],
        }
        _replace(self.folder / "gradebook.json", json.dumps(content, indent=1))
        write_lms_csv(reports, exercises, self.folder / "lms.csv")


def write_lms_csv(reports: list[Report], exercises: list[str], path: Path) -> None:
    """One row per student, one column per exercise holding its total points; empty where nothing was handed in.

    The shape of a gradebook import (Moodle's CSV import, Sakai's): a header row, the student's identifier in the
    first column (the name of the student's folder: name the folders by the LMS's login or e-mail), one column per
    grade item. An empty cell is "no grade", which such imports leave as it was, not a zero."""
    totals: dict[str, dict[str, float]] = {}
    for report in reports:
        totals.setdefault(report.student, {})[report.exercise] = report.points
    temporary = path.with_suffix(".part")
    with open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", *exercises])
        for student in sorted(totals):
            writer.writerow([student, *(_number(totals[student].get(name)) for name in exercises)])
    os.replace(temporary, path)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _replace(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".part")
    temporary.write_text(text)
    os.replace(temporary, path)
