"""Presentation helpers shared by the renderers.

Kept here so that every format groups, orders and words things identically: a
student comparing the terminal and the Markdown report must never see
different totals or a check listed under a different function. No renderer
knows an assignment: sections follow ``report.functions`` (the assignment's
order), and the words about a helper pair come from ``report.graded_with``.
The Markdown escaping (``md_text``, ``md_code``) is shared with the Gradescope
output, which is Markdown too.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grader.model import CheckResult, Diagnosis, GradedWith, Report

#: The pseudo-function of the end-to-end training check (the default ``function`` of the core's
#: ``Converges`` check kind, not a name of any assignment): its section carries the training summary
#: and comes first after the assignment's functions.
TRAINING = "training"

#: Stands in for a missing error message, so an error report never lacks its sentence.
FALLBACK_ERROR = "The submission could not be graded (no reason was recorded)."


@dataclass
class Section:
    """Everything to show under one function heading, in report order."""

    function: str
    checks: list[CheckResult] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)


def graded(report: Report, function: str) -> bool:
    """Whether ``function`` is one of the functions the assignment asks for (not "training", "notebook", ...)."""
    return function in report.functions


def sections(report: Report) -> list[Section]:
    """Group checks and diagnoses by function, in the order of ``report.functions`` (the assignment's).

    Every function of the report gets a section (a student wants to see that a
    function was looked at even when nothing about it failed); "training" and
    any other name a check or diagnosis refers to (``notebook``, ``integrity``)
    get one after them, "training" first, then in order of first appearance, so
    nothing in the report is ever dropped.
    """
    order: list[str] = list(report.functions)
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


def and_list(words: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c": a list of names as a sentence says it."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def graded_with_sentence(graded_with: GradedWith) -> str:
    """"activation pair used to check forward and backward: relu" (the terminal's words)."""
    if not graded_with.dependents:
        return f"{graded_with.helper} pair used: {graded_with.family}"
    return f"{graded_with.helper} pair used to check {and_list(graded_with.dependents)}: {graded_with.family}"


def graded_with_keys(graded_with: GradedWith | None) -> dict[str, object]:
    """``{"graded_with_<helper>": family}``: for simple_nn ``graded_with_activation``, the key readers
    of earlier reports know. Empty without a helper pair (there is no helper to name a key after)."""
    if graded_with is None:
        return {}
    return {f"graded_with_{graded_with.helper}": graded_with.family}


def graded_with_dict(graded_with: GradedWith | None) -> dict[str, object] | None:
    """``{"family", "helper", "dependents"}``, or None without a helper pair."""
    if graded_with is None:
        return None
    return {"family": graded_with.family, "helper": graded_with.helper,
            "dependents": list(graded_with.dependents)}


def number_text(value: float | Sequence[float] | None, missing: str = "?") -> str:
    """A prediction or target as the reports show it: ``0.9669``, or ``[0.9669, 0.5]`` for several
    outputs; ``missing`` for None, and ``?`` for each value that is not a finite number."""
    if value is None:
        return missing
    if isinstance(value, (int, float)):
        return _one_number(value)
    return "[" + ", ".join(_one_number(item) for item in value) + "]"


def _one_number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return "?"
    return f"{number:.4g}" if math.isfinite(number) else "?"


def all_finite(value: float | Sequence[float] | None) -> bool:
    """Whether there is a prediction and every one of its numbers is finite."""
    if value is None:
        return False
    values = [value] if isinstance(value, (int, float)) else list(value)
    try:
        return bool(values) and all(math.isfinite(float(item)) for item in values)
    except (TypeError, ValueError, OverflowError):
        return False


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
