"""Gradescope autograder ``results.json`` (spec: gradescope/autograder_samples, docs/specs.md).

The top-level ``score`` is set explicitly: it is the rubric's total (capped and
rounded by scoring), which Gradescope then uses instead of summing the tests,
so the mark on Gradescope is the mark in every other format. Each check is a
test tagged with its function, so the Gradescope page groups like ours, and a
failed test carries the hint of any recognised bug in that function, which is
where a student looks. Output is Markdown; the report is ``safe_report``-ed
first, and text that may quote student output is escaped as the Markdown
report escapes it (``md_text``), so it cannot smuggle HTML, a link or an image
into the page.
"""
from __future__ import annotations

import json
import math
from typing import Any

from grader.model import SCHEMA, CheckResult, Report
from grader.render._common import (
    error_sentence,
    graded_with_dict,
    graded_with_keys,
    md_code,
    md_text,
    percent,
    points,
    sections,
)
from grader.render.json_report import json_safe
from grader.untrusted_text import safe_report

VISIBILITY = "visible"
#: File extension of the document; Gradescope reads it from ``results/results.json``.
EXTENSION = ".json"


def _md(text: str) -> str:
    """One line of student-derivable text, safe inside Gradescope's Markdown."""
    return md_text(text)


def _number(value: float) -> float:
    """A finite float: Gradescope rejects ``null`` scores, and NaN is not JSON."""
    return float(value) if math.isfinite(value) else 0.0


def _test(check: CheckResult, number: str, report: Report) -> dict[str, Any]:
    lines = [_md(check.message) or ("Passed." if check.passed else "This check did not pass.")]
    if not check.passed:
        for diagnosis in report.diagnoses:
            if diagnosis.function == check.function:
                lines.append(f"**Hint:** {_md(diagnosis.message)} (known mistake {md_code(diagnosis.id)})")
    return {
        "name": check.id,
        "number": number,
        "score": _number(check.score),
        "max_score": _number(check.max_score),
        "status": "passed" if check.passed else "failed",
        "output": "\n\n".join(lines),
        "output_format": "md",
        "tags": [check.function],
        "visibility": VISIBILITY,
    }


def _tests(report: Report) -> list[dict[str, Any]]:
    """Checks grouped by function in notebook order, numbered ``function.check`` (1.1, 1.2, 2.1)."""
    tests: list[dict[str, Any]] = []
    group = 0
    for section in sections(report):
        if not section.checks:
            continue
        group += 1
        for index, check in enumerate(section.checks, start=1):
            tests.append(_test(check, f"{group}.{index}", report))
    return tests


def _output(report: Report) -> str:
    """The top-of-page text: why it was not graded, or the mark plus anything not shown per test."""
    if report.status == "error":
        lines = [f"**Not graded:** {_md(error_sentence(report))}"]
    else:
        pct = percent(report.score, report.max_score)
        lines = [f"**Score: {points(report.score)} / {points(report.max_score)}"
                 + (f" ({pct})" if pct else "") + "**"]
        failed_functions = {c.function for c in report.checks if not c.passed}
        for diagnosis in report.diagnoses:
            if diagnosis.function not in failed_functions:
                lines.append(f"- {_md(diagnosis.message)} (known mistake {md_code(diagnosis.id)})")
    lines += [f"- Warning: {_md(w)}" for w in report.warnings]
    return "\n\n".join(lines)


def to_dict(report: Report) -> dict[str, Any]:
    """The ``results.json`` document for one submission."""
    report = safe_report(report)
    graded = report.status != "error"
    return {
        "score": _number(report.score) if graded else 0.0,
        "execution_time": round(_number(report.duration_s), 3),
        "output": _output(report),
        "output_format": "md",
        "visibility": VISIBILITY,
        "stdout_visibility": "hidden",
        "tests": _tests(report) if graded else [],
        "extra_data": json_safe({
            "schema": SCHEMA,
            "submission": report.submission,
            "rubric": report.rubric,
            "status": report.status,
            "max_score": report.max_score,
            "diagnoses": [d.id for d in report.diagnoses],
            **graded_with_keys(report.graded_with),
            "seed": report.seed,
            "graded_with": graded_with_dict(report.graded_with),
            "assignment": report.assignment,
        }),
    }


def render(report: Report) -> str:
    """The ``results.json`` text."""
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
