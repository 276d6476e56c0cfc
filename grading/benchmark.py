"""What grading costs: per submission (honest, exiting, looping), a class in a batch, throughput per core.

``python -m grading.benchmark [--jobs 2] [--class-size 300] [--write]`` builds chapter 1's autograder and grades,
with the default limits:

* one submission at a time in one grading process (the server started once, before the clock starts): the solution
  notebook (every question passes), a notebook that calls ``exit()`` at top level, one that never finishes loading
  (``while True: pass`` at top level, so it spins a core until the load limit);
* a class of ``--class-size`` copies of the solution with ``grade_folder`` and ``--jobs`` processes, start-up
  included (what ``./course grade`` does).

Wall times depend on what else the machine runs, so beside each it gives the CPU seconds of every process
involved (the grader, its sandbox servers, the workers and their question processes, sampled from ``/proc``) and
the load average. Submissions per minute per core are 60 over the CPU seconds of one (a looping one: over the
seconds it holds its core). The time for a class on free cores is projected, not measured, and says so: from a
class of one submission per job (the start-up) and the whole class, each job's start-up on a core of its own,
then the submissions' CPU seconds shared out evenly over the cores. ``--write`` saves the table as
``grading/results/throughput.csv`` with the machine's description beside it (``throughput.txt``), and what the
instructor page shows of a run (its output, a feedback file, ``lms.csv``), from a small class graded for real.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from grading.build import answered, assign, build_all, solution_functions
from grading.grade import grade_folder, grade_submission, load_autograder
from grading.sandbox import ROOT, Limits, Server, isolation
from grading.worker import warm_up

RESULTS = ROOT / "grading" / "results"
# The table's columns: the key of each value, and its heading.
COLUMNS = {
    "case": "case",
    "submissions": "submissions",
    "jobs": "jobs",
    "wall_s": "wall s",
    "cpu_s": "CPU s",
    "cpu_s_each": "CPU s each",
    "per_minute_per_core": "per minute per core",
    "load_average": "load average",
}
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class CpuMeter:
    """CPU seconds used by this process and all its descendants while it is open, killed ones included.

    A descendant's CPU time (less what it had used when the meter opened) is read from ``/proc/<pid>/stat`` every
    ``interval`` seconds (its last reading counts, so a process killed between two readings loses at most one
    interval); this process's own from ``getrusage``, less the meter's own thread."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.seen: dict[tuple[int, str], float] = {}
        self.stop = threading.Event()
        self.wall = self.cpu = 0.0
        self.load = (0.0, 0.0)

    def __enter__(self) -> CpuMeter:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._own, self._start, self._load = usage.ru_utime + usage.ru_stime, time.monotonic(), os.getloadavg()[0]
        self._sample()
        self.before = dict(self.seen)  # what the processes already running had used: not counted
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.stop.is_set():
            self._sample()
            self.stop.wait(self.interval)
        self.own_overhead = time.thread_time()  # the meter's own CPU time, not the grading's

    def _sample(self) -> None:
        stack = _children(os.getpid())
        while stack:
            pid = stack.pop()
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            key = (pid, fields[19])  # the start time tells a reused pid apart
            self.seen[key] = max(self.seen.get(key, 0.0), (int(fields[11]) + int(fields[12])) / TICKS)
            stack += _children(pid)

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self.stop.set()
        self.thread.join()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.wall = time.monotonic() - self._start
        used = sum(value - self.before.get(key, 0.0) for key, value in self.seen.items())
        self.cpu = usage.ru_utime + usage.ru_stime - self._own - self.own_overhead + used
        self.load = (self._load, os.getloadavg()[0])


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(child) for child in children.read().split()]
    except OSError:
        pass
    return found


@dataclass
class Measured:
    """One line of the table."""

    case: str
    submissions: int
    jobs: int
    wall_s: float
    cpu_s: float
    per_minute_per_core: float
    load: tuple[float, float]
    spread: str = ""

    def row(self) -> dict:
        """The CSV row (rounded)."""
        each = self.submissions or 1
        return {
            "case": self.case,
            "submissions": self.submissions,
            "jobs": self.jobs,
            "wall_s": f"{self.wall_s:.1f}",
            "cpu_s": f"{self.cpu_s:.1f}",
            "wall_s_each": f"{self.wall_s / each:.2f}",
            "cpu_s_each": f"{self.cpu_s / each:.2f}",
            "per_minute_per_core": f"{self.per_minute_per_core:.0f}" if self.per_minute_per_core else "",
            "load_average": f"{self.load[0]:.1f}–{self.load[1]:.1f}" if self.load != (0.0, 0.0) else "",
        }


def one_at_a_time(case: str, notebook: dict, count: int, exercise: object, folder: Path, limits: Limits) -> Measured:
    """Grade ``count`` copies of ``notebook`` one after the other, each measured on its own."""
    walls, cpus = [], []
    with Server() as server:
        server.wait()
        for index in range(count):
            path = folder / f"{case}-{index}.ipynb"
            path.write_text(json.dumps(notebook))
            with CpuMeter() as meter:
                grade_submission(case, exercise, path, limits, server=server)
            walls.append(meter.wall)
            cpus.append(meter.cpu)
            load = meter.load
    core_seconds = statistics.mean(walls) if case == "loops at top level" else statistics.mean(cpus)
    spread = f"wall {min(walls):.2f}-{max(walls):.2f} s, CPU {min(cpus):.2f}-{max(cpus):.2f} s"
    return Measured(case, count, 1, sum(walls), sum(cpus), 60 / core_seconds, load, spread)


def a_class(notebook: dict, size: int, jobs: int, autograders: Path, folder: Path, limits: Limits) -> Measured:
    """Grade a class of ``size`` copies of ``notebook`` with ``grade_folder`` (start-up included)."""
    submissions = folder / f"class-{size}-{jobs}"
    for index in range(size):
        (submissions / f"student{index:03d}").mkdir(parents=True)
        (submissions / f"student{index:03d}" / "ch01-recurrence.ipynb").write_text(json.dumps(notebook))
    with CpuMeter(interval=0.2) as meter:
        reports = grade_folder(submissions, autograders, folder / f"gradebook-{size}-{jobs}", limits, jobs=jobs)
    if len(reports) != size or any(row.status != "passed" for report in reports for row in report.rows):
        raise RuntimeError("an honest submission was not graded as passed: the figures would mean nothing")
    return Measured(f"class of {size}, honest", size, jobs, meter.wall, meter.cpu, 0.0, meter.load)


def projected(start: Measured, whole: Measured, cores: int) -> Measured:
    """The class of ``whole`` on ``cores`` free cores, from the CPU seconds of a class of one per job (``start``:
    the start-up and as many submissions) and of the whole class: each job's start-up on a core of its own, then
    the submissions' CPU seconds shared out evenly."""
    each = (whole.cpu_s - start.cpu_s) / (whole.submissions - start.submissions)
    startup = max(0.0, start.cpu_s - start.submissions * each)
    wall = startup / start.jobs + whole.submissions * each / cores
    case = f"class of {whole.submissions}, {cores} free cores (projected)"
    return Measured(
        case,
        whole.submissions,
        cores,
        wall,
        startup / start.jobs * cores + whole.submissions * each,
        60 / each,
        (0.0, 0.0),
    )


def examples(folder: Path, autograders: Path) -> dict[str, str]:
    """What the instructor page shows of a run: its output, a feedback file and ``lms.csv``, from a class of two
    graded for real (short limits: one notebook loops)."""
    wrong = (
        "def rnn_step(x_t, h_prev, weight_ih, weight_hh, bias_ih, bias_hh):\n    return torch.tanh(x_t @ weight_ih.T)\n"
    )
    notebooks = {}
    for name in sorted(path.name for path in autograders.iterdir()):
        student = autograders.parent / "student" / name / f"{name}.ipynb"
        solutions = solution_functions(autograders / name / f"{name}.ipynb")
        notebooks[("alice", name)] = answered(student, solutions)
        if name == "ch01-recurrence":
            notebooks[("bob", name)] = answered(student, {**solutions, "rnn_step": wrong})
            notebooks[("carol", name)] = answered(student, solutions, ["while True:\n    pass"])
    submissions, out = folder / "example", folder / "example-gradebook"
    for (student, name), notebook in notebooks.items():
        (submissions / student).mkdir(parents=True, exist_ok=True)
        (submissions / student / f"{name}.ipynb").write_text(json.dumps(notebook))
    command = [sys.executable, "-m", "grading", "grade", str(submissions), "--out", str(out), "--jobs", "1"]
    command += ["--autograders", str(autograders), "--load-seconds", "5"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    # The progress bar redraws itself in place: what a terminal shows at the end is the lines printed above it,
    # then its last state, then what the command printed last.
    lines = [line.strip() for line in run.stderr.splitlines() if line.strip() and not line.startswith("sandbox:")]
    bars = [line for line in lines if line.startswith("grading:")]
    said = [line.replace(f"{out}/", "marks/").replace(str(out), "marks") for line in run.stdout.splitlines()]
    shown = ["$ ./course grade submissions/ --out marks --load-seconds 5"]
    shown += [line for line in lines if not line.startswith("grading:")] + bars[-1:] + said
    # As a terminal of the page's width would show it.
    shown = [part for line in shown for part in textwrap.wrap(line, 76, subsequent_indent="  ", break_on_hyphens=False)]
    return {
        "grading-example.txt": "\n".join(shown) + "\n",
        "feedback-example.md": (out / "feedback" / "bob" / "ch01-recurrence.md").read_text(),
        "lms-example.csv": (out / "lms.csv").read_text(),
    }


def main() -> None:
    """Measure, print the table, and with ``--write`` save it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="grading processes for the class (default 2)")
    parser.add_argument("--class-size", type=int, default=300)
    parser.add_argument("--honest", type=int, default=20, help="honest submissions graded one at a time")
    parser.add_argument("--project-cores", type=int, nargs="*", default=[2, 16])
    parser.add_argument("--write", action="store_true", help=f"save the table in {RESULTS.relative_to(ROOT)}/")
    args = parser.parse_args()
    name, limits = "ch01-recurrence", Limits()
    torch.set_num_threads(1)  # what each grading process does
    warm_up()
    with tempfile.TemporaryDirectory(
        prefix="grading-benchmark-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None
    ) as scratch:
        folder = Path(scratch)
        student, autograder = assign(ROOT / "exercises" / f"{name}.ipynb", folder)
        exercise = load_autograder(autograder)
        solutions = solution_functions(autograder / f"{name}.ipynb")
        honest = answered(student / f"{name}.ipynb", solutions)
        cases = [
            ("honest", honest, args.honest),
            ("exits at top level", answered(student / f"{name}.ipynb", solutions, ["exit()"]), 5),
            ("loops at top level", answered(student / f"{name}.ipynb", solutions, ["while True:\n    pass"]), 2),
        ]
        measured = []
        for case, notebook, count in cases:
            measured.append(one_at_a_time(case, notebook, count, exercise, folder, limits))
            print(_line(measured[-1]), flush=True)
        start = a_class(honest, args.jobs, args.jobs, folder / "autograder", folder, limits)
        print(_line(start), flush=True)
        whole = a_class(honest, args.class_size, args.jobs, folder / "autograder", folder, limits)
        measured += [start, whole]
        print(_line(whole), flush=True)
        if args.write:
            build_all(sorted((ROOT / "exercises").glob("*.ipynb")), folder / "all")
            shown = examples(folder, folder / "all" / "autograder")
    for cores in args.project_cores:
        measured.append(projected(start, whole, cores))
        print(_line(measured[-1]))
    environment = _environment(args, measured)
    print(environment)
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        with open(RESULTS / "throughput.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS.values())
            writer.writerows([item.row()[key] for key in COLUMNS] for item in measured)
        (RESULTS / "throughput.txt").write_text(environment)
        for name, text in shown.items():
            (RESULTS / name).write_text(text)
        print(f"wrote {RESULTS}/: throughput.csv, throughput.txt, {', '.join(shown)}")


def _line(item: Measured) -> str:
    row = item.row()
    load = f"load average {item.load[0]:.1f}->{item.load[1]:.1f}" if item.load != (0.0, 0.0) else "projected"
    return (
        f"{row['case']:48} {row['submissions']:>4} x, jobs {row['jobs']:>2}: wall {row['wall_s']:>7} s, CPU"
        f" {row['cpu_s']:>7} s, each {row['wall_s_each']:>6} s wall {row['cpu_s_each']:>6} s CPU,"
        f" {row['per_minute_per_core'] or '-':>4}/min/core ({load}{'; ' + item.spread if item.spread else ''})"
    )


def _environment(args: argparse.Namespace, measured: list[Measured]) -> str:
    import companion

    lines = [
        f"python -m grading.benchmark --jobs {args.jobs} --class-size {args.class_size} --honest {args.honest}",
        f"measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs; sandbox: {isolation()[1]}",
        "limits: " + ", ".join(f"{key} {value}" for key, value in Limits().__dict__.items()),
        *(_line(item) for item in measured),
        str(companion.environment_report()),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
