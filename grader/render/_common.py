"""Presentation helpers shared by the human-readable renderers (text, Markdown).

Kept here so that the terminal and the Markdown report group, order and format
numbers identically: a student comparing the two must never see different
totals or a check listed under a different function. The Markdown escaping
(``md_text``, ``md_code``) is shared with the Gradescope output, which is
Markdown too.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from grader.model import GRADED_FUNCTIONS, CheckResult, Diagnosis, Report

#: Pseudo-function of the end-to-end checks; shown after the four graded functions.
TRAINING = "training"

#: Stands in for a missing error message, so an error report never lacks its sentence.
FALLBACK_ERROR = "The submission could not be graded (no reason was recorded)."


@dataclass
class Section:
    """Everything to show under one function heading, in report order."""

    function: str
    checks: list[CheckResult] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)


def sections(report: Report) -> list[Section]:
    """Group checks and diagnoses by function, in the order the notebook asks for them.

    The four graded functions always get a section (a student wants to see that
    ``forward`` was looked at even when nothing about it failed); "training" and
    any other function name only when something refers to it, after the four,
    in order of first appearance, so nothing in the report is ever dropped.
    """
    order: list[str] = list(GRADED_FUNCTIONS)
    extra: list[str] = []
    items: list[CheckResult | Diagnosis] = [*report.checks, *report.diagnoses]
    for item in items:
        if item.function not in order and item.function not in extra:
            extra.append(item.function)
    # "training" goes right after the graded functions when present.
    extra.sort(key=lambda name: name != TRAINING)
    by_name = {name: Section(name) for name in order + extra}
    for check in report.checks:
        by_name[check.function].checks.append(check)
    for diagnosis in report.diagnoses:
        by_name[diagnosis.function].diagnoses.append(diagnosis)
    return [by_name[name] for name in order + extra]


def points(value: float) -> str:
    """Format a score compactly: ``20`` not ``20.0``, ``7.5``, at most two decimals.

    A non-finite score (a scoring bug upstream) shows as ``?`` rather than
    ``nan``, which a student would read as part of their mark.
    """
    if not math.isfinite(value):
        return "?"
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def percent(score: float, max_score: float) -> str | None:
    """The score as a percentage, or None when it would be meaningless (max 0, NaN)."""
    if not (math.isfinite(score) and math.isfinite(max_score)) or max_score <= 0:
        return None
    return f"{100.0 * score / max_score:.0f}%"


def one_line(text: str) -> str:
    """Collapse all whitespace (newlines from tracebacks included) into single spaces."""
    return re.sub(r"\s+", " ", text).strip()


def truncate(text: str, width: int) -> str:
    """Shorten to ``width`` characters, ending with an ellipsis when anything was cut.

    Cuts at a word boundary when one is reasonably close, so a truncated message
    does not end in half a word.
    """
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return "…"
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space >= width * 2 // 3:
        cut = cut[:space]
    return cut.rstrip() + "…"


def error_sentence(report: Report) -> str:
    """The one sentence explaining why a submission was not graded, never empty."""
    return one_line(report.error or "") or FALLBACK_ERROR


# ----------------------------------------------------------------------------- Markdown

#: What ``md_text`` escapes. A backslash only escapes ASCII punctuation in CommonMark, so only a
#: backslash before punctuation is doubled (``\x1b`` stays readable in the Markdown source).
_PROSE_SPECIAL = re.compile(r"\\(?=[!-/:-@\[-`{-~])|[&<>`~\[\]]")
_PROSE_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "\\`", "~": "\\~", "[": "\\[", "]": "\\]",
                  "\\": "\\\\"}


def md_text(text: str) -> str:
    """One line of report text that Markdown (GitHub, Gradescope) shows exactly as it is, and reads nothing into.

    Messages quote what a student's code raised or printed, and every renderer
    of feedback Markdown (GitHub, Gradescope, LMSs) passes HTML through: ``<``,
    ``>`` and ``&`` become entities, so no tag or entity survives; ``[`` and
    ``]`` are escaped, so no link or image (a tracking pixel) can be formed;
    a backtick or a tilde is escaped, so no code span or fenced block opens
    that could swallow the escaping of what follows. Emphasis characters are
    left alone: at worst they change how a word looks, and escaping them would
    litter every identifier with backslashes.
    """
    return _PROSE_SPECIAL.sub(lambda m: _PROSE_ESCAPES[m.group()], one_line(text))


def md_code(text: str) -> str:
    """A Markdown inline code span that survives backticks inside ``text``.

    ``text`` is put on one line first: a blank line inside would end the
    paragraph, and with it the span, whatever its fence.
    """
    text = one_line(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
