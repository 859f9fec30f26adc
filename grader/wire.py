"""Framing and value codec for the data-only boundary between grader and sandbox.

Only data crosses: a JSON header and ``.npy`` blobs, decoded on the trusted side
with ``allow_pickle=False`` and a whitelist of numeric dtypes. Nothing is ever
unpickled, so a hostile submission can at worst send wrong numbers, which is no
more than it could do by returning them.

This module is also shipped, as source text, into the sandbox process, so it
imports nothing but the standard library and numpy, and nothing from grader.
"""
from __future__ import annotations

import io
import json
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


def fd_reader(fd: int):
    """A blocking ``read_exact`` over a file descriptor."""
    def read_exact(n: int) -> bytes:
        chunks, remaining = [], n
        while remaining:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                raise EOFError("peer closed the channel")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    return read_exact


# --- values ------------------------------------------------------------------

def array_to_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # ascontiguousarray would turn a 0-d array into 1-d; keep scalars scalar.
    np.lib.format.write_array(buffer, array if array.flags.c_contiguous else array.copy(), allow_pickle=False)
    return buffer.getvalue()


def npy_to_array(blob: bytes) -> np.ndarray:
    """Decode one ``.npy`` blob, refusing pickles and any non-numeric dtype."""
    try:
        array = np.lib.format.read_array(io.BytesIO(blob), allow_pickle=False)
    except Exception as exc:  # malformed bytes: numpy raises several types
        raise WireError(f"bad array payload: {type(exc).__name__}") from None
    if array.dtype.kind not in NUMERIC_KINDS or array.dtype.hasobject:
        raise WireError(f"non-numeric dtype {array.dtype.str}")
    return array


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
    blobs.append(array_to_npy(array))
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
