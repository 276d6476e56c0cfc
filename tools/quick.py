"""`./course quick`: the tests a change touches, for the inner loop; `./course test` stays the full run (CI's).

    ./course quick                 # against main: unit tests, ruff and repository checks, touched notebooks
    ./course quick --base HEAD~3   # against another commit
    ./course quick --dry-run       # say what would run, run nothing
    ./course quick -x -k lstm      # anything after the options goes to pytest

It runs tests/unit/ and tests/test_repository.py (ruff, formatting, clean notebooks, the lock) and, with nbval, the
notebooks of book/ and exercises/ that the change touches: those changed since the merge base with --base (committed
or not, new files included) and those that import a changed companion module, directly or through other companion
modules (found with the standard library's modulefinder, so `from companion import data` counts). A change to
grading/, exercises/ or tests/test_grading.py adds the grading tests. Changes that only the built site shows (pages,
_config.yml, _toc.yml, book/_ext, the site tests) are named at the end: those need `./course test`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from modulefinder import ModuleFinder
from pathlib import Path

from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parent.parent
ALWAYS = ["tests/unit", "tests/test_repository.py"]
GRADING = ("grading/", "exercises/", "tests/test_grading.py")
SITE_ONLY = (
    "book/",
    "_config.yml",
    "_toc.yml",
    "tests/test_book.py",
    "tests/browser/",
    "package.json",
    "package-lock.json",
)


def git(*args: str) -> list[str]:
    result = subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True)
    return result.stdout.split("\n")


def changed_files(base: str) -> list[str]:
    """Files that differ from the merge base of `base` and HEAD: commits, staged and unstaged edits, new files."""
    merge_base = git("merge-base", base, "HEAD")[0]
    changed = git("diff", "--name-only", merge_base) + git("ls-files", "--others", "--exclude-standard")
    return sorted({name for name in changed if name})


def notebooks() -> list[str]:
    listed = git("ls-files", "--cached", "--others", "--exclude-standard", "book/*.ipynb", "exercises/*.ipynb")
    return sorted(name for name in set(listed) if name and (ROOT / name).exists())


def module_name(path: str) -> str | None:
    """The module a file of companion/ defines ("companion/data/vocab.py" -> "companion.data.vocab")."""
    if not (path.startswith("companion/") and path.endswith(".py")):
        return None
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def companion_modules(notebook: Path) -> set[str]:
    """Every companion module that running `notebook` imports, through other companion modules too."""
    cells = json.loads(notebook.read_text())["cells"]
    # IPython syntax (%pip, !ls) made plain Python, as the kernel does before running a cell
    code = "\n".join(
        TransformerManager().transform_cell("".join(cell["source"])) for cell in cells if cell["cell_type"] == "code"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".py") as script:
        script.write(code)
        script.flush()
        # Only the repository is searched, so torch and the rest are not followed: they cannot change here.
        finder = ModuleFinder(path=[str(ROOT)])
        finder.run_script(script.name)
    return {name for name in finder.modules if name == "companion" or name.startswith("companion.")}


def touched_notebooks(changed: list[str], candidates: list[str]) -> dict[str, str]:
    """Each notebook the change touches, with the reason."""
    modules = {name for path in changed if (name := module_name(path))}
    touched = {}
    for notebook in candidates:
        if notebook in changed:
            touched[notebook] = "changed"
        elif used := sorted(modules & companion_modules(ROOT / notebook)):
            touched[notebook] = "imports " + ", ".join(used)
    return touched


def plan(changed: list[str]) -> tuple[list[str], list[str]]:
    """The pytest targets for a change, and lines that say why."""
    touched = touched_notebooks(changed, notebooks())
    targets = ALWAYS + sorted(touched)
    lines = [f"{notebook}: {reason}" for notebook, reason in sorted(touched.items())]
    if any(path.startswith(GRADING) for path in changed):
        targets.append("tests/test_grading.py")
        lines.append("tests/test_grading.py: grading/, exercises/ or the grading tests changed")
    site = [path for path in changed if path.startswith(SITE_ONLY) and not path.endswith(".ipynb")]
    if site:
        lines.append("only the built site checks " + ", ".join(site) + ": run ./course test before you push")
    return targets, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main", help="compare with the merge base of this commit (default: main)")
    parser.add_argument("--dry-run", action="store_true", help="say what would run, run nothing")
    options, pytest_args = parser.parse_known_args()
    changed = changed_files(options.base)
    targets, lines = plan(changed)
    print(f"course quick: {len(changed)} files changed since the merge base with {options.base}")
    for line in lines:
        print("  " + line)
    command = [sys.executable, "-m", "pytest", *targets, *pytest_args]
    print("  " + " ".join(command[2:]), flush=True)
    if not options.dry_run:
        os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
