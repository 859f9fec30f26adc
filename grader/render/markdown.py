"""The student-facing Markdown report (feedback files, LMS comments, CI summaries).

Written for the person who made the mistake: the mark first, a table anyone
can scan, then "What to look at", which names the recognised bug in words
(diagnosis hints point at the mistake without handing over code) and shows
one concrete input where the submission and the reference disagree, because a
single failing example is what lets a student reproduce the problem.

Feedback pages are rendered by LMSs, GitHub and Gradescope, which pass raw
HTML through, and much of their text quotes the student's own code and output.
So the report is ``safe_report``-ed first, prose from a report is escaped
(``md_text``: no HTML tag, entity, link, image or code span can start in it),
inline code is one line whose backtick fence is longer than any run inside it,
and a fenced block's fence is longer than any backtick run in its body: nothing
a student wrote can end a code span or block early and be read as Markdown.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from grader.model import CheckResult, Report, Training
from grader.render._common import (
    TRAINING,
    Section,
    all_finite,
    error_sentence,
    graded,
    number_text,
    one_line,
    percent,
    points,
    sections,
)
from grader.render._common import md_code as _code
from grader.render._common import md_text as _prose
from grader.untrusted_text import safe_report

#: File extension of a saved Markdown report.
EXTENSION = ".md"

#: Keys of ``CheckResult.details`` that describe one failing probe, in display order.
PROBE_KEYS: tuple[str, ...] = ("inputs", "expected", "got")
#: Longest rendering of one probe value; arrays beyond it are cut with an ellipsis.
MAX_VALUE_CHARS = 1200


def render(report: Report) -> str:
    """The Markdown report for one submission."""
    report = safe_report(report)
    blocks = [f"# Grading report: {_code(report.submission)}"]
    if report.status == "error":
        blocks += ["## Not graded", _paragraph(error_sentence(report))]
    else:
        blocks += _graded_blocks(report)
    blocks += _warning_blocks(report.warnings)
    return "\n\n".join(blocks) + "\n"


# ----------------------------------------------------------------------------- inline helpers

def _cell(text: str) -> str:
    """Table-cell text: one line, with ``|`` escaped so it cannot split the cell."""
    return one_line(text).replace("|", r"\|")


def _paragraph(text: str) -> str:
    return _prose(text)


def _fence(body: str) -> str:
    """A fenced block whose fence is longer than any backtick run inside ``body``."""
    longest = max((len(run) for run in re.findall(r"`{3,}", body)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}text\n{body}\n{fence}"


# ----------------------------------------------------------------------------- graded

def _graded_blocks(report: Report) -> list[str]:
    score = f"{points(report.score)} / {points(report.max_score)}"
    pct = percent(report.score, report.max_score)
    blocks = [f"**Score: {score}" + (f" ({pct})" if pct else "") + f"** · rubric {_code(report.rubric)}"]
    if report.checks:
        blocks += ["## Checks", _checks_table(report.checks)]
    if report.training is not None:
        blocks.append(_training_line(report.training))
    blocks.append("## What to look at")
    advice = [_section_advice(report, section) for section in sections(report)]
    advice = [block for block in advice if block]
    blocks += advice or ["Everything the grader checked passed. Well done!"]
    return blocks


def _checks_table(checks: list[CheckResult]) -> str:
    rows = ["| check | result | points |", "|---|---|---|"]
    for check in checks:
        result = "✅ passed" if check.passed else "❌ failed"
        earned = f"{points(check.score)} / {points(check.max_score)}"
        rows.append(f"| {_cell(_code(check.id))} | {result} | {_cell(earned)} |")
    return "\n".join(rows)


def _training_line(training: Training) -> str:
    final = training.final_prediction
    outcome = (f"ended at a prediction of {number_text(final)}" if all_finite(final)
               else "produced no final prediction")
    return (f"Training from the notebook's starting weights ran {training.what_ran()} "
            f"and {outcome} (target {number_text(training.target)}).")


def _not_found(report: Report, function: str) -> bool:
    if not graded(report, function):
        return False
    info = report.functions.get(function)
    return info is None or not info.found


def _section_advice(report: Report, section: Section) -> str:
    """The advice for one function, or "" when there is nothing to fix there."""
    items: list[str] = []
    if _not_found(report, section.function):
        items.append(f"- {_code(section.function)} was not found in the notebook: make sure the cell "
                     f"that defines it is there and runs without an error.")
    for diagnosis in section.diagnoses:
        items.append(f"- {_prose(diagnosis.message)} _(known mistake: {_code(diagnosis.id)})_")
    for check in section.checks:
        if not check.passed:
            items.append(_failure_item(check))
    if not items:
        return ""
    title = "Training" if section.function == TRAINING else _code(section.function)
    return f"### {title}\n\n" + "\n".join(items)


def _failure_item(check: CheckResult) -> str:
    message = _prose(check.message) or "this check did not pass."
    item = f"- **{_code(check.id)}** did not pass: {message}"
    probe = _probe_block(check.details)
    if probe:
        indented = "\n".join(f"  {line}" if line else "" for line in probe.splitlines())
        item += f"\n\n  One input where the result differs from the reference:\n\n{indented}"
    return item


# ----------------------------------------------------------------------------- probe

def _probe_block(details: Mapping[str, Any]) -> str:
    """The failing probe as a fenced block, or "" when the details hold no probe."""
    if not any(key in details for key in PROBE_KEYS):
        return ""
    lines: list[str] = []
    inputs = details.get("inputs")
    if isinstance(inputs, Mapping):
        lines.append("inputs:")
        lines += [_labelled(f"  {name} = ", value) for name, value in inputs.items()]
    elif "inputs" in details:
        lines.append(_labelled("inputs: ", inputs))
    for key in ("expected", "got"):
        if key in details:
            lines.append(_labelled(f"{key}: ", details[key]))
    extras = {k: v for k, v in details.items() if k not in PROBE_KEYS}
    lines += [_labelled(f"{key}: ", value) for key, value in extras.items()]
    return _fence("\n".join(lines))


def _labelled(label: str, value: Any) -> str:
    """``label`` followed by the value, continuation lines aligned under the value."""
    text = _value(value, top=True)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return label + text.replace("\n", "\n" + " " * len(label))


def _value(value: Any, top: bool = False) -> str:
    """Python-looking rendering (students write Python); 2-D arrays one row per line."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return value if top else repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        items = [_value(item) for item in value]
        if value and all(isinstance(item, (list, tuple)) for item in value):
            return "[" + ",\n ".join(items) + "]"
        return "[" + ", ".join(items) + "]"
    if hasattr(value, "tolist"):
        return _value(value.tolist(), top)
    return repr(value)


def _float(value: float) -> str:
    """Six significant digits, but still visibly a float (``2.0``, not ``2``) as numpy shows it."""
    text = f"{value:.6g}"
    if math.isfinite(value) and not any(c in text for c in ".e"):
        text += ".0"
    return text


# ----------------------------------------------------------------------------- warnings

def _warning_blocks(warnings: list[str]) -> list[str]:
    if not warnings:
        return []
    return ["## Warnings", "\n".join(f"- {_prose(w)}" for w in warnings)]
