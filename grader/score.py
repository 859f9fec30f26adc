"""The ``score`` stage: turn check verdicts into points with a rubric.

Scoring fails closed, the lesson of incumbents that scored a dead kernel as a
pass: the maximum is always the rubric's ``max_score`` (a check that could not
run costs its points instead of vanishing from the denominator), a suspicious
``fraction`` (NaN, outside [0, 1], not a number) earns nothing, and a check id
reported twice can never earn its points twice. A check that requires others (training
earns points only by gradient steps) earns nothing until they pass.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from grader.model import DEFAULT_VISIBILITY, CheckResult
from grader.rubric import CheckWeight, Rubric

_DECIMALS = 2
#: Appended to a check's message when checks it requires did not pass.
REQUIRES_UNMET = "; it earns no points until {ids} {verb}"


def apply_rubric(checks: list[CheckResult], rubric: Rubric) -> tuple[float, float]:
    """Fill in each result's ``score``/``max_score`` and return ``(total score, rubric max_score)``.

    A check the rubric does not mention gets ``max_score`` 0 (shown, not scored).
    If one id appears more than once, its first result carries the points with
    the lowest score among the duplicates, and the others get 0 of 0, so the
    rows of a report always add up to the total. Each result also gets the
    rubric's ``visibility`` of its check; a hidden check scores all the same
    (who may see it is decided when a report is shown, not here).
    """
    _hold_back(checks, rubric)
    first: dict[str, CheckResult] = {}
    for result in checks:
        weight = rubric.checks.get(result.id)
        result.visibility = weight.visibility if weight is not None else DEFAULT_VISIBILITY
        earned = _earned(result, weight) if weight is not None else 0.0
        if weight is None or result.id in first:
            holder = first.get(result.id)
            if holder is not None:
                holder.score = min(holder.score, earned)
            result.score, result.max_score = 0.0, 0.0
            continue
        first[result.id] = result
        result.score, result.max_score = earned, weight.points
    total = sum(result.score for result in first.values())
    return min(_round(total), rubric.max_score), rubric.max_score


def _hold_back(checks: list[CheckResult], rubric: Rubric) -> None:
    """Fail the checks whose required checks did not pass, saying which (decided on the verdicts as the
    checks gave them, so a requirement never depends on another requirement)."""
    passed = {r.id for r in checks if _is_true(r.passed)}
    for result in checks:
        weight = rubric.checks.get(result.id)
        required = (weight.requires if weight is not None and weight.requires is not None
                    else rubric.assignment.requires(result.id))
        unmet = [r for r in required if r not in passed]
        if unmet and _is_true(result.passed):
            result.passed, result.fraction = False, 0.0
            verb = "passes" if len(unmet) == 1 else "pass"
            result.message += REQUIRES_UNMET.format(ids=" and ".join(unmet), verb=verb)


def _earned(result: CheckResult, weight: CheckWeight) -> float:
    """Points one result earns, rounded and never above the check's points."""
    if _is_true(result.passed):
        earned = weight.points
    elif weight.partial_credit:
        earned = weight.points * _safe_fraction(result.fraction)
    else:
        earned = 0.0
    return min(_round(earned), weight.points)


def _is_true(passed: object) -> bool:
    """Only a real boolean True passes: a truthy string or list from a broken check does not."""
    return isinstance(passed, (bool, np.bool_)) and bool(passed)


def _safe_fraction(fraction: object) -> float:
    """The fraction when it is a real number in [0, 1]; otherwise 0 (fail closed)."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        return 0.0
    value = float(fraction)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        return 0.0
    return value


def _round(value: float) -> float:
    return round(value, _DECIMALS)
