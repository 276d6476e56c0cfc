"""The test run's own machinery (tests/course_plugin.py, tools/quick.py): what nbval executes is what the book
build would have made and the build reuses it, the order and the work units of the two workers, the execution-time
checks, and what `./course quick` picks for a change."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution

from tests.course_plugin import (
    CEILING_SECONDS,
    CourseScheduling,
    Run,
    TimeCeilingExceeded,
    build_config,
    check_time,
    prebuilt_site,
    times_table,
)

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("quick", ROOT / "tools" / "quick.py")
quick = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quick)

# What a page's cells do that the recording must get right: a stream, a progress bar (a widget), a glued number,
# output cleared before the next one, a value hidden by a semicolon, an empty cell, a cell the book build skips.
PROBE_CELLS = [
    ("print('hello')", []),
    ("from tqdm.auto import tqdm\n\nfor _ in tqdm(range(3), desc='steps'):\n    pass", []),
    ("from myst_nb import glue\n\nglue('answer', 6 * 7)", []),
    ("from IPython.display import clear_output\n\nprint('first')\nclear_output(wait=True)\nprint('second')", []),
    ("x = 41\nx;", []),
    ("", []),
    ("print('the book build skips this cell')", ["skip-execution"]),
    ("x + 1", []),
]
FAILING_CELLS = [("y = 1", []), ("assert y == 2, 'the check fails'", []), ("print('after the failure')", [])]
# nbval lets this cell fail; the book build, which knows only the raises-exception tag, would stop on it.
RAISING_CELLS = [("# NBVAL_RAISES_EXCEPTION\nraise ValueError('expected')", []), ("print('after')", [])]
WIDGET_ID = re.compile(r"[0-9a-f]{32}")
TQDM_RATE = re.compile(r"\d+(\.\d+)?(it|step)/s|\?(it|step)/s|\d\d:\d\d")


def _notebook(path: Path, cells: list[tuple[str, list[str]]]) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {}) for source, tags in cells
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def _comparable(text: str) -> str:
    return TQDM_RATE.sub("T", WIDGET_ID.sub("ID", text))


def _outputs(cell: nbformat.NotebookNode) -> str:
    return _comparable(json.dumps(cell.get("outputs", []), sort_keys=True))


def _widget_states(notebook: nbformat.NotebookNode) -> list[str]:
    state = notebook.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return sorted(_comparable(json.dumps(model, sort_keys=True)) for model in state.values())


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """nbval with the plugin, in its own pytest process, on three small notebooks; returns (their folder, the
    records folder, the pytest result)."""
    folder = tmp_path_factory.mktemp("probes")
    _notebook(folder / "probe.ipynb", PROBE_CELLS)
    _notebook(folder / "failing.ipynb", FAILING_CELLS)
    _notebook(folder / "raising.ipynb", RAISING_CELLS)
    basetemp = tmp_path_factory.mktemp("probe-run")
    command = [sys.executable, "-m", "pytest", "-c", ROOT / "pyproject.toml", "--rootdir", ROOT, "-n", "0"]
    command += ["-p", "no:cacheprovider", "--basetemp", basetemp, "-q", folder]
    result = subprocess.run([str(part) for part in command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    return folder, basetemp / "course-runs", result


def _slug(path: Path) -> str:
    return path.as_posix().strip("/").replace("/", "__").removesuffix(".ipynb")


def test_nbval_records_what_the_book_builds_executor_makes(probe_run: tuple) -> None:
    folder, records, _result = probe_run
    source = folder / "probe.ipynb"
    recorded = nbformat.read(records / f"{_slug(source)}.ipynb", as_version=4)
    # How myst-nb executes a notebook for the book (jupyter-cache's helper around nbclient).
    expected = single_nb_execution(
        nbformat.read(source, as_version=4), cwd=str(folder), timeout=120, allow_errors=False
    )
    assert expected.err is None, expected.exc_string
    for index, (mine, theirs) in enumerate(zip(recorded.cells, expected.nb.cells, strict=True)):
        assert _outputs(mine) == _outputs(theirs), f"cell {index}:\n{_outputs(mine)}\n{_outputs(theirs)}"
        assert mine.execution_count == theirs.execution_count, index
    assert _widget_states(recorded) == _widget_states(expected.nb) != []
    assert recorded.metadata["language_info"] == expected.nb.metadata["language_info"]
    # the cases that make the probe worth running: nothing shown for "x;", the cleared output gone, skipped cell empty
    assert "41" not in _outputs(recorded.cells[4])
    assert "first" not in _outputs(recorded.cells[3])
    assert recorded.cells[6].outputs == []
    assert "42" in _outputs(recorded.cells[7])


def test_the_book_build_finds_the_recorded_notebook_in_its_cache(probe_run: tuple, tmp_path: Path) -> None:
    folder, records, _ = probe_run
    source = folder / "probe.ipynb"
    cache = get_cache(tmp_path)
    recorded = nbformat.read(records / f"{_slug(source)}.ipynb", as_version=4)
    cache.cache_notebook_bundle(CacheBundleIn(recorded, str(source)), check_validity=False)
    # myst-nb looks the source notebook up by the hash of its code cells (KeyError if it is not there)
    assert cache.match_cache_notebook(nbformat.read(source, as_version=4))


def test_each_notebook_gets_a_record_and_only_reusable_ones_are_filed(probe_run: tuple) -> None:
    folder, records, result = probe_run
    runs = {Path(run["notebook"]).name: run for run in map(json.loads, map(Path.read_text, records.glob("*.json")))}
    assert {name: (run["status"], run["reusable"]) for name, run in runs.items()} == {
        "probe.ipynb": ("passed", True),
        "failing.ipynb": ("failed", False),
        "raising.ipynb": ("passed", False),
    }
    assert runs["probe.ipynb"]["cpu_seconds"] > 0
    assert runs["probe.ipynb"]["wall_seconds"] > 0
    assert sorted(path.name for path in records.glob("*.ipynb")) == [f"{_slug(folder / 'probe.ipynb')}.ipynb"]
    # the failure is nbval's own, and each notebook ends with its time check (skipped where a cell failed)
    assert result.returncode == 1, result.stdout[-3000:]
    assert re.search(r"1 failed, 14 passed, 1 skipped", result.stdout), result.stdout[-3000:]
    assert "notebook execution times" in result.stdout


def test_the_time_check_fails_past_the_ceiling_and_the_table_flags_it() -> None:
    check_time("book/fast.ipynb", CEILING_SECONDS - 1, 200)  # wall time alone does not fail: load stretches it
    with pytest.raises(TimeCeilingExceeded, match=r"book/slow\.ipynb took 121 s of CPU time"):
        check_time("book/slow.ipynb", CEILING_SECONDS + 1, 90)
    runs = [Run("book/slow.ipynb", "passed", True, 90, 121, "gw0"), Run("book/ok.ipynb", "passed", True, 70, 61, "gw1")]
    table = times_table(runs)
    assert table[1].startswith("book/slow.ipynb")
    assert table[1].endswith("OVER THE 120 s CEILING")
    assert table[2].endswith("over the 60 s budget")


def test_the_test_build_differs_from_course_book_only_in_where_executions_come_from(tmp_path: Path) -> None:
    original = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert original["execute"]["execute_notebooks"] == "force"  # what `./course book` does: execute everything
    config = build_config(tmp_path)
    assert config["execute"] == {**original["execute"], "execute_notebooks": "cache", "cache": str(tmp_path)}
    extensions = original["sphinx"]["local_extensions"]
    assert config["sphinx"]["local_extensions"] == {name: str(ROOT / path) for name, path in extensions.items()}
    for changed in (config, original):
        del changed["execute"], changed["sphinx"]["local_extensions"]
    assert config == original


def test_exercises_and_notebooks_come_first_and_the_sites_tests_before_the_rest() -> None:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider"]
    command += ["tests/test_repository.py", "tests/test_book.py", "exercises", "book", "tests/test_grading.py"]
    listed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600).stdout.splitlines()
    files = list(dict.fromkeys(line.split("::")[0] for line in listed if "::" in line))
    order = ["exercises/", "tests/test_grading.py", "book/", "tests/test_book.py", "tests/test_repository.py"]
    phases = [next(phase for phase, start in enumerate(order) if name.startswith(start)) for name in files]
    assert phases == sorted(phases), files
    assert set(phases) == set(range(len(order))), files
    notebooks = [line for line in listed if ".ipynb::" in line]
    ends = [
        line
        for line, following in zip(notebooks, [*notebooks[1:], ""], strict=False)
        if line.split("::")[0] != following.split("::")[0]
    ]
    assert all(line.endswith("::execution time") for line in ends), ends


def test_the_sites_tests_form_one_work_unit_the_exercises_another_and_notebooks_one_each() -> None:
    scope = CourseScheduling._split_scope
    assert scope(None, "tests/test_book.py::test_a") == scope(None, "tests/browser/test_site.py::test_b")
    # the grading tests check that nothing in exercises/ changes while they grade: never beside an exercise's run
    assert scope(None, "exercises/ch01-recurrence.ipynb::Cell 1") == scope(None, "tests/test_grading.py::test_c")
    assert scope(None, "book/part1/recurrence.ipynb::Cell 3") == "book/part1/recurrence.ipynb"
    assert scope(None, "tests/unit/test_vocab.py::test_x[1]") == "tests/unit/test_vocab.py"


def test_a_prebuilt_site_older_than_its_sources_is_named_stale(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html></html>")
    os.utime(tmp_path / "index.html", (0, 0))
    with pytest.warns(UserWarning, match="may show stale outputs: "):
        assert prebuilt_site(str(tmp_path)) == tmp_path


def test_quick_runs_the_notebooks_that_import_a_changed_module() -> None:
    candidates = quick.notebooks()
    touched = quick.touched_notebooks(["companion/recurrent_cells.py"], candidates)
    assert touched["book/part1/recurrence.ipynb"] == "imports companion.recurrent_cells"
    assert "exercises/ch01-recurrence.ipynb" not in touched  # it imports only companion itself
    # a module every chapter loads through `import companion`
    assert set(quick.touched_notebooks(["companion/device.py"], candidates)) == set(candidates)
    assert quick.touched_notebooks(["book/part1/recurrence.ipynb"], candidates) == {
        "book/part1/recurrence.ipynb": "changed"
    }


def test_quick_adds_the_grading_tests_and_names_what_only_the_site_shows() -> None:
    targets, _ = quick.plan(["grading/grade.py"])
    assert targets == [*quick.ALWAYS, "tests/test_grading.py"]
    targets, lines = quick.plan(["_config.yml", "book/preface.md"])
    assert targets == quick.ALWAYS
    assert any("_config.yml" in line and "book/preface.md" in line and "./course test" in line for line in lines)
