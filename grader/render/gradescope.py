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

Visibility: each test carries its check's ``visibility`` (the rubric's, in Gradescope's own
words), and Gradescope hides a test from students by itself, so every check is written and the
top-level ``score`` is the full score (Gradescope hides the total while a test is
``after_due_date``/``after_published``). The top-level ``output`` is always shown to students, so
it is written from ``student_view``: the score of the checks shown, and the points graded by the
instructor, never which held-back check failed. An error report is one failed test, ``grading``,
so the page never shows an empty list of tests.
"""
from __future__ import annotations

import json
import math
from typing import Any

from grader.model import SCHEMA, CheckResult, Report, Visibility
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
from grader.render.visibility import student_view, withheld_note, withheld_points
from grader.untrusted_text import safe_report

#: The page as a whole (its top-level ``output``) is always shown; tests carry their check's visibility.
VISIBILITY = "visible"
#: The one test of an error report.
GRADING_TEST = "grading"
#: The score line of a page whose checks are not all shown to students yet.
SCORE_SHOWN = "Score on the checks shown here"
#: File extension of the document; Gradescope reads it from ``results/results.json``.
EXTENSION = ".json"


def _md(text: str) -> str:
    """One line of student-derivable text, safe inside Gradescope's Markdown."""
    return md_text(text)


def _number(value: float) -> float:
    """A finite float: Gradescope rejects ``null`` scores, and NaN is not JSON."""
    return float(value) if math.isfinite(value) else 0.0


def _test(check: CheckResult, number: str, report: Report, visibility: Visibility) -> dict[str, Any]:
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
        "visibility": visibility,
    }


def _tests(report: Report, visibility: dict[int, Visibility]) -> list[dict[str, Any]]:
    """Checks grouped by function in notebook order, numbered ``function.check`` (1.1, 1.2, 2.1);
    ``visibility`` by ``id()`` of each check of ``report``."""
    tests: list[dict[str, Any]] = []
    group = 0
    for section in sections(report):
        if not section.checks:
            continue
        group += 1
        for index, check in enumerate(section.checks, start=1):
            tests.append(_test(check, f"{group}.{index}", report, visibility[id(check)]))
    return tests


def _grading_test(report: Report) -> dict[str, Any]:
    """An error report's one test: failed, worth the rubric's points, saying why (as JUnit and Classroom do)."""
    return {
        "name": GRADING_TEST,
        "number": "1",
        "score": 0.0,
        "max_score": _number(report.max_score),
        "status": "failed",
        "output": f"**Not graded:** {_md(error_sentence(report))}",
        "output_format": "md",
        "tags": [GRADING_TEST],
        "visibility": VISIBILITY,
    }


def _output(view: Report, withheld: float) -> str:
    """The top-of-page text, which every student sees: why it was not graded, or the mark of the checks
    shown plus anything not shown per test. ``view`` is the student's view (``student_view``), and
    ``withheld`` the points it holds back."""
    if view.status == "error":
        lines = [f"**Not graded:** {_md(error_sentence(view))}"]
    else:
        pct = percent(view.score, view.max_score)
        label = SCORE_SHOWN if withheld > 0 else "Score"
        lines = [f"**{label}: {points(view.score)} / {points(view.max_score)}"
                 + (f" ({pct})" if pct else "") + "**"] if view.checks or not withheld else []
        failed_functions = {c.function for c in view.checks if not c.passed}
        for diagnosis in view.diagnoses:
            if diagnosis.function not in failed_functions:
                lines.append(f"- {_md(diagnosis.message)} (known mistake {md_code(diagnosis.id)})")
    note = withheld_note(withheld) if withheld > 0 else None
    if note is not None:  # right under the score line, when there is one
        lines.insert(1 if view.checks else 0, _md(note))
    lines += [f"- Warning: {_md(w)}" for w in view.warnings if w != note]
    return "\n\n".join(lines)


def to_dict(report: Report) -> dict[str, Any]:
    """The ``results.json`` document for one submission."""
    view = safe_report(student_view(report))
    withheld = withheld_points(report)
    original, report = report, safe_report(report)
    # safe_report copies each check; their visibility is the original's, position by position.
    visibility = {id(safe): check.visibility for check, safe in zip(original.checks, report.checks, strict=True)}
    graded = report.status != "error"
    return {
        "score": _number(report.score) if graded else 0.0,
        "execution_time": round(_number(report.duration_s), 3),
        "output": _output(view, withheld),
        "output_format": "md",
        "visibility": VISIBILITY,
        "stdout_visibility": "hidden",
        "tests": _tests(report, visibility) if graded else [_grading_test(report)],
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
