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
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

MAGIC = b"GRDR"
_HEAD = struct.Struct("<4sII")  # magic, header length, number of blobs
_BLOB = struct.Struct("<Q")
MAX_DEPTH = 4
MAX_ITEMS = 64
#: Most numbers in one value (an array, or all the arrays of one tuple or list), encoded or decoded.
#: The largest value the grader asks for is one stacked output of a training chain (simple_nn's
#: 200 w1s: 800 numbers); a probe's answer has at most a few dozen. A value is kept as evidence and, for a
#: failing probe, written into the report as a list (about 60 bytes a number on the way), so its
#: size, not only its bytes, has to be bounded: a 16 MB array of booleans is 16 million numbers.
MAX_VALUE_ELEMENTS = 1 << 16
#: numpy dtype kinds accepted from the sandbox: bool, signed, unsigned, float.
NUMERIC_KINDS = "biuf"


class WireError(Exception):
    """The other side sent something that is not a well-formed message."""


# --- what each side reads ------------------------------------------------------
# The two directions are bounded differently. The grader reads from untrusted code, so every
# size the sandbox declares is checked against a small budget *before* anything is read or
# allocated, and what it reads is counted. The sandbox reads from the grader, which it trusts:
# its limits only have to be large enough for the biggest notebook the grader will load.


class ReadLimits(NamedTuple):
    """How large one message may be, checked against the sizes it declares before they are read."""

    #: Bytes of the JSON header.
    max_header: int
    #: Number of ``.npy`` blobs.
    max_blobs: int
    #: Sum of the blobs' sizes: one message never costs the reader more than this (plus the header).
    max_message_bytes: int


#: numpy's own bound on a ``.npy`` header (``numpy.lib.format._MAX_HEADER_SIZE``): its reader refuses
#: larger headers unless told to trust the file, because parsing one costs time and memory.
NPY_MAX_HEADER = 10000
#: Most dimensions of an array from the sandbox (numpy allows 64; no value the grader asks for has 3).
NPY_MAX_NDIM = 32

#: What the grader accepts from the sandbox. Honest messages are far smaller: the worker refuses to
#: send a call reply over 16 MB (``MAX_REPLY_BYTES`` in the worker), and batches replies only up to
#: 1 MB before adding the next, so an honest message stays under 17 MB of arrays; its JSON header is
#: a few kB (error texts are cut to 300 characters, "seen" to 20 lines).
FROM_SANDBOX = ReadLimits(max_header=1 << 20, max_blobs=4096, max_message_bytes=20 << 20)
#: Most bytes (headers and arrays) one sandbox process may send the grader over its whole life. An
#: honest grading sends well under 1 MB. Decoded values are kept as evidence until the report is
#: done, and a submission gets at most ``process.MAX_RESTARTS + 1`` processes, so this bounds what
#: one notebook can make the grader hold: 5 x 24 MB of values, plus one message being read and
#: decoded (3 x 20 MB at most: the bytes read, the blobs, the arrays). Measured worst cases are in
#: ``benchmarks/bench_hostile.py``.
FROM_SANDBOX_PER_PROCESS = 24 << 20
#: What the sandbox accepts from the grader: cell sources travel as blobs, one per cell, so a
#: notebook of any size the grader loads (``collect.MAX_NOTEBOOK_BYTES`` is 50 MB) fits.
FROM_GRADER = ReadLimits(max_header=64 << 20, max_blobs=1 << 20, max_message_bytes=1 << 30)


class ReadBudget:
    """Bytes one reader may still take from its peer over several messages (see FROM_SANDBOX_PER_PROCESS)."""

    def __init__(self, total: int = FROM_SANDBOX_PER_PROCESS) -> None:
        self.total = total
        self.left = total

    def take(self, n: int, what: str) -> None:
        """Count ``n`` more bytes, declared for ``what``, before they are read; WireError once spent."""
        if n > self.left:
            raise WireError(f"the sandbox sent more than {_mb(self.total)} in all ({what} would pass it)")
        self.left -= n


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n >= 1 << 20 else f"{n} bytes"


class ReceivedBlobs(list[bytes]):
    """The blobs of one received message; each may be decoded once, so a header that names the same
    array many times cannot make the reader build more arrays than the message carried.

    ``on_refused``, when set, is told why decoding a value of this message failed (the reader
    that received it keeps the reason for the report)."""

    def __init__(self, blobs: list[bytes]) -> None:
        super().__init__(blobs)
        self.taken: set[int] = set()
        self.on_refused: Callable[[str], None] | None = None

    def take(self, index: int) -> bytes:
        if index in self.taken:
            raise WireError("the same array is used twice in one message")
        self.taken.add(index)
        return self[index]

    def refused(self, reason: str) -> None:
        if self.on_refused is not None:
            self.on_refused(reason)


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


def read_message(read_exact: Callable[[int], bytes], limits: ReadLimits = FROM_SANDBOX,
                 budget: ReadBudget | None = None) -> tuple[dict[str, Any], ReceivedBlobs]:
    """Read one message with ``read_exact(n) -> bytes`` (which raises EOFError on a closed pipe).

    Every size is checked before it is read: the header's against ``limits.max_header``, each
    blob's, added to those before it, against ``limits.max_message_bytes``, and all of them
    against ``budget`` when given. ``read_exact`` reads as data arrives, so a peer that declares
    more than it sends costs at most those limits. The default limits are the strict ones, for
    reading from the sandbox.
    """
    magic, head_len, n_blobs = _HEAD.unpack(read_exact(_HEAD.size))
    if magic != MAGIC:
        raise WireError("malformed frame header")
    if head_len > limits.max_header:
        raise WireError(f"a message header of {_mb(head_len)}, over the {_mb(limits.max_header)} limit")
    if n_blobs > limits.max_blobs:
        raise WireError(f"a message of {n_blobs} arrays, over the limit of {limits.max_blobs}")
    if budget is not None:
        budget.take(_HEAD.size + head_len, "a message header")
    try:
        header = json.loads(read_exact(head_len))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WireError(f"malformed JSON header: {str(exc)[:100]}") from None
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    blobs = []
    total = 0
    for _ in range(n_blobs):
        (size,) = _BLOB.unpack(read_exact(_BLOB.size))
        total += size
        if total > limits.max_message_bytes:
            raise WireError(f"a message of more than {_mb(limits.max_message_bytes)} of arrays, its limit")
        if budget is not None:
            budget.take(_BLOB.size + size, f"an array of {_mb(size)}")
        blobs.append(read_exact(size))
    return header, ReceivedBlobs(blobs)


#: Bytes asked of one read from a channel pipe. A pipe holds 64 KiB by default, so asking for
#: more returns no more data, and it costs: CPython allocates the whole request before the
#: read (a 1 MiB request is an mmap and a munmap, 17 µs against 1.5 µs for 64 KiB, and a
#: notebook's grading makes a few hundred reads on each side).
PIPE_READ = 1 << 16


def take_front(buffer: bytearray, n: int) -> bytes:
    """The first ``n`` bytes of ``buffer``, removed from it, copied once (slicing a bytearray and
    converting the slice to bytes would copy them twice: a 16 MB array would briefly cost 48 MB)."""
    with memoryview(buffer) as view:
        data = bytes(view[:n])
    del buffer[:n]
    return data


def fd_reader(fd: int) -> Callable[[int], bytes]:
    """A blocking ``read_exact`` over a file descriptor, reading ahead: a request with a hundred
    arrays is one or two reads instead of two hundred."""
    buffer = bytearray()

    def read_exact(n: int) -> bytes:
        while len(buffer) < n:
            chunk = os.read(fd, PIPE_READ)
            if not chunk:
                raise EOFError("peer closed the channel")
            buffer.extend(chunk)
        return take_front(buffer, n)
    return read_exact


# --- values ------------------------------------------------------------------

_NPY_MAGIC = b"\x93NUMPY"


@functools.lru_cache(maxsize=512)
def _npy_header(descr: str, fortran: bool, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 ``.npy`` header, padded as numpy pads it (cached: shapes repeat)."""
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, }}"
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
    except Exception:  # noqa: BLE001 - whatever a forged header makes literal_eval or numpy raise, it is bad
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


def npy_to_array(blob: bytes, max_elements: int | None = None) -> np.ndarray:
    """Decode one ``.npy`` blob strictly: numeric dtypes only, exact length, never a pickle.

    The header's declared length is checked against numpy's own limit before any of it is
    decoded or parsed, and the shape's element count against ``max_elements`` and against the
    data actually there before any array is built, so a forged header costs nothing but the
    blob that carried it.
    """
    if len(blob) < 10 or blob[:6] != _NPY_MAGIC:
        raise WireError("bad array payload: not .npy data")
    major = blob[6]
    if major == 1:
        (length,), start = struct.unpack("<H", blob[8:10]), 10
    elif major in (2, 3) and len(blob) >= 12:
        (length,), start = struct.unpack("<I", blob[8:12]), 12
    else:
        raise WireError("bad array payload: unknown .npy version")
    if length > NPY_MAX_HEADER:
        raise WireError(f"an array header of {length} bytes, over numpy's limit of {NPY_MAX_HEADER}")
    if start + length > len(blob):
        raise WireError("bad array payload: header longer than the data")
    try:
        text = bytes(blob[start:start + length]).decode("latin1" if major < 3 else "utf8")
    except UnicodeDecodeError:
        raise WireError("bad array header") from None
    dtype, fortran, shape = _parse_npy_header(text)
    if len(shape) > NPY_MAX_NDIM:
        raise WireError(f"an array of {len(shape)} dimensions, over the limit of {NPY_MAX_NDIM}")
    count = math.prod(shape)
    if max_elements is not None and frame(shape) > max_elements:
        raise WireError(f"a value of more than {MAX_VALUE_ELEMENTS} numbers, the limit")
    data = memoryview(blob)[start + length:]  # a view: slicing bytes would copy the array once more
    if count * dtype.itemsize != len(data):
        raise WireError("bad array payload: wrong length")
    array = np.frombuffer(data, dtype=dtype, count=count)
    try:
        return array.reshape(shape, order="F" if fortran else "C").copy()
    except ValueError:  # a shape numpy refuses (past its index range) is a forged header, not data
        raise WireError("bad array payload: a shape no array can have") from None


def frame(shape: tuple[int, ...]) -> int:
    """What an array of ``shape`` costs whoever walks it, an empty dimension counted as 1: ``(2**31, 0)`` holds
    no number, yet ``tolist()`` builds 2**31 lists. Both sides bound this, not only the count of numbers
    (red team: an honest ``return np.zeros((2**31, 0))`` hung the grader in the report's ``tolist``)."""
    return math.prod(n or 1 for n in shape)


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)) or (
        isinstance(value, np.ndarray) and value.ndim == 0
    )


def encode_value(value: Any, blobs: list[bytes], depth: int = 0) -> dict[str, Any]:
    """Describe ``value`` as JSON plus blobs. Used on both sides; never raises.

    A value of more than MAX_VALUE_ELEMENTS numbers is described as unsupported, saying so, rather
    than sent: the reader would refuse it (``decode_value``), and an honest function that returns
    too much must fail as that call, not as a broken channel.
    """
    return _encode(value, blobs, depth, [MAX_VALUE_ELEMENTS])


def _encode(value: Any, blobs: list[bytes], depth: int, room: list[int]) -> dict[str, Any]:
    if value is None:
        return {"t": "none"}
    if isinstance(value, (list, tuple)) and not all(_is_number(v) for v in value):
        if depth >= MAX_DEPTH or len(value) > MAX_ITEMS:
            return {"t": "unsupported", "type": type(value).__name__}
        return {"t": "seq", "kind": type(value).__name__,
                "items": [_encode(v, blobs, depth + 1, room) for v in value]}
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - an object whose __array__ raises is not data; encode_value never raises
        return {"t": "unsupported", "type": type(value).__name__}
    if array.dtype.kind not in NUMERIC_KINDS or array.dtype.hasobject:
        return {"t": "unsupported", "type": f"{type(value).__name__} of {array.dtype}"}
    framed = frame(array.shape)
    if framed > room[0]:
        what = f"{array.size} numbers" if array.size else f"shape {array.shape}"
        return {"t": "unsupported", "type": f"{type(value).__name__} of {what} "
                f"(the grader reads at most {MAX_VALUE_ELEMENTS})"}
    room[0] -= framed
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
    """Strictly rebuild a value: arrays, tuples/lists of them, None, or Unsupported.

    At most MAX_VALUE_ELEMENTS numbers in all, each array's count checked before it is built."""
    try:
        return _decode(desc, blobs, depth, [MAX_VALUE_ELEMENTS])
    except WireError as exc:
        if isinstance(blobs, ReceivedBlobs):
            blobs.refused(str(exc))
        raise


def _decode(desc: Any, blobs: list[bytes], depth: int, room: list[int]) -> Any:
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
        array = npy_to_array(blobs.take(index) if isinstance(blobs, ReceivedBlobs) else blobs[index], room[0])
        room[0] -= frame(array.shape)
        return array[()] if desc.get("scalar") and array.ndim == 0 else array
    if kind == "seq":
        items = desc.get("items")
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            raise WireError("malformed sequence")
        decoded = [_decode(item, blobs, depth + 1, room) for item in items]
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
    if isinstance(value, (list, tuple)) and any(isinstance(v, (list, tuple, Unsupported)) or v is None for v in value):
        return None
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None


_FLOAT64 = np.dtype(np.float64)


def shaped_value(value: Any, shape: tuple[int, ...] | None) -> np.ndarray | float | None:
    """``value`` as a training loop goes on with it, or None when it cannot.

    ``shape`` is the shape of the start value it must be like: ``()`` (a single number) takes any
    single finite number, given back as a float; a 1-d shape takes a finite array of that many
    numbers in any shape (``w2.flatten()``, a column), reshaped to it; any other shape takes a finite
    array of exactly that shape; None takes a finite array of any shape. Arrays come back as float64.
    """
    kind = type(value)
    if shape == () and (kind is float or kind is np.float64):  # the usual number, read as below but directly
        number = float(value)
        return number if math.isfinite(number) else None
    if kind is np.ndarray and value.dtype is _FLOAT64 and value.shape == shape:  # the usual array: itself, as below
        return value if np.isfinite(value).all() else None
    array = float_array(value)
    if array is None:
        return None
    if shape is not None:
        if len(shape) == 0:
            if array.size != 1:
                return None
            number = float(array.reshape(()))
            return number if math.isfinite(number) else None
        if array.shape != shape:
            if len(shape) > 1 or array.size != shape[0]:
                return None
            array = array.reshape(shape)
    if not np.isfinite(array).all():
        return None
    return array


def shaped_values(value: Any, shapes: tuple[tuple[int, ...] | None, ...] | list[tuple[int, ...] | None]
                  ) -> tuple[np.ndarray | float, ...] | None:
    """What a call returned, read as the results a loop step binds (``shaped_value`` of each), or None
    when any is unusable: for one result the whole value, for several a tuple or list of that many."""
    if len(shapes) == 1:
        items: Any = (value,)
    elif isinstance(value, (tuple, list)) and len(value) == len(shapes):
        items = value
    else:
        return None
    results = []
    for item, shape in zip(items, shapes, strict=True):
        result = shaped_value(item, shape)
        if result is None:
            return None
        results.append(result)
    return tuple(results)
