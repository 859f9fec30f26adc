"""How the trusted side decides whether two outcomes are "the same".

Shared by the checks (student vs reference) and diagnosis (student vs mutant),
so a submission is judged by one rule everywhere. Returns of lists, float32,
bools, 0-d arrays and size-1 arrays are accepted when the values are right;
shapes must otherwise agree exactly, which is what exposes transposes.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from grader.sandbox.process import CallOutcome
from grader.sandbox.protocol import float_array

#: Values are compared with a relative tolerance of 1e-5 and an absolute one of
#: 1e-6 times the expected magnitude: loose enough for a float32 computation
#: (about 7 significant digits), while every catalogued bug changes some value
#: by far more than 1e-3 on the probes.
RTOL = 1e-5
ATOL_SCALE = 1e-6


#: The numeric reading of a returned value (shared with the sandbox's training chain).
as_array = float_array


def arrays_close(got: Any, expected: Any, dont_care: np.ndarray | None = None) -> bool:
    if dont_care is None and _same_bits(got, expected):
        return True
    got_arr, exp_arr = as_array(got), np.asarray(expected, dtype=float)
    if got_arr is None:
        return False
    if got_arr.size == 1 and exp_arr.size == 1:
        got_arr, exp_arr = got_arr.reshape(()), exp_arr.reshape(())
    if got_arr.shape != exp_arr.shape:
        return False
    if not np.isfinite(got_arr).all():
        return bool(np.array_equal(got_arr, exp_arr, equal_nan=True))
    exp_abs = np.abs(exp_arr)
    largest = float(exp_abs.max(initial=0.0))  # NaN or inf when some expected value is not finite
    atol = ATOL_SCALE * max(1.0, largest)
    close = _isclose(got_arr, exp_arr, exp_abs, atol, math.isfinite(largest))
    if dont_care is not None:
        # ReLU's slope at exactly 0 is a convention: accept any value in [0, 1].
        mask = np.broadcast_to(np.asarray(dont_care, dtype=bool), close.shape)
        close = np.where(mask, (got_arr >= -atol) & (got_arr <= 1 + atol), close)
    return bool(close.all())


def _same_bits(got: Any, expected: Any) -> bool:
    """True when ``got`` is exactly ``expected`` (float64 arrays of one shape with the same bytes, or equal floats).

    A right answer usually is, and ``arrays_close`` would then say True in every
    case (NaN and inf included, which it compares with equal_nan); this answers
    the common case in ~1 µs. Anything else, or False, goes the whole way.
    """
    if type(got) is np.ndarray and type(expected) is np.ndarray:
        return (got.dtype == expected.dtype == np.float64 and got.shape == expected.shape
                and got.tobytes() == expected.tobytes())
    return type(got) in _FLOATS and type(expected) in _FLOATS and got == expected


_FLOATS = (float, np.float64)


def _isclose(got: np.ndarray, expected: np.ndarray, expected_abs: np.ndarray, atol: float,
             expected_finite: bool) -> np.ndarray:
    """``np.isclose(got, expected, rtol=RTOL, atol=atol)`` for a finite ``got``, element for element.

    ``np.isclose`` costs ~20 µs a call in argument handling, and the checks and
    diagnosis compare thousands of small arrays. For finite values it reduces to
    ``|got - expected| <= atol + RTOL * |expected|`` (its ``got == expected`` term
    is implied, as atol > 0), which is what is computed here; an expected value
    that is not finite (never equal to a finite one) takes numpy's own path.
    """
    close: np.ndarray
    if not expected_finite:
        close = np.isclose(got, expected, rtol=RTOL, atol=atol)
    else:
        close = np.abs(got - expected) <= atol + RTOL * expected_abs
    return close


def values_close(got: Any, expected: Any, dont_care: np.ndarray | None = None) -> bool:
    """Structure-aware comparison: a tuple expected means a tuple or list of the same length."""
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return False
        return all(values_close(g, e) for g, e in zip(got, expected, strict=True))
    if expected is None:
        return got is None
    return arrays_close(got, expected, dont_care)


def trusted_call(function: Callable[..., Any], args: tuple[Any, ...]) -> CallOutcome:
    """Run reference or mutant code on copies of ``args``, recording the outcome like the sandbox does."""
    copies = tuple(np.array(a, dtype=float) if isinstance(a, np.ndarray) else a for a in args)
    try:
        with np.errstate(all="ignore"):
            value = function(*copies)
    except LookupError:
        # A tabulated activation asked for a point the sandbox never evaluated:
        # this model is undefined here, which must never count as agreement.
        return CallOutcome("protocol", error="undefined for this context")
    except Exception as exc:  # noqa: BLE001 - whatever the function raises is its outcome, recorded
        return CallOutcome("raised", error=f"{type(exc).__name__}: {exc}")
    if isinstance(value, list):
        value = tuple(value)
    return CallOutcome("ok", value=value, args_after=copies)


def outcomes_agree(student: CallOutcome, model: CallOutcome, dont_care: np.ndarray | None = None) -> bool:
    """Did the student's call behave like the model's (raise alike, or return the same values)?"""
    if model.status == "raised":
        # Any exception agrees (shape errors differ in wording), except that an
        # explicit NotImplementedError is only matched by the same.
        if (model.error or "").startswith("NotImplementedError"):
            return student.status == "raised" and (student.error or "").startswith("NotImplementedError")
        return student.status == "raised"
    if model.status != "ok" or student.status != "ok":
        return False
    if model.value is None:
        # A function that updates in place and returns nothing is told apart by what it did to its arguments.
        if student.value is not None or student.args_after is None or model.args_after is None:
            return False
        return len(student.args_after) == len(model.args_after) and all(
            values_close(s, m) for s, m in zip(student.args_after, model.args_after, strict=True)
        )
    return values_close(student.value, model.value, _kinks(dont_care, model.value))


def _kinks(dont_care: np.ndarray | None, value: Any) -> np.ndarray | None:
    """The don't-care mask (of the input's shape) as ``arrays_close`` applies it to ``value``: as it is for a
    value of the input's shape, as one element for a single number (compared as a scalar), and none for a
    value of another shape, such as one number for an array input (``return 1.0``), which has no element at
    the kink (the mask cannot be broadcast onto it: ValueError, out of grading)."""
    if dont_care is None or isinstance(value, tuple):
        return dont_care
    mask = np.asarray(dont_care, dtype=bool)
    if np.size(value) == 1:
        return mask.reshape(()) if mask.size == 1 else None
    return mask if mask.shape == np.shape(value) else None
