"""``grader calibrate``: does the rubric catch, and name, every bug in the catalog?

Grades the reference and every mutant (each spelling separately) through the
same checks, diagnosis and scoring as a submission. The implementations are
trusted code of the assignment (``reference/<name>/``), so they are served by an in-process
sandbox whose every value still goes through the wire codec, exactly as a
sandbox reply would. The reference must score full marks with no diagnosis;
every mutant must lose points and be named by its own id. Anything else is a
rubric gap (exit 1), so a rubric edit that stops catching a bug fails CI.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader.assignment import Assignment
from grader.checks import CheckRun, run_checks
from grader.diagnose import diagnose
from grader.model import Diagnosis
from grader.rubric import Rubric, load_rubric
from grader.sandbox import protocol
from grader.sandbox.process import CallOutcome, CallRequest
from grader.score import apply_rubric


class TrustedSandbox:
    """Serves call requests from trusted Python functions, round-tripping values through the wire codec."""

    name = "trusted"

    def __init__(self, functions: dict[str, Callable[..., Any]]) -> None:
        self.functions = functions

    @staticmethod
    def _through_wire(value: Any) -> Any:
        blobs: list[bytes] = []
        return protocol.decode_value(protocol.encode_value(value, blobs), blobs)

    def call_many(self, requests: Sequence[CallRequest]) -> list[CallOutcome]:
        outcomes = []
        for request in requests:
            function = self.functions.get(request.function)
            args = [self._through_wire(a) for a in request.args]
            if function is None:
                outcomes.append(CallOutcome("missing"))
                continue
            try:
                with np.errstate(all="ignore"):
                    value = function(*args)
            except Exception as exc:  # noqa: BLE001 - a mutant's raising is its behaviour, reported like a student's
                outcomes.append(CallOutcome("raised", error=f"{type(exc).__name__}: {exc}"))
                continue
            after = tuple(self._through_wire(a) for a in args) if request.args_after else None
            outcomes.append(CallOutcome("ok", value=self._through_wire(value), args_after=after))
        return outcomes

    def output_excerpt(self) -> str:
        return ""

    def close(self) -> None:
        pass


def reference_functions(assignment: Assignment) -> dict[str, Callable[..., Any]]:
    """The reference, as a student's notebook would define it."""
    return assignment.as_student()


def _with_mutant(assignment: Assignment, function: str, variant: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
    functions = reference_functions(assignment)
    helpers = assignment.helpers
    if helpers is not None and function in helpers.dependents:
        default = helpers.default
        functions[function] = lambda *args: variant(*args, default)
    else:
        functions[function] = variant
    return functions


@dataclass
class Row:
    name: str
    expected_id: str | None
    score: float
    max_score: float
    checks: dict[str, float]
    diagnoses: list[str]
    problems: list[str] = field(default_factory=list)


def grade_functions(functions: dict[str, Callable[..., Any]], rubric: Rubric, seed: int,
                    sandbox_type: type[TrustedSandbox] = TrustedSandbox) -> tuple[CheckRun, list[Diagnosis], float, float]:
    assignment = rubric.assignment
    sandbox = sandbox_type(functions)
    found = {name: name in functions for name in assignment.names}
    run = run_checks(sandbox, found, assignment, rubric.accepted_families, seed)
    diagnoses = diagnose(assignment, run, found)
    score, max_score = apply_rubric(run.results, rubric)
    return run, diagnoses, score, max_score


def calibrate(rubric: Rubric, seed: int = 0) -> list[Row]:
    assignment = rubric.assignment
    cases: list[tuple[str, str | None, dict[str, Callable[..., Any]]]] = [
        ("reference", None, reference_functions(assignment))]
    for mutant in assignment.mutants:
        for number, variant in enumerate(mutant.variants, start=1):
            suffix = f" #{number}" if len(mutant.variants) > 1 else ""
            cases.append((f"{mutant.function}:{mutant.id}{suffix}", mutant.id,
                          _with_mutant(assignment, mutant.function, variant)))
    rows = []
    for name, expected_id, functions in cases:
        run, diagnoses, score, max_score = grade_functions(functions, rubric, seed)
        ids = [d.id for d in diagnoses]
        row = Row(name, expected_id, score, max_score, {r.id: r.score for r in run.results}, ids)
        if expected_id is None:
            if score < max_score:
                row.problems.append(f"the reference scores {score:g}/{max_score:g}")
            if ids:
                row.problems.append(f"the reference is diagnosed with {', '.join(ids)}")
        else:
            if score >= max_score:
                row.problems.append("no check catches this bug (full marks)")
            if expected_id not in ids:
                row.problems.append(f"not named (diagnoses: {', '.join(ids) or 'none'})")
        rows.append(row)
    return rows


def render_matrix(rows: list[Row], rubric: Rubric) -> str:
    checks = list(rubric.checks)
    short = [c.split(".")[0][:3] + "." + c.split(".")[1][:4] if "." in c else c[:9] for c in checks]
    width = max(len(r.name) for r in rows) + 2
    lines = [" " * width + " ".join(f"{s:>9}" for s in short) + "      score  verdict"]
    for row in rows:
        cells = " ".join(f"{row.checks.get(c, 0):>9g}" for c in checks)
        verdict = "ok" if not row.problems else "GAP: " + "; ".join(row.problems)
        lines.append(f"{row.name:<{width}}{cells}  {row.score:>6g}/{row.max_score:<4g} {verdict}")
    gaps = sum(bool(r.problems) for r in rows)
    lines.append(f"\n{len(rows)} rows: reference + {len(rows) - 1} mutants; {gaps} gap(s).")
    return "\n".join(lines)


def main(args: Any) -> int:
    rubric = load_rubric(args.rubric, getattr(args, "assignment", None))
    rows = calibrate(rubric, args.seed)
    if args.format == "json":
        payload = [{"name": r.name, "expected_id": r.expected_id, "score": r.score, "max_score": r.max_score,
                    "checks": r.checks, "diagnoses": r.diagnoses, "problems": r.problems} for r in rows]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        sys.stdout.write(render_matrix(rows, rubric) + "\n")
    return 1 if any(r.problems for r in rows) else 0
