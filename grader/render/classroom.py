"""GitHub Classroom autograding runner result.

A runner step emits, as its output ``result``, the base64 of this JSON; the
``autograding-grading-reporter`` action decodes it and sums the tests'
``score`` against ``max_score``. So the test scores here are the checks'
points (they add up to the report's score), and an ungraded submission is
status ``error`` with one ``grading`` test carrying the reason at 0 points:
never an empty, vacuously passing list.
"""
from __future__ import annotations

import base64
import json
import math
from typing import Any

from grader.model import Report
from grader.render._common import error_sentence, one_line

# Control characters and escapes shown as text, which the Actions log would otherwise obey.
from grader.render.junit import xml_text as _printable
from grader.untrusted_text import safe_report

#: File extension of the result document (the JSON ``render`` gives; the runner emits ``encoded``).
EXTENSION = ".json"


def _number(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


def _test(name: str, status: str, score: float, message: str) -> dict[str, Any]:
    return {"name": name, "status": status, "score": _number(score), "message": message,
            "test_code": "", "filename": "", "line_no": 0, "duration": 0}


def to_dict(report: Report) -> dict[str, Any]:
    """The result document; the report is ``safe_report``-ed first, as for every format."""
    report = safe_report(report)
    if report.status == "error":
        status = "error"
        tests = [_test("grading", "error", 0.0, _printable(error_sentence(report)))]
    else:
        status = "pass" if report.checks and all(c.passed for c in report.checks) else "fail"
        tests = []
        for check in report.checks:
            message = one_line(_printable(check.message))
            hints = [one_line(_printable(d.message)) for d in report.diagnoses
                     if not check.passed and d.function == check.function]
            tests.append(_test(check.id, "pass" if check.passed else "fail", check.score,
                               " ".join([message, *hints]).strip()))
    return {"version": 1, "status": status, "max_score": _number(report.max_score), "tests": tests}


def render(report: Report) -> str:
    """The result JSON itself (handy to read; the runner emits ``encoded``)."""
    return json.dumps(to_dict(report), ensure_ascii=False, allow_nan=False) + "\n"


def encoded(report: Report) -> str:
    """Base64 of the compact JSON: the value of the step output ``result``."""
    # ASCII escapes keep even a lone surrogate quoted from student output encodable.
    raw = json.dumps(to_dict(report), ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return base64.b64encode(raw.encode("ascii")).decode("ascii")
