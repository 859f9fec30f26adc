"""Text that a submission controls, made into data that is safe to show anywhere.

Everything the sandbox sends back as text (exception messages, printed output,
refused shell commands, audit notes) and every name taken from a submitted file
(student names, paths inside LMS exports) is chosen by a student. Printed as it
is, such text is an instruction to whatever displays it: an ANSI or OSC escape
clears the operator's terminal, forges a "100/100" line or plants a hyperlink;
a bidi override makes a gradebook name read backwards; a lone surrogate cannot
be encoded as UTF-8, so the first ``write`` of a report raises and takes the
whole batch with it; NUL and other C0 controls make XML and CSV readers reject
the file.

``safe_text`` turns any such value into text that is only ever text: valid
UTF-8, no C0/C1 control except a newline and a tab where a multi-line text is
legitimate (an output excerpt, a traceback message), no bidi control. What it
replaces it shows, as a visible escape (``\\x1b``, ``\\u202e``, ``\\ud83d``),
rather than dropping it, so a reviewer can see that something was there and
what it was. It is idempotent: its output passes through it unchanged, so it
can be applied both where sandbox text enters the trusted side and again,
defensively, in every renderer (a report read back from disk, or built by
other code, is then just as safe).

``safe_report`` applies it to every string of a ``Report``.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from grader.model import CellRun, CheckResult, Diagnosis, FunctionInfo, GradedWith, Report

#: Explicit bidirectional formatting characters (Unicode UAX #9): embeddings and overrides
#: (U+202A-U+202E), isolates (U+2066-U+2069), the implicit marks (U+200E, U+200F, U+061C).
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
#: Other characters that act on the display rather than show: the Unicode line and paragraph
#: separators (a line break to some terminals and editors, never to ``one_line``'s readers) and
#: the two non-characters U+FFFE/U+FFFF, which XML 1.0 forbids.
OTHER_INVISIBLE = "\u2028\u2029\ufffe\uffff"

_ALWAYS = "\x00-\x08\x0b-\x1f\x7f-\x9f" + BIDI_CONTROLS + OTHER_INVISIBLE + "\ud800-\udfff"
#: One character (or a CR LF pair) that must not reach a reader as it is.
_UNSAFE_MULTILINE = re.compile(f"\r\n|[{_ALWAYS}]")
_UNSAFE_ONE_LINE = re.compile(f"[\t\n{_ALWAYS}]")
#: A high surrogate followed by a low one: one character split in two (e.g. by a UTF-16 source).
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
#: Short, familiar escapes for the whitespace controls; every other one is ``\xNN`` or ``\uNNNN``.
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
ELLIPSIS = "…"


def _escape(match: re.Match[str]) -> str:
    text = match.group()
    if text == "\r\n":
        return "\n"
    if text in _NAMED:
        return _NAMED[text]
    code = ord(text)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _join_pair(match: re.Match[str]) -> str:
    high, low = (ord(c) for c in match.group())
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def _as_str(value: object) -> str:
    """The text of ``value``: bytes are decoded as UTF-8 with U+FFFD for what is not UTF-8."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a trusted-side object whose __str__ fails must not stop a report either
        return f"<unprintable {type(value).__name__}>"


def safe_text(value: object, *, multiline: bool = False, limit: int | None = None) -> str:
    """``value`` (a str, bytes or anything with ``str``) as text that is safe to print, render and encode.

    Lone surrogates, NUL and every other C0/C1 control (so every ANSI, OSC and
    CSI escape, whose introducers are ESC or C1 characters), DEL, bidi controls,
    U+2028/U+2029 and U+FFFE/U+FFFF become visible escapes (``\\x1b``,
    ``\\u202e``); a valid surrogate pair becomes the character it encodes. With
    ``multiline`` a newline and a tab are kept (CR LF becomes a newline);
    without it they are escaped too, for names and ids that must stay on one
    line. ``limit`` caps the result's length, ending in an ellipsis when
    something was cut. Backslashes are left alone: the output is for reading,
    not for decoding back.
    """
    text = _as_str(value)
    if limit is not None:
        # Escaping only lengthens the text, and joining a pair shortens it by one per pair:
        # twice the limit is always enough to fill it, and bounds the work on huge input.
        text = text[: 2 * max(limit, 0) + 2]
    pattern = _UNSAFE_MULTILINE if multiline else _UNSAFE_ONE_LINE
    if pattern.search(text) is not None:
        text = _SURROGATE_PAIR.sub(_join_pair, text)
        text = pattern.sub(_escape, text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + ELLIPSIS if limit > 0 else ""
    return text


def safe_lines(value: object, *, limit: int | None = None) -> str:
    """``safe_text`` keeping newlines and tabs: for output excerpts, tracebacks and messages."""
    return safe_text(value, multiline=True, limit=limit)


def safe_data(value: Any) -> Any:
    """Every string inside a JSON-like value (mapping keys included) made safe, multi-line allowed.

    Used on a check's ``details`` (a failing probe's inputs, expected and actual
    values), whose strings may quote what the sandbox said. Anything that is not
    a string, mapping, list or tuple (numbers, arrays) is returned as it is.
    """
    if isinstance(value, str):
        return safe_lines(value)
    if isinstance(value, Mapping):
        return {safe_lines(key) if isinstance(key, str) else key: safe_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [safe_data(item) for item in value]
    if isinstance(value, tuple):
        return tuple(safe_data(item) for item in value)
    return value


def _optional(value: str | None, multiline: bool = False) -> str | None:
    return None if value is None else safe_text(value, multiline=multiline)


def _safe_function(info: FunctionInfo) -> FunctionInfo:
    parameters = None if info.parameters is None else tuple(safe_text(p) for p in info.parameters)
    return dataclasses.replace(info, name=safe_text(info.name), kind=_optional(info.kind),
                               recognised_as=_optional(info.recognised_as), parameters=parameters)


def _safe_graded_with(graded_with: GradedWith | None) -> GradedWith | None:
    if graded_with is None:
        return None
    return GradedWith(safe_text(graded_with.family), safe_text(graded_with.helper),
                      tuple(safe_text(name) for name in graded_with.dependents))


def safe_report(report: Report) -> Report:
    """A copy of ``report`` in which every string is ``safe_text`` (names on one line, messages multi-line).

    Every renderer calls this first, so that no output format depends on where
    its report came from (graded just now, read back from disk, built by hand):
    whatever a submission managed to put in a report, no renderer sees it raw.
    The report passed in is not changed; numbers and the training curves are
    shared with it. ``status`` and a cell's ``status`` are left alone: they are
    closed sets of words, and every renderer escapes them for its format anyway.
    """
    return dataclasses.replace(
        report,
        submission=safe_text(report.submission),
        rubric=safe_text(report.rubric),
        error=_optional(report.error, multiline=True),
        functions={safe_text(name): _safe_function(info) for name, info in report.functions.items()},
        checks=[
            CheckResult(safe_text(c.id), safe_text(c.function), c.passed, safe_lines(c.message), c.fraction,
                        c.score, c.max_score, safe_data(dict(c.details)), c.visibility)
            for c in report.checks
        ],
        diagnoses=[Diagnosis(safe_text(d.id), safe_text(d.function), safe_lines(d.message))
                   for d in report.diagnoses],
        warnings=[safe_lines(w) for w in report.warnings],
        cells=[CellRun(c.index, c.status, _optional(c.error, multiline=True)) for c in report.cells],
        graded_with=_safe_graded_with(report.graded_with),
        backend=safe_text(report.backend),
        output_excerpt=safe_lines(report.output_excerpt),
        assignment=safe_text(report.assignment),
    )
