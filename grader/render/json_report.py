"""The machine-readable report: the ``grader.report/1`` contract (see DESIGN.md).

This is the format other tools (gradebooks, LMS uploads, re-rendering of stored
results) build on, so it follows the contract to the letter: the required keys
are always there with their types, ``error`` appears only for error reports,
every function of the report is listed in the assignment's order, and the output is strict JSON
(NaN and infinities become ``null``, which Python's ``json`` would otherwise
write as the invalid tokens ``NaN``/``Infinity``). ``from_dict`` reads it back
so that stored reports can be re-rendered in any other format later. Its
strings are ``safe_report``-ed like every other format's: the document is
data, but its readers print it (``jq -r``, a dashboard), and a lone surrogate
would make ``ensure_ascii=False`` output unencodable.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from grader.model import (
    DEFAULT_VISIBILITY,
    SCHEMA,
    VISIBILITIES,
    CellRun,
    CheckResult,
    Diagnosis,
    FunctionInfo,
    GradedWith,
    Report,
    Training,
    Visibility,
)
from grader.render._common import FALLBACK_ERROR, graded_with_dict, graded_with_keys
from grader.untrusted_text import safe_report

#: File extension of a saved report.
EXTENSION = ".json"

#: Keys every ``grader.report/1`` document has, whatever its status.
REQUIRED_KEYS: frozenset[str] = frozenset(
    {"schema", "submission", "rubric", "status", "score", "max_score",
     "functions", "checks", "diagnoses", "warnings"}
)

#: The key a document written before ``graded_with`` existed used for the pair: ``graded_with_<helper>``.
LEGACY_GRADED_WITH_PREFIX = "graded_with_"


def json_safe(value: Any) -> Any:
    """Turn ``value`` into something ``json.dumps(allow_nan=False)`` accepts.

    Non-finite floats become None; tuples become lists; numpy scalars and
    arrays (which may reach ``details`` despite the model asking for JSON-safe
    data) are converted through ``tolist``; mapping keys become strings.
    Anything else unknown is rendered with ``repr`` rather than crashing the
    report of an otherwise graded submission.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy
        return json_safe(value.tolist())
    return repr(value)


def _function_dict(info: FunctionInfo) -> dict[str, Any]:
    """One ``functions`` entry: ``found`` plus every other known field that is not None (``variadic``
    only when true)."""
    entry: dict[str, Any] = {"found": bool(info.found)}
    for key in ("kind", "recognised_as"):
        value = getattr(info, key)
        if value is not None:
            entry[key] = value
    if info.parameters is not None:
        entry["parameters"] = list(info.parameters)
    if info.variadic:
        entry["variadic"] = True
    return entry


def _functions(report: Report) -> dict[str, dict[str, Any]]:
    """The report's functions, in its order (the assignment's)."""
    return {name: _function_dict(info) for name, info in report.functions.items()}


def _check_dict(check: CheckResult) -> dict[str, Any]:
    """A check with the contract's keys; ``details`` only when there is evidence to show."""
    entry: dict[str, Any] = {
        "id": check.id,
        "function": check.function,
        "passed": bool(check.passed),
        "score": float(check.score),
        "max_score": float(check.max_score),
        "message": check.message,
        "fraction": float(check.fraction),
        "visibility": check.visibility,
    }
    if check.details:
        entry["details"] = check.details
    return entry


def _cell_dict(cell: CellRun) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": cell.index, "status": cell.status}
    if cell.error is not None:
        entry["error"] = cell.error
    return entry


def _training_dict(training: Training | None) -> dict[str, Any] | None:
    if training is None:
        return None
    return {
        "iterations": training.iterations,
        "iterations_run": training.ran,
        "final_prediction": training.final_prediction,
        "target": training.target,
        "loss": list(training.loss),
        "reference_loss": list(training.reference_loss),
    }


def to_dict(report: Report) -> dict[str, Any]:
    """The report as a ``grader.report/1`` document, already JSON-safe (and its text safe to print)."""
    report = safe_report(report)
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "submission": report.submission,
        "rubric": report.rubric,
        "status": report.status,
    }
    if report.status == "error":
        document["error"] = report.error or FALLBACK_ERROR
    document.update({
        "score": float(report.score),
        "max_score": float(report.max_score),
        "functions": _functions(report),
        "checks": [_check_dict(check) for check in report.checks],
        "diagnoses": [{"id": d.id, "function": d.function, "message": d.message,
                       **({"parameters": list(d.parameters)} if d.parameters else {})}
                      for d in report.diagnoses],
        "warnings": [str(warning) for warning in report.warnings],
        # Additions allowed by the contract: provenance and evidence.
        "seed": report.seed,
        "backend": report.backend,
        "duration_s": float(report.duration_s),
        **graded_with_keys(report.graded_with),
        "cells": [_cell_dict(cell) for cell in report.cells],
        "training": _training_dict(report.training),
        "output_excerpt": report.output_excerpt,
        "graded_with": graded_with_dict(report.graded_with),
        "assignment": report.assignment,
    })
    safe: dict[str, Any] = json_safe(document)
    return safe


def render(report: Report) -> str:
    """The report as strict JSON text (UTF-8 friendly, indented for humans diffing it)."""
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# ----------------------------------------------------------------------------- reading back

def _float(value: Any) -> float:
    """A required number; ``null`` (a non-finite value on the way out) reads back as NaN."""
    return math.nan if value is None else float(value)


def _numbers(value: Any) -> Any:
    """A prediction or target as stored: a number, or a list of numbers (one per output), ``null``
    entries read back as NaN; None stays None."""
    if isinstance(value, list):
        return [_float(item) for item in value]
    return None if value is None else float(value)


def _training(data: Mapping[str, Any] | None) -> Training | None:
    if data is None:
        return None
    target = data.get("target")
    return Training(
        iterations=int(data["iterations"]),
        final_prediction=_numbers(data.get("final_prediction")),
        target=math.nan if target is None else _numbers(target),
        loss=[_float(x) for x in data.get("loss", [])],
        reference_loss=[_float(x) for x in data.get("reference_loss", [])],
    )


def _check(data: Mapping[str, Any]) -> CheckResult:
    return CheckResult(
        id=data["id"],
        function=data["function"],
        passed=bool(data["passed"]),
        message=data.get("message", ""),
        fraction=_float(data.get("fraction", 1.0 if data["passed"] else 0.0)),
        score=_float(data["score"]),
        max_score=_float(data["max_score"]),
        details=dict(data.get("details", {})),
        visibility=_visibility(data.get("visibility", DEFAULT_VISIBILITY)),
    )


def _visibility(value: Any) -> Visibility:
    """A check's visibility as stored: absent (a document written before it existed) is visible; a word that
    is not one of Gradescope's four is hidden, so a damaged file never shows a student what was held back."""
    return next((known for known in VISIBILITIES if known == value), "hidden")


def _graded_with(document: Mapping[str, Any]) -> GradedWith | None:
    """The helper pair from ``graded_with``, or from a legacy ``graded_with_activation`` (simple_nn's)."""
    data = document.get("graded_with")
    if isinstance(data, Mapping):
        return GradedWith(family=str(data["family"]), helper=str(data["helper"]),
                          dependents=tuple(str(name) for name in data.get("dependents", ())))
    for key, family in document.items():  # a legacy document: the helper's name is in the key, its users unknown
        if key.startswith(LEGACY_GRADED_WITH_PREFIX) and isinstance(family, str):
            return GradedWith(family=family, helper=key[len(LEGACY_GRADED_WITH_PREFIX):], dependents=())
    return None


def _function(name: str, info: Mapping[str, Any]) -> FunctionInfo:
    parameters = info.get("parameters")
    return FunctionInfo(name=name, found=bool(info.get("found", False)), kind=info.get("kind"),
                        recognised_as=info.get("recognised_as"),
                        parameters=tuple(str(p) for p in parameters) if isinstance(parameters, list) else None,
                        variadic=bool(info.get("variadic", False)))


def from_dict(document: Mapping[str, Any]) -> Report:
    """Rebuild a Report from a ``grader.report/1`` document (e.g. a stored ``report.json``).

    ``from_dict(to_dict(r)) == r`` for every report whose floats are finite and
    whose strings are safe (``safe_report``), as every graded report's are. A
    document written before ``graded_with`` existed still reads: its
    ``graded_with_<helper>`` still gives the pair (whose users it did not record).
    Raises ValueError for another schema or a document missing required keys,
    instead of half-reading it.
    """
    if document.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} document (schema is {document.get('schema')!r})")
    missing = sorted(REQUIRED_KEYS - document.keys())
    if missing:
        raise ValueError(f"{SCHEMA} document lacks required keys: {', '.join(missing)}")
    status = document["status"]
    if status not in ("graded", "error"):
        raise ValueError(f"{SCHEMA} status must be 'graded' or 'error', not {status!r}")
    return Report(
        submission=document["submission"],
        rubric=document["rubric"],
        status=status,
        score=_float(document["score"]),
        max_score=_float(document["max_score"]),
        error=document.get("error") if status == "error" else None,
        functions={name: _function(name, info) for name, info in document["functions"].items()},
        checks=[_check(check) for check in document["checks"]],
        diagnoses=[Diagnosis(id=d["id"], function=d["function"], message=d.get("message", ""),
                             parameters=tuple(str(p) for p in d.get("parameters", ())))
                   for d in document["diagnoses"]],
        warnings=[str(w) for w in document["warnings"]],
        cells=[CellRun(index=int(c["index"]), status=c["status"], error=c.get("error"))
               for c in document.get("cells", [])],
        training=_training(document.get("training")),
        graded_with=_graded_with(document),
        seed=int(document.get("seed", 0)),
        backend=document.get("backend", "subprocess"),
        duration_s=_float(document.get("duration_s", 0.0)),
        output_excerpt=document.get("output_excerpt", ""),
        assignment=str(document.get("assignment", "")),
    )
