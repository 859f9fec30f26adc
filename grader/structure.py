"""Diagnosis by structure: what is wrong with a gradient, parameter by parameter.

Exact-mutant matching names the bugs the catalogue spells out. A variant it does not spell out (the
learning rate left out of one update only, the sign flipped on one weight only, the template's bug
partly fixed so that it shows for one sign of the error) still has a *shape*: compared with the true
gradient (central differences), the gradient a function gave is its negative, a constant multiple,
the transpose, zero, or off by a factor the assignment can name. This module finds that shape for
each parameter, names the catalogue id the assignment maps it to with the parameter it affects
("missing_learning_rate on w1"), and otherwise says the shape in one sentence.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from grader.assignment import Assignment, Gradient
from grader.checks import CheckRun, GradientEvidence
from grader.model import Diagnosis

#: How close two gradients must be to count as the same (the gradient check's tolerances).
RTOL, ATOL = 1e-3, 1e-5

DESCRIPTIONS = {
    "sign": "the {p} {step} {goes} the wrong way: the gradient's sign is flipped",
    "rate": "the {p} {update} {is} not scaled by the learning rate {rate}",
    "zero": "the update never changes {p}",
    "transposed": "the {p} {gradient} {is} transposed",
    "scale": "the {p} {step} {is} {scale}\u00d7 what {it} should be",
    "missing": "the {p} {gradient} {leaves} out the factor {factor}",
    "extra": "the {p} {gradient} {has} an extra factor {factor}",
    "sign_of": "the {p} {gradient} {is} right only when {factor} is {sign}",
}
#: One sentence for what no catalogue id names.
STRUCTURE_ID = "gradient_structure"


def _close(a: Any, b: Any) -> bool:
    with np.errstate(all="ignore"):
        return bool(np.allclose(a, b, rtol=RTOL, atol=ATOL))


def _ratio(claimed: np.ndarray, true: np.ndarray) -> float | None:
    """The constant c with claimed = c * true on this probe, if there is one."""
    mask = np.abs(true) > 1e-6 * max(1e-12, float(np.max(np.abs(true))))
    if not mask.any():
        return None
    with np.errstate(all="ignore"):
        ratios = claimed[mask] / true[mask]
    if not np.all(np.isfinite(ratios)):
        return None
    value = float(np.median(ratios))
    return value if _close(claimed, value * true) else None


def _factor(arguments: Any, compute: Any) -> float | None:
    try:
        with np.errstate(all="ignore"):
            value = float(np.asarray(compute(arguments), dtype=float).reshape(()))
    except (ValueError, TypeError, LookupError, ArithmeticError):  # LookupError: not in a student pack's tables
        return None
    return value if np.isfinite(value) and value != 0 else None


def shape_of(assignment: Assignment, evidence: Sequence[GradientEvidence], index: int,
             rate: str | None) -> tuple[str, dict[str, str]] | None:
    """The kind of difference on parameter ``index`` over every probe (and the words for its message), or
    None when the gradient is right there."""
    pairs = [(e.claimed[index], e.true[index], e.arguments) for e in evidence]
    if not pairs or all(_close(c, g) for c, g, _ in pairs):
        return None
    if all(_close(c, -g) for c, g, _ in pairs):
        return "sign", {}
    if all(_close(c, 0.0) for c, _, _ in pairs):
        return "zero", {}
    if all(c.ndim == 2 and c.shape == g.T.shape and _close(c, g.T) for c, g, _ in pairs):
        return "transposed", {}
    factors = assignment.structure.factors
    for name, compute in factors.items():  # right for one sign of a factor only (a bug partly fixed)
        signs = [(_factor(args, compute), _close(c, g)) for c, g, args in pairs]
        known = [(f, ok) for f, ok in signs if f is not None]
        if len(known) == len(signs):
            right = {f > 0 for f, ok in known if ok}
            wrong = {f > 0 for f, ok in known if not ok}
            if right and wrong and not right & wrong:
                return "sign_of", {"factor": name, "sign": "positive" if right == {True} else "negative"}
    ratios = [_ratio(c, g) for c, g, _ in pairs]
    if all(r is not None for r in ratios):
        if rate is not None:
            rates = [_factor(args, lambda a: a[rate]) for _, _, args in pairs]
            if all(r is not None and q is not None and _close(r, 1.0 / q) for r, q in zip(ratios, rates, strict=True)):
                return "rate", {"rate": rate}
        for name, compute in factors.items():
            values = [_factor(args, compute) for _, _, args in pairs]
            if all(v is not None for v in values):
                if all(_close(r, 1.0 / v) for r, v in zip(ratios, values, strict=True)):  # type: ignore[operator]
                    return "missing", {"factor": name}
                if all(_close(r, v) for r, v in zip(ratios, values, strict=True)):
                    return "extra", {"factor": name}
        first = ratios[0]
        if all(_close(r, first) for r in ratios):
            return "scale", {"scale": f"{first:.3g}"}
    return None


def structural(assignment: Assignment, run: CheckRun, function: str) -> list[Diagnosis]:
    """Diagnoses for ``function``'s wrong gradients, by parameter: a catalogue id where the assignment maps
    the shape to one, else one sentence; nothing when no shape is found."""
    check = next((c for c in assignment.checks if isinstance(c, Gradient) and c.function == function), None)
    evidence = run.gradients.get(function)
    if check is None or not evidence:
        return []
    if any(r.id == check.id and r.passed for r in run.results):
        return []
    found: dict[tuple[str, tuple[tuple[str, str], ...]], list[str]] = {}
    for index, parameter in enumerate(check.parameters):
        shape = shape_of(assignment, evidence, index, check.rate)
        if shape is not None:
            kind, words = shape
            found.setdefault((kind, tuple(sorted(words.items()))), []).append(parameter)
    hints = {m.id: m.hint for m in assignment.mutants if m.function == function}
    diagnoses = []
    for (kind, pairs), parameters in found.items():
        words = dict(pairs)
        key = kind if kind in ("sign", "rate", "zero", "transposed", "scale") else f"{kind}:{words['factor']}"
        plural = len(parameters) > 1
        grammar = {"step": "steps" if plural else "step", "update": "updates" if plural else "update",
                   "gradient": "gradients" if plural else "gradient", "goes": "go" if plural else "goes",
                   "is": "are" if plural else "is", "leaves": "leave" if plural else "leaves",
                   "has": "have" if plural else "has", "it": "they" if plural else "it"}
        described = DESCRIPTIONS[kind].format(p=" and ".join(parameters), **grammar, **words)
        catalogue = assignment.structure.ids.get(key)
        if catalogue is not None and catalogue in hints:
            message = f"{hints[catalogue]} Here: {described}."
            diagnoses.append(Diagnosis(catalogue, function, message, tuple(parameters)))
        else:
            diagnoses.append(Diagnosis(STRUCTURE_ID, function, described[0].upper() + described[1:] + ".",
                                       tuple(parameters)))
    return diagnoses
