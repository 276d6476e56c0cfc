"""Start the sandboxed workers of a grading run, talk to them with deadlines, and kill what misbehaves.

One :class:`Server` per grading process is started under the isolation that :func:`isolation` found (it pays for
the sandbox and for importing torch once); it forks one :class:`Worker` per submission, which runs the notebook once
and then forks a process per question (:mod:`grading.worker`). What is enforced (see the instructor page): a
wall-clock deadline on every exchange (a question's process is killed on expiry, the worker when loading runs
over), a memory cap (``RLIMIT_DATA``, set inside the worker before student code runs, hard limit equal to the soft
one), a cap on what it may write to its log file (``RLIMIT_FSIZE``), and, where available, no network, and PID
namespaces of its own so that it can neither see nor signal the grader, the server or another submission, plus a
user namespace so that, even when the grader runs as root, the worker cannot raise its limits, plus a mount
namespace in which :mod:`grading.jail` hides the solutions, the tests and the submissions, makes every file
read-only and drops every capability. On macOS ``sandbox-exec`` (when present) denies network access and reading
or writing the hidden folders; the memory limit is not enforced there.
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
import socket
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
from grading.worker import receive_message, send_message

ROOT = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 5.0  # for a worker to report that a question's process has ended


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


class ServerError(RuntimeError):
    """The grading server failed (not the submission's doing): what it was asked is not graded."""


@dataclass(frozen=True)
class Limits:
    """Per-submission limits, in seconds and bytes."""

    load_seconds: float = 20.0
    question_seconds: float = 20.0
    submission_seconds: float = 300.0
    memory_bytes: int = 2 * 1024**3
    output_bytes: int = 16 * 1024**2
    scratch_bytes: int = 64 * 1024**2


@functools.cache
def isolation() -> tuple[tuple[str, ...], str, bool]:
    """The command prefix that isolates the server here, a sentence saying what it enforces, and whether the
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
    """None when the jail works under ``prefix``, both halves as a grading run uses them; else why not."""
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


def _environment(home: Path) -> dict[str, str]:
    """The server's (and so every worker's) environment: nothing of the grader's but the path."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "COURSE_DEVICE": "cpu",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        # Sets, dicts of strings and hash() iterate in one order in every worker: grading repeats exactly.
        "PYTHONHASHSEED": "0",
    }


class Server:
    """The sandboxed process that starts the workers (:func:`grading.worker.serve`).

    Started once per grading process: it enters the jail with ``hidden`` covered and imports torch, then forks a
    worker per :meth:`spawn`, so a submission costs a fork instead of a new interpreter importing torch.
    """

    def __init__(self, hidden: tuple[str, ...] = (), start_seconds: float = 180.0) -> None:
        prefix, self.words, self.jailed = isolation()
        self.folder = Path(tempfile.mkdtemp(prefix="grading-server-"))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = _environment(self.folder) | {"GRADING_SERVER_FD": str(theirs.fileno())}
        if self.jailed:
            env["GRADING_JAIL"] = json.dumps({"hidden": list(hidden)})
        elif prefix[:1] == ("sandbox-exec",):
            prefix = (*prefix, "-p", macos_profile(list(hidden), [str(ROOT), sys.prefix, sys.base_prefix]))
        bootstrap = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from grading.worker import serve; serve()"
        self.log_path = self.folder / "server.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                # Not -I: it would ignore PYTHONHASHSEED. The environment is ours alone anyway; -s and -P keep
                # the user's site-packages and the working folder off sys.path, as -I would.
                [*prefix, sys.executable, "-s", "-P", "-c", bootstrap],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.folder,
                env=env,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        theirs.close()
        self.socket = ours
        self.ready: dict | None = None
        self._start_deadline = time.monotonic() + start_seconds

    def wait(self) -> dict:
        """Wait until the server has started (it imports torch meanwhile; the caller may do other work first)."""
        if self.ready is None:
            try:
                self.ready = self._reply(self._start_deadline, "starting")
            except ServerError:
                self.close()
                raise
        return self.ready

    def spawn(self, request: dict, fds: list[int]) -> int:
        """Start a worker holding ``fds`` (its load pipes, its control socket, its log); returns its pid."""
        self.wait()
        return int(self._request({"op": "spawn", **request}, fds)["pid"])

    def finish(self, pid: int) -> dict:
        """Kill a worker if it still runs and reap it: ``{"status": exit status, "cpu_seconds": ...}``."""
        return self._request({"op": "finish", "pid": pid})

    def _request(self, message: dict, fds: list[int] = ()) -> dict:
        try:
            send_message(self.socket, message, fds)
        except OSError as error:
            raise ServerError(f"the grading server is gone: {error}; {self._log_tail()}") from None
        return self._reply(time.monotonic() + 60, message["op"])

    def _reply(self, deadline: float, doing: str) -> dict:
        ready = select.select([self.socket], [], [], max(0.0, deadline - time.monotonic()))[0]
        try:
            if not ready:
                raise TimeoutError("no answer in time")
            message, fds = receive_message(self.socket)
        except (OSError, EOFError, ValueError) as error:
            raise ServerError(f"the grading server failed while {doing}: {error!r}; {self._log_tail()}") from None
        for fd in fds:
            os.close(fd)
        if "error" in message:
            raise ServerError(f"the grading server failed while {doing}: {message['error']}")
        return message

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "its log ends: " + self.log_path.read_text(errors="replace")[-2000:]
        return "no log"

    def close(self) -> None:
        """Stop the server, and with it every worker it started."""
        if self.socket.fileno() < 0:
            return
        self.socket.close()
        try:
            # A server still starting notices the closed socket only once it has imported torch: do not wait.
            self.process.wait(timeout=10 if self.ready is not None else 0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Channel:
    """Length-prefixed :mod:`grading.wire` messages over a pair of pipes, each exchange within a deadline.

    ``watch`` is a socket whose becoming readable means the other end has gone (the worker reports that a
    question's process ended), so that the grader stops waiting at once."""

    def __init__(self, to_fd: int, from_fd: int, watch: socket.socket | None = None) -> None:
        self.to_fd, self.from_fd, self.watch = to_fd, from_fd, watch
        os.set_blocking(to_fd, False)

    def send(self, value: Any, deadline: float) -> None:
        """Send ``value``; raises WorkerGone if the other end stops reading or has gone."""
        message = wire.encode(value)[0]
        view = memoryview(struct.pack("<Q", len(message)) + message)
        watched = [self.watch] if self.watch is not None else []
        while view:
            # The pipe is non-blocking: a worker that stops reading cannot stall the grader past the deadline.
            remaining = deadline - time.monotonic()
            readable, writable, _ = select.select(watched, [self.to_fd], [], max(remaining, 0))
            if readable:
                raise WorkerGone("crashed", "the process ended")
            if not writable:
                raise WorkerGone("timeout", "the worker stopped reading its requests")
            try:
                view = view[os.write(self.to_fd, view) :]
            except BlockingIOError:
                continue
            except OSError as error:  # the worker is gone (broken pipe)
                raise WorkerGone("crashed", f"the process ended: {error}") from None

    def receive(self, deadline: float, doing: str) -> dict:
        """The next reply, a dict; raises WorkerGone on a time-out, an ended process or a malformed reply."""
        size = struct.unpack("<Q", self._read(8, deadline, doing))[0]
        if size > wire.MAX_MESSAGE_BYTES:
            raise WorkerGone("crashed", f"reply of {size} bytes while {doing}")
        try:
            value, _ = wire.decode(self._read(size, deadline, doing))
        except wire.WireError as error:
            raise WorkerGone("crashed", f"malformed reply while {doing}: {error}") from None
        if not isinstance(value, dict):
            raise WorkerGone("crashed", f"malformed reply while {doing}")
        return value

    def _read(self, size: int, deadline: float, doing: str) -> bytes:
        chunks, left = [], size
        watched = [self.from_fd] + ([self.watch] if self.watch is not None else [])
        while left:
            remaining = deadline - time.monotonic()
            ready = select.select(watched, [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                raise WorkerGone("timeout", f"no answer in time while {doing}")
            if self.from_fd not in ready:
                raise WorkerGone("crashed", f"the process ended while {doing}")
            chunk = os.read(self.from_fd, min(left, 1 << 20))
            if not chunk:
                raise WorkerGone("crashed", f"the process ended while {doing}")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Close both pipes (the other end then reads end-of-file)."""
        for fd in (self.to_fd, self.from_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Worker:
    """One submission's sandboxed worker, started by ``server``: it runs the notebook's cells once (:meth:`load`),
    then a fresh process per question (:meth:`begin_question`, :meth:`call`, :meth:`end_question`)."""

    def __init__(self, server: Server, limits: Limits) -> None:
        self.server, self.limits = server, limits
        self.folder = Path(tempfile.mkdtemp(prefix="grading-"))
        self.log_path = self.folder / "output.log"
        self.pid: int | None = None
        self.ended: dict = {}
        self.question: Channel | None = None
        self.over: dict | None = None
        self.defined: list[str] = []
        self.cell_errors: list = []
        self.load_seconds = 0.0
        load_in, to_load = os.pipe()
        from_load, load_out = os.pipe()
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        request = {
            "memory_bytes": limits.memory_bytes,
            "output_bytes": limits.output_bytes,
            "scratch_bytes": limits.scratch_bytes,
            "workdir": str(self.folder),
        }
        self._load = Channel(to_load, from_load)
        try:
            self.pid = server.spawn(request, [load_in, load_out, theirs.fileno(), log])
        except ServerError:
            self._load.close()
            self.remove()
            raise
        finally:
            for fd in (load_in, load_out, log):
                os.close(fd)
            theirs.close()
        self.started = time.monotonic()  # the load limit starts now, not while the server was still starting

    def load(self, cells: list[str], names: list[str]) -> None:
        """Run the notebook's cells (once); raises WorkerGone: ``timeout`` past ``limits.load_seconds``,
        ``crashed`` when the worker ends or breaks the protocol (it is then closed)."""
        try:
            deadline = self.started + self.limits.load_seconds
            self._load.send({"cells": cells, "names": names}, deadline)
            reply = self._load.receive(deadline, "loading the notebook")
        except WorkerGone as gone:
            self.close()
            raise WorkerGone(gone.status, gone.detail.replace("the process ended", self._ended_words())) from None
        finally:
            self._load.close()
        self.defined = [name for name in reply.get("defined", []) if isinstance(name, str)]
        self.cell_errors = list(reply.get("errors", []))
        self.load_seconds = time.monotonic() - self.started

    @property
    def alive(self) -> bool:
        """Whether the worker can still take questions."""
        return self.pid is not None

    def begin_question(self) -> None:
        """Have the worker fork the process that answers this question's calls."""
        requests, to_question = os.pipe()
        from_question, replies = os.pipe()
        try:
            send_message(self.control, {"op": "question"}, [requests, replies])
        except OSError as error:
            for fd in (to_question, from_question):
                os.close(fd)
            self.close()
            raise WorkerGone("crashed", f"the worker ended: {error}") from None
        finally:
            os.close(requests)
            os.close(replies)
        self.question, self.over = Channel(to_question, from_question, self.control), None

    def call(self, name: str, args: Any, kwargs: Any, track: bool, deadline: float) -> tuple[Any, int | None]:
        """Call ``name`` in the question's process; returns its value and the id of the kept graph (when ``track``)."""
        if not track:
            args, kwargs = wire.map_tensors(args, torch.Tensor.detach), wire.map_tensors(kwargs, torch.Tensor.detach)
        reply = self._exchange(
            {"op": "call", "name": name, "args": args, "kwargs": kwargs}, deadline, f"calling {name}"
        )
        if not reply.get("ok"):
            raise StudentError(name, str(reply.get("error")), str(reply.get("message")))
        return reply.get("value"), reply.get("graph")

    def backward(self, graph: int, grads: list, deadline: float) -> list[torch.Tensor]:
        """Input gradients of a kept graph, given the gradients of its outputs."""
        reply = self._exchange({"op": "backward", "graph": graph, "grads": grads}, deadline, "back-propagating")
        if not reply.get("ok"):
            raise StudentError("backward", str(reply.get("error")), str(reply.get("message")))
        return reply["value"]

    def _exchange(self, request: dict, deadline: float, doing: str) -> dict:
        if self.question is None:
            raise WorkerGone("crashed", f"no question is open while {doing}")
        try:
            self.question.send(request, deadline)
            return self.question.receive(deadline, doing)
        except WorkerGone as gone:
            self.end_question()
            if gone.status == "crashed" and self.over is not None and not self.over.get("stopped"):
                status = self.over.get("status")
                ended = f"the question's process ended (exit status {status}) while {doing}"
                raise WorkerGone("crashed", ended) from None
            raise

    def end_question(self) -> None:
        """Stop the question's process (if it still runs) and wait for the worker to say it has ended; a worker that
        does not say so in time is killed (the next question then needs a new one)."""
        if self.question is None:
            return
        self.question.close()
        self.question = None
        if self.over is None:
            with contextlib.suppress(OSError):
                send_message(self.control, {"op": "stop"})
            self.over = self._over(time.monotonic() + GRACE_SECONDS)
            if self.over is None:
                self.close()

    def _over(self, deadline: float) -> dict | None:
        """The worker's report that the question's process has ended, or None (no valid report in time)."""
        while select.select([self.control], [], [], max(0.0, deadline - time.monotonic()))[0]:
            try:
                message, fds = receive_message(self.control)
            except (OSError, EOFError, ValueError):
                return None
            for fd in fds:
                os.close(fd)
            if message.get("op") == "over":
                return message
        return None

    def _ended_words(self) -> str:
        return f"worker ended (exit status {self.ended.get('status')})"

    def output_tail(self, size: int = 2000) -> str:
        """The end of what the worker printed (for the instructor's eyes only; never parsed)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, self.log_path.stat().st_size - size))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Kill the worker (every process of its submission with it) and keep its exit status and CPU time."""
        if self.question is not None:
            self.question.close()
            self.question = None
        self.control.close()
        if self.pid is not None:
            pid, self.pid = self.pid, None
            self.ended = self.server.finish(pid)

    def remove(self) -> None:
        """Close the worker and delete its folder (its log with it)."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
