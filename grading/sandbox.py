"""Start a submission's worker in a sandbox, talk to it with deadlines, and kill it when it misbehaves.

What is enforced (see the instructor page): a wall-clock deadline on every exchange (the worker is killed with
SIGKILL on expiry), a memory cap (``RLIMIT_DATA``, set inside the worker before student code runs, hard limit
equal to the soft one), a cap on what it may write to its log file (``RLIMIT_FSIZE``), and, where available, no
network, and its own PID namespace so that it can neither see nor signal the grader, plus a user namespace so
that, even when the grader runs as root, the worker cannot raise its limits, plus a mount namespace in which
:mod:`grading.jail` hides the solutions, the tests and the submissions, makes every file read-only and drops
every capability. On macOS ``sandbox-exec`` (when present) denies network access and reading or writing the
hidden folders; the memory limit is not enforced there.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from grading import wire

ROOT = Path(__file__).resolve().parent.parent


class WorkerGone(Exception):
    """The worker died, broke the protocol or ran out of time; ``status`` is ``"crashed"`` or ``"timeout"``."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class StudentError(Exception):
    """The student's function raised an exception (inside the worker); its type name and message are kept."""

    def __init__(self, name: str, error: str, message: str) -> None:
        super().__init__(f"{name} raised {error}: {message}")
        self.error = error
        self.memory = error == "MemoryError" or "can't allocate memory" in message


@dataclass(frozen=True)
class Limits:
    """Per-submission limits, in seconds and bytes."""

    load_seconds: float = 60.0
    question_seconds: float = 20.0
    submission_seconds: float = 300.0
    memory_bytes: int = 2 * 1024**3
    output_bytes: int = 16 * 1024**2
    scratch_bytes: int = 64 * 1024**2


@functools.cache
def isolation() -> tuple[tuple[str, ...], str, bool]:
    """The command prefix that isolates a worker here, a sentence saying what it enforces, and whether the
    file-system jail of :mod:`grading.jail` is on (checked by running it once, not assumed)."""
    if sys.platform.startswith("linux") and shutil.which("unshare"):
        namespaces = ("--net", "--pid", "--fork", "--kill-child")
        jail = ("unshare", "--user", "--map-root-user", "--mount", *namespaces)
        reason = _probe_jail(jail)
        if reason is None:
            words = (
                "user, mount, network and PID namespaces via unshare; files read-only, solutions, tests and"
                " submissions hidden, private /tmp, no capabilities"
            )
            return jail, f"Linux {platform.release()}: {words}", True
        for prefix, words in (
            (("unshare", "--user", "--map-root-user", *namespaces), "user, network and PID namespaces"),
            (("unshare", *namespaces), "network and PID namespaces (no user namespace)"),
        ):
            probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
            if probe.returncode == 0:
                return prefix, f"Linux {platform.release()}: {words} via unshare; {UNJAILED} ({reason})", False
        return (
            (),
            f"Linux: unshare refused (no namespaces): network and signals to the grader NOT blocked; {UNJAILED}",
            False,
        )
    if sys.platform == "darwin" and shutil.which("sandbox-exec"):
        words = "sandbox-exec denies network and the hidden folders; repository not read-only; memory cap not enforced"
        return ("sandbox-exec",), f"macOS: {words}", False
    return (), f"{sys.platform}: no isolation tool found: network NOT blocked; {UNJAILED}", False


UNJAILED = "FILE SYSTEM NOT PROTECTED: student code can read the solutions, tests and other submissions and write files"


def _probe_jail(prefix: tuple[str, ...]) -> str | None:
    """None when the jail works under ``prefix``, else why not."""
    parent = "/var/tmp" if os.access("/var/tmp", os.W_OK) else None  # outside /tmp, which the jail covers anyway
    with tempfile.TemporaryDirectory(prefix="grading-probe-", dir=parent) as secret:
        Path(secret, "solution").write_text("hidden")
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); from grading.jail import self_check;"
            f" self_check({secret!r}, {str(ROOT)!r})"
        )
        try:
            probe = subprocess.run(
                [*prefix, sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return str(error)
        if probe.returncode == 0 and probe.stdout.strip() == "jailed":
            return None
        return (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]


def macos_profile(hidden: list[str], read_only: list[str]) -> str:
    """A sandbox-exec profile: no network, no access to ``hidden``, no writes under ``read_only``."""
    quoted = lambda paths: " ".join(f"(subpath {json.dumps(path)})" for path in paths)  # noqa: E731
    profile = "(version 1)(allow default)(deny network*)"
    if hidden:
        profile += f"(deny file-read* file-write* {quoted(hidden)})"
    if read_only:
        profile += f"(deny file-write* {quoted(read_only)})"
    return profile


class Worker:
    """One sandboxed worker process holding one submission's code."""

    def __init__(self, cells: list[str], names: list[str], limits: Limits, hidden: tuple[str, ...] = ()) -> None:
        self.limits = limits
        self.workdir = Path(tempfile.mkdtemp(prefix="grading-"))
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "TMPDIR": str(self.workdir),
            "GRADING_FDS": f"{to_worker_r},{from_worker_w}",
            "GRADING_MEMORY_BYTES": str(limits.memory_bytes),
            "GRADING_OUTPUT_BYTES": str(limits.output_bytes),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "COURSE_DEVICE": "cpu",
            "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        prefix, _, jailed = isolation()
        if jailed:
            env["GRADING_JAIL"] = json.dumps({"hidden": list(hidden), "scratch_bytes": limits.scratch_bytes})
        elif prefix[:1] == ("sandbox-exec",):
            read_only = [str(ROOT), sys.prefix, sys.base_prefix]
            prefix = (*prefix, "-p", macos_profile(list(hidden), read_only))
        bootstrap = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from grading.worker import main; main()"
        self.log_path = self.workdir / "output.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*prefix, sys.executable, "-I", "-c", bootstrap],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                env=env,
                pass_fds=(to_worker_r, from_worker_w),
                start_new_session=True,
            )
        os.close(to_worker_r)
        os.close(from_worker_w)
        os.set_blocking(self._to_worker, False)
        self.started = time.monotonic()
        try:
            deadline = self.started + limits.load_seconds
            self._send({"cells": cells, "names": names}, deadline)
            reply = self._receive(deadline, "loading the notebook")
        except WorkerGone:
            self.close()
            raise
        self.defined: list[str] = [name for name in reply.get("defined", []) if isinstance(name, str)]
        self.cell_errors: list = list(reply.get("errors", []))
        self.load_seconds = time.monotonic() - self.started

    def call(self, name: str, args: Any, kwargs: Any, track: bool, deadline: float) -> tuple[Any, int | None]:
        """Call ``name`` in the worker; returns its value and the id of the kept graph (when ``track``)."""
        if not track:
            args, kwargs = wire.map_tensors(args, torch.Tensor.detach), wire.map_tensors(kwargs, torch.Tensor.detach)
        self._send({"op": "call", "name": name, "args": args, "kwargs": kwargs}, deadline)
        reply = self._receive(deadline, f"calling {name}")
        if not reply.get("ok"):
            raise StudentError(name, str(reply.get("error")), str(reply.get("message")))
        return reply.get("value"), reply.get("graph")

    def backward(self, graph: int, grads: list, deadline: float) -> list[torch.Tensor]:
        """Input gradients of a kept graph, given the gradients of its outputs."""
        self._send({"op": "backward", "graph": graph, "grads": grads}, deadline)
        reply = self._receive(deadline, "back-propagating")
        if not reply.get("ok"):
            raise StudentError("backward", str(reply.get("error")), str(reply.get("message")))
        return reply["value"]

    def _send(self, value: Any, deadline: float) -> None:
        message = wire.encode(value)[0]
        view = memoryview(struct.pack("<Q", len(message)) + message)
        while view:
            # The pipe is non-blocking: a worker that stops reading cannot stall the grader past the deadline.
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self._to_worker], [], remaining)[1]:
                self.kill()
                raise WorkerGone("timeout", "the worker stopped reading its requests")
            try:
                view = view[os.write(self._to_worker, view) :]
            except BlockingIOError:
                continue
            except OSError as error:  # the worker is gone (broken pipe)
                code = self.kill()
                raise WorkerGone("crashed", f"worker ended (exit status {code}): {error}") from None

    def _receive(self, deadline: float, doing: str) -> Any:
        size = struct.unpack("<Q", self._read(8, deadline, doing))[0]
        if size > wire.MAX_MESSAGE_BYTES:
            self.kill()
            raise WorkerGone("crashed", f"reply of {size} bytes while {doing}")
        try:
            value, _ = wire.decode(self._read(size, deadline, doing))
        except wire.WireError as error:
            self.kill()
            raise WorkerGone("crashed", f"malformed reply while {doing}: {error}") from None
        if not isinstance(value, dict):
            self.kill()
            raise WorkerGone("crashed", f"malformed reply while {doing}")
        return value

    def _read(self, size: int, deadline: float, doing: str) -> bytes:
        chunks, left = [], size
        while left:
            remaining = deadline - time.monotonic()
            ready = select.select([self._from_worker], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                self.kill()
                raise WorkerGone("timeout", f"no answer in time while {doing}")
            chunk = os.read(self._from_worker, min(left, 1 << 20))
            if not chunk:
                code = self.kill()
                raise WorkerGone("crashed", f"worker ended (exit status {code}) while {doing}")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def output_tail(self, size: int = 2000) -> str:
        """The end of what the worker printed (for the instructor's eyes only; never parsed)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, self.log_path.stat().st_size - size))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> int | None:
        """Kill the worker's whole process group and wait for it; returns its exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()

    def close(self) -> None:
        """Kill the worker and remove its working folder."""
        self.kill()
        for fd in (self._to_worker, self._from_worker):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.workdir, ignore_errors=True)
