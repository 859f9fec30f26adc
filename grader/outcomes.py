"""How a call's outcome reads in a verdict's message: "gave [[inf, …]]", "raised TypeError: …".

Shared by the checks and the training check, so a value or a failed call is worded one way
everywhere. Every value here came from the sandbox: it is only ever formatted, never trusted.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from grader.compare import as_array
from grader.sandbox.process import CallOutcome

#: How a failed call reads after "forward gave" and the like: "backward raised TypeError: …", never "gave raised".
FAILED_CALL_WORDS = {"raised": "raised {error}", "timeout": "ran past its time limit",
                     "crashed": "crashed the sandbox ({error})", "missing": "is not defined",
                     "protocol": "broke the grader's protocol ({error})"}


def describe(value: Any, limit: int = 160) -> str:
    """A value (or a call's outcome) in at most ``limit`` characters: arrays rounded to 6 decimals."""
    if isinstance(value, tuple):
        return "(" + ", ".join(describe(v, limit // 2) for v in value) + ")"
    if isinstance(value, CallOutcome):
        return describe(value.value) if value.ok else failed_call(value)
    array = as_array(value)
    if array is None:
        text = repr(value)
    else:
        text = np.array2string(rounded(array, 6), separator=", ", threshold=20)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def rounded(array: np.ndarray, decimals: int) -> np.ndarray:
    """``np.round(array, decimals)``, except that a number too large to round is kept as it is: numpy
    rounds by scaling, which overflows past ~1e300, and a student's 1e308 must read as 1e308, not inf."""
    with np.errstate(all="ignore"):
        result = np.round(array, decimals)
        overflowed = np.isinf(result) & np.isfinite(array)
    return np.where(overflowed, array, result) if overflowed.any() else result


def failed_call(outcome: CallOutcome) -> str:
    """"raised TypeError: …", "ran past its time limit", …: what a call that did not return did."""
    text = FAILED_CALL_WORDS.get(outcome.status, outcome.status + " ({error})").format(
        error=outcome.error or "no reason given")
    return text.replace(" (no reason given)", "")


def gave(outcome: Any) -> str:
    """"gave [[inf, …]]" for a value training cannot go on with, "raised TypeError: …" for a failed call."""
    if isinstance(outcome, CallOutcome) and not outcome.ok:
        return failed_call(outcome)
    return f"gave {describe(outcome)}"
