"""The student feedback page: one self-contained HTML5 file per submission.

Self-contained on purpose (inline CSS, the loss curve as a ``data:`` PNG, no
external URL): the page is mailed, uploaded to an LMS or opened from a zip,
often offline, and must look the same everywhere and leak no request to
anyone. Everything that comes from the submission (its path, check messages
quoting student output, cell errors, the output excerpt) is escaped, because a
student controls that text and the page is opened by instructors: the report
is ``safe_report``-ed first and every such string goes through ``escape``.
``fragment`` gives the body alone, for display inside Jupyter.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from grader.model import CellRun, CheckResult, Report, Training
from grader.render._common import (
    TRAINING,
    Section,
    all_finite,
    error_sentence,
    graded,
    number_text,
    percent,
    points,
    sections,
)
from grader.render.json_report import json_safe
from grader.untrusted_text import safe_lines, safe_report

#: File extension of a saved feedback page.
EXTENSION = ".html"

#: Longest rendering of one value of a failing probe before it is cut.
MAX_VALUE_CHARS = 1200
#: Longest output excerpt shown (the excerpt is already bounded upstream; this is a backstop).
MAX_EXCERPT_CHARS = 20_000

#: Scoped under ``.grader-report`` so the fragment can sit inside a Jupyter page unharmed.
STYLE = """
.grader-report{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.45;
 color:#1b1b1b;max-width:60rem;margin:0 auto;padding:1rem}
.grader-report h1{font-size:1.5rem;margin:.2rem 0 .6rem}
.grader-report h2{font-size:1.15rem;margin:1.4rem 0 .4rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.grader-report code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em;
 background:#f3f3f3;padding:0 .2em;border-radius:3px;overflow-wrap:anywhere}
.grader-report pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;white-space:pre-wrap;
 overflow-wrap:anywhere;font-size:.85rem}
.grader-report table{border-collapse:collapse;width:100%;margin:.3rem 0}
.grader-report th,.grader-report td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.grader-report th{background:#fafafa}
.grader-report .score{font-size:1.2rem}
.grader-report .passed{color:#1a7f37;font-weight:600;white-space:nowrap}
.grader-report .failed{color:#c62828;font-weight:600;white-space:nowrap}
.grader-report .diagnosis{border-left:4px solid #e69500;background:#fff8e6;padding:.4rem .7rem;margin:.4rem 0}
.grader-report .not-graded{border-left:4px solid #c62828;background:#fdecea;padding:.4rem .7rem}
.grader-report .warning{color:#8a5a00}
.grader-report .muted{color:#666}
.grader-report img{max-width:100%;height:auto}
""".strip()

def escape(text: Any) -> str:
    """Student-derived text made safe for HTML: controls, escapes and bidi shown as ``\\x1b``, markup escaped.

    ``safe_lines`` keeps newlines and tabs (``<pre>`` blocks need them) and
    makes every other control visible; ``html.escape`` then turns markup into
    text, quotes included, so the result is safe in element text and in
    attribute values alike.
    """
    return html.escape(safe_lines(text), quote=True)


_e = escape


# ----------------------------------------------------------------------------- public

def render(report: Report) -> str:
    """The whole feedback page for one submission."""
    report = safe_report(report)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>Grading report: {_e(report.submission)}</title>\n"
        f"<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
        f"{fragment(report, style=False)}"
        "</body>\n</html>\n"
    )


def fragment(report: Report, *, style: bool = True) -> str:
    """The report as one ``<div>``; with ``style`` it carries its own (scoped) CSS."""
    report = safe_report(report)
    parts = ['<div class="grader-report">']
    if style:
        parts.append(f"<style>{STYLE}</style>")
    parts.append(f"<h1>Grading report: <code>{_e(report.submission)}</code></h1>")
    if report.status == "error":
        parts.append('<section class="not-graded"><h2>Not graded</h2>'
                     f"<p>{_e(error_sentence(report))}</p></section>")
    else:
        parts += _graded(report)
    parts += _cells(report.cells)
    parts += _warnings(report.warnings)
    parts += _excerpt(report.output_excerpt)
    parts.append(_meta(report))
    parts.append("</div>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- graded

def _graded(report: Report) -> list[str]:
    pct = percent(report.score, report.max_score)
    line = (f'<p class="score">Score: <strong>{points(report.score)} / {points(report.max_score)}'
            f'</strong>{f" ({pct})" if pct else ""} · rubric <code>{_e(report.rubric)}</code>')
    if report.graded_with is not None:
        line += (f" · graded with your <code>{_e(report.graded_with.family)}</code> "
                 f"{_e(report.graded_with.helper)}")
    parts = [line + "</p>"]
    if report.checks and all(check.passed for check in report.checks) and not report.diagnoses:
        parts.append("<p>Everything the grader checked passed. Well done!</p>")
    listed = sections(report)
    for section in listed:
        parts.append(_section(report, section))
    if report.training is not None and all(s.function != TRAINING for s in listed):
        parts.append(f'<section class="function" id="fn-{TRAINING}"><h2>Training</h2>'
                     f"{_training(report.training)}</section>")
    return parts


def _section(report: Report, section: Section) -> str:
    title = "Training" if section.function == TRAINING else f"<code>{_e(section.function)}</code>"
    earned = sum(check.score for check in section.checks)
    available = sum(check.max_score for check in section.checks)
    if section.checks:
        title += f' <span class="muted">({points(earned)} / {points(available)})</span>'
    body: list[str] = []
    if _not_found(report, section.function):
        body.append(f"<p class=\"failed\"><code>{_e(section.function)}</code> was not found in the "
                    "notebook: make sure the cell that defines it is there and runs without an error.</p>")
    for diagnosis in section.diagnoses:
        body.append(f'<div class="diagnosis"><p>{_e(diagnosis.message)}</p>'
                    f'<p class="muted">Known mistake: <code>{_e(diagnosis.id)}</code></p></div>')
    if section.checks:
        body.append(_checks_table(section.checks))
    elif graded(report, section.function) and not body:
        body.append('<p class="muted">No checks for this function in this rubric.</p>')
    if section.function == TRAINING and report.training is not None:
        body.append(_training(report.training))
    slug = re.sub(r"[^A-Za-z0-9_-]", "-", section.function)
    return f'<section class="function" id="fn-{slug}"><h2>{title}</h2>\n' + "\n".join(body) + "</section>"


def _not_found(report: Report, function: str) -> bool:
    if not graded(report, function):
        return False
    info = report.functions.get(function)
    return info is None or not info.found


def _checks_table(checks: list[CheckResult]) -> str:
    rows = ["<table><thead><tr><th>check</th><th>result</th><th>points</th><th>message</th></tr>"
            "</thead><tbody>"]
    for check in checks:
        verdict = ('<span class="passed">✓ passed</span>' if check.passed
                   else '<span class="failed">✗ failed</span>')
        message = f"<p>{_e(check.message)}</p>" if check.message else ""
        if not check.passed:
            message += _probe(check.details)
        rows.append(f'<tr class="{"passed-row" if check.passed else "failed-row"}">'
                    f"<td><code>{_e(check.id)}</code></td><td>{verdict}</td>"
                    f"<td>{points(check.score)} / {points(check.max_score)}</td>"
                    f"<td>{message}</td></tr>")
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _probe(details: dict[str, Any]) -> str:
    """The evidence of a failed check (usually one failing input) in a collapsible block."""
    if not details:
        return ""
    items = []
    for key, value in details.items():
        text = json.dumps(json_safe(value), ensure_ascii=False)
        if len(text) > MAX_VALUE_CHARS:
            text = text[: MAX_VALUE_CHARS - 1] + "…"
        items.append(f"{_e(key)}: {_e(text)}")
    return ("<details><summary>One input where the result differs from the reference</summary>"
            "<pre>" + "\n".join(items) + "</pre></details>")


def _training(training: Training) -> str:
    final = training.final_prediction
    outcome = (f"ended at a prediction of {number_text(final)}" if all_finite(final)
               else "produced no final prediction")
    parts = [f"<p>Training from the notebook's starting weights ran {escape(training.what_ran())} "
             f"and {outcome} (target {number_text(training.target)}).</p>"]
    from grader.render.loss_chart import loss_curve_png  # lazy: matplotlib only when a page is drawn

    png = loss_curve_png(training)
    if png is not None:
        parts.append(f'<img src="{data_url(png)}" alt="Training loss of your network and of the '
                     'reference implementation, per iteration" width="480" height="280">')
    return "\n".join(parts)


def data_url(png: bytes) -> str:
    """PNG bytes as a ``data:`` URL (base64 has no character that needs HTML escaping)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ----------------------------------------------------------------------------- both statuses

def _cells(cells: Iterable[CellRun]) -> list[str]:
    troubled = [cell for cell in cells if cell.status != "ok"]
    if not troubled:
        return []
    items = []
    for cell in troubled:
        error = f": <code>{_e(cell.error)}</code>" if cell.error else ""
        items.append(f"<li>cell {int(cell.index) + 1} — {_e(cell.status)}{error}</li>")
    return ['<section class="cells"><h2>Cells that did not run cleanly</h2>'
            f"<ul>{''.join(items)}</ul></section>"]


def _warnings(warnings: list[str]) -> list[str]:
    if not warnings:
        return []
    items = "".join(f'<li class="warning">{_e(w)}</li>' for w in warnings)
    return [f'<section class="warnings"><h2>Warnings</h2><ul>{items}</ul></section>']


def _excerpt(excerpt: str) -> list[str]:
    if not excerpt:
        return []
    text = excerpt if len(excerpt) <= MAX_EXCERPT_CHARS else excerpt[:MAX_EXCERPT_CHARS] + "…"
    return ['<details class="output"><summary>What the notebook printed</summary>'
            f"<pre>{_e(text)}</pre></details>"]


def _meta(report: Report) -> str:
    duration = f" · {report.duration_s:.1f} s" if math.isfinite(report.duration_s) else ""
    return (f'<p class="muted">seed {int(report.seed)} · backend {_e(report.backend)}'
            f"{duration}</p>")
