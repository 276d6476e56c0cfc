"""A small, pickle-free message format between the grader and a submission's worker process.

A message is a tree of ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples, dicts with string keys and
tensors. It travels as a JSON header (the tree, with each tensor replaced by a reference) followed by the tensors'
raw bytes. Decoding never runs code: it parses JSON, checks every node against the grammar above, checks each
tensor's dtype against an allow-list and its size against the bytes received, and copies the bytes into a fresh
tensor. So whatever a submission sends back, the grader gets plain data or a :class:`WireError`.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

import torch

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class WireError(ValueError):
    """A message that does not follow the format (malformed, too large or of an unsupported type)."""


def encode(value: Any) -> tuple[bytes, list[torch.Tensor]]:
    """Encode ``value``; returns the message and the tensors it holds, in the order they were encoded."""
    tensors: list[torch.Tensor] = []
    tree = _to_tree(value, tensors, 0)
    metas, blobs, offset = [], [], 0
    for tensor in tensors:
        data = tensor.detach().to("cpu").contiguous()
        raw = data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b""
        metas.append(
            {
                "dtype": DTYPE_NAMES[data.dtype],
                "shape": list(data.shape),
                "offset": offset,
                "nbytes": len(raw),
                "requires_grad": bool(tensor.requires_grad),
            }
        )
        blobs.append(raw)
        offset += len(raw)
    header = json.dumps({"tree": tree, "tensors": metas}).encode()
    return struct.pack("<Q", len(header)) + header + b"".join(blobs), tensors


def _to_tree(value: Any, tensors: list[torch.Tensor], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, torch.Tensor):
        if value.dtype not in DTYPE_NAMES or value.is_complex() or value.layout != torch.strided:
            raise WireError(f"unsupported tensor dtype or layout: {value.dtype}, {value.layout}")
        tensors.append(value)
        return {"tensor": len(tensors) - 1}
    if isinstance(value, list | tuple):
        items = [_to_tree(item, tensors, depth + 1) for item in value]
        return {"tuple": items} if isinstance(value, tuple) else {"list": items}
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise WireError("dict keys must be strings")
        return {"dict": [[key, _to_tree(item, tensors, depth + 1)] for key, item in value.items()]}
    raise WireError(f"unsupported value of type {type(value).__name__}")


def decode(message: bytes) -> tuple[Any, list[torch.Tensor]]:
    """Decode a message from :func:`encode`; returns the value and its tensors in encoding order.

    Tensors flagged ``requires_grad`` by the sender come back as leaves that require grad.
    """
    if len(message) < 8:
        raise WireError("message too short")
    (header_size,) = struct.unpack("<Q", message[:8])
    if header_size > min(MAX_HEADER_BYTES, len(message) - 8):
        raise WireError("bad header size")
    try:
        header = json.loads(message[8 : 8 + header_size].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WireError(f"bad header: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), list) or "tree" not in header:
        raise WireError("bad header layout")
    body = memoryview(message)[8 + header_size :]
    tensors = [_tensor_from(meta, body) for meta in header["tensors"]]
    return _from_tree(header["tree"], tensors, 0), tensors


def _tensor_from(meta: Any, body: memoryview) -> torch.Tensor:
    if not isinstance(meta, dict) or meta.get("dtype") not in DTYPES:
        raise WireError(f"bad tensor description {str(meta)[:80]}")
    dtype = DTYPES[meta["dtype"]]
    shape, offset, nbytes = meta.get("shape"), meta.get("offset"), meta.get("nbytes")
    if not isinstance(shape, list) or not all(type(size) is int and size >= 0 for size in shape):
        raise WireError("bad tensor shape")
    if type(offset) is not int or type(nbytes) is not int or offset < 0 or offset + nbytes > len(body):
        raise WireError("tensor bytes out of range")
    itemsize = torch.empty((), dtype=dtype).element_size()
    if math.prod(shape) * itemsize != nbytes:
        raise WireError("tensor size does not match its bytes")
    if nbytes == 0:
        tensor = torch.zeros(shape, dtype=dtype)
    else:
        raw = torch.frombuffer(bytearray(body[offset : offset + nbytes]), dtype=torch.uint8)
        # Booleans travel as bytes; any non-zero byte means True, so no invalid bool can be built.
        tensor = (raw != 0).reshape(shape) if dtype == torch.bool else raw.view(dtype).reshape(shape)
    if meta.get("requires_grad") is True and tensor.is_floating_point():
        tensor.requires_grad_(True)
    return tensor


def _from_tree(node: Any, tensors: list[torch.Tensor], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if node is None or isinstance(node, bool | str):
        return node
    if not isinstance(node, dict) or len(node) != 1:
        raise WireError("bad node")
    ((kind, content),) = node.items()
    try:
        if kind == "int" and isinstance(content, str) and len(content) < 64:
            return int(content)
        if kind == "float" and isinstance(content, str) and len(content) < 64:
            return float(content)
        if kind == "tensor" and type(content) is int and 0 <= content < len(tensors):
            return tensors[content]
    except ValueError:
        raise WireError("bad number") from None
    if kind in ("list", "tuple") and isinstance(content, list):
        items = [_from_tree(item, tensors, depth + 1) for item in content]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict" and isinstance(content, list):
        pairs = {}
        for pair in content:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise WireError("bad dict entry")
            pairs[pair[0]] = _from_tree(pair[1], tensors, depth + 1)
        return pairs
    raise WireError(f"bad node kind {kind!r}")


def map_tensors(value: Any, function: Callable[[torch.Tensor], Any]) -> Any:
    """``value`` with each tensor replaced by ``function(tensor)``, called in :func:`tensors_in`'s order."""
    if isinstance(value, torch.Tensor):
        return function(value)
    if isinstance(value, list | tuple):
        items = [map_tensors(item, function) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {key: map_tensors(item, function) for key, item in value.items()}
    return value


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor in a message tree, in the order :func:`encode` visits them (both sides rely on that order)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [tensor for item in value for tensor in tensors_in(item)]
    if isinstance(value, dict):
        return [tensor for item in value.values() for tensor in tensors_in(item)]
    return []
