"""Operator notices: what this machine could not enforce, told to the operator and never to a student.

A process-wide, ordered, de-duplicated list (:func:`note`, :func:`notices`), filled where a fact
is learned (the sandbox's confinement, the cache) and read by whoever speaks to the operator
(``grader check`` on stderr, ``grader grade`` in its summary). See ``grader.sandbox.environment``
for the whole story and ``grader doctor``. Standard library only, and imports nothing of the
grader, so any module may note a fact without an import cycle.
"""
from __future__ import annotations

_noted: dict[str, None] = {}


def note(*messages: str) -> None:
    """Record what the operator must be told about this machine; each text is kept once, in order."""
    for message in messages:
        if message:
            _noted.setdefault(str(message), None)


def notices() -> tuple[str, ...]:
    """Every notice recorded in this process so far."""
    return tuple(_noted)


def forget() -> None:
    """Drop the recorded notices (tests; a long-lived process that reports per run)."""
    _noted.clear()


def stderr_line(notice: str) -> str:
    """How a notice is printed for the operator on stderr (one line, marked as the operator's)."""
    return "grader: note for the operator: " + " ".join(notice.split())


