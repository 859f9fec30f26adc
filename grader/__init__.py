"""grader: auto-grading for numpy exercises, assignment by assignment (bundled: simple_nn, simple_nn_batch).

Pipeline, one module per stage:
load → sandbox (worker, protocol) → probe → checks → diagnose → score (rubric) → render,
with batch and integrations beside it.
"""
from typing import Any

__version__ = "0.3.0"


def check(function: str | None = None, **options: Any) -> Any:
    """Self-check inside Jupyter: ``import grader; grader.check()``, or ``grader.check(assignment="simple_nn_batch")``
    (see grader.integrations.selfcheck).

    Defined here so the package import stays light in a student's kernel: nothing
    of the checks or the reference is imported into it.
    """
    from grader.integrations.selfcheck import check as _check

    return _check(function, **options)
