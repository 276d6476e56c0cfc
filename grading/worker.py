"""The sandboxed side of grading: one server per grading process, a worker per submission, a process per question.

Started by :class:`grading.sandbox.Server` (the grader imports only the helpers from here)::

    server    jailed (grading.jail.hide), torch imported once; runs no student code; forks the workers
      worker  one per submission, in namespaces of its own (grading.jail.isolate, confine), under its limits:
              runs the notebook's code cells top to bottom (an error in a cell is recorded and the next cell runs,
              as in "Run All" with errors allowed), then waits for questions
        question  one per question, a fork of the loaded worker: answers the grader's calls until the question ends

Forking the loaded worker per question means the notebook runs once however many questions there are, each
question starts from the state the notebook left (untouched by the questions before it), and a question that
crashes or hangs costs only itself: the worker kills it and forks the next. Every worker and question starts from
the same random state, so grading a submission twice gives the same result.

The server and the workers take requests on Unix sockets (one small JSON dict per datagram, file descriptors
attached); a question's calls travel over pipes of their own as :mod:`grading.wire` messages:

* ``call``: call a graded function with decoded arguments and send back its result (or the error it raised). When
  some arguments require grad, the graph is kept so that a later ``backward`` can return the input gradients.
* ``backward``: back-propagate given output gradients through a kept graph.

Nothing here decides a grade: the tests run in the grader's process. A submission that tampers with its worker
(patching torch, the encoder, these loops) can only change the values it sends back, which the grader checks.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import resource
import select
import signal
import socket
import struct
import sys
import traceback
import types

SEED = 0
MAX_CONTROL_BYTES = 1 << 16
# Imported once by the server, so that no worker pays for them (the notebooks import them first thing).
PRELOAD = ("torch", "numpy", "IPython.core.inputtransformer2", "companion", "grading.wire")


def send_message(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    """One JSON datagram, with ``fds`` attached."""
    socket.send_fds(sock, [json.dumps(message).encode()], list(fds))


def receive_message(sock: socket.socket) -> tuple[dict, list[int]]:
    """One JSON datagram and the file descriptors attached to it; EOFError when the other side has gone."""
    data, fds, _, _ = socket.recv_fds(sock, MAX_CONTROL_BYTES, 8)
    if not data:
        for fd in fds:
            os.close(fd)
        raise EOFError
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("a control message must be a dict")
    return message, fds


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int) -> bytes:
    (size,) = struct.unpack("<Q", _read_exactly(fd, 8))
    return _read_exactly(fd, size)


def _send(fd: int, message: bytes) -> None:
    view = memoryview(struct.pack("<Q", len(message)) + message)
    while view:
        view = view[os.write(fd, view) :]


# The server --------------------------------------------------------------------------------------------------


def serve() -> None:
    """The server: jail itself, import torch, then start a worker per ``spawn`` request until the grader leaves."""
    control = socket.socket(fileno=int(os.environ.pop("GRADING_SERVER_FD")))
    jail = json.loads(os.environ.pop("GRADING_JAIL", "null"))
    if jail:
        from grading.jail import hide

        hide(jail["hidden"])  # first thing: before torch, while nothing but this code has run

    if sys.platform.startswith("linux"):  # elsewhere (macOS) a process that has loaded torch is not safe to fork
        for name in PRELOAD:
            with contextlib.suppress(ImportError):
                __import__(name)
        sys.modules["torch"].set_num_threads(1)
        warm_up()
    with contextlib.suppress(AttributeError, OSError):
        # Workers whose launcher has exited are re-parented here, so that the server reaps them.
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    gc.freeze()  # what the server has built stays untouched in the workers: fewer pages copied on write
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    send_message(control, {"op": "ready", "threads": threads, "preloaded": sorted(set(PRELOAD) & set(sys.modules))})
    finished: dict[int, dict] = {}
    live: set[int] = set()
    while True:
        try:
            request, fds = receive_message(control)
        except EOFError:
            break
        _reap(finished)
        try:
            if request["op"] == "spawn":
                pid = _spawn(request, fds, control, jailed=bool(jail))
                live.add(pid)
                reply = {"pid": pid}
            elif request["op"] == "finish":
                live.discard(int(request["pid"]))
                reply = _finish(int(request["pid"]), finished)
            else:
                reply = {"error": f"unknown request {request['op']!r}"}
        except Exception as error:
            reply = {"error": f"{type(error).__name__}: {error}"}
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        send_message(control, reply)
    for pid in live:  # the grader has gone: so do its workers
        _finish(pid, finished)


def warm_up() -> None:
    """Run what grading runs first (the magics' transformer, a layer, a backward pass with output gradients, a
    comparison), so that lazy start-up happens once: torch imports some 500 modules (sympy among them) the first time
    autograd is given output gradients, seconds that would otherwise come out of a first question's time limit."""
    if "IPython.core.inputtransformer2" in sys.modules:
        sys.modules["IPython.core.inputtransformer2"].TransformerManager().transform_cell("x = 1\n%pip --version\n")
    import torch

    layer = torch.nn.RNN(2, 3, batch_first=True)
    inputs = torch.randn(1, 2, 2, requires_grad=True)
    outputs = layer(inputs)[0].sum()
    torch.autograd.grad([outputs], [inputs], [torch.ones(())], allow_unused=True, retain_graph=True)
    outputs.backward()
    torch.testing.assert_close(inputs.grad, inputs.grad)  # its first call imports for seconds too


def _spawn(request: dict, fds: list[int], control: socket.socket, jailed: bool) -> int:
    """Fork a launcher that gives the worker its own namespaces and forks it; returns the worker's pid."""
    if len(fds) != 4:
        raise ValueError(f"spawn needs 4 file descriptors, got {len(fds)}")
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    launcher = os.fork()
    if launcher == 0:
        try:
            os.close(read)
            control.close()
            from grading.jail import isolate

            isolate(mount=jailed)
            worker = os.fork()
            if worker == 0:
                os.close(write)
                _worker(request, fds, jailed)  # never returns
            os.write(write, str(worker).encode())
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.write(write, f"{type(error).__name__}: {error}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode(errors="replace")
    os.waitpid(launcher, 0)
    if not said.isdigit():
        raise OSError(f"could not start a worker: {said}")
    return int(said)


def _finish(pid: int, finished: dict[int, dict]) -> dict:
    """Kill a worker (and with it every process of its PID namespace) and reap it: its exit status and CPU time."""
    if pid not in finished:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        try:
            _, status, usage = os.wait4(pid, 0)
        except ChildProcessError:
            return {"status": None, "cpu_seconds": None}
        finished[pid] = _ended(status, usage)
    return finished.pop(pid)


def _ended(status: int, usage: resource.struct_rusage) -> dict:
    return {"status": os.waitstatus_to_exitcode(status), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3)}


def _reap(finished: dict[int, dict]) -> None:
    """Collect every child that has ended on its own (workers that crashed, orphans of their namespaces)."""
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                return
            finished[pid] = _ended(status, usage)


# The worker ---------------------------------------------------------------------------------------------------


def _worker(request: dict, fds: list[int], jailed: bool) -> None:
    """A submission's worker: confine it, load the notebook, then fork a process per question. Never returns."""
    load_in, load_out, control_fd, log = fds
    code = 1
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        _close_all_but({0, 1, 2, load_in, load_out, control_fd})
        if jailed:
            from grading.jail import confine

            confine(int(request["scratch_bytes"]))
        else:
            os.chdir(request["workdir"])
            for name in ("HOME", "TMPDIR", "MPLCONFIGDIR"):
                os.environ[name] = request["workdir"]
        _apply_limits(int(request["memory_bytes"]), int(request["output_bytes"]))
        namespace = _load(load_in, load_out)
        control = socket.socket(fileno=control_fd)
        while True:
            try:
                message, question = receive_message(control)
            except EOFError:
                break
            if message.get("op") == "question" and len(question) == 2:
                _question(control, question, namespace)
            else:
                for fd in question:
                    os.close(fd)
        code = 0
    except SystemExit as exit:  # exit() at top level ends the worker: a crash, reported by the grader
        code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _close_all_but(keep: set[int]) -> None:
    """Close every inherited file descriptor not in ``keep`` (the server's socket among them)."""
    low = 0
    for fd in [*sorted(keep), resource.getrlimit(resource.RLIMIT_NOFILE)[0]]:
        if fd > low:  # closerange(n, n) would close everything from n on (Python 3.11)
            os.closerange(low, fd)
        low = fd + 1


def _apply_limits(memory: int, output: int) -> None:
    if memory > 0:
        # Heap and private mappings (RLIMIT_DATA counts what malloc and torch's allocator obtain; RLIMIT_AS
        # would also count the gigabytes of shared libraries torch maps). Hard = soft, so it cannot be raised.
        limit = getattr(resource, "RLIMIT_DATA", resource.RLIMIT_AS)
        resource.setrlimit(limit, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if output > 0:
        resource.setrlimit(resource.RLIMIT_FSIZE, (output, output))


def _load(load_in: int, load_out: int) -> dict:
    """Receive the cells, run them from a fixed random state, report what got defined; returns the namespace."""
    import torch

    from grading import wire

    torch.set_num_threads(1)
    random.seed(SEED)
    torch.manual_seed(SEED)
    with contextlib.suppress(ImportError):
        import numpy

        numpy.random.seed(SEED)  # noqa: NPY002 - the legacy global generator is the one student code uses
    sys.modules["otter"] = _fake_otter()
    request, _ = wire.decode(_receive(load_in))
    namespace = {"__name__": "__main__", "get_ipython": _Shell}
    errors = _run_cells(request["cells"], namespace)
    defined = [name for name in request["names"] if callable(namespace.get(name))]
    _send(load_out, wire.encode({"ok": True, "defined": defined, "errors": errors})[0])
    os.close(load_in)
    os.close(load_out)
    return namespace


def _fake_otter() -> types.ModuleType:
    """A stand-in for otter: students' ``grader.check`` cells do nothing here (grading uses its own tests)."""

    class Notebook:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __getattr__(self, name: str) -> object:
            return lambda *args, **kwargs: None

    module = types.ModuleType("otter")
    module.Notebook = Notebook
    return module


class _Shell:
    """Enough of ``get_ipython()`` for cells whose magics are transformed into calls (e.g. the Colab cell)."""

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


def _run_cells(cells: list[str], namespace: dict) -> list[dict]:
    from IPython.core.inputtransformer2 import TransformerManager

    transformer, errors = TransformerManager(), []
    for index, source in enumerate(cells):
        try:
            code = compile(transformer.transform_cell(source), f"<cell {index}>", "exec")
            exec(code, namespace)
        except Exception as error:  # BaseException (exit(), KeyboardInterrupt) ends the worker: a crash
            errors.append({"cell": index, "error": type(error).__name__, "message": str(error)[:500]})
    return errors


def _question(control: socket.socket, fds: list[int], namespace: dict) -> None:
    """Fork the process that answers one question's calls; kill it when the grader says ``stop``; report its end."""
    sys.stdout.flush()
    sys.stderr.flush()
    state = random.getstate()
    pid = os.fork()
    if pid == 0:
        try:
            # The random module reseeds itself from the OS in a forked child: back to the state the notebook left.
            random.setstate(state)
            control.close()
            os.setpgid(0, 0)
            _answer(*fds, namespace)
        finally:
            os._exit(0)
    for fd in fds:
        os.close(fd)
    watch = [control]
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
        watch.append(pidfd)
    stopped = False
    try:
        while True:
            ready = select.select(watch, [], [], None if pidfd is not None else 0.05)[0]
            if control in ready:
                try:
                    message, extra = receive_message(control)
                except EOFError:
                    message, extra = {"op": "stop"}, []
                for fd in extra:
                    os.close(fd)
                if message.get("op") == "stop":
                    stopped = True
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
    finally:
        if pidfd is not None:
            os.close(pidfd)
    # What the question's process started goes with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    send_message(control, {"op": "over", "status": os.waitstatus_to_exitcode(status), "stopped": stopped})


def _answer(requests: int, replies: int, namespace: dict) -> None:
    """Serve ``call`` and ``backward`` requests until the grader closes the question's pipe."""
    import torch

    from grading import wire

    torch.set_num_threads(1)
    graphs: dict[int, tuple[list, list]] = {}
    while True:
        try:
            request, received = wire.decode(_receive(requests))
        except EOFError:
            return
        try:
            reply = _serve(request, received, namespace, graphs, torch)
        except Exception as error:
            reply = _error(error)
        # Leaving the except block freed the failed call's frames (a memory bomb's hoard with them).
        try:
            message = wire.encode(reply)[0]
        except Exception as error:
            message = wire.encode(_error(error))[0]
        _send(replies, message)


def _error(error: BaseException) -> dict:
    try:
        trace = "".join(traceback.format_exception(error))[-3000:]
    except MemoryError:  # the frames still hold what filled the memory
        trace = ""
    return {"ok": False, "error": type(error).__name__, "message": str(error)[:2000], "trace": trace}


def _serve(request: dict, received: list, namespace: dict, graphs: dict, torch: types.ModuleType) -> dict:
    if request["op"] == "call":
        inputs = [tensor for tensor in received if tensor.requires_grad]
        # Grad mode stays on: a graded function may itself use autograd (e.g. torch.autograd.grad).
        value = namespace[request["name"]](*request["args"], **request["kwargs"])
        graph = None
        if inputs:
            from grading.wire import tensors_in  # imported already, before any student code ran

            outputs = tensors_in(value)
            graph = len(graphs) + 1
            graphs[graph] = (inputs, outputs)
        return {"ok": True, "value": value, "graph": graph}
    if request["op"] == "backward":
        inputs, outputs = graphs.pop(request["graph"])
        pairs = [
            (output, grad)
            for output, grad in zip(outputs, request["grads"], strict=True)
            if output.requires_grad and grad is not None
        ]
        grads = [None] * len(inputs)
        if pairs:
            grads = torch.autograd.grad(
                [output for output, _ in pairs], inputs, [grad for _, grad in pairs], allow_unused=True
            )
        # An input the outputs do not depend on gets a zero gradient.
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]
        return {"ok": True, "value": grads}
    raise ValueError(f"unknown request {request['op']!r}")
