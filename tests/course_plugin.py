"""The course's pytest plugin (pyproject's addopts load it): each notebook is executed once per test run.

nbval executes every notebook of book/ and exercises/, cell by cell, each cell a test. This plugin listens to the
kernel messages nbval reads and hands them to nbclient, the executor that `jupyter-book build` uses, which makes
of them the executed notebook the book build would have stored (outputs, execution counts, widget state). A book
notebook whose cells all passed is filed for this run's site build (the `site` fixture in tests/conftest.py): that
build reads it from a jupyter-cache made for this run alone, instead of executing the notebook a second time, and
executes every notebook nbval did not run here (not selected, failed, cells skipped) itself, as `./course book`
does. The cache lives in this run's temporary folder, so no output can outlive a change to companion/.

Also here:
- each notebook ends with one more test, ``execution time``, which fails past the 2-minute ceiling of CPU time;
- the end of the run prints each notebook's wall and CPU time (and keeps them in pytest's cache, to hand the
  longest notebooks out first next time);
- under pytest-xdist (`-n auto`, set in pyproject) whole files go to workers, each notebook on one worker with its
  cells in order in one kernel: first the exercises with their grading tests (one unit: they mostly wait on time
  limits), then the book's notebooks, then all tests of the built site together on one worker, which builds it once
  every book notebook has finished, then the rest.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete
from nbval.plugin import IPyNbCell, IPyNbFile
from xdist.scheduler import LoadFileScheduling

ROOT = Path(__file__).resolve().parent.parent
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
# COURSE.md §5: a notebook runs in about a minute on a 2-core CPU, 2 minutes at most. Two workers run two notebooks
# side by side there, one core each, so a notebook's CPU time is its wall time on a quiet CI machine; CPU time is
# what is checked because other jobs on a shared machine stretch wall time but hardly CPU time.
BUDGET_SECONDS = 60
CEILING_SECONDS = 120
# Work units under xdist that hold several files, each run by one worker, in order:
SITE_TESTS = ("tests/test_book.py", "tests/browser/")  # one worker builds the site and checks it
# The grading tests check that grading changes no file in exercises/, and nbval's run of an exercise writes otter's
# .OTTER_LOG there: the two never run side by side.
EXERCISE_TESTS = ("exercises/", "tests/test_grading.py")
MAX_WORKERS = 4  # each worker and its kernel hold a PyTorch: about 1.5 GB together
SECONDS_CACHE_KEY = "course/seconds-per-file"
RUNS = pytest.StashKey[Path]()
END_OF_RUN = pytest.StashKey[list[str]]()


@dataclass
class Run:
    """One notebook as nbval executed it in this test run."""

    notebook: str  # relative to the repository root, e.g. "book/part1/recurrence.ipynb"
    status: str  # "passed" (every cell), "failed" (a cell failed) or "incomplete" (cells skipped or not run)
    reusable: bool  # the executed notebook is what the book build would have made (filed beside the record)
    wall_seconds: float
    cpu_seconds: float | None  # the kernel's user + system time, its children's included
    worker: str


# -- where this run keeps its records, shared by the xdist workers -------------------------------------------------


def runs_folder(config: pytest.Config) -> Path:
    """This run's folder of notebook records (the same folder in every xdist worker)."""
    if RUNS not in config.stash:
        if hasattr(config, "workerinput"):
            folder = Path(config.workerinput["course_runs"])
        else:
            folder = config._tmp_path_factory.getbasetemp() / "course-runs"  # type: ignore[attr-defined]
        (folder / "workers").mkdir(parents=True, exist_ok=True)
        config.stash[RUNS] = folder
    return config.stash[RUNS]


def worker_id(config: pytest.Config) -> str:
    return config.workerinput["workerid"] if hasattr(config, "workerinput") else "main"


def read_runs(folder: Path) -> dict[str, Run]:
    runs = (Run(**json.loads(path.read_text())) for path in sorted(folder.glob("*.json")))
    return {run.notebook: run for run in runs}


def _name(path: Path) -> str:
    """A notebook's name in records and tables: its path in the repository (absolute when outside it)."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.as_posix()


def _slug(notebook: str) -> str:
    return notebook.strip("/").replace("/", "__").removesuffix(".ipynb")


def end_of_run(config: pytest.Config) -> list[str]:
    """Lines printed at the end of the run; under xdist the workers' lines are printed by the controller."""
    return config.stash.setdefault(END_OF_RUN, [])


# -- recording what nbval executes ---------------------------------------------------------------------------------


class RecordingNotebook(IPyNbFile):
    """nbval's notebook collector, recording the executed notebook and its times as nbval runs the cells."""

    def collect(self) -> Iterator[pytest.Item]:
        cells = list(super().collect())
        # nbval compares new outputs with self.nb's stored ones (NBVAL_CHECK_OUTPUT): record into a copy.
        self.executed = copy.deepcopy(self.nb)
        self.code_indices = [index for index, cell in enumerate(self.executed.cells) if cell.cell_type == "code"]
        self.outcomes: dict[int, str] = {}
        yield from cells
        yield ExecutionTime.from_parent(self, name="execution time")

    @property
    def notebook(self) -> str:
        return _name(self.path)

    def setup(self) -> None:
        self.started = time.monotonic()
        self.wall_seconds, self.cpu_seconds = 0.0, None
        self.current: int | None = None
        self.executed_cells = 0
        super().setup()
        kernel = self.kernel
        self.process = psutil.Process(kernel.km.provisioner.pid)
        # Only nbclient's message handling is used: nbval drives the kernel.
        self.recorder = NotebookClient(self.executed, kernel_name=kernel.km.kernel_name, record_timing=False)
        self.recorder.kc = kernel.kc
        request = kernel.kc.kernel_info()
        while (reply := kernel.kc.get_shell_msg(timeout=60))["parent_header"].get("msg_id") != request:
            pass
        self.executed.metadata["language_info"] = reply["content"]["language_info"]

        def execute_as_jupyter_does(source: str, allow_stdin: bool | None = None) -> str:
            # nbval (0.10 on) executes with store_history=False, and then IPython ignores a cell's trailing
            # semicolon and shows the value it should hide (computationalmodelling/nbval#194, ipython#14162).
            # Jupyter and the book build's nbclient store history: so do we, and both see the same outputs.
            self.message_id = kernel.kc.execute(
                source, store_history=True, allow_stdin=allow_stdin, stop_on_error=False
            )
            return self.message_id

        kernel.execute_cell_input = execute_as_jupyter_does

    def get_kernel_message(self, timeout: float | None = None, stream: str = "iopub") -> dict[str, Any]:
        message = super().get_kernel_message(timeout=timeout, stream=stream)
        if stream == "iopub" and self.current is not None and self._belongs_to_current_cell(message):
            index = self.code_indices[self.current]
            with contextlib.suppress(CellExecutionComplete):
                self.recorder.process_message(message, self.executed.cells[index], index)
        return message

    def _belongs_to_current_cell(self, message: dict[str, Any]) -> bool:
        return message["parent_header"].get("msg_id") == getattr(self, "message_id", None)

    def start_cell(self, number: int) -> None:
        """nbval is about to execute code cell `number` (counting code cells only)."""
        cell = self.executed.cells[self.code_indices[number]]
        # The book build's nbclient skips these cells: keep them empty, as it would.
        self.current = None if _skipped_by_the_book_build(cell) else number
        cell.outputs, cell.execution_count = [], None
        self.recorder.clear_before_next_output = False

    def finish_cell(self, number: int, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[number] = "passed" if report.passed else report.outcome
        if report.when != "call":
            return
        if self.current == number:
            # Numbered as nbclient numbers them: the kernel also counted cells the book build skips.
            self.executed_cells += 1
            cell = self.executed.cells[self.code_indices[number]]
            cell.execution_count = self.executed_cells
            for output in cell.outputs:
                if output.output_type == "execute_result":
                    output.execution_count = self.executed_cells
        self.current = None
        self.wall_seconds = time.monotonic() - self.started
        with contextlib.suppress(psutil.Error):
            times = self.process.cpu_times()
            self.cpu_seconds = times.user + times.system + times.children_user + times.children_system

    def status(self) -> str:
        outcomes = [self.outcomes.get(number) for number in range(len(self.code_indices))]
        if "failed" in outcomes:
            return "failed"
        return "passed" if all(outcome == "passed" for outcome in outcomes) else "incomplete"

    def reusable(self) -> bool:
        """Whether the executed notebook is what `./course book` would have made of it: every cell passed, and
        no cell shows an error that the book build would have stopped on (nbval's NBVAL_RAISES_EXCEPTION comment
        lets a cell fail; the book build accepts only the raises-exception tag)."""
        for cell in self.executed.cells:
            errors = [output for output in cell.get("outputs", []) if output.output_type == "error"]
            if errors and "raises-exception" not in cell.metadata.get("tags", []):
                return False
        return self.status() == "passed"

    def teardown(self) -> None:
        if hasattr(self, "started"):  # setup began: record what happened, even a kernel that did not start
            self._record()
        super().teardown()

    def _record(self) -> None:
        folder = runs_folder(self.config)
        reusable = self.reusable()
        if reusable:
            self.recorder.set_widgets_metadata()
            nbformat.write(self.executed, folder / f"{_slug(self.notebook)}.ipynb")
        run = Run(self.notebook, self.status(), reusable, self.wall_seconds, self.cpu_seconds, worker_id(self.config))
        # Written last and renamed into place: a waiting site build never reads half a record.
        record = folder / f"{_slug(self.notebook)}.json"
        record.with_suffix(".tmp").write_text(json.dumps(asdict(run)))
        record.with_suffix(".tmp").rename(record)


def _skipped_by_the_book_build(cell: nbformat.NotebookNode) -> bool:
    return not cell.source.strip() or "skip-execution" in cell.metadata.get("tags", [])


class TimeCeilingExceeded(Exception):
    pass


def check_time(notebook: str, cpu_seconds: float, wall_seconds: float) -> None:
    if cpu_seconds > CEILING_SECONDS:
        raise TimeCeilingExceeded(
            f"{notebook} took {cpu_seconds:.0f} s of CPU time ({wall_seconds:.0f} s wall), over the ceiling of "
            f"{CEILING_SECONDS} s (COURSE.md §5: about {BUDGET_SECONDS} s on a 2-core CPU): put the larger runs "
            "behind a parameter or into benchmarks/."
        )


class ExecutionTime(pytest.Item):
    """The notebook's last test: it fails when the notebook took more CPU time than the ceiling allows."""

    def runtest(self) -> None:
        notebook = self.parent
        assert isinstance(notebook, RecordingNotebook)
        if notebook.status() != "passed" or notebook.cpu_seconds is None:
            pytest.skip("not every cell ran and passed, so there is no time of the whole notebook to check")
        check_time(notebook.notebook, notebook.cpu_seconds, notebook.wall_seconds)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, TimeCeilingExceeded):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.parent.name}::{self.name}"


# -- hooks ---------------------------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Iterator[None]:
    collected = yield
    return [
        RecordingNotebook.from_parent(parent, path=file_path) if type(node) is IPyNbFile else node for node in collected
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if isinstance(item, IPyNbCell) and isinstance(item.parent, RecordingNotebook):
        item.parent.start_cell(item.cell_num)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if isinstance(item, IPyNbCell) and isinstance(item.parent, RecordingNotebook):
        item.parent.finish_cell(item.cell_num, report)
    return report


def _phase(item: pytest.Item) -> int:
    """When a file's tests are handed out: 0 the exercises' notebooks and 1 their grading tests (one work unit),
    which mostly wait on the time limits of sandboxed submissions, so they start first and wait beside the book;
    2 the book's notebooks; 3 the built site's tests (their build waits for the book); 4 the rest."""
    path = _name(item.path)
    if isinstance(item.parent, IPyNbFile):
        return 2 if path.startswith("book/") else 0
    if path.startswith(SITE_TESTS):
        return 3
    return 1 if path.startswith(EXERCISE_TESTS) else 4


@pytest.hookimpl(tryfirst=True)  # before --lf/--ff and deselection, which then have the last word
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # The same order in every xdist worker (they must agree). Within a phase the files that took longest in the
    # last run go first (pytest's cache keeps each file's seconds), so that the workers finish together; a clean
    # clone, as in CI, keeps the collection's order. Each file keeps its tests in order.
    seconds = config.cache.get(SECONDS_CACHE_KEY, {}) if getattr(config, "cache", None) else {}
    first: dict[Path, int] = {}
    for position, item in enumerate(items):
        first.setdefault(item.path, position)
    items.sort(key=lambda item: (_phase(item), -seconds.get(_name(item.path), 0), first[item.path]))


_seconds_this_run: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:  # the controller, which sees every worker's reports, or a lone run
        file = report.nodeid.split("::")[0]
        _seconds_this_run[file] = _seconds_this_run.get(file, 0.0) + report.duration


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):  # so that a waiting site build knows who may still run notebooks
        (runs_folder(session.config) / "workers" / worker_id(session.config)).write_text(str(os.getpid()))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        (runs_folder(config) / "workers" / worker_id(config)).unlink(missing_ok=True)
        config.workeroutput["course_end_of_run"] = end_of_run(config)  # type: ignore[attr-defined]
    elif getattr(config, "cache", None) is not None:
        config.cache.set(SECONDS_CACHE_KEY, {**config.cache.get(SECONDS_CACHE_KEY, {}), **_seconds_this_run})


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    for line in end_of_run(config):
        terminalreporter.write_line(line)
    if RUNS in config.stash and (runs := read_runs(runs_folder(config))):
        terminalreporter.write_sep("-", "notebook execution times (nbval, this run)")
        for line in times_table(runs.values()):
            terminalreporter.write_line(line)


def times_table(runs: Any) -> list[str]:
    """Each notebook's wall and CPU time, the longest first, flagged past the budget and the ceiling."""
    runs = sorted(runs, key=lambda run: -(run.cpu_seconds or 0))
    width = max(len(run.notebook) for run in runs)
    lines = [f"{'notebook':{width}}  {'wall s':>7}  {'CPU s':>7}  status"]
    for run in runs:
        cpu = run.cpu_seconds or 0
        flag = (
            f"  OVER THE {CEILING_SECONDS} s CEILING"
            if cpu > CEILING_SECONDS
            else f"  over the {BUDGET_SECONDS} s budget"
            if cpu > BUDGET_SECONDS
            else ""
        )
        cpu_text = "?" if run.cpu_seconds is None else f"{cpu:.1f}"
        lines.append(f"{run.notebook:{width}}  {run.wall_seconds:7.1f}  {cpu_text:>7}  {run.status}{flag}")
    total = sum(run.cpu_seconds or 0 for run in runs)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines.append(f"{len(runs)} notebooks, {total:.0f} s of CPU time; load average now {load} (1, 5, 15 min)")
    return lines


# -- pytest-xdist --------------------------------------------------------------------------------------------------


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per CPU this process may use (its affinity and its cgroup's quota), at most 4."""
    if configured := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(configured)
    cpus = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    return min(cpus, MAX_WORKERS)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput["course_runs"] = str(runs_folder(node.config))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    end_of_run(node.config).extend(getattr(node, "workeroutput", {}).get("course_end_of_run", []))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole files to workers, in the order pytest_collection_modifyitems chose; the site's tests as one unit."""
    if config.getoption("dist") not in ("load", "loadfile"):
        return None
    config.option.loadscopereorder = False  # xdist would put the files with the most tests first
    return CourseScheduling(config, log)


class CourseScheduling(LoadFileScheduling):
    """xdist's loadfile scheduling, with the built site's tests in one work unit and the exercises in another."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        if path.startswith(SITE_TESTS):
            return "the built site"
        return "the exercises" if path.startswith(EXERCISE_TESTS) else path


# -- the site, built from this run's executions --------------------------------------------------------------------


def build_config(cache: Path) -> dict[str, Any]:
    """_config.yml as the test build reads it: executions come from `cache`, and the local extensions' folder is
    given absolutely (the build reads this copy from another folder). Nothing else differs from `./course book`."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"] = {**config.get("execute", {}), "execute_notebooks": "cache", "cache": str(cache)}
    sphinx = config.setdefault("sphinx", {})
    sphinx["local_extensions"] = {name: str(ROOT / path) for name, path in sphinx.get("local_extensions", {}).items()}
    return config


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _book_notebooks_in(session: pytest.Session) -> set[str]:
    return {
        item.parent.notebook
        for item in session.items
        if isinstance(item.parent, RecordingNotebook) and item.parent.notebook.startswith("book/")
    }


def _other_workers_running(folder: Path, me: str) -> bool:
    for entry in (folder / "workers").iterdir():
        if entry.name != me:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(entry.read_text()), 0)
                return True
    return False


def wait_for_book_notebooks(session: pytest.Session) -> dict[str, Run]:
    """The records of this run's book notebooks, once every one of them has finished (on any worker), or once no
    other worker is left to finish them (a stopped run: the build then executes what is missing)."""
    folder, me = runs_folder(session.config), worker_id(session.config)
    expected = _book_notebooks_in(session)
    while (expected - read_runs(folder).keys()) and _other_workers_running(folder, me):
        time.sleep(1)
    return read_runs(folder)


def build_site(session: pytest.Session) -> Path:
    """Build the book once per run, with `./course book`'s command, from the executions nbval made in this run.

    The first caller builds (under a lock; under xdist another worker's caller then reuses the build); it waits for
    every book notebook of this run, files the executed ones in a new jupyter-cache, and runs
    `jupyter-book build` with build_config(). Returns _build/html. `executions.json` beside _build/ says which
    notebooks came from nbval and which the build executed itself.
    """
    folder = runs_folder(session.config) / "site"
    folder.mkdir(exist_ok=True)
    html, failure = folder / "_build" / "html", folder / "failure.txt"
    with _locked(folder / "lock"):
        if failure.exists():
            pytest.fail(failure.read_text(), pytrace=False)
        if (folder / "executions.json").exists():
            return html
        runs = wait_for_book_notebooks(session)
        if failed := sorted(run.notebook for run in runs.values() if run.status == "failed"):
            failure.write_text(
                "the book was not built, because nbval failed on " + ", ".join(failed) + " (see those failures; "
                "the build would stop on the same cells)"
            )
            pytest.fail(failure.read_text(), pytrace=False)
        reused = sorted(run.notebook for run in runs.values() if run.reusable and run.notebook.startswith("book/"))
        cache_folder = folder / "jupyter_cache"
        filed = _file_executions(cache_folder, runs_folder(session.config), {name: runs[name] for name in reused})
        config_path = folder / "_config.yml"
        config_path.write_text(yaml.safe_dump(build_config(cache_folder), sort_keys=False))
        command = [JUPYTER_BOOK, "build", ROOT, "--config", config_path, "--path-output", folder]
        command += ["--all", "--warningiserror", "--keep-going"]
        started, children = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.run([str(part) for part in command], capture_output=True, text=True)
        seconds, after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        if result.returncode != 0:
            failure.write_text("jupyter-book build failed:\n" + result.stdout[-5000:] + result.stderr[-5000:])
            pytest.fail(failure.read_text(), pytrace=False)
        executed = _executed_by_the_build(cache_folder, filed)
        (folder / "executions.json").write_text(json.dumps({"from_nbval": reused, "by_the_build": executed}))
        end_of_run(session.config).append(
            f"site: built in {seconds:.0f} s ({cpu:.0f} s of CPU time) from the {len(reused)} notebooks nbval executed"
            + (f"; the build executed {len(executed)} itself: {', '.join(executed)}" if executed else "")
        )
        return html


def _file_executions(cache_folder: Path, records: Path, runs: dict[str, Run]) -> set[int]:
    """File the executed notebooks in a new jupyter-cache, the way myst-nb files those it executes; returns the
    cache records' keys."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(cache_folder)
    for name, run in runs.items():
        executed = nbformat.read(records / f"{_slug(name)}.ipynb", as_version=4)
        bundle = CacheBundleIn(executed, str(ROOT / name), data={"execution_seconds": run.wall_seconds})
        cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
    return {record.pk for record in cache.list_cache_records()}


def _executed_by_the_build(cache_folder: Path, filed: set[int]) -> list[str]:
    """The notebooks the build executed itself: it files each one it executes in the cache, as a new record."""
    from jupyter_cache import get_cache

    records = get_cache(cache_folder).list_cache_records()
    return sorted(_name(Path(record.uri).resolve()) for record in records if record.pk not in filed)


def prebuilt_site(path: str) -> Path:
    """COURSE_TEST_SITE: check a site built before, warning when a source it was built from changed since."""
    site = Path(path).resolve()
    built = (site / "index.html").stat().st_mtime if (site / "index.html").exists() else 0
    sources = ["book", "companion", "_config.yml", "_toc.yml"]
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *sources],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    changed = {name: (ROOT / name).stat().st_mtime for name in listed if (ROOT / name).exists()}
    newer = sorted((name for name, mtime in changed.items() if mtime > built), key=lambda name: -changed[name])
    if newer:
        warnings.warn(
            f"COURSE_TEST_SITE={path} was built before these files last changed, so it may show stale outputs: "
            + ", ".join(newer[:10])  # the newest change first
            + (" ..." if len(newer) > 10 else ""),
            stacklevel=2,
        )
    return site
