"""Answer tables: the instructor's functions, known only by what they returned on the public probes.

A student pack must check a notebook the way the instructor's grader does (values, gradients,
training, named bugs) without shipping a line of the reference or the bug catalogue. So every
callable an assignment declares (references, mutants, helper families, the loss, the training
loop's start, structural factors) is replaced in the pack by a :class:`Table`: what that callable
returned (or raised, or wrote into its arguments) for each argument tuple the grading pipeline
asked of it while the pack was built (:class:`Recorder`, ``grader.pack.build``).

Lookups are exact first (the same bits: every call the pipeline makes with the probes' own values).
A call whose arguments come from the student (a ``y_hat`` their ``forward`` computed, close to the
reference's but not bit for bit) is answered by the nearest recorded call when every number of it is
within :data:`NEAR` of that call's, and raises :class:`NotTabulated` otherwise. ``NotTabulated`` is a
``LookupError``, which the pipeline already treats as "undefined here" (``compare.trusted_call``,
``checks._safe``, the training curve): a context the pack cannot evaluate (the student's own
helper pair) simply never matches, and is never a verdict against the student.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader.assignment import Pair
from grader.memo import value_key

#: Largest relative difference (per number, relative to 1 + |recorded|) at which a call is answered by the
#: nearest recorded one. A student's value that passed a values check differs from the reference's by
#: ~1e-12 in float64 and ~1e-7 in float32 (a notebook computing in float32); the pipeline's own calls are
#: recorded exactly, so a nearer recorded call (distance 0) is always there to win over a neighbour.
NEAR = 1e-6

#: Exceptions a recorded call may be replayed as (anything else is replayed as RuntimeError with its name).
_REPLAYABLE: dict[str, type[Exception]] = {cls.__name__: cls for cls in (
    ArithmeticError, AssertionError, AttributeError, FloatingPointError, IndexError, KeyError, NotImplementedError,
    OverflowError, RuntimeError, TypeError, ValueError, ZeroDivisionError)}


class NotTabulated(LookupError):
    """A call the pack holds no answer for: undefined here, never a verdict."""


@dataclass
class Entry:
    """One recorded call: its arguments, and what it returned or raised and left in its arguments."""

    args: tuple[Any, ...]
    value: Any = None
    #: (exception type name, message) when the call raised.
    raised: tuple[str, str] | None = None
    #: The arguments after the call, for the positions it changed in place (None: unchanged).
    after: tuple[Any, ...] | None = None


def _pair_part(pair: Pair) -> Hashable | None:
    """A helper pair stands for its name in a key, when it is one of the assignment's own (pure) pairs."""
    return ("pair", pair.name) if pair.pure else None


def _mapping_part(values: Mapping[str, Any]) -> Hashable | None:
    parts = []
    for name in sorted(values):
        key = argument_key(values[name])
        if key is None:
            return None
        parts.append((name, key))
    return ("mapping", tuple(parts))


def argument_key(value: Any) -> Hashable | None:
    """An exact key for one argument: a number or array by its bits, a pure pair by name, a mapping of
    those by its items, a tuple of those; None for anything else (a student's own pair: not tabulated)."""
    if isinstance(value, Pair):
        return _pair_part(value)
    if isinstance(value, Mapping):
        return _mapping_part(value)
    if isinstance(value, (tuple, list)):
        parts = [argument_key(v) for v in value]
        return None if any(p is None for p in parts) else ("seq", tuple(parts))
    if isinstance(value, str):
        return ("str", value)
    if value is None:
        return ("none",)
    return value_key(value)


def calls_key(args: Sequence[Any]) -> Hashable | None:
    parts = [argument_key(a) for a in args]
    return None if any(p is None for p in parts) else tuple(parts)


def _numbers(value: Any, into: list[np.ndarray]) -> Hashable | None:
    """The shape of ``value`` (what must be equal) and, appended to ``into``, its numbers (what may be near)."""
    if isinstance(value, Pair):
        return _pair_part(value)
    if isinstance(value, Mapping):
        parts = []
        for name in sorted(value):
            part = _numbers(value[name], into)
            if part is None:
                return None
            parts.append((name, part))
        return ("mapping", tuple(parts))
    if isinstance(value, (tuple, list)):
        items: list[Hashable] = []
        for item in value:
            part = _numbers(item, into)
            if part is None:
                return None
            items.append(part)
        return ("seq", tuple(items))
    if isinstance(value, (bool, np.bool_, str)) or value is None:
        return ("exact", argument_key(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        into.append(np.asarray(value, dtype=float).reshape(1))
        return ("number",)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        into.append(np.asarray(value, dtype=float).ravel())
        return ("array", value.shape)
    return None


def _copy(value: Any) -> Any:
    """A fresh copy: nothing a caller does to an answer reaches the table."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


@dataclass
class _Bucket:
    """Recorded calls of one shape, their numbers stacked for one vectorised nearest-neighbour search."""

    rows: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    matrix: np.ndarray | None = None


class Table:
    """A callable that answers from recorded calls (see the module docstring)."""

    def __init__(self, name: str, entries: Sequence[Entry] | Callable[[], Sequence[Entry]] = (),
                 elementwise: bool = False) -> None:
        self.name = name
        #: A helper of the assignment (an activation or its slope): also answers element by element, for a
        #: notebook that calls it on single numbers in a loop, or on points the recorded training never met.
        self.elementwise = elementwise
        self._elements: tuple[np.ndarray, np.ndarray] | None = None
        self._source = entries
        self._entries: list[Entry] | None = None
        self._exact: dict[Hashable, int] = {}
        self._buckets: dict[Hashable, _Bucket] | None = None
        self._lock = threading.Lock()

    def load(self, entries: Sequence[Entry] | Callable[[], Sequence[Entry]]) -> None:
        """Take ``entries`` (or a function giving them, called on first use: a self-check touches a few of a
        pack's tables) as this table's answers. A table may be named by another's answers before it is read,
        so it exists first and is filled after."""
        self._source, self._entries, self._buckets = entries, None, None
        self._exact = {}

    def read(self) -> int:
        """Read this table's recorded calls now rather than on its first answer; how many there are."""
        return len(self.entries)

    @property
    def entries(self) -> list[Entry]:
        if self._entries is None:
            with self._lock:  # read once, also when a prefetching thread (grader.pack.installed) is at it
                if self._entries is None:
                    source = self._source
                    entries = list(source() if callable(source) else source)
                    for index, entry in enumerate(entries):
                        key = calls_key(entry.args)
                        if key is not None:
                            self._exact.setdefault(key, index)
                    self._entries = entries
        return self._entries

    def _nearby(self) -> dict[Hashable, _Bucket]:
        """Recorded calls by shape, for the nearest-call search (built on the first call not found exactly)."""
        if self._buckets is None:
            self._buckets = {}
            for index, entry in enumerate(self.entries):
                numbers: list[np.ndarray] = []
                shape = _numbers(entry.args, numbers)
                if shape is not None:
                    bucket = self._buckets.setdefault(shape, _Bucket())
                    bucket.rows.append(index)
                    bucket.vectors.append(np.concatenate(numbers) if numbers else np.zeros(0))
        return self._buckets

    def __repr__(self) -> str:
        return f"<answer table {self.name}>"

    def _find(self, args: tuple[Any, ...]) -> Entry:
        entries = self.entries
        key = calls_key(args)
        if key is not None and key in self._exact:
            return entries[self._exact[key]]
        numbers: list[np.ndarray] = []
        shape = _numbers(args, numbers)
        bucket = self._nearby().get(shape) if shape is not None else None
        if bucket is None:
            return self._by_element(args)
        if bucket.matrix is None:
            bucket.matrix = np.vstack(bucket.vectors)
        query = np.concatenate(numbers) if numbers else np.zeros(0)
        if bucket.matrix.shape[1] == 0:
            return self.entries[bucket.rows[0]]
        with np.errstate(all="ignore"):
            distance = np.max(np.abs(bucket.matrix - query) / (1.0 + np.abs(bucket.matrix)), axis=1)
        best = int(np.nanargmin(distance)) if np.isfinite(distance).any() else -1
        if best < 0 or not distance[best] <= NEAR:
            return self._by_element(args)
        return self.entries[bucket.rows[best]]

    def _element_map(self) -> tuple[np.ndarray, np.ndarray]:
        """Every recorded input number beside its output number, sorted by input (elementwise tables)."""
        if self._elements is None:
            inputs, outputs = [], []
            for entry in self.entries:
                if len(entry.args) == 1 and entry.raised is None and np.size(entry.args[0]) == np.size(entry.value):
                    inputs.append(np.asarray(entry.args[0], dtype=float).ravel())
                    outputs.append(np.asarray(entry.value, dtype=float).ravel())
            keys = np.concatenate(inputs) if inputs else np.zeros(0)
            values = np.concatenate(outputs) if outputs else np.zeros(0)
            order = np.argsort(keys, kind="stable")
            self._elements = keys[order], values[order]
        return self._elements

    def _by_element(self, args: tuple[Any, ...]) -> Entry:
        """An elementwise table's answer assembled from recorded elements (each within NEAR), else NotTabulated."""
        missing = NotTabulated(f"{self.name}: no answer for these arguments")
        if not self.elementwise or len(args) != 1:
            raise missing
        try:
            query = np.asarray(args[0], dtype=float)
        except (TypeError, ValueError):
            raise missing from None
        keys, values = self._element_map()
        if keys.size == 0 or query.dtype.kind != "f":
            raise missing
        flat = query.ravel()
        where = np.clip(np.searchsorted(keys, flat), 1, keys.size - 1) if keys.size > 1 else np.zeros(flat.shape, int)
        below = np.maximum(where - 1, 0)
        nearer = np.where(np.abs(keys[below] - flat) <= np.abs(keys[where] - flat), below, where)
        if not np.all(np.abs(keys[nearer] - flat) <= NEAR * (1.0 + np.abs(keys[nearer]))):
            raise missing
        found = values[nearer].reshape(query.shape)
        return Entry(args, float(found) if query.ndim == 0 and not isinstance(args[0], np.ndarray) else found)

    def __call__(self, *args: Any) -> Any:
        entry = self._find(args)
        if entry.after is not None:  # what the call wrote into its arguments, written again
            for given, after in zip(args, entry.after, strict=False):
                if after is not None and isinstance(given, np.ndarray) and given.shape == np.shape(after) \
                        and given.flags.writeable:
                    np.copyto(given, after, casting="unsafe")
        if entry.raised is not None:
            kind, message = entry.raised
            raise _REPLAYABLE.get(kind, RuntimeError)(message if kind in _REPLAYABLE else f"{kind}: {message}")
        return _copy(entry.value)


def _snapshot(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, Mapping) and not isinstance(value, Pair):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_snapshot(v) for v in value)
    return value


class Recorder:
    """A callable that calls ``function`` and keeps every call it can key (see ``argument_key``)."""

    def __init__(self, name: str, function: Callable[..., Any], elementwise: bool = False) -> None:
        self.name = name
        self.function = function
        #: Written to the pack with the table (see ``Table.elementwise``).
        self.elementwise = elementwise
        #: False while calls are not worth keeping (``grader.pack.build``: a mutant's training losses).
        self.enabled = True
        self.entries: list[Entry] = []
        self._seen: set[Hashable] = set()

    def __repr__(self) -> str:
        return f"<recorder {self.name}>"

    def __call__(self, *args: Any) -> Any:
        key = calls_key(args) if self.enabled else None
        if key is None or key in self._seen:
            return self.function(*args)
        before = tuple(_snapshot(a) for a in args)
        try:
            value = self.function(*args)
        except Exception as exc:  # what the instructor's code raises is part of its answer, then raised again
            self._keep(key, Entry(before, raised=(type(exc).__name__, str(exc)), after=_changes(before, args)))
            raise
        self._keep(key, Entry(before, _snapshot(value), after=_changes(before, args)))
        return value

    def _keep(self, key: Hashable, entry: Entry) -> None:
        self._seen.add(key)
        self.entries.append(entry)


def _changes(before: tuple[Any, ...], args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The arguments a call changed in place (others None), or None when it changed none."""
    changed: list[np.ndarray | None] = []
    for old, new in zip(before, args, strict=True):
        if isinstance(new, np.ndarray) and isinstance(old, np.ndarray) and not (
                old.shape == new.shape and old.tobytes() == new.tobytes()):
            changed.append(new.copy())
        else:
            changed.append(None)
    return tuple(changed) if any(c is not None for c in changed) else None
