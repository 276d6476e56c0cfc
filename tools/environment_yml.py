"""Write environment.yml, the conda/Binder view of uv.lock, or check that it still matches the lock.

    python tools/environment_yml.py --write   # after `uv lock` (./course lock does both)
    python tools/environment_yml.py --check   # exit 1 if environment.yml drifted from uv.lock

The pip section lists exactly the versions of `uv export`, environment markers included, so conda users get the
locked set; Python is 3.11, the oldest version the course supports and the one Binder builds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = ROOT / "environment.yml"
HEADER = """\
# Generated from uv.lock by `./course lock` (tools/environment_yml.py); do not edit by hand.
# tests/test_environment.py fails when this file drifts from the lock.
name: rnn-to-transformer
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
"""


def locked_requirements() -> list[str]:
    """The locked requirement lines, one per package (with markers), and the course package itself."""
    exported = subprocess.run(
        [
            os.environ.get("UV", "uv"),
            "export",
            "--frozen",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
            "--format",
            "requirements.txt",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.strip() for line in exported.splitlines() if line.strip() and not line.startswith("#")]


def render(requirements: list[str]) -> str:
    # Double quotes in YAML; markers use single quotes, so nothing needs escaping.
    return HEADER + "".join(f'      - "{requirement}"\n' for requirement in requirements)


def main(argv: list[str]) -> int:
    expected = render(locked_requirements())
    if argv == ["--write"]:
        ENVIRONMENT.write_text(expected)
        return 0
    if argv == ["--check"]:
        if ENVIRONMENT.read_text() == expected:
            return 0
        print("environment.yml differs from uv.lock: run ./course lock", file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
