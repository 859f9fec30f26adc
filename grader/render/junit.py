"""JUnit XML, the lingua franca of CI test reports (GitHub, GitLab, Jenkins).

One ``<testsuite>`` per submission and one ``<testcase>`` per check, so a CI
page lists exactly the checks the terminal report shows, failed ones with
their message. A submission that could not be graded is one ``<error>``
testcase named ``grading``: CI must show it as broken, not as "0 tests, all
green" (the dead-kernel-scored-as-pass failure of other graders).

Built with ElementTree so escaping is never hand-rolled; ElementTree does not,
however, refuse characters that XML 1.0 forbids (NUL, ESC, ...), which student
output can contain and which make CI parsers reject the whole file, so the
report is ``safe_report``-ed first (such characters become visible escapes)
and all student-derived text goes through ``xml_text`` as well.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from grader.model import CheckResult, Report
from grader.render._common import error_sentence, one_line, points, truncate
from grader.untrusted_text import safe_lines, safe_report

#: Characters outside the XML 1.0 ``Char`` production (lone surrogates included).
_ILLEGAL_XML = re.compile(
    "[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
#: File extension of a JUnit report.
EXTENSION = ".xml"
#: Longest ``message`` attribute; the full text is in the element body.
MAX_MESSAGE_CHARS = 300


def xml_text(text: object) -> str:
    """Text safe for XML 1.0 (and for a CI log): controls, escapes and bidi shown as ``\\x1b``.

    ``safe_lines`` already leaves nothing XML forbids; removing what
    ``_ILLEGAL_XML`` still matches is a backstop, should that ever change.
    """
    return _ILLEGAL_XML.sub("", safe_lines(text))


def _seconds(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) and value >= 0 else "0.000"


def _failure_body(check: CheckResult, report: Report) -> str:
    """The failure text: message, points, the recognised bugs of this function, the evidence."""
    lines = [check.message or "this check did not pass.",
             f"points: {points(check.score)} / {points(check.max_score)}"]
    for diagnosis in report.diagnoses:
        if diagnosis.function == check.function:
            lines.append(f"known mistake {diagnosis.id}: {diagnosis.message}")
    for key, value in check.details.items():
        lines.append(f"{key}: {value!r}"[:1200])
    return xml_text("\n".join(lines))


def _suite(report: Report) -> ET.Element:
    report = safe_report(report)
    name = xml_text(report.submission)
    suite = ET.Element("testsuite", name=name)
    properties = ET.SubElement(suite, "properties")
    for key, value in (("rubric", report.rubric), ("status", report.status),
                       ("score", points(report.score)), ("max_score", points(report.max_score)),
                       ("seed", str(report.seed)), ("backend", report.backend)):
        ET.SubElement(properties, "property", name=key, value=xml_text(value))
    failures = errors = 0
    if report.status == "error":
        case = ET.SubElement(suite, "testcase", classname=name, name="grading")
        sentence = xml_text(error_sentence(report))
        error = ET.SubElement(case, "error", message=truncate(sentence, MAX_MESSAGE_CHARS),
                              type="NotGraded")
        error.text = sentence
        tests, errors = 1, 1
    else:
        for check in report.checks:
            case = ET.SubElement(suite, "testcase", classname=name, name=xml_text(check.id))
            if not check.passed:
                failures += 1
                message = truncate(one_line(xml_text(check.message)), MAX_MESSAGE_CHARS)
                failure = ET.SubElement(case, "failure", message=message or "failed",
                                        type="CheckFailed")
                failure.text = _failure_body(check, report)
        tests = len(report.checks)
    if report.warnings or report.output_excerpt:
        out = ET.SubElement(suite, "system-out")
        out.text = xml_text("\n".join([*("warning: " + w for w in report.warnings),
                                       report.output_excerpt]).strip())
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    suite.set("time", _seconds(report.duration_s))
    return suite


def render_many(reports: Iterable[Report]) -> str:
    """A batch as one ``<testsuites>`` document with summed counts and time."""
    root = ET.Element("testsuites", name="grader")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    time = 0.0
    for report in reports:
        suite = _suite(report)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        time += float(suite.get("time", "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(time))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render(report: Report) -> str:
    """One submission as a ``<testsuites>`` document holding its single suite."""
    return render_many([report])
