"""Grade a folder of submissions with the trusted tests of the autograders, into a gradebook.

Layout: ``SUBMISSIONS/<student>/<exercise>.ipynb``, where ``<exercise>`` is the name of a master notebook
(``ch01-recurrence``). Each submission's code runs in its own sandboxed worker (:mod:`grading.sandbox`); the tests
of the autograder (read before any worker starts, never taken from a submission) run here, and reach the
submission's functions through :class:`RemoteFunction` proxies. A test passes when it returns without raising.

Statuses, per question: ``passed`` (all points), ``partial``, ``failed`` (no test passed), ``missing`` (a function
the tests need is not defined), ``memory`` (a call hit the memory cap), ``timeout`` (a call or the loading of the
notebook ran past its time limit), ``crashed`` (the worker died: ``exit()``, ``os._exit()``, a segfault, a broken
reply) and ``invalid`` (the file is not a notebook). A question that times out or crashes scores zero; the next
question is graded in a fresh worker, so the points of the others stand.
"""

from __future__ import annotations

import csv
import inspect
import json
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from grading import wire
from grading.jail import within
from grading.sandbox import ROOT, Limits, StudentError, Worker, WorkerGone, isolation

COLUMNS = ("student", "exercise", "question", "points", "max_points", "status")
MAX_NOTEBOOK_BYTES = 20 * 1024**2


@dataclass
class TestCase:
    """One trusted test function from an autograder, and the student names it takes as arguments."""

    name: str
    points: float
    hidden: bool
    function: Callable[..., None]
    names: list[str]


@dataclass
class Question:
    """A question of an exercise: its tests, in order."""

    name: str
    tests: list[TestCase]

    @property
    def max_points(self) -> float:
        """The sum of the points of its tests."""
        return sum(test.points for test in self.tests)

    @property
    def names(self) -> list[str]:
        """Every student function its tests call."""
        return sorted({name for test in self.tests for name in test.names})


@dataclass
class Exercise:
    """An exercise (one chapter's notebook) and its questions."""

    name: str
    questions: list[Question]

    @property
    def names(self) -> list[str]:
        """Every student function the exercise grades."""
        return sorted({name for question in self.questions for name in question.names})


@dataclass
class Row:
    """One line of the gradebook."""

    student: str
    exercise: str
    question: str
    points: float
    max_points: float
    status: str


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def load_autograder(folder: Path) -> Exercise:
    """Read an autograder folder made by ``python -m grading build`` (its ``tests/`` hold every test)."""
    from otter.test_files import ExceptionTestFile

    questions = []
    for path in sorted((folder / "tests").glob("*.py"), key=lambda p: _natural(p.stem)):
        test_file = ExceptionTestFile.from_file(str(path))
        tests = []
        for case in test_file.test_cases:
            function = case.body.test_func
            names = list(inspect.signature(function).parameters)
            if "env" in names:
                raise ValueError(f"{path}: tests must name the functions they take, not 'env'")
            tests.append(TestCase(function.__name__, float(case.points or 0), bool(case.hidden), function, names))
        questions.append(Question(test_file.name, tests))
    if not questions:
        raise FileNotFoundError(f"no tests in {folder / 'tests'}: run ./course exercises first")
    return Exercise(folder.name, questions)


def load_autograders(folder: Path) -> dict[str, Exercise]:
    """Every autograder under ``folder`` (``_build/exercises/autograder``), by exercise name."""
    exercises = {path.name: load_autograder(path) for path in sorted(folder.iterdir()) if (path / "tests").is_dir()}
    if not exercises:
        raise FileNotFoundError(f"no autograders in {folder}: run ./course exercises first")
    return exercises


def read_code_cells(path: Path) -> list[str]:
    """The sources of a notebook's code cells, in order (raises ValueError on anything that is not a notebook)."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES} bytes")
    try:
        cells = json.loads(path.read_text())["cells"]
        sources = [cell["source"] for cell in cells if cell.get("cell_type") == "code"]
        return ["".join(source) if isinstance(source, list) else str(source) for source in sources]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"not a notebook: {error}") from None


class Session:
    """The live worker of one submission, restarted after a question that killed it."""

    def __init__(self, cells: list[str], names: list[str], limits: Limits, hidden: tuple[str, ...] = ()) -> None:
        self.cells, self.names, self.limits, self.hidden = cells, names, limits, hidden
        self.deadline = time.monotonic() + limits.submission_seconds
        self.question_deadline = self.deadline
        self.worker: Worker | None = None
        self.gone: WorkerGone | None = None
        self.memory_hit = False
        self.cell_errors: list = []
        self.output: list[str] = []
        self.load_seconds: list[float] = []

    def start(self) -> Worker:
        """A loaded worker (starting one if the last was killed); raises WorkerGone if loading fails."""
        if self.worker is None:
            limits = self.limits
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerGone("timeout", "the submission's time limit is spent")
            load_limits = replace(limits, load_seconds=min(limits.load_seconds, remaining))
            self.worker = Worker(self.cells, self.names, load_limits, self.hidden)
            self.load_seconds.append(round(self.worker.load_seconds, 3))
            self.cell_errors = self.worker.cell_errors
        return self.worker

    def begin_question(self) -> None:
        """Start the clock of a question."""
        self.gone, self.memory_hit = None, False
        self.question_deadline = min(time.monotonic() + self.limits.question_seconds, self.deadline)

    def call(self, name: str, args: Any, kwargs: Any, track: bool) -> tuple[Any, int | None]:
        """Call ``name`` in the worker within the question's deadline."""
        return self._guarded(lambda worker: worker.call(name, args, kwargs, track, self.question_deadline))

    def backward(self, graph: int, grads: list) -> list[torch.Tensor]:
        """Back-propagate through a graph kept by the worker."""
        return self._guarded(lambda worker: worker.backward(graph, grads, self.question_deadline))

    def _guarded(self, action: Callable[[Worker], Any]) -> Any:
        if self.gone is not None:
            raise self.gone
        try:
            return action(self.start())
        except WorkerGone as gone:
            self.gone = gone
            self.stop()
            raise
        except StudentError as error:
            self.memory_hit |= error.memory
            raise

    def stop(self) -> None:
        """Kill the worker, keeping the end of its output for the report."""
        if self.worker is not None:
            self.output.append(self.worker.output_tail())
            self.worker.close()
            self.worker = None


class RemoteFunction:
    """Stands for a student's function in the trusted process: each call runs in the submission's worker.

    Arguments and results cross as plain tensors and numbers (:mod:`grading.wire`). When some argument requires
    grad, the call joins the local autograd graph through :class:`_RemoteCall`, so tests can back-propagate
    through the student's function as if it ran here.
    """

    def __init__(self, session: Session, name: str) -> None:
        self.session, self.name = session, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the student's function on these arguments in the worker and return its result."""
        leaves = wire.tensors_in((args, kwargs))
        inputs = [tensor for tensor in leaves if tensor.requires_grad] if torch.is_grad_enabled() else []
        if not inputs:
            return self.session.call(self.name, args, kwargs, track=False)[0]
        box: dict[str, Any] = {}
        outputs = _RemoteCall.apply(self.session, self.name, args, kwargs, box, *inputs)
        replacements = iter(outputs[:-1])
        return wire.map_tensors(box["value"], lambda _: next(replacements))


class _RemoteCall(torch.autograd.Function):
    """Forward: call the student's function in the worker. Backward: ask the worker for the input gradients."""

    @staticmethod
    def forward(ctx: Any, session: Session, name: str, args: Any, kwargs: Any, box: dict, *inputs: torch.Tensor):
        value, graph = session.call(name, args, kwargs, track=True)
        box["value"] = value
        outputs = wire.tensors_in(value)
        ctx.session, ctx.graph, ctx.inputs = session, graph, [(t.shape, t.dtype) for t in inputs]
        ctx.mark_non_differentiable(*[t for t in outputs if not t.is_floating_point()])
        # A trailing dummy output, so that a result holding no tensor is still a valid autograd output.
        return (*outputs, torch.zeros(()))

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor):
        if ctx.graph is None:
            grads = [torch.zeros(shape, dtype=dtype) for shape, dtype in ctx.inputs]
        else:
            grads = ctx.session.backward(ctx.graph, list(grad_outputs[:-1]))
        if not isinstance(grads, list) or len(grads) != len(ctx.inputs):
            raise RuntimeError("the worker returned the wrong number of gradients")
        for grad, (shape, _) in zip(grads, ctx.inputs, strict=True):
            if not isinstance(grad, torch.Tensor) or grad.shape != shape:
                raise RuntimeError("the worker returned a gradient of the wrong shape")
        return (None, None, None, None, None, *[g.to(dtype) for g, (_, dtype) in zip(grads, ctx.inputs, strict=True)])


@dataclass
class Report:
    """The gradebook rows of one submission and what happened while grading it."""

    student: str
    exercise: str
    rows: list[Row]
    questions: list[dict] = field(default_factory=list)
    cell_errors: list = field(default_factory=list)
    load_seconds: list[float] = field(default_factory=list)
    grade_seconds: float = 0.0
    output_tail: str = ""


def grade_submission(
    student: str, exercise: Exercise, path: Path, limits: Limits, hidden: tuple[str, ...] = ()
) -> Report:
    """Grade one notebook against ``exercise``'s trusted tests; ``hidden``: paths its worker must not see."""
    started = time.monotonic()
    report = Report(student, exercise.name, [])

    def add(question: Question, points: float, status: str, detail: str = "", tests: list | None = None) -> None:
        report.rows.append(Row(student, exercise.name, question.name, points, question.max_points, status))
        report.questions.append(
            {"question": question.name, "status": status, "points": points, "detail": detail, "tests": tests or []}
        )

    try:
        cells = read_code_cells(path)
    except (OSError, ValueError) as error:
        for question in exercise.questions:
            add(question, 0.0, "invalid", str(error))
        return report
    session = Session(cells, exercise.names, limits, hidden)
    try:
        for question in exercise.questions:
            try:
                worker = session.start()
            except WorkerGone as gone:
                add(question, 0.0, gone.status, gone.detail)
                continue
            missing = [name for name in question.names if name not in worker.defined]
            if missing:
                add(question, 0.0, "missing", f"not defined: {', '.join(missing)}")
                continue
            session.begin_question()
            results = []
            for test in question.tests:
                proxies = {name: RemoteFunction(session, name) for name in test.names}
                try:
                    test.function(**proxies)
                    passed, message = True, ""
                except Exception as error:
                    passed, message = False, f"{type(error).__name__}: {error}"[:1000]
                results.append(
                    {"test": test.name, "points": test.points, "hidden": test.hidden, "passed": passed}
                    | ({"message": message} if message else {})
                )
                if session.gone is not None:
                    break
            if session.gone is not None:
                # A question that filled the memory and then ran out of time is reported as the memory problem.
                status = "memory" if session.memory_hit and session.gone.status == "timeout" else session.gone.status
                add(question, 0.0, status, session.gone.detail, results)
                continue
            points = sum(test.points for test, result in zip(question.tests, results, strict=True) if result["passed"])
            status = "passed" if points == question.max_points else "partial" if points > 0 else "failed"
            add(question, points, "memory" if session.memory_hit else status, "", results)
    finally:
        session.stop()
    report.cell_errors = session.cell_errors
    report.load_seconds = session.load_seconds
    report.output_tail = "\n".join(session.output)[-2000:]
    report.grade_seconds = round(time.monotonic() - started, 3)
    return report


def find_submissions(folder: Path) -> list[tuple[str, str, Path]]:
    """``(student, exercise, path)`` for each ``folder/<student>/<exercise>.ipynb``, sorted."""
    found = []
    for student in sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")):
        for notebook in sorted(student.glob("*.ipynb")):
            found.append((student.name, notebook.stem, notebook))
    return found


def git_folders(root: Path) -> list[Path]:
    """The git folders of a checkout: ``.git``, and for a worktree the folder it points to and the shared one."""
    found, dot_git = [root / ".git"], root / ".git"
    if dot_git.is_file() and dot_git.read_text().startswith("gitdir:"):
        git_dir = (root / dot_git.read_text().split(":", 1)[1].strip()).resolve()
        found.append(git_dir)
        common = git_dir / "commondir"
        if common.is_file():
            found.append((git_dir / common.read_text().strip()).resolve())
    return found


def hidden_paths(submissions: Path, autograders: Path, out: Path, extra: list[Path] = ()) -> tuple[str, ...]:
    """What a worker must not see: the masters (solutions), the builds and the autograders (hidden tests), the git
    history, every submission and the gradebook, plus ``extra``. Raises ValueError if that would hide the code the
    worker itself runs (the repository's ``grading`` package, the Python environment)."""
    paths = [ROOT / "exercises", ROOT / "_build", *git_folders(ROOT), autograders, submissions, out, *extra]
    resolved = sorted({str(Path(path).resolve()) for path in paths})
    needed = [str(ROOT / "grading"), sys.prefix, sys.base_prefix, sys.executable]
    for path in resolved:
        for need in needed:
            if within(need, path):
                raise ValueError(f"hiding {path} from the workers would hide {need}, which they run")
    return tuple(resolved)


def grade_folder(
    submissions: Path,
    autograders: Path,
    out: Path,
    limits: Limits | None = None,
    jobs: int = 1,
    hide: list[Path] = (),
) -> list[Report]:
    """Grade every submission under ``submissions`` and write ``gradebook.csv`` and ``gradebook.json`` to ``out``.

    The workers see none of ``hidden_paths(submissions, autograders, out, hide)`` where the jail is on; where it is
    not, a warning goes to stderr and into the gradebook's ``sandbox`` field."""
    limits = limits or Limits()
    out.mkdir(parents=True, exist_ok=True)  # exists before the workers start, so that it can be hidden
    hidden = hidden_paths(submissions, autograders, out, list(hide))
    _, words, jailed = isolation()
    if not jailed:
        print(f"WARNING: grading without the file-system jail: {words}", file=sys.stderr)
    exercises = load_autograders(autograders)  # read once, before any student code runs
    found = find_submissions(submissions)
    unknown = [str(path) for _, exercise, path in found if exercise not in exercises]
    tasks = [(student, exercises[exercise], path) for student, exercise, path in found if exercise in exercises]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        reports = list(pool.map(lambda task: grade_submission(*task, limits, hidden), tasks))
    write_gradebook(reports, out, limits, unknown, time.monotonic() - started)
    return reports


def write_gradebook(reports: list[Report], out: Path, limits: Limits, unknown: list[str], seconds: float) -> None:
    """Write the rows as CSV, and rows plus details as JSON."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for report in reports for row in report.rows]
    with open(out / "gradebook.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    summary = {
        "sandbox": isolation()[1],
        "limits": asdict(limits),
        "seconds": round(seconds, 3),
        "rows": [asdict(row) for row in rows],
        "submissions": [{key: value for key, value in asdict(report).items() if key != "rows"} for report in reports],
        "not_graded": unknown,
    }
    (out / "gradebook.json").write_text(json.dumps(summary, indent=1))
