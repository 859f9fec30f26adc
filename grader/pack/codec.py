"""A tabled assignment as files: ``assignment.jsonl`` (a first line with its declaration, each callable a
table number; then one line per table, its recorded calls) and ``arrays.bin`` (every distinct array's bytes,
one after another).

A table's line is parsed the first time the table answers: a self-check touches a few of a pack's
tables, and parsing them all was a third of a cold self-check (measured: 0.2 s of JSON for 2.5 MB).

JSON and raw bytes rather than pickle: a pack is data that a student's machine reads, and nothing
read there may import or run code it names. Decoding rebuilds only the dataclasses of
``grader.assignment`` (by name, from a fixed list) and :class:`~grader.pack.tables.Table`; any
other ``$type`` is an error. Arrays keep their dtype and shape; floats keep NaN and infinities.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from grader import assignment as declared
from grader.errors import AssignmentError
from grader.pack.tables import Entry, Table

FORMAT = "grader.pack/1"
DECLARATION = "assignment.jsonl"
ARRAYS = "arrays.bin"

#: The dataclasses a declaration is made of: the only types decoding builds.
_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in (
    declared.Assignment, declared.Function, declared.Pair, declared.Helpers, declared.Probe, declared.Probes,
    declared.HelperValues, declared.HelperDerivative, declared.Values, declared.Objective, declared.Gradient,
    declared.Update, declared.Step, declared.Loop, declared.Converges, declared.NotMutated, declared.Signature,
    declared.Mutant, declared.Structure, declared.Reference)}

BAD_PACK = "The student pack's {what} is damaged ({reason}); install the pack again (pip install --force-reinstall)."


class Encoder:
    """Values to JSON-ready data; arrays go to one byte buffer, callables to table numbers."""

    def __init__(self, table_of: Callable[[Any], int]) -> None:
        self.table_of = table_of
        self.buffer = bytearray()
        self._objects: dict[int, int] = {}
        self._kept: list[Any] = []  # ids stay unique while encoding
        self._offsets: dict[tuple[str, bytes], int] = {}
        #: False once the declaration is written: a table's calls may name its objects, never add one (tables
        #: are read in any order, so an object first met in one could not be found from another).
        self.defining = True

    def array(self, array: np.ndarray) -> dict[str, Any]:
        array = np.array(array, order="C", copy=True)  # not ascontiguousarray: it makes a 0-d array 1-d
        if array.dtype.hasobject:
            raise TypeError("an object array cannot go into a pack")
        data = array.tobytes()
        offset = self._offsets.setdefault((array.dtype.str, data), len(self.buffer))  # the same probe, stored once
        if offset == len(self.buffer):
            self.buffer.extend(data)
        return {"$a": [array.dtype.str, list(array.shape), offset]}

    def value(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)):
            return {"$i": int(value)} if isinstance(value, np.integer) else int(value)
        if isinstance(value, (float, np.floating)):
            number = float(value)
            if math.isfinite(number):
                return number if type(value) is float else {"$f64": number}
            return {"$nf": repr(number), **({"$np": True} if type(value) is not float else {})}
        if isinstance(value, np.bool_):
            return {"$b": bool(value)}
        if isinstance(value, np.ndarray):
            return self.array(value)
        if dataclasses.is_dataclass(value) and type(value).__name__ in _TYPES:
            return self._dataclass(value)
        if isinstance(value, tuple):
            return {"$t": [self.value(v) for v in value]}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, Mapping):
            return {"$m": [[str(k), self.value(v)] for k, v in value.items()]}
        if isinstance(value, (frozenset, set)):
            return {"$s": sorted(str(v) for v in value)}
        if callable(value):
            return {"$c": self.table_of(value)}
        raise TypeError(f"a {type(value).__name__} cannot go into a pack")

    def _dataclass(self, value: Any) -> Any:
        known = self._objects.get(id(value))
        if known is not None:
            return {"$ref": known}
        if not self.defining:
            raise TypeError(f"a recorded call holds a {type(value).__name__} the declaration does not")
        number = len(self._objects)
        self._objects[id(value)] = number
        self._kept.append(value)
        fields = {f.name: self.value(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$type": type(value).__name__, "$id": number, **fields}


class Decoder:
    """The inverse of :class:`Encoder` over a decoded JSON document and the array bytes."""

    def __init__(self, buffer: bytes, tables: list[Table]) -> None:
        self.buffer = buffer
        self.tables = tables
        self._objects: dict[int, Any] = {}

    def value(self, data: Any) -> Any:
        if data is None or isinstance(data, (bool, str, int, float)):
            return data
        if isinstance(data, list):
            return [self.value(v) for v in data]
        if not isinstance(data, dict):
            raise ValueError(f"unexpected {type(data).__name__}")
        if "$a" in data:
            dtype, shape, offset = data["$a"]
            kind = np.dtype(dtype)
            if kind.hasobject:
                raise ValueError("object arrays are not allowed")
            # A read-only view of the bytes (a table answers with copies): no copy, and math.prod rather than
            # np.prod, which alone was a tenth of a cold self-check (measured: 23,000 arrays).
            count = math.prod(shape)
            return np.frombuffer(self.buffer, dtype=kind, count=count, offset=int(offset)).reshape(tuple(shape))
        if "$i" in data:
            return np.int64(data["$i"])
        if "$f64" in data:
            return np.float64(data["$f64"])
        if "$nf" in data:
            number = float(data["$nf"])
            return np.float64(number) if data.get("$np") else number
        if "$b" in data:
            return np.bool_(data["$b"])
        if "$t" in data:
            return tuple(self.value(v) for v in data["$t"])
        if "$m" in data:
            return {str(k): self.value(v) for k, v in data["$m"]}
        if "$s" in data:
            return frozenset(data["$s"])
        if "$c" in data:
            return self.tables[int(data["$c"])]
        if "$ref" in data:
            return self._objects[int(data["$ref"])]
        if "$type" in data:
            return self._dataclass(data)
        raise ValueError(f"unexpected keys {sorted(data)[:3]}")

    def _dataclass(self, data: Mapping[str, Any]) -> Any:
        cls = _TYPES.get(str(data["$type"]))
        if cls is None:
            raise ValueError(f"unknown type {data['$type']!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: self.value(v) for k, v in data.items() if k in names}
        made = cls(**fields)
        self._objects[int(data["$id"])] = made
        return made


def write(folder: Path, assignment: declared.Assignment, tables: list[Any], table_of: Callable[[Any], int],
          extra: Mapping[str, Any]) -> None:
    """Write ``assignment`` and ``extra`` (callables numbered by ``table_of``, which appends each new one to
    ``tables``), then every numbered table's recorded entries (``name``, ``entries``), until no new one appears."""
    encoder = Encoder(table_of)
    declaration = encoder.value(assignment)
    fields = {key: encoder.value(value) for key, value in extra.items()}
    encoder.defining = False
    lines: list[str] = []
    while len(lines) < len(tables):  # an answer may name a further table (a combination's code)
        table = tables[len(lines)]
        lines.append(json.dumps([_entry(encoder, e) for e in table.entries], separators=(",", ":"), allow_nan=False))
    index = [{"name": t.name, "elementwise": bool(getattr(t, "elementwise", False))} for t in tables]
    header = {"format": FORMAT, "fields": fields, "assignment": declaration, "tables": index}
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join([json.dumps(header, separators=(",", ":"), allow_nan=False), *lines]) + "\n"
    (folder / DECLARATION).write_text(text, "utf-8")
    (folder / ARRAYS).write_bytes(bytes(encoder.buffer))


def _entry(encoder: Encoder, entry: Entry) -> list[Any]:
    """``[args, value]``, and ``raised`` and ``after`` only when the call raised or wrote into its arguments
    (most entries are two numbers in, one out: the short form keeps a pack small and quick to read)."""
    encoded = [encoder.value(entry.args), encoder.value(entry.value)]
    if entry.raised is not None or entry.after is not None:
        encoded += [list(entry.raised) if entry.raised else None,
                    encoder.value(entry.after) if entry.after is not None else None]
    return encoded


def _decoded_entry(decoder: Decoder, data: list[Any]) -> Entry:
    raised = data[2] if len(data) > 2 else None
    after = data[3] if len(data) > 3 else None
    return Entry(decoder.value(data[0]), decoder.value(data[1]), (str(raised[0]), str(raised[1])) if raised else None,
                 decoder.value(after) if after is not None else None)


def _decoded_entries(decoder: Decoder, line: bytes) -> list[Entry]:
    try:
        return [_decoded_entry(decoder, e) for e in json.loads(line)]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise AssignmentError(BAD_PACK.format(what=DECLARATION, reason=f"{type(exc).__name__}: {exc}")) from exc


def read(document_bytes: bytes, buffer: bytes) -> tuple[declared.Assignment, dict[str, Any]]:
    """The tabled assignment and the pack's other fields, from the two files' bytes."""
    try:
        first, *lines = document_bytes.rstrip(b"\n").split(b"\n")
        document = json.loads(first)
        if document.get("format") != FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT!r}")
        if len(lines) != len(document["tables"]):
            raise ValueError(f"{len(lines)} tables written, {len(document['tables'])} listed")
        tables: list[Table] = [Table(str(t["name"]), [], bool(t.get("elementwise"))) for t in document["tables"]]
        decoder = Decoder(buffer, tables)
        assignment = decoder.value(document["assignment"])  # in the order written: a $ref names an earlier object
        extra = {str(k): decoder.value(v) for k, v in document["fields"].items()}
        for table, line in zip(tables, lines, strict=True):
            table.load(partial(_decoded_entries, decoder, line))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise AssignmentError(BAD_PACK.format(what=DECLARATION, reason=f"{type(exc).__name__}: {exc}")) from exc
    if not isinstance(assignment, declared.Assignment):
        raise AssignmentError(BAD_PACK.format(what=DECLARATION, reason="no assignment in it"))
    return assignment, extra
