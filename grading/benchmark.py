"""Time the grading of one submission and of a batch of 20 (``python -m grading.benchmark [--jobs N]``).

The submissions are the solution notebook of chapter 1 (every test runs, every question passes). Prints the wall
times; asserts nothing about them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from grading.build import assign
from grading.grade import grade_folder
from grading.sandbox import ROOT, isolation


def main() -> None:
    """Build chapter 1's autograder, then grade 1 and 20 copies of its solution."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exercise", default="ch01-recurrence")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        _, autograder = assign(ROOT / "exercises" / f"{args.exercise}.ipynb", out)
        print(f"sandbox: {isolation()[1]}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
        for count, jobs in ((1, 1), (20, 1), (20, args.jobs)):
            folder = out / f"batch-{count}-{jobs}"
            for index in range(count):
                (folder / f"student{index:02d}").mkdir(parents=True)
                shutil.copy(autograder / f"{args.exercise}.ipynb", folder / f"student{index:02d}")
            started = time.monotonic()
            reports = grade_folder(folder, out / "autograder", folder / "gradebook", jobs=jobs)
            seconds = time.monotonic() - started
            assert all(row.status == "passed" for report in reports for row in report.rows)
            print(f"{count:2d} submission(s), --jobs {jobs}: {seconds:6.1f} s ({seconds / count:.1f} s each)")


if __name__ == "__main__":
    main()
