"""Command line: ``python -m grading build`` and ``python -m grading grade`` (``./course exercises|grade``)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the command."""
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="masters -> student notebooks and autograders")
    build.add_argument("masters", nargs="*", type=Path, help="master notebooks (default: exercises/*.ipynb)")
    build.add_argument("--out", type=Path, default=ROOT / "_build" / "exercises")
    grade = commands.add_parser("grade", help="grade SUBMISSIONS/<student>/<exercise>.ipynb into a gradebook")
    grade.add_argument("submissions", type=Path)
    grade.add_argument("--out", type=Path, default=None, help="gradebook folder (default: SUBMISSIONS/../gradebook)")
    grade.add_argument("--autograders", type=Path, default=ROOT / "_build" / "exercises" / "autograder")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    grade.add_argument(
        "--load-seconds", type=float, default=20.0, help="time to run the notebook's cells, once (default 20)"
    )
    grade.add_argument("--question-seconds", type=float, default=20.0, help="time for one question's tests")
    grade.add_argument("--submission-seconds", type=float, default=300.0, help="time for a whole submission")
    grade.add_argument(
        "--hide",
        type=Path,
        action="append",
        default=[],
        help="another folder the workers must not see (other copies of the course, old gradebooks); repeatable",
    )
    grade.add_argument("--memory-mb", type=int, default=2048, help="memory cap of a worker (RLIMIT_DATA)")
    grade.add_argument(
        "--regrade-exercise",
        action="append",
        default=[],
        metavar="EXERCISE",
        help="grade this exercise's submissions again, even those already in the gradebook; repeatable",
    )
    grade.add_argument(
        "--regrade-student",
        action="append",
        default=[],
        metavar="STUDENT",
        help="grade this student's submissions again, even those already in the gradebook; repeatable",
    )
    grade.add_argument("--no-progress", action="store_true", help="no progress bar (the problem lines stay)")
    args = parser.parse_args(argv)

    if args.command == "build":
        from grading.build import build_all

        masters = args.masters or sorted((ROOT / "exercises").glob("*.ipynb"))
        for name, student, autograder in build_all(masters, args.out):
            print(f"{name}: student {student}, autograder {autograder}")
        return 0

    from grading.grade import grade_folder
    from grading.sandbox import Limits, isolation

    limits = Limits(args.load_seconds, args.question_seconds, args.submission_seconds, args.memory_mb * 1024**2)
    out = args.out or args.submissions.resolve().parent / "gradebook"
    print(f"sandbox: {isolation()[1]}", file=sys.stderr)
    try:
        reports = grade_folder(
            args.submissions,
            args.autograders,
            out,
            limits,
            args.jobs,
            args.hide,
            regrade_exercises=args.regrade_exercise,
            regrade_students=args.regrade_student,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print(f"interrupted: what was graded is in {out} (run the same command again to go on)", file=sys.stderr)
        return 130
    statuses = Counter(row.status for report in reports for row in report.rows)
    print(
        f"{len(reports)} submissions in {out}/gradebook.csv and .json, lms.csv for the LMS, feedback/ for the"
        f" students; statuses: {dict(statuses)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
