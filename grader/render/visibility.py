"""What a student may see of a report: the checks whose visibility is released, and nothing that tells
which of the others failed.

A rubric may give a check ``visibility = "hidden" | "after_due_date" | "after_published"``
(Gradescope's words; absent means ``"visible"``). Such a check scores like any other, and the
instructor's outputs (the JSON report, the gradebook, the class summary) keep it. A report shown
to a student goes through :func:`student_view` first, which returns the report that student may
see:

* the checks whose visibility is not released are removed;
* the score is the sum of the checks shown, out of their points, and one line (the first warning,
  so that every renderer shows it) says how many further points the instructor grades; which of
  those checks failed, or how many points they earned, is never said;
* a diagnosis (a named bug and its hint) is removed when its function has checks held back and
  none of its shown checks failed: the hint would tell that a held-back check failed. Review
  flags and diagnoses of functions whose checks are all shown stay;
* the training curve goes when the training check is held back (it shows whether training
  converged), and a shown check that earns nothing until a held-back check passes says so
  without naming it.

``released`` says which visibilities are shown; ``"visible"`` always is. The default,
:data:`RELEASED_WHILE_OPEN` (``{"visible"}``), is right while the assignment is open. Outside
Gradescope nothing knows the due date or whether grades were published, so whoever renders the
reports says it: add ``"after_due_date"`` once the due date (and any late period) has passed,
``"after_published"`` once the grades are published, and ``"hidden"`` only for the instructor's own
copy (everything is then shown: that is the full report). Gradescope applies a test's
``visibility`` itself, so its ``results.json`` carries every check and uses this module only for the
text at the top of the page, which students always see.

Pure functions: the report passed in is never changed.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from grader.model import VISIBILITIES, CheckResult, Diagnosis, Report, Visibility
from grader.render._common import TRAINING, points

#: Shown while the assignment is open: only what the rubric says is always visible.
RELEASED_WHILE_OPEN: frozenset[Visibility] = frozenset({"visible"})
#: Everything, the instructor's view: what a report is before :func:`student_view`.
RELEASED_ALL: frozenset[Visibility] = frozenset(VISIBILITIES)

#: The line a student reads about the checks held back (points only: never which failed).
WITHHELD_NOTE = "{points} more {noun} come from further checks that your instructor grades; they are not shown here."
#: Stands for held-back checks in the sentence of a shown check that requires them (``grader.score``).
WITHHELD_REQUIREMENT = "further checks that your instructor grades"
UNKNOWN_VISIBILITY = "unknown visibility {value!r}; use some of: {choices}"

#: ``grader.score.REQUIRES_UNMET`` as it ends a message: "; it earns no points until a and b pass".
_REQUIRES_UNMET = re.compile(r"; it earns no points until (?P<ids>.+) (?:passes|pass)$")
_DECIMALS = 2


def released_set(released: Iterable[str]) -> frozenset[Visibility]:
    """``released`` checked and completed with ``"visible"`` (always shown); ValueError for a word that is
    not one of Gradescope's four, so a typo never shows or hides checks silently."""
    chosen: set[Visibility] = {"visible"}
    for value in released:
        known = next((v for v in VISIBILITIES if v == value), None)
        if known is None:
            raise ValueError(UNKNOWN_VISIBILITY.format(value=value, choices=", ".join(VISIBILITIES)))
        chosen.add(known)
    return frozenset(chosen)


def withheld_checks(report: Report, released: Iterable[str] = RELEASED_WHILE_OPEN) -> list[CheckResult]:
    """The report's checks a student may not see yet, in report order."""
    shown = released_set(released)
    return [check for check in report.checks if check.visibility not in shown]


def withheld_points(report: Report, released: Iterable[str] = RELEASED_WHILE_OPEN) -> float:
    """The points of the checks held back (their ``max_score``): what the student's line announces."""
    return round(sum(check.max_score for check in withheld_checks(report, released)), _DECIMALS)


def withheld_note(amount: float) -> str:
    """"30 more points come from further checks that your instructor grades; ...\""""
    noun = "point" if amount == 1 else "points"
    return WITHHELD_NOTE.format(points=points(amount), noun=noun)


def student_view(report: Report, released: Iterable[str] = RELEASED_WHILE_OPEN) -> Report:
    """The report a student may see when the visibilities in ``released`` are shown (see the module
    docstring); ``report`` itself when nothing is held back (an error report has no checks)."""
    visible = released_set(released)
    held = [check for check in report.checks if check.visibility not in visible]
    if not held:
        return report
    held_ids = {check.id for check in held}
    shown = [_shown_check(check, held_ids) for check in report.checks if check.visibility in visible]
    return dataclasses.replace(
        report,
        checks=shown,
        score=round(sum(check.score for check in shown), _DECIMALS),
        max_score=round(sum(check.max_score for check in shown), _DECIMALS),
        diagnoses=[d for d in report.diagnoses if _may_show(d, shown, held)],
        warnings=[*_notes(round(sum(c.max_score for c in held), _DECIMALS)), *report.warnings],
        training=None if any(check.function == TRAINING for check in held) else report.training,
    )


def _notes(amount: float) -> list[str]:
    """The student's line about held-back points; none when they carry no points (nothing to announce)."""
    return [withheld_note(amount)] if amount > 0 else []


def _shown_check(check: CheckResult, held_ids: set[str]) -> CheckResult:
    """A copy of a shown check whose sentence names no held-back check it requires."""
    match = _REQUIRES_UNMET.search(check.message)
    if match is None:
        return dataclasses.replace(check, details=dict(check.details))
    required = match["ids"].split(" and ")
    named = [r for r in required if r not in held_ids]
    if len(named) == len(required):
        return dataclasses.replace(check, details=dict(check.details))
    named.append(WITHHELD_REQUIREMENT)  # plural: "pass"
    message = check.message[: match.start()] + f"; it earns no points until {' and '.join(named)} pass"
    return dataclasses.replace(check, message=message, details=dict(check.details))


def _may_show(diagnosis: Diagnosis, shown: list[CheckResult], held: list[CheckResult]) -> bool:
    """Whether a diagnosis tells nothing about held-back checks: its function has none, or one of its shown
    checks failed (the hint then explains what the student sees)."""
    if not any(check.function == diagnosis.function for check in held):
        return True
    return any(check.function == diagnosis.function and not check.passed for check in shown)


__all__ = ["RELEASED_ALL", "RELEASED_WHILE_OPEN", "WITHHELD_NOTE", "released_set", "student_view",
           "withheld_checks", "withheld_note", "withheld_points"]
