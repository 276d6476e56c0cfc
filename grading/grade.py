"""Grade a folder of submissions with the trusted tests of the autograders, into a gradebook.

Layout: ``SUBMISSIONS/<student>/<exercise>.ipynb``, where ``<exercise>`` is the name of a master notebook
(``ch01-recurrence``). Each submission's code runs in its own sandboxed worker (:mod:`grading.sandbox`), loaded once;
the tests of the autograder (read before any worker starts, never taken from a submission) run here, and reach the
submission's functions through :class:`RemoteFunction` proxies. A test passes when it returns without raising.

Statuses, per question: ``passed`` (all points), ``partial``, ``failed`` (no test passed), ``missing`` (a function
the tests need is not defined), ``memory`` (a call hit the memory cap), ``timeout`` (a call or the loading of the
notebook ran past its time limit), ``crashed`` (the worker died: ``exit()``, ``os._exit()``, a segfault, a broken
reply) and ``invalid`` (the file is not a notebook). A notebook that does not load gives every question its status
at once. A question that times out or crashes scores zero and costs only itself: the next question runs in a fresh
fork of the loaded worker, so the points of the others stand.

:func:`grade_folder` grades in ``jobs`` processes, each with its own sandbox server; it shows a progress bar and a
line per submission with a problem, writes the gradebook as submissions finish (:mod:`grading.gradebook`) with one
feedback file per student and exercise (:mod:`grading.feedback`), and skips, when run again, what it has graded.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import multiprocessing
import os
import random
import re
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from grading import wire
from grading.feedback import write_feedback
from grading.gradebook import COLUMNS, Gradebook, Report, Row
from grading.jail import within
from grading.sandbox import ROOT, Limits, Server, ServerError, StudentError, Worker, WorkerGone, isolation
from grading.worker import warm_up

__all__ = ["COLUMNS", "Report", "Row", "grade_folder", "grade_submission", "load_autograder"]
MAX_NOTEBOOK_BYTES = 20 * 1024**2
# Statuses that mean something went wrong with the submission itself, printed as they happen.
PROBLEMS = ("invalid", "timeout", "crashed", "memory", "missing")
SEED = 0


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
    """An exercise (one chapter's notebook) and its questions; ``digest`` identifies its tests' files."""

    name: str
    questions: list[Question]
    digest: str = ""

    @property
    def names(self) -> list[str]:
        """Every student function the exercise grades."""
        return sorted({name for question in self.questions for name in question.names})


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def load_autograder(folder: Path) -> Exercise:
    """Read an autograder folder made by ``python -m grading build`` (its ``tests/`` hold every test)."""
    from otter.test_files import ExceptionTestFile

    questions, digest = [], hashlib.sha256()
    for path in sorted((folder / "tests").glob("*.py"), key=lambda p: _natural(p.stem)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
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
    return Exercise(folder.name, questions, digest.hexdigest())


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
    """One submission's worker as its questions use it: loaded once, and again only after a question killed it.

    A load that fails (time-out, crash) is final: every later question gets its status without another try."""

    def __init__(self, server: Server, cells: list[str], names: list[str], limits: Limits) -> None:
        self.server, self.cells, self.names, self.limits = server, cells, names, limits
        self.deadline = time.monotonic() + limits.submission_seconds
        self.question_deadline = self.deadline
        self.worker: Worker | None = None
        self.failed: WorkerGone | None = None
        self.gone: WorkerGone | None = None
        self.memory_hit = False
        self.cell_errors: list = []
        self.output: list[str] = []
        self.load_seconds: list[float] = []
        self.loads = 0
        self.cpu_seconds = 0.0

    def ready(self) -> Worker:
        """The loaded worker; raises WorkerGone when the notebook does not load."""
        if self.failed is not None:
            raise self.failed
        if self.worker is not None and not self.worker.alive:
            self._retire(self.worker)
        if self.worker is None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.failed = WorkerGone("timeout", "the submission's time limit is spent")
                raise self.failed
            worker = Worker(self.server, replace(self.limits, load_seconds=min(self.limits.load_seconds, remaining)))
            self.loads += 1
            try:
                worker.load(self.cells, self.names)
            except WorkerGone as gone:
                self.failed = gone
                self._retire(worker)
                raise
            self.worker = worker
            self.load_seconds.append(round(worker.load_seconds, 3))
            self.cell_errors = worker.cell_errors
        return self.worker

    def begin_question(self) -> None:
        """Start the clock of a question and the process that answers its calls."""
        self.gone, self.memory_hit = None, False
        self.question_deadline = min(time.monotonic() + self.limits.question_seconds, self.deadline)
        try:
            self.ready().begin_question()
        except WorkerGone as gone:
            self.gone = gone

    def end_question(self) -> None:
        """Stop the question's process."""
        if self.worker is not None and self.worker.alive:
            self.worker.end_question()

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
            return action(self.worker)
        except WorkerGone as gone:
            self.gone = gone
            raise
        except StudentError as error:
            self.memory_hit |= error.memory
            raise

    def _retire(self, worker: Worker) -> None:
        worker.close()
        self.output.append(worker.output_tail())
        self.cpu_seconds += worker.ended.get("cpu_seconds") or 0.0
        worker.remove()
        if worker is self.worker:
            self.worker = None

    def stop(self) -> None:
        """Kill the worker, keeping the end of its output and its CPU time for the report."""
        if self.worker is not None:
            self._retire(self.worker)


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


def _seed() -> None:
    """The same random state before every test, whatever ran before it: tests that draw inputs repeat exactly."""
    random.seed(SEED)
    torch.manual_seed(SEED)
    with contextlib.suppress(ImportError):
        import numpy

        numpy.random.seed(SEED)  # noqa: NPY002 - the global generator, the one a test may draw from


def grade_submission(
    student: str,
    exercise: Exercise,
    path: Path,
    limits: Limits,
    hidden: tuple[str, ...] = (),
    server: Server | None = None,
) -> Report:
    """Grade one notebook against ``exercise``'s trusted tests, in a worker started by ``server`` (by default a
    server of its own, whose workers do not see ``hidden``)."""
    if server is None:
        with Server(hidden) as own:
            return grade_submission(student, exercise, path, limits, server=own)
    started, grader_cpu = time.monotonic(), time.process_time()
    report = Report(
        student, exercise.name, [], tests_sha256=exercise.digest, sandbox=server.words, limits=asdict(limits)
    )

    def add(question: Question, points: float, status: str, detail: str = "", tests: list | None = None) -> None:
        report.rows.append(Row(student, exercise.name, question.name, points, question.max_points, status))
        report.questions.append(
            {"question": question.name, "status": status, "points": points, "detail": detail, "tests": tests or []}
        )

    try:
        content = path.read_bytes()
        report.submission_sha256 = hashlib.sha256(content).hexdigest()
        cells = read_code_cells(path)
    except (OSError, ValueError) as error:
        for question in exercise.questions:
            add(question, 0.0, "invalid", str(error))
        return report
    session = Session(server, cells, exercise.names, limits)
    try:
        for question in exercise.questions:
            try:
                worker = session.ready()
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
                _seed()
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
            session.end_question()
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
    report.loads, report.load_seconds = session.loads, session.load_seconds
    report.cpu_seconds = round(session.cpu_seconds, 3)
    report.output_tail = "\n".join(session.output)[-2000:]
    report.grade_seconds = round(time.monotonic() - started, 3)
    report.grader_cpu_seconds = round(time.process_time() - grader_cpu, 3)
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


# A grading process (one per job): its exercises and its sandbox server, started once.
_JOB: dict[str, Any] = {}


def _start_job(
    autograders: str, limits: Limits, hidden: tuple[str, ...], grader: int | None = None, server: Server | None = None
) -> None:
    """Get a grading process ready; ``grader``: the pid of the process that started it, when it is another."""
    _JOB.update(server=server or Server(hidden), limits=limits, hidden=hidden)  # starts while this process gets ready
    _JOB["exercises"] = load_autograders(Path(autograders))
    if grader is not None:
        torch.set_num_threads(1)  # the jobs share the cores
        threading.Thread(target=_exit_with, args=(grader,), daemon=True).start()
    warm_up()  # torch's lazy start-up, so that it is not charged to the first question's time limit


def _exit_with(grader: int) -> None:
    """End this grading process (and so its server and workers) when the grader has gone, even killed (the pool's
    own queues would keep it waiting for ever)."""
    try:
        with contextlib.closing(os.pidfd_open(grader)) as pidfd:  # readable once the grader has ended
            select.select([pidfd], [], [])
    except (AttributeError, OSError):
        while _alive(grader):
            time.sleep(1)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _grade_job(student: str, exercise: str, path: str) -> Report:
    """Grade one submission in this grading process; a server that fails is started again, once."""
    for attempt in (1, 2):
        if _JOB["server"] is None:
            _JOB["server"] = Server(_JOB["hidden"])
        try:
            exercises, limits = _JOB["exercises"], _JOB["limits"]
            return grade_submission(student, exercises[exercise], Path(path), limits, server=_JOB["server"])
        except ServerError:
            _stop_job_server()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _stop_job_server() -> None:
    if _JOB.get("server") is not None:
        with contextlib.suppress(Exception):
            _JOB["server"].close()
    _JOB["server"] = None


def _graded(
    todo: list[tuple[str, str, Path]],
    autograders: Path,
    limits: Limits,
    hidden: tuple[str, ...],
    jobs: int,
    server: Server | None,
) -> Iterator[tuple[tuple[str, str], Report | Exception]]:
    """``((student, exercise), report or the grader's own error)`` for each of ``todo``, as each is graded: here
    with ``server`` for one job, else in ``jobs`` processes (each with its own global random state, so tests
    repeat exactly)."""
    if jobs <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a job process: small tests, and no thread spinning on a shared core
        _start_job(str(autograders), limits, hidden, server=server)
        try:
            for student, exercise, path in todo:
                try:
                    yield (student, exercise), _grade_job(student, exercise, str(path))
                except Exception as error:
                    yield (student, exercise), error
        finally:
            _stop_job_server()
            _JOB.clear()
            torch.set_num_threads(threads)
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["grading.grade", "otter.test_files"])
    initargs = (str(autograders), limits, hidden, os.getpid())
    with ProcessPoolExecutor(min(jobs, len(todo)), context, _start_job, initargs) as pool:
        futures = {pool.submit(_grade_job, s, e, str(path)): (s, e) for s, e, path in todo}
        try:
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], error if error is not None else future.result()
        finally:
            for future in futures:
                future.cancel()


def grade_folder(
    submissions: Path,
    autograders: Path,
    out: Path,
    limits: Limits | None = None,
    jobs: int = 1,
    hide: list[Path] = (),
    regrade_exercises: list[str] = (),
    regrade_students: list[str] = (),
    progress: bool = True,
) -> list[Report]:
    """Grade every submission under ``submissions`` into the gradebook folder ``out``; returns every report it holds.

    A submission already in the gradebook, graded from the same notebook with the same tests, is skipped unless its
    exercise is in ``regrade_exercises`` or its student in ``regrade_students``. Each report reaches the gradebook,
    and its student's feedback file, as soon as it is graded. The workers see none of
    ``hidden_paths(submissions, autograders, out, hide)`` where the jail is on; where it is not, a warning goes to
    stderr and into the gradebook's ``sandbox`` field."""
    limits = limits or Limits()
    out.mkdir(parents=True, exist_ok=True)  # exists before the workers start, so that it can be hidden
    hidden = hidden_paths(submissions, autograders, out, list(hide))
    server = Server(hidden) if jobs <= 1 else None  # it imports torch while this process reads the autograders
    _, words, jailed = isolation()
    if not jailed:
        print(f"WARNING: grading without the file-system jail: {words}", file=sys.stderr)
    exercises = load_autograders(autograders)  # read once, before any student code runs
    found = find_submissions(submissions)
    unknown = [str(path) for _, exercise, path in found if exercise not in exercises]
    found = [(student, exercise, path) for student, exercise, path in found if exercise in exercises]
    for selector, names in (("exercise", regrade_exercises), ("student", regrade_students)):
        known = {entry[0 if selector == "student" else 1] for entry in found}
        for name in sorted(set(names) - known):
            print(f"WARNING: --regrade-{selector} {name}: no such {selector} in {submissions}", file=sys.stderr)
    book = Gradebook(out)
    todo = [entry for entry in found if _needs_grading(book, exercises, *entry, regrade_exercises, regrade_students)]
    book.drop({(student, exercise) for student, exercise, _ in todo})
    skipped = len(found) - len(todo)
    if skipped:
        print(
            f"{skipped} of {len(found)} submissions already graded (kept; --regrade-… grades them again)",
            file=sys.stderr,
        )
    started = time.monotonic()
    try:
        _grade_all(todo, book, exercises, autograders, out, limits, hidden, jobs, server, progress)
    finally:
        if server is not None:
            server.close()
        summary = {"sandbox": words, "limits": asdict(limits), "seconds": round(time.monotonic() - started, 3)}
        book.finish(sorted(exercises), {**summary, "not_graded": unknown})
    return book.reports()


def _needs_grading(
    book: Gradebook,
    exercises: dict[str, Exercise],
    student: str,
    exercise: str,
    path: Path,
    regrade_exercises: list[str],
    regrade_students: list[str],
) -> bool:
    record = book.records.get((student, exercise))
    if record is None or exercise in regrade_exercises or student in regrade_students:
        return True
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return True
    return record.submission_sha256 != digest or record.tests_sha256 != exercises[exercise].digest


def _grade_all(
    todo: list[tuple[str, str, Path]],
    book: Gradebook,
    exercises: dict[str, Exercise],
    autograders: Path,
    out: Path,
    limits: Limits,
    hidden: tuple[str, ...],
    jobs: int,
    server: Server | None,
    progress: bool,
) -> None:
    """Grade ``todo``, recording each report, and its feedback, the moment it is graded."""
    if not todo:
        return
    with tqdm(total=len(todo), unit="submission", desc="grading", file=sys.stderr, disable=not progress) as bar:
        for (student, exercise), report in _graded(todo, autograders, limits, hidden, jobs, server):
            if isinstance(report, Exception):  # the grader's fault, not the student's: not recorded, graded next run
                bar.write(f"{student}/{exercise}: NOT GRADED, the grader failed: {report}", file=sys.stderr)
            else:
                book.add(report)
                write_feedback(report, exercises[exercise], out / "feedback")
                if problem := _problem(report):
                    bar.write(f"{student}/{exercise}: {problem}", file=sys.stderr)
            bar.update()


def _problem(report: Report) -> str:
    """``""`` for a submission graded normally, else its problem statuses in a few words."""
    bad = [
        (question["question"], question["status"]) for question in report.questions if question["status"] in PROBLEMS
    ]
    if not bad:
        return ""
    statuses = {status for _, status in bad}
    if len(bad) == len(report.questions) and len(statuses) == 1:
        return f"{bad[0][1]}, every question ({report.questions[0]['detail']})"
    return ", ".join(f"{question} {status}" for question, status in bad)
