"""The terminal report: the default output of ``grader check``.

Read at a glance: one header line with the mark, then one line per check under
the function it belongs to, failures carrying their reason on the same line,
recognised bugs right under the function they are in. Every line fits in
``WIDTH`` columns, and colour is applied only after the layout is computed, so
coloured and plain output line up identically and plain output (pipes, files,
``NO_COLOR``) carries no escape codes at all. The report goes through
``safe_report`` first, so the only escape codes ever printed are the colours
added here: whatever a submission printed or raised reaches the terminal as
visible text (``\\x1b[2J``), never as a command to it.
"""
from __future__ import annotations

import math
import textwrap

from grader.model import CheckResult, Diagnosis, Report, Training
from grader.render._common import (
    TRAINING,
    Section,
    all_finite,
    error_sentence,
    graded,
    graded_with_sentence,
    number_text,
    one_line,
    percent,
    points,
    sections,
    truncate,
)
from grader.untrusted_text import safe_report

#: File extension of a saved terminal report.
EXTENSION = ".txt"

WIDTH = 100
#: Lines a failed check's message may take in the terminal before it is cut (with "…").
MAX_MESSAGE_LINES = 4
MAX_WARNINGS = 10
#: Widest check id given its own column; longer ids push their message further right.
MAX_ID_COLUMN = 32

PASS_MARK = "✓"
FAIL_MARK = "✗"

_GREEN = "\x1b[32m"
_RED = "\x1b[31m"
_YELLOW = "\x1b[33m"
_BOLD = "\x1b[1m"
_RESET = "\x1b[0m"


class _Paint:
    """Wraps text in ANSI colour codes, or returns it untouched when colour is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.enabled and text else text


def render(report: Report, colour: bool = False) -> str:
    """The terminal report; ANSI colour only when ``colour`` is True."""
    report = safe_report(report)
    paint = _Paint(colour)
    if report.status == "error":
        lines = _error_lines(report, paint)
    else:
        lines = _graded_lines(report, paint)
    lines += _warning_lines(report.warnings, paint)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- header

def _short_submission(name: str, width: int) -> str:
    """Keep the end of a long path: the file name is what identifies a submission."""
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _score_colour(report: Report) -> str:
    if not math.isfinite(report.score) or report.score <= 0:
        return _RED
    return _GREEN if report.score >= report.max_score else _YELLOW


def _header(report: Report, paint: _Paint) -> str:
    mark = f"{points(report.score)}/{points(report.max_score)}"
    pct = percent(report.score, report.max_score)
    if pct is not None:
        mark += f" ({pct})"
    name = _short_submission(report.submission, WIDTH - len(mark) - 4)
    return f"{paint(name, _BOLD)}  {paint(mark, _score_colour(report))}"


# ----------------------------------------------------------------------------- graded

def _graded_lines(report: Report, paint: _Paint) -> list[str]:
    lines = [_header(report, paint)]
    if report.graded_with is not None:
        lines.append(_wrap(graded_with_sentence(report.graded_with), "", ""))
    all_checks = report.checks
    id_width = min(MAX_ID_COLUMN, max((len(c.id) for c in all_checks), default=0))
    points_width = max((len(_check_points(c)) for c in all_checks), default=0)
    for section in sections(report):
        lines.append("")
        lines.append(_section_heading(report, section, paint))
        lines += [_check_line(c, id_width, points_width, paint) for c in section.checks]
        lines += [line for d in section.diagnoses for line in _diagnosis_lines(d, paint)]
        if not section.checks and not section.diagnoses:
            lines.append("  no checks")
    return lines


def _section_heading(report: Report, section: Section, paint: _Paint) -> str:
    """The function name plus what was found: kind, recognised family, or "not found"."""
    name = section.function
    if name == TRAINING and report.training is not None:
        return f"{paint(name, _BOLD)}  {_training_summary(report.training)}"
    if not graded(report, name):
        return paint(name, _BOLD)
    info = report.functions.get(name)
    if info is None or not info.found:
        return f"{paint(name, _BOLD)}  {paint('not found in the notebook', _RED)}"
    notes = [n for n in (info.kind, info.recognised_as and f"recognised as {info.recognised_as}") if n]
    return paint(name, _BOLD) + (f"  ({', '.join(notes)})" if notes else "")


def _training_summary(training: Training) -> str:
    if not all_finite(training.final_prediction):
        outcome = "no final prediction"
    else:
        outcome = f"final prediction {number_text(training.final_prediction)}"
    return f"{training.what_ran()}, {outcome} (target {number_text(training.target)})"


def _check_points(check: CheckResult) -> str:
    return f"{points(check.score)}/{points(check.max_score)}"


def _check_line(check: CheckResult, id_width: int, points_width: int, paint: _Paint) -> str:
    """``  ✓ id  score/max  message``; the message (failures only) wrapped under itself, at most
    ``MAX_MESSAGE_LINES`` lines (a reason such as a TypeError is never cut off mid-way on one line)."""
    mark = paint(PASS_MARK, _GREEN) if check.passed else paint(FAIL_MARK, _RED)
    body = f" {check.id:<{id_width}}  {_check_points(check):>{points_width}}"
    plain_len = 2 + len(PASS_MARK) + len(body)
    line = f"  {mark}{body}"
    if check.passed or not check.message:
        return line
    indent = plain_len + 2 if WIDTH - plain_len - 2 >= 30 else 6
    wrapped = textwrap.wrap(one_line(check.message), WIDTH - indent, break_long_words=True)
    if len(wrapped) > MAX_MESSAGE_LINES:
        wrapped = wrapped[:MAX_MESSAGE_LINES - 1] + [truncate(" ".join(wrapped[MAX_MESSAGE_LINES - 1:]),
                                                              WIDTH - indent)]
    if indent == plain_len + 2:
        return "\n".join([f"{line}  {wrapped[0]}", *(" " * indent + w for w in wrapped[1:])])
    return "\n".join([line, *(" " * indent + w for w in wrapped)])


def _diagnosis_lines(diagnosis: Diagnosis, paint: _Paint) -> list[str]:
    text = f"bug: {diagnosis.id} — {one_line(diagnosis.message)}"
    wrapped = textwrap.wrap(text, WIDTH, initial_indent="  ", subsequent_indent="       ",
                            break_long_words=True)
    first = wrapped[0].replace("bug:", paint("bug:", _YELLOW), 1)
    return [first, *wrapped[1:]]


# ----------------------------------------------------------------------------- error

def _error_lines(report: Report, paint: _Paint) -> list[str]:
    """Only the sentence: no score, no table, nothing a reader could mistake for a mark."""
    name = _short_submission(report.submission, WIDTH - 16)
    lines = [f"{paint(name, _BOLD)}  {paint('not graded', _RED)}"]
    sentence = _wrap(f"error: {error_sentence(report)}", "", "       ")
    lines.append(sentence.replace("error:", paint("error:", _RED), 1))
    return lines


# ----------------------------------------------------------------------------- warnings

def _warning_lines(warnings: list[str], paint: _Paint) -> list[str]:
    if not warnings:
        return []
    lines = ["", paint(f"warnings ({len(warnings)})", _YELLOW)]
    shown = warnings[:MAX_WARNINGS]
    number_width = len(str(len(shown)))
    for number, warning in enumerate(shown, start=1):
        prefix = f"  {number:>{number_width}}. "
        lines.append(_wrap(one_line(warning), prefix, " " * len(prefix)))
    hidden = len(warnings) - len(shown)
    if hidden:
        lines.append(f"  … and {hidden} more")
    return lines


def _wrap(text: str, first: str, rest: str) -> str:
    return "\n".join(textwrap.wrap(text, WIDTH, initial_indent=first, subsequent_indent=rest)) or first
