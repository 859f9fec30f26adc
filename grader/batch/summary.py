"""The class view of a batch: the gradebook CSV, summary numbers and ``summary.html``.

Pure functions of finished reports (``grader grade`` calls them after grading),
so an instructor's gradebook and picture of the class never depend on how the
grading ran. The gradebook is written atomically, because it is the file an
instructor uploads: a crash half-way must leave the previous gradebook, never
a truncated one. It is also opened in spreadsheets, where a cell starting
with ``=`` is a formula, so student-chosen text is neutralised first.

The gradebook's columns: ``submission, student, score, max_score, status`` first (stable), one column
per check, then who the submission is in its LMS, :data:`GRADEBOOK_COLUMNS_LMS` (added after the
checks so that no existing column moves). A submission that could not be graded has a blank score,
never 0: an error is a file to look at, not a mark. The import files of the LMSs themselves are
``grader.integrations.lms``'s.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.files import write_atomic
from grader.integrations.lms import Identity, safe_cell, safe_identity
from grader.model import Report
from grader.render import file_name
from grader.render._common import error_sentence, one_line, points
from grader.untrusted_text import safe_report, safe_text

GRADEBOOK_COLUMNS_FIXED: tuple[str, ...] = ("submission", "student", "score", "max_score", "status")
#: After the check columns: ``late`` ("yes"/"no", blank when the export does not say: only Canvas marks
#: it), ``lms`` (canvas, moodle, blackboard, gradescope; blank for plain files), ``lms_user_id`` (Canvas user
#: id, Moodle participant number, Blackboard username), ``lms_submission_id`` (Canvas submission id,
#: Gradescope submission number, Blackboard attempt time), ``email`` and ``sid`` (Gradescope's metadata;
#: "; " between the members of a group).
GRADEBOOK_COLUMNS_LMS: tuple[str, ...] = ("late", "lms", "lms_user_id", "lms_submission_id", "email", "sid")
#: Bins of the score histogram (same count as the PNG, so table and picture agree).
HISTOGRAM_BINS = 10
#: How many students a named mistake lists before the rest are only counted.
MAX_STUDENTS_PER_MISTAKE = 200


@dataclass
class GradebookRow:
    """One gradebook line: which file, whose, and what the grader said about it."""

    submission: str
    student: str
    report: Report
    #: The submission's stable id in a batch (names its files there); "" outside a batch.
    id: str = ""
    #: The LMS whose export named it ("canvas", "moodle", "blackboard", "gradescope"); "" for plain files.
    lms: str = ""
    #: Who it is in that LMS (``grader.integrations.lms.Identity``).
    identity: Identity = field(default_factory=Identity)


@dataclass(frozen=True)
class NotGraded:
    """A file of the inputs that is not graded, and why (``collect.Skipped``, as the class files show it)."""

    path: str
    reason: str


def _safe_rows(rows: Iterable[GradebookRow]) -> list[GradebookRow]:
    """Copies of ``rows`` whose every string is safe to write and show (see the module docstring)."""
    return [dataclasses.replace(row, submission=safe_text(row.submission), student=safe_text(row.student),
                                report=safe_report(row.report), id=safe_text(row.id), lms=safe_text(row.lms),
                                identity=safe_identity(row.identity)) for row in rows]


# ----------------------------------------------------------------------------- gradebook

def _safe_cell(text: str) -> str:
    """Text a spreadsheet shows as text: a leading ``'`` before a formula trigger."""
    return safe_cell(text)


def _late_cell(late: bool | None) -> str:
    return "" if late is None else ("yes" if late else "no")


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
    """Write the gradebook CSV atomically: fixed columns, one score column per check id, then the LMS
    identity columns.

    A check id that collides with a fixed or LMS column name gets a ``check:`` prefix
    rather than silently overwriting that column. An error row's score is blank, not 0.
    """
    target = Path(path)
    rows = _safe_rows(rows)
    checks = check_columns(row.report for row in rows)
    taken = {*GRADEBOOK_COLUMNS_FIXED, *GRADEBOOK_COLUMNS_LMS}
    headers = {cid: (f"check:{cid}" if cid in taken else cid) for cid in checks}
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow([*GRADEBOOK_COLUMNS_FIXED, *headers.values(), *GRADEBOOK_COLUMNS_LMS])
    for row in rows:
        report = row.report
        scores = {check.id: _number_cell(check.score) for check in report.checks}
        identity = row.identity
        writer.writerow([
            _safe_cell(row.submission),
            _safe_cell(row.student),
            _number_cell(report.score) if report.status != "error" else "",
            _number_cell(report.max_score),
            report.status,
            *(scores.get(cid, "") for cid in checks),
            _late_cell(identity.late),
            row.lms,
            _safe_cell(identity.user_id),
            _safe_cell(identity.submission_id),
            _safe_cell(identity.emails),
            _safe_cell(identity.sids),
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


def summarize(rows: list[GradebookRow], notices: Iterable[str] = (), not_graded: Iterable[NotGraded] = (),
              ungraded: Iterable[GradebookRow] = ()) -> dict[str, Any]:
    """Class-level numbers, JSON-safe (written as ``summary.json`` and drawn in ``summary.html``).

    Score statistics cover graded submissions only: an error is not a zero the
    instructor should average in, it is a file to look at, listed under
    ``error_submissions``. Diagnosis counts are students, not occurrences, and each
    diagnosis lists its students (``students``: id, student, submission), so the
    instructor can see who to help. ``notices``: what the grading machine did not
    enforce (``grader.sandbox.environment``), listed as ``operator_notices``: the class
    files are the operator's, the reports the students' never carry them.
    ``not_graded``: the files of the inputs that were not graded, with why (``path``,
    ``reason``). ``ungraded``: the submissions an interrupted run did not reach (their
    ``report`` is not looked at), listed so nobody takes a partial gradebook for a whole one.
    """
    rows = _safe_rows(rows)
    waiting = _safe_rows(ungraded)
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
                                                        "example": one_line(diagnosis.message), "students": []})
            entry["count"] += 1
            if len(entry["students"]) < MAX_STUDENTS_PER_MISTAKE:
                entry["students"].append(_who(row))
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
        "late": sum(row.identity.late is True for row in rows),
        "not_graded": [{"path": safe_text(item.path), "reason": safe_text(item.reason)} for item in not_graded],
        "ungraded": [_who(row) for row in waiting],
    }


def _who(row: GradebookRow) -> dict[str, str]:
    """A submission as the summary names it: its id (its feedback page's name), student and source."""
    return {"id": row.id, "student": row.student, "submission": row.submission}


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


#: Sorts a ``table.sortable`` by the column whose header is clicked (or Enter/Space on it), numbers as
#: numbers (a cell's ``data-sort`` when it has one). No student text is ever part of it: the page's data
#: is only in the (escaped) table, and without JavaScript the table is simply read in its first order.
SORT_SCRIPT = """
(function () {
  "use strict";
  function key(cell, numeric) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { raw = cell.textContent.trim(); }
    if (!numeric) { return raw.toLowerCase(); }
    var value = parseFloat(raw);
    return isNaN(value) ? -Infinity : value;
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, column) {
      var numeric = th.getAttribute("data-type") === "number";
      function sort() {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[column], numeric), y = key(b.cells[column], numeric);
          var order = numeric ? (x < y ? -1 : x > y ? 1 : 0) : String(x).localeCompare(String(y));
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      th.tabIndex = 0;
      th.style.cursor = "pointer";
      th.title = "Sort by this column";
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); }
      });
    });
  });
}());
""".strip()
SUMMARY_STYLE = """
.grader-report th[aria-sort=ascending]::after{content:" \\25B2"}
.grader-report th[aria-sort=descending]::after{content:" \\25BC"}
.grader-report details summary{cursor:pointer}
""".strip()
UNGRADED_HEADING = "Still ungraded: {count} {noun}"
UNGRADED_TEXT = ("This run was interrupted before these were graded, so the gradebook and the LMS files leave them "
                 "out; run the same grader grade command again to grade them.")
NOT_GRADED_TEXT = "Files found in the inputs that were not graded, and why."


def render_summary_html(summary: dict[str, Any], rows: list[GradebookRow],
                        link: Callable[[GradebookRow], str] | None = None) -> str:
    """A self-contained ``summary.html``: histogram, pass rates, named bugs and who made them, the files
    not graded, and a students table sortable by any column.

    ``link`` gives each row's feedback page (relative URL); by default
    ``feedback_name(row.student)``. It is given the row as ``_safe_rows`` made it.
    """
    from grader.render.html import STYLE, data_url
    from grader.render.html import escape as _e
    from grader.render.plot import bar_chart_png, histogram_png

    rows = _safe_rows(rows)
    link = link or (lambda row: feedback_name(row.student))

    def anchor(row: GradebookRow) -> str:
        href = urllib.parse.quote(link(row), safe="/#?=&.-_~", errors="replace")
        return f'<a href="{_e(href)}">{_e(row.student or row.submission)}</a>'

    scores = [row.report.score for row in rows
              if row.report.status != "error" and _finite(row.report.score)]
    parts = ['<div class="grader-report">', "<h1>Class summary</h1>"]
    stats = (f"{summary['count']} submissions · {summary['graded']} graded · "
             f"{summary['errors']} not graded")
    if summary.get("mean") is not None:
        stats += (f" · mean {points(summary['mean'])} · median {points(summary['median'])} · "
                  f"range {points(summary['min'])}–{points(summary['max'])} "  # noqa: RUF001 - a typographic range dash
                  f"of {points(summary['max_score'])}")
    if summary.get("late"):
        stats += f" · {summary['late']} late"
    parts.append(f'<p class="score">{stats}</p>')
    if summary.get("operator_notices"):  # first, where the person who runs the grader will see it
        items = "".join(f'<li class="warning">{_e(notice)}</li>' for notice in summary["operator_notices"])
        parts.append('<section class="warnings operator-notices"><h2>For the operator: what this machine did not '
                     f"enforce</h2><ul>{items}</ul></section>")
    parts += _ungraded_section(summary.get("ungraded") or [], _e)
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

    parts += _mistakes_section(summary, rows, anchor, _e, bar_chart_png, data_url)

    if summary["error_submissions"]:
        items = "".join(f"<li><code>{_e(item['submission'])}</code>: {_e(item['error'])}</li>"
                        for item in summary["error_submissions"])
        parts.append(f"<h2>Not graded</h2><ul>{items}</ul>")
    if summary.get("not_graded"):
        items = "".join(f"<tr><td><code>{_e(item['path'])}</code></td><td>{_e(item['reason'])}</td></tr>"
                        for item in summary["not_graded"])
        parts.append(f'<h2>Files not graded</h2><p class="muted">{NOT_GRADED_TEXT}</p>'
                     f"<table><thead><tr><th>file</th><th>why</th></tr></thead><tbody>{items}</tbody></table>")

    parts += _students_table(rows, anchor, _e)
    parts.append("</div>")
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>Class summary</title>\n<style>\n{STYLE}\n{SUMMARY_STYLE}\n</style>\n</head>\n<body>\n"
            f"{body}\n<script>\n{SORT_SCRIPT}\n</script>\n</body>\n</html>\n")


def _ungraded_section(ungraded: list[dict[str, str]], _e: Callable[[Any], str]) -> list[str]:
    """After an interrupted run: how many submissions and which are still ungraded."""
    if not ungraded:
        return []
    items = "".join(f"<li>{_e(item['student'])} <code>{_e(item['submission'])}</code></li>" for item in ungraded)
    return [f'<section class="not-graded ungraded"><h2>{UNGRADED_HEADING.format(count=len(ungraded), noun="submission" if len(ungraded) == 1 else "submissions")}</h2>'
            f"<p>{UNGRADED_TEXT}</p><ul>{items}</ul></section>"]


def _mistakes_section(summary: dict[str, Any], rows: list[GradebookRow], anchor: Callable[[GradebookRow], str],
                      _e: Callable[[Any], str], bar_chart_png: Callable[[dict[str, int], str], bytes],
                      data_url: Callable[[bytes], str]) -> list[str]:
    """The named mistakes: how many students made each, an example hint, and who (links to their pages)."""
    parts = ["<h2>Known mistakes</h2>"]
    if not summary["diagnoses"]:
        return [*parts, '<p class="muted">No known mistake was recognised in this batch.</p>']
    who: dict[str, list[GradebookRow]] = {}
    for row in rows:
        for bug in dict.fromkeys(d.id for d in row.report.diagnoses):
            who.setdefault(bug, []).append(row)
    counts = {bug: entry["count"] for bug, entry in summary["diagnoses"].items()}
    parts.append(f'<img src="{data_url(bar_chart_png(counts, "Students with each known mistake"))}" '
                 'alt="Number of students with each known mistake" width="480" height="280">')
    parts.append("<table><thead><tr><th>mistake</th><th>function</th><th>students</th>"
                 "<th>example hint</th></tr></thead><tbody>")
    for bug, entry in summary["diagnoses"].items():
        students = ", ".join(anchor(row) for row in who.get(bug, []))
        plural = "student" if entry["count"] == 1 else "students"
        parts.append(f"<tr><td><code>{_e(bug)}</code></td><td><code>{_e(entry['function'])}</code></td>"
                     f"<td><details><summary>{entry['count']} {plural}</summary>{students}</details></td>"
                     f"<td>{_e(entry['example'])}</td></tr>")
    parts.append("</tbody></table>")
    return parts


def _students_table(rows: list[GradebookRow], anchor: Callable[[GradebookRow], str],
                    _e: Callable[[Any], str]) -> list[str]:
    """Every submission: score, status, named mistakes, lateness; sortable by any column (``SORT_SCRIPT``)."""
    parts = ['<h2>Students</h2><table class="sortable students"><thead><tr><th>student</th><th>submission</th>'
             '<th data-type="number">score</th><th>status</th><th>mistakes</th><th>late</th></tr></thead><tbody>']
    for row in rows:
        report = row.report
        graded = report.status != "error"
        score = f"{points(report.score)} / {points(report.max_score)}" if graded else "—"
        sort_score = points(report.score) if graded and _finite(report.score) else ""
        mistakes = " ".join(f"<code>{_e(bug)}</code>" for bug in dict.fromkeys(d.id for d in report.diagnoses))
        late = _late_cell(row.identity.late)
        parts.append(f'<tr><td data-sort="{_e(row.student)}">{anchor(row)}</td>'
                     f"<td><code>{_e(row.submission)}</code></td>"
                     f'<td data-sort="{sort_score}">{score}</td><td>{_e(report.status)}</td>'
                     f"<td>{mistakes}</td><td>{late}</td></tr>")
    parts.append("</tbody></table>")
    return parts
