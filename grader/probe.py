"""The probe stage: the inputs the student's functions are called with.

The assignment draws its probes from a seeded generator (``Assignment.probes``), so a report can
be reproduced with ``--seed``. This stage draws them once per process for each seed (the
rejection sampling some assignments do costs more than the rest of the probe stage), keeps them
read-only, and hands out fresh writable copies, so nothing one caller does to its probes reaches
the next.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np

from grader.assignment import Assignment, Probe, Probes
from grader.memo import Memo, frozen


def _map_arrays(probes: Probes, convert: Any) -> Probes:
    """Every probe value through ``convert`` (arrays) or deep-copied (anything else mutable)."""
    def one(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return convert(value)
        return value if isinstance(value, (int, float, complex, str, bytes, type(None))) else copy.deepcopy(value)

    sets = {name: tuple(replace(p, values={k: one(v) for k, v in p.values.items()}) for p in probes)
            for name, probes in probes.sets.items()}
    grid = None if probes.grid is None else convert(probes.grid)
    return Probes(sets, grid)


def _draw(assignment: Assignment, seed: int) -> Probes:
    return _map_arrays(assignment.probes(np.random.default_rng(seed)), frozen)


#: Probes by (assignment, seed): a batch grades every notebook with the same ones.
_BY_SEED = Memo(maxsize=16)


class _Same:
    """An assignment as a cache key: equal only to itself, and kept alive while the entry lives (so its id
    is never reused by another object)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def probes_for_seed(assignment: Assignment, seed: int) -> Probes:
    """The probes ``assignment`` draws from ``np.random.default_rng(seed)``, as fresh writable copies."""
    key = ("seed", _Same(assignment), seed) if type(seed) is int else None
    drawn: Probes = _BY_SEED.get(key, lambda: _draw(assignment, seed))
    return _map_arrays(drawn, lambda a: a.copy())


def arguments(probe: Probe, parameters: tuple[str, ...], derived: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """A function's arguments on ``probe``, taken by parameter name (``derived`` values first)."""
    values = {**probe.values, **(derived or {})}
    return tuple(values[name] for name in parameters)
