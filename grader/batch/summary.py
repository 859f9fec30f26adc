"""The class view of a batch: the gradebook CSV, summary numbers and ``summary.html``.

Pure functions of finished reports (``grader grade`` calls them after grading),
so an instructor's gradebook and picture of the class never depend on how the
grading ran. The gradebook is written atomically, because it is the file an
instructor uploads: a crash half-way must leave the previous gradebook, never
a truncated one. It is also opened in spreadsheets, where a cell starting
with ``=`` is a formula, so student-chosen text is neutralised first.

Names and sources come from file names a student chose, and reports quote
what their code raised: every function here works on ``_safe_rows``, whose
strings went through ``safe_text``/``safe_report`` (bidi overrides, escapes
and lone surrogates shown as ``\\u202e``-style text), however the rows were
built, so no name or message can reorder a gradebook line, drive a terminal
or make writing the class files fail.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
import statistics
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.files import write_atomic
from grader.model import Report
from grader.render import file_name
from grader.render._common import error_sentence, one_line, points
from grader.untrusted_text import safe_report, safe_text

GRADEBOOK_COLUMNS_FIXED: tuple[str, ...] = ("submission", "student", "score", "max_score", "status")
#: Bins of the score histogram (same count as the PNG, so table and picture agree).
HISTOGRAM_BINS = 10
#: Leading characters that make a spreadsheet treat a cell as a formula (OWASP list).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class GradebookRow:
    """One gradebook line: which file, whose, and what the grader said about it."""

    submission: str
    student: str
    report: Report
    #: The submission's stable id in a batch (names its files there); "" outside a batch.
    id: str = ""


def _safe_rows(rows: Iterable[GradebookRow]) -> list[GradebookRow]:
    """Copies of ``rows`` whose every string is safe to write and show (see the module docstring)."""
    return [dataclasses.replace(row, submission=safe_text(row.submission), student=safe_text(row.student),
                                report=safe_report(row.report)) for row in rows]


# ----------------------------------------------------------------------------- gradebook

def _safe_cell(text: str) -> str:
    """Text a spreadsheet shows as text: a leading ``'`` before a formula trigger."""
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _number_cell(value: float) -> str:
    """A score cell: compact (``7.5``, ``20``), blank for a non-finite value."""
    return points(value) if math.isfinite(value) else ""


def check_columns(reports: Iterable[Report]) -> list[str]:
    """Every check id, in the order the rubric runs them, first appearance winning."""
    seen: dict[str, None] = {}
    for report in reports:
        for check in report.checks:
            seen.setdefault(check.id, None)
    return list(seen)


def write_gradebook(rows: list[GradebookRow], path: str | os.PathLike[str]) -> None:
    """Write the gradebook CSV atomically: fixed columns, then one score column per check id.

    A check id that collides with a fixed column name gets a ``check:`` prefix
    rather than silently overwriting that column.
    """
    target = Path(path)
    rows = _safe_rows(rows)
    checks = check_columns(row.report for row in rows)
    headers = {cid: (f"check:{cid}" if cid in GRADEBOOK_COLUMNS_FIXED else cid) for cid in checks}
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow([*GRADEBOOK_COLUMNS_FIXED, *headers.values()])
    for row in rows:
        report = row.report
        scores = {check.id: _number_cell(check.score) for check in report.checks}
        writer.writerow([
            _safe_cell(row.submission),
            _safe_cell(row.student),
            _number_cell(report.score),
            _number_cell(report.max_score),
            report.status,
            *(scores.get(cid, "") for cid in checks),
        ])
    # The rows are safe text already; an encoding error must still never cost the gradebook (write_atomic
    # escapes what UTF-8 cannot hold). A gradebook is meant to be shared: 0644 whatever the umask.
    write_atomic(target, buffer.getvalue(), mode=0o644)


# ----------------------------------------------------------------------------- summary numbers

def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _histogram(scores: list[float], max_score: float) -> list[dict[str, Any]]:
    """``HISTOGRAM_BINS`` equal bins over [0, max_score]; the last bin includes the maximum."""
    if not scores:
        return []
    high = max_score if _finite(max_score) and max_score > 0 else max(max(scores), 1.0)
    width = high / HISTOGRAM_BINS
    counts = [0] * HISTOGRAM_BINS
    for score in scores:
        index = min(max(int(score // width), 0), HISTOGRAM_BINS - 1)
        counts[index] += 1
    return [{"low": round(i * width, 6), "high": round((i + 1) * width, 6), "count": count}
            for i, count in enumerate(counts)]


def summarize(rows: list[GradebookRow], notices: Iterable[str] = ()) -> dict[str, Any]:
    """Class-level numbers, JSON-safe (written as ``summary.json`` and drawn in ``summary.html``).

    Score statistics cover graded submissions only: an error is not a zero the
    instructor should average in, it is a file to look at, listed under
    ``error_submissions``. Diagnosis counts are students, not occurrences.
    ``notices``: what the grading machine did not enforce (``grader.sandbox.environment``),
    listed as ``operator_notices``: the class files are the operator's, the reports
    the students' never carry them.
    """
    rows = _safe_rows(rows)
    graded = [row for row in rows if row.report.status != "error"]
    scores = [row.report.score for row in graded if _finite(row.report.score)]
    maxima = [row.report.max_score for row in graded if _finite(row.report.max_score)]
    max_score = max(maxima) if maxima else 0.0

    checks: dict[str, dict[str, Any]] = {}
    for row in graded:
        for check in row.report.checks:
            entry = checks.setdefault(check.id, {"function": check.function, "passed": 0, "total": 0})
            entry["total"] += 1
            entry["passed"] += int(bool(check.passed))
    for entry in checks.values():
        entry["pass_rate"] = round(entry["passed"] / entry["total"], 4)

    diagnoses: dict[str, dict[str, Any]] = {}
    for row in rows:
        for diagnosis in {d.id: d for d in row.report.diagnoses}.values():
            entry = diagnoses.setdefault(diagnosis.id, {"function": diagnosis.function, "count": 0,
                                                        "example": one_line(diagnosis.message)})
            entry["count"] += 1
    diagnoses = dict(sorted(diagnoses.items(), key=lambda kv: (-kv[1]["count"], kv[0])))

    def stat(fn: Callable[[list[float]], float]) -> float | None:
        return round(float(fn(scores)), 4) if scores else None

    return {
        "count": len(rows),
        "graded": len(graded),
        "errors": len(rows) - len(graded),
        "max_score": max_score,
        "mean": stat(statistics.fmean),
        "median": stat(statistics.median),
        "min": stat(min),
        "max": stat(max),
        "histogram": _histogram(scores, max_score),
        "checks": checks,
        "diagnoses": diagnoses,
        "error_submissions": [
            {"submission": row.submission, "student": row.student,
             "error": error_sentence(row.report)}
            for row in rows if row.report.status == "error"
        ],
        "operator_notices": [safe_text(notice) for notice in dict.fromkeys(notices)],
    }


# ----------------------------------------------------------------------------- summary.html

def feedback_name(student: str) -> str:
    """The file name of a student's feedback page: ``<id>.html`` with a filesystem-safe id.

    Shared with batch grading so the links of ``summary.html`` match the files
    it writes. Distinct students can map to one name (``a b`` and ``a_b``); the
    caller must make ids unique first.
    """
    # No leading "." (hidden) or "-" (read as an option by shell tools).
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", student).lstrip("._-").rstrip("._") or "submission"
    return file_name(stem[:120], "html")


def _pct(rate: float) -> str:
    return f"{100 * rate:.0f}%"


def render_summary_html(summary: dict[str, Any], rows: list[GradebookRow],
                        link: Callable[[GradebookRow], str] | None = None) -> str:
    """A self-contained ``summary.html``: histogram, pass rates, named bugs, student table.

    ``link`` gives each row's feedback page (relative URL); by default
    ``feedback_name(row.student)``. It is given the row as ``_safe_rows`` made it.
    """
    from grader.render.html import STYLE, data_url
    from grader.render.html import escape as _e
    from grader.render.plot import bar_chart_png, histogram_png

    rows = _safe_rows(rows)
    link = link or (lambda row: feedback_name(row.student))
    scores = [row.report.score for row in rows
              if row.report.status != "error" and _finite(row.report.score)]
    parts = ['<div class="grader-report">', "<h1>Class summary</h1>"]
    stats = (f"{summary['count']} submissions · {summary['graded']} graded · "
             f"{summary['errors']} not graded")
    if summary.get("mean") is not None:
        stats += (f" · mean {points(summary['mean'])} · median {points(summary['median'])} · "
                  f"range {points(summary['min'])}–{points(summary['max'])} "  # noqa: RUF001 - a typographic range dash
                  f"of {points(summary['max_score'])}")
    parts.append(f'<p class="score">{stats}</p>')
    if summary.get("operator_notices"):  # first, where the person who runs the grader will see it
        items = "".join(f'<li class="warning">{_e(notice)}</li>' for notice in summary["operator_notices"])
        parts.append('<section class="warnings operator-notices"><h2>For the operator: what this machine did not '
                     f"enforce</h2><ul>{items}</ul></section>")
    parts.append(f'<img src="{data_url(histogram_png(scores, summary["max_score"]))}" '
                 'alt="Histogram of scores" width="480" height="280">')

    if summary["checks"]:
        parts.append("<h2>Checks</h2><table><thead><tr><th>check</th><th>function</th>"
                     "<th>passed</th><th>pass rate</th></tr></thead><tbody>")
        for cid, entry in summary["checks"].items():
            parts.append(f"<tr><td><code>{_e(cid)}</code></td><td><code>{_e(entry['function'])}"
                         f"</code></td><td>{entry['passed']} / {entry['total']}</td>"
                         f"<td>{_pct(entry['pass_rate'])}</td></tr>")
        parts.append("</tbody></table>")

    parts.append("<h2>Known mistakes</h2>")
    if summary["diagnoses"]:
        counts = {bug: entry["count"] for bug, entry in summary["diagnoses"].items()}
        parts.append(f'<img src="{data_url(bar_chart_png(counts, "Students with each known mistake"))}" '
                     'alt="Number of students with each known mistake" width="480" height="280">')
        parts.append("<table><thead><tr><th>mistake</th><th>function</th><th>students</th>"
                     "<th>example hint</th></tr></thead><tbody>")
        for bug, entry in summary["diagnoses"].items():
            parts.append(f"<tr><td><code>{_e(bug)}</code></td><td><code>{_e(entry['function'])}"
                         f"</code></td><td>{entry['count']}</td><td>{_e(entry['example'])}</td></tr>")
        parts.append("</tbody></table>")
    else:
        parts.append('<p class="muted">No known mistake was recognised in this batch.</p>')

    if summary["error_submissions"]:
        items = "".join(f"<li><code>{_e(item['submission'])}</code>: {_e(item['error'])}</li>"
                        for item in summary["error_submissions"])
        parts.append(f"<h2>Not graded</h2><ul>{items}</ul>")

    parts.append("<h2>Students</h2><table><thead><tr><th>student</th><th>submission</th>"
                 "<th>score</th><th>status</th></tr></thead><tbody>")
    for row in rows:
        href = urllib.parse.quote(link(row), safe="/#?=&.-_~", errors="replace")
        report = row.report
        score = (f"{points(report.score)} / {points(report.max_score)}"
                 if report.status != "error" else "—")
        parts.append(f'<tr><td><a href="{_e(href)}">{_e(row.student)}</a></td>'
                     f"<td><code>{_e(row.submission)}</code></td><td>{score}</td>"
                     f"<td>{_e(report.status)}</td></tr>")
    parts.append("</tbody></table></div>")
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>Class summary</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")
