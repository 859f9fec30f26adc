"""Per-process caches of values the trusted side computes again and again, by value.

In a batch every notebook is graded with the same seed, so the same probes,
the same reference training curve and the same mutant outputs were being
recomputed for each of them (about half of the trusted side's own CPU). These
values depend only on trusted inputs, so they are computed once per process.

Rules that keep a cache from changing any result:

* a key is built from *values* only: arrays by dtype, shape, layout and bytes,
  numbers by type and exact bits (``value_key``); anything else (a list, an
  object, a student's tabulated activation) has no key and is never cached;
* activation pairs enter a key by identity, and only pure ones (the reference's
  own, ``ActivationPair.pure``): the key then holds the pair alive, so its
  identity cannot be reused;
* a cached value is immutable (tuples, floats, read-only arrays), or is copied
  before it is handed out, so a caller cannot change what the next one gets;
* every cache is bounded (least recently used entries go first).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import numpy as np

T = TypeVar("T")

#: Every cache made by ``Memo``, for ``clear_all`` and ``disabled``.
_ALL: list[Memo] = []
_enabled = True


def value_key(value: Any) -> Hashable | None:
    """An exact, hashable stand-in for a number or array, or None when ``value`` is neither.

    Two values get the same key only when any computation gives the same
    result on both: same type, same bits (``-0.0`` and ``0.0`` differ, NaNs
    with the same payload agree), same dtype, shape and memory order.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return None
        return ("array", value.dtype.str, value.shape, value.flags.c_contiguous, value.tobytes())
    if isinstance(value, (bool, int, np.bool_, np.integer)):
        return ("scalar", type(value), int(value))
    if isinstance(value, float):  # np.float64 too; its type keeps it apart from a float
        return ("scalar", type(value), value.hex())
    if isinstance(value, np.floating):
        return ("scalar", type(value), value.tobytes())
    return None


def values_key(values: Iterable[Any]) -> tuple[Hashable, ...] | None:
    """``value_key`` of each item, or None if any item has no key."""
    keys = []
    for value in values:
        key = value_key(value)
        if key is None:
            return None
        keys.append(key)
    return tuple(keys)


def joint_key(*parts: Hashable | None) -> tuple[Hashable | None, ...] | None:
    """``parts`` as one key, or None (do not cache) when any part has no key."""
    return None if any(part is None for part in parts) else parts


def frozen(array: np.ndarray) -> np.ndarray:
    """A read-only copy of ``array``, safe to keep in a cache."""
    copy = np.array(array)
    copy.flags.writeable = False
    return copy


def freeze_value(value: Any) -> Any:
    """``value`` with every array inside it (also inside tuples) made read-only, in place."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, tuple):
        for item in value:
            freeze_value(item)
    return value


class Memo:
    """A bounded least-recently-used map from keys to computed values, safe across threads."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        _ALL.append(self)

    def get(self, key: Hashable | None, compute: Callable[[], T]) -> T:
        """The value cached under ``key``, computing and storing it on a miss; a None key is never cached."""
        found, value = self.lookup(key)
        if not found:
            value = compute()
            self.store(key, value)
        return cast(T, value)

    def lookup(self, key: Hashable | None) -> tuple[bool, Any]:
        """(True, value) when ``key`` is cached, else (False, None)."""
        if key is None or not _enabled:
            return False, None
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return True, self._data[key]
            self.misses += 1
        return False, None

    def store(self, key: Hashable | None, value: Any) -> None:
        """Keep ``value`` under ``key`` (nothing for a None key), dropping the least recently used beyond the bound."""
        if key is None or not _enabled:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0


def clear_all() -> None:
    """Empty every cache (tests, or to measure a cold start)."""
    for memo in _ALL:
        memo.clear()


@contextmanager
def disabled() -> Iterator[None]:
    """Compute everything afresh inside the block, neither reading nor filling any cache (tests compare the two)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous
