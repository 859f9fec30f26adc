"""Framing and value codec for the data-only boundary between grader and sandbox.

Only data crosses: a JSON header and ``.npy`` blobs, decoded on the trusted side
with ``allow_pickle=False`` and a whitelist of numeric dtypes. Nothing is ever
unpickled, so a hostile submission can at worst send wrong numbers, which is no
more than it could do by returning them.

This module is also shipped, as source text, into the sandbox process, so it
imports nothing but the standard library and numpy, and nothing from grader.
"""
from __future__ import annotations

import ast
import functools
import json
import math
import os
import struct
from typing import Any

import numpy as np

MAGIC = b"GRDR"
_HEAD = struct.Struct("<4sII")  # magic, header length, number of blobs
_BLOB = struct.Struct("<Q")
MAX_HEADER = 4 << 20
MAX_BLOB = 256 << 20
MAX_BLOBS = 4096
MAX_DEPTH = 4
MAX_ITEMS = 64
#: numpy dtype kinds accepted from the sandbox: bool, signed, unsigned, float.
NUMERIC_KINDS = "biuf"


class WireError(Exception):
    """The other side sent something that is not a well-formed message."""


# --- framing -----------------------------------------------------------------

def pack(header: dict[str, Any], blobs: list[bytes]) -> bytes:
    head = json.dumps(header, allow_nan=True).encode()
    parts = [_HEAD.pack(MAGIC, len(head), len(blobs)), head]
    for blob in blobs:
        parts.append(_BLOB.pack(len(blob)))
        parts.append(blob)
    return b"".join(parts)


def write_message(fd: int, header: dict[str, Any], blobs: list[bytes] | None = None) -> None:
    data = memoryview(pack(header, blobs or []))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def read_message(read_exact) -> tuple[dict[str, Any], list[bytes]]:
    """Read one message with ``read_exact(n) -> bytes`` (which raises EOFError on a closed pipe)."""
    magic, head_len, n_blobs = _HEAD.unpack(read_exact(_HEAD.size))
    if magic != MAGIC or head_len > MAX_HEADER or n_blobs > MAX_BLOBS:
        raise WireError("malformed frame header")
    try:
        header = json.loads(read_exact(head_len))
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"malformed JSON header: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    blobs = []
    for _ in range(n_blobs):
        (size,) = _BLOB.unpack(read_exact(_BLOB.size))
        if size > MAX_BLOB:
            raise WireError("blob too large")
        blobs.append(read_exact(size))
    return header, blobs


#: Bytes asked of one read from a channel pipe. A pipe holds 64 KiB by default, so asking for
#: more returns no more data, and it costs: CPython allocates the whole request before the
#: read (a 1 MiB request is an mmap and a munmap, 17 µs against 1.5 µs for 64 KiB, and a
#: notebook's grading makes a few hundred reads on each side).
PIPE_READ = 1 << 16


def fd_reader(fd: int):
    """A blocking ``read_exact`` over a file descriptor, reading ahead: a request with a hundred
    arrays is one or two reads instead of two hundred."""
    buffer = bytearray()

    def read_exact(n: int) -> bytes:
        while len(buffer) < n:
            chunk = os.read(fd, PIPE_READ)
            if not chunk:
                raise EOFError("peer closed the channel")
            buffer.extend(chunk)
        data = bytes(buffer[:n])
        del buffer[:n]
        return data
    return read_exact


# --- values ------------------------------------------------------------------

_NPY_MAGIC = b"\x93NUMPY"


@functools.lru_cache(maxsize=512)
def _npy_header(descr: str, fortran: bool, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 ``.npy`` header, padded as numpy pads it (cached: shapes repeat)."""
    text = "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran, shape)
    pad = 64 - (len(_NPY_MAGIC) + 4 + len(text) + 1) % 64
    text = text + " " * pad + "\n"
    return _NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


@functools.lru_cache(maxsize=512)
def _parse_npy_header(text: str) -> tuple[np.dtype, bool, tuple[int, ...]]:
    """Parse a header dict literal safely (ast.literal_eval never executes code); cached because
    numpy's own reader re-parses it for every array, which dominated round-trip time."""
    try:
        header = ast.literal_eval(text)
        descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
        dtype = np.dtype(descr)
    except Exception:
        raise WireError("bad array header") from None
    if not (isinstance(fortran, bool) and isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise WireError("bad array header")
    if dtype.kind not in NUMERIC_KINDS or dtype.hasobject or dtype.fields is not None:
        raise WireError(f"non-numeric dtype {dtype.str}")
    return dtype, fortran, shape


def array_to_npy(array: np.ndarray) -> bytes:
    """Encode one array in the ``.npy`` format (readable by ``np.load(..., allow_pickle=False)``)."""
    if array.dtype.hasobject:
        raise ValueError("object arrays are not data")
    fortran = bool(array.flags.f_contiguous and not array.flags.c_contiguous)
    data = array.tobytes(order="F" if fortran else "C")
    return _npy_header(array.dtype.str, fortran, array.shape) + data


def npy_to_array(blob: bytes) -> np.ndarray:
    """Decode one ``.npy`` blob strictly: numeric dtypes only, exact length, never a pickle."""
    if blob[:6] != _NPY_MAGIC or len(blob) < 10:
        raise WireError("bad array payload: not .npy data")
    major = blob[6]
    if major == 1:
        (length,), start = struct.unpack("<H", blob[8:10]), 10
    elif major in (2, 3) and len(blob) >= 12:
        (length,), start = struct.unpack("<I", blob[8:12]), 12
    else:
        raise WireError("bad array payload: unknown .npy version")
    try:
        text = bytes(blob[start:start + length]).decode("latin1" if major < 3 else "utf8")
    except UnicodeDecodeError:
        raise WireError("bad array header") from None
    dtype, fortran, shape = _parse_npy_header(text)
    count = math.prod(shape)
    data = blob[start + length:]
    if len(data) != count * dtype.itemsize:
        raise WireError("bad array payload: wrong length")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)) or (
        isinstance(value, np.ndarray) and value.ndim == 0
    )


def encode_value(value: Any, blobs: list[bytes], depth: int = 0) -> dict[str, Any]:
    """Describe ``value`` as JSON plus blobs. Used on both sides; never raises."""
    if value is None:
        return {"t": "none"}
    if isinstance(value, (list, tuple)) and not all(_is_number(v) for v in value):
        if depth >= MAX_DEPTH or len(value) > MAX_ITEMS:
            return {"t": "unsupported", "type": type(value).__name__}
        return {"t": "seq", "kind": type(value).__name__,
                "items": [encode_value(v, blobs, depth + 1) for v in value]}
    try:
        array = np.asarray(value)
    except Exception:
        return {"t": "unsupported", "type": type(value).__name__}
    if array.dtype.kind not in NUMERIC_KINDS or array.dtype.hasobject:
        return {"t": "unsupported", "type": f"{type(value).__name__} of {array.dtype}"}
    try:
        blobs.append(array_to_npy(array))
    except ValueError:
        return {"t": "unsupported", "type": type(value).__name__}
    return {"t": "array", "i": len(blobs) - 1, "scalar": _is_number(value) and not isinstance(value, np.ndarray)}


class Unsupported:
    """A value the sandbox returned that is not numeric data (a string, a dict, ...)."""

    def __init__(self, type_name: str) -> None:
        self.type_name = str(type_name)[:80]

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


def decode_value(desc: Any, blobs: list[bytes], depth: int = 0) -> Any:
    """Strictly rebuild a value: arrays, tuples/lists of them, None, or Unsupported."""
    if not isinstance(desc, dict) or depth > MAX_DEPTH:
        raise WireError("malformed value")
    kind = desc.get("t")
    if kind == "none":
        return None
    if kind == "unsupported":
        return Unsupported(desc.get("type", "?"))
    if kind == "array":
        index = desc.get("i")
        if not isinstance(index, int) or not 0 <= index < len(blobs):
            raise WireError("bad blob index")
        array = npy_to_array(blobs[index])
        return array[()] if desc.get("scalar") and array.ndim == 0 else array
    if kind == "seq":
        items = desc.get("items")
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            raise WireError("malformed sequence")
        decoded = [decode_value(item, blobs, depth + 1) for item in items]
        return tuple(decoded) if desc.get("kind") == "tuple" else decoded
    raise WireError(f"unknown value type {kind!r}")


# --- how a failed call is worded ----------------------------------------------------------
# The worker words the exceptions it catches; the kernel backend words those nbclient
# records by name. One wording for both, so a report reads the same on either backend.

#: Exception names that mean "out of memory" (numpy raises a private MemoryError subclass).
MEMORY_ERRORS = frozenset({"MemoryError", "_ArrayMemoryError"})


def describe_error(name: str, value: str) -> str:
    """One line, at most 300 characters, for an exception called ``name`` with message ``value``."""
    if name in MEMORY_ERRORS:
        return f"memory limit: the code needed more memory than the sandbox allows ({value})"[:300]
    if name == "RecursionError":
        return "RecursionError: maximum recursion depth exceeded (does the function call itself forever?)"
    text = f"{name}: {value}"
    return text if len(text) <= 300 else text[:297] + "..."


# --- the numbers a value stands for -------------------------------------------------
# Used by the grader's checks and by the sandbox's training chain, which must read a
# returned value exactly alike (the chain is audited against ordinary calls).


def float_array(value: Any) -> np.ndarray | None:
    """A numeric float array for ``value``, or None when it is not numeric data."""
    if value is None or isinstance(value, Unsupported):
        return None
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (list, tuple, Unsupported)) or v is None for v in value):
            return None
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None


def weight_pair(value: Any, shape1: tuple, shape2: tuple) -> tuple[np.ndarray, np.ndarray] | None:
    """The (w1, w2) a backward call returned, if it is a pair of finite arrays of the right shapes
    (w2 may come in any shape of the right size, as ``w2.flatten()`` does)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return None
    w1, w2 = float_array(value[0]), float_array(value[1])
    if w1 is None or w2 is None or w1.shape != shape1:
        return None
    if w2.shape != shape2:
        if w2.size != int(np.prod(shape2)):
            return None
        w2 = w2.reshape(shape2)
    if not (np.isfinite(w1).all() and np.isfinite(w2).all()):
        return None
    return w1, w2
