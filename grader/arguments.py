"""Argument types the commands share (``grader.cli`` and ``grader gradescope``'s parser)."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)


def bounded(convert: Callable[[str], N], low: float, high: float, expected: str) -> Callable[[str], N]:
    """An argparse type: ``convert(text)`` within [low, high], else an error naming the value and what was expected."""
    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse
