"""A function that writes into its arguments is named (``mutates_input``) where that changes results.

End to end, in a real sandbox: notebooks written the way students write them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from conftest import CORRECT_CELLS
from grader.grade import Options, grade_notebook
from grader.rubric import load_rubric

pytestmark = pytest.mark.slow

#: d_activation computed in place: the right values, but the caller's array becomes 0/1.
IN_PLACE_SLOPE = "def d_activation(z):\n    z[z > 0] = 1\n    z[z <= 0] = 0\n    return z"
#: ...and a backward that takes the slope before it uses h again: the mutation changes its result.
SLOPE_FIRST = ("def backward(x, y, y_hat, w1, w2, eta):\n"
               "    h = x @ w1\n"
               "    slope = d_activation(h)\n"
               "    w2_partials = (y_hat - y) * activation(h)\n"
               "    w1_partials = np.outer(x, (y_hat - y) * w2 * slope)\n"
               "    return w1 - eta * w1_partials, w2 - eta * w2_partials")


def _grade(write_notebook: Callable[..., Path], cells: list[str]):
    return grade_notebook(write_notebook(cells), load_rubric(None), Options())


def test_a_helper_that_overwrites_its_input_is_named_when_it_changes_a_callers_result(write_notebook) -> None:
    cells = list(CORRECT_CELLS)
    cells[1] = "def activation(z):\n    return np.maximum(0, z)\n\n" + IN_PLACE_SLOPE
    cells[4] = SLOPE_FIRST
    report = _grade(write_notebook, cells)
    named = [(d.id, d.function) for d in report.diagnoses]
    assert ("mutates_input", "d_activation") in named, named
    message = next(d.message for d in report.diagnoses if d.id == "mutates_input")
    assert "d_activation changes its argument z in place" in message and "z = z.copy()" in message
    assert any("d_activation changes its arguments in place (z)" in w for w in report.warnings)


def test_a_harmless_mutation_is_a_warning_not_a_diagnosis(write_notebook) -> None:
    """The same d_activation with the template's order (h used before the slope): results are right."""
    cells = list(CORRECT_CELLS)
    cells[1] = "def activation(z):\n    return np.maximum(0, z)\n\n" + IN_PLACE_SLOPE
    report = _grade(write_notebook, cells)
    assert "mutates_input" not in [d.id for d in report.diagnoses]
    assert report.score == report.max_score
    assert any("d_activation changes its arguments in place (z)" in w for w in report.warnings)
