"""grader: auto-grading for the "simple neural network from scratch" numpy exercise.

Pipeline, one module per stage:
load → sandbox (worker, protocol) → probe → checks → diagnose → score (rubric) → render,
with batch and integrations beside it.
"""
import os as _os

__version__ = "0.2.0"

# Installed, `reference/` and `rubrics/` are the subpackages grader.reference
# and grader.rubrics (see pyproject's package-dir). In a source checkout they sit
# next to grader/, so let the package also look there: running from a checkout
# (tests, `python -m grader`) then behaves exactly like an installed copy.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "reference")) and _os.path.isfile(
    _os.path.join(_checkout, "reference", "mutants.py")
):
    __path__.append(_checkout)  # type: ignore[name-defined]


def check(function=None, **options):
    """Self-check inside Jupyter: ``import grader; grader.check()`` (see grader.integrations.selfcheck).

    Defined here so the package import stays light in a student's kernel: nothing
    of the checks or the reference is imported into it.
    """
    from grader.integrations.selfcheck import check as _check

    return _check(function, **options)
