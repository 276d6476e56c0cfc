"""The worker: runs ONE submission's code in its own sandboxed process, and calls its functions on request.

Started by :mod:`grading.sandbox`, never imported by the grader. It applies its resource limits before any
student code runs, executes the notebook's code cells top to bottom (an error in a cell is recorded and the next
cell runs, as in "Run All" with errors allowed), and then answers requests over two pipes:

* ``call``: call a graded function with decoded arguments and send back its result (or the error it raised). When
  some arguments require grad, the graph is kept so that a later ``backward`` can return the input gradients.
* ``backward``: back-propagate given output gradients through a kept graph.

Nothing here decides a grade: the tests run in the grader's process. A submission that tampers with this process
(patching torch, the encoder, these pipes) can only change the values it sends back, which the grader then checks.
"""

from __future__ import annotations

import os
import resource
import struct
import sys
import traceback
import types


def _apply_limits() -> None:
    memory = int(os.environ.get("GRADING_MEMORY_BYTES", "0"))
    if memory > 0:
        # Heap and private mappings (RLIMIT_DATA counts what malloc and torch's allocator obtain; RLIMIT_AS
        # would also count the gigabytes of shared libraries torch maps). Hard = soft, so it cannot be raised.
        limit = getattr(resource, "RLIMIT_DATA", resource.RLIMIT_AS)
        resource.setrlimit(limit, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    output = int(os.environ.get("GRADING_OUTPUT_BYTES", "0"))
    if output > 0:
        resource.setrlimit(resource.RLIMIT_FSIZE, (output, output))


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


def _error(error: BaseException) -> dict:
    try:
        trace = "".join(traceback.format_exception(error))[-3000:]
    except MemoryError:  # the frames still hold what filled the memory
        trace = ""
    return {"ok": False, "error": type(error).__name__, "message": str(error)[:2000], "trace": trace}


def main() -> None:
    """Enter the file-system jail, apply the limits, load the submission, then serve calls until the pipe closes."""
    read_fd, write_fd = (int(fd) for fd in os.environ["GRADING_FDS"].split(","))
    from grading.jail import enter_from_environment

    enter_from_environment()  # before torch: one thread, and nothing of the student's has run
    _apply_limits()
    import torch

    from grading import wire

    torch.set_num_threads(1)
    sys.modules["otter"] = _fake_otter()
    request, _ = wire.decode(_receive(read_fd))
    namespace = {"__name__": "__main__", "get_ipython": _Shell}
    errors = _run_cells(request["cells"], namespace)
    defined = [name for name in request["names"] if callable(namespace.get(name))]
    _send(write_fd, wire.encode({"ok": True, "defined": defined, "errors": errors})[0])

    graphs: dict[int, tuple[list, list]] = {}
    while True:
        try:
            request, received = wire.decode(_receive(read_fd))
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
        _send(write_fd, message)


def _serve(request: dict, received: list, namespace: dict, graphs: dict, torch: types.ModuleType) -> dict:
    if request["op"] == "call":
        inputs = [tensor for tensor in received if tensor.requires_grad]
        # Grad mode stays on: a graded function may itself use autograd (e.g. torch.autograd.grad).
        value = namespace[request["name"]](*request["args"], **request["kwargs"])
        graph = None
        if inputs:
            from grading.wire import tensors_in  # loaded by main() already, after the jail was set up

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


if __name__ == "__main__":
    main()
