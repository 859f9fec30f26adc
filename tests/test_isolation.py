"""Isolation by substitution: a function that uses a broken helper is judged again with a working one in
its place, so one mistake costs points once (issue 13).

End to end, in a real sandbox. The stand-in holds values (the default pair's at the points the function
evaluates it), never the grader's code: the student's output reaches their feedback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from conftest import CORRECT_CELLS
from grader.grade import Options, grade_notebook
from grader.rubric import load_rubric

pytestmark = pytest.mark.slow


def _grade(write_notebook: Callable[..., Path], helpers: str):
    cells = list(CORRECT_CELLS)
    cells[1] = helpers
    return grade_notebook(write_notebook(cells), load_rubric(None), Options())


@pytest.mark.parametrize(("helpers", "broken"), [
    ("def activation(z):\n    return max(0, z)\n\ndef d_activation(z):\n    return (z > 0).astype(float)", "activation"),
    ("def activation(z):\n    return np.maximum(0, z)\n\ndef d_activation(z):\n    return 1.0 if z > 0 else 0.0",
     "d_activation"),
    ("import functools\n\ndef activation(z):\n    return np.maximum(0, z)\n\n@functools.lru_cache\n"
     "def d_activation(z):\n    return (z > 0).astype(float)", "d_activation"),
], ids=["scalar-only activation", "scalar-only derivative", "lru_cache derivative raises on arrays"])
def test_a_broken_helper_costs_its_own_points_only(write_notebook, helpers: str, broken: str) -> None:
    report = _grade(write_notebook, helpers)
    by_id = {c.id: c for c in report.checks}
    for check in ("forward.values", "backward.values", "backward.gradient"):
        assert by_id[check].passed, (check, by_id[check].message)
    assert f"once {broken} is fixed" in by_id["backward.values"].message
    assert f"backward is right once {broken} is fixed" in " ".join(report.warnings)
    assert not by_id[f"{broken}.values"].passed


def test_training_with_a_broken_helper_runs_with_a_live_stand_in(write_notebook) -> None:
    """The training loop's points are not known in advance: its stand-in asks the grader for each value
    over the channel. A notebook whose only mistake is a scalar-only activation loses that activation's
    points and nothing else (issue 13: it used to lose 85)."""
    report = _grade(write_notebook, "def activation(z):\n    return max(0, z)\n\n"
                                    "def d_activation(z):\n    return (z > 0).astype(float)")
    training = next(c for c in report.checks if c.id == "training.converges")
    assert training.passed and "once activation is fixed" in training.message
    assert report.score == report.max_score - next(c.max_score for c in report.checks if c.id == "activation.values")
    assert [d.id for d in report.diagnoses] == ["activation_scalar_only"]


def test_a_correct_notebook_never_meets_a_stand_in(write_notebook) -> None:
    """Substitution is only for a broken helper: a correct notebook is graded as written."""
    from conftest import CORRECT_CELLS as cells

    report = grade_notebook(write_notebook(list(cells)), load_rubric(None), Options())
    assert report.score == report.max_score
    assert not any("fixed" in c.message for c in report.checks) and not any("stand" in w for w in report.warnings)
