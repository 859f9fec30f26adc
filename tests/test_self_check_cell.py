"""The student's self-check cell (README: ``import grader; grader.check()``) is skipped when the instructor
grades: an honest student is neither flagged for importing the grader nor warned that the cell failed
(issue 14)."""
from __future__ import annotations

import pytest

from conftest import CORRECT_CELLS
from grader.grade import Options, grade_notebook, is_self_check
from grader.rubric import load_rubric


@pytest.mark.parametrize("source", [
    "import grader\ngrader.check()",
    "%pip install grader\nimport grader; grader.check()",
    "from grader import check\ncheck('backward')",
    "import grader as g\ng.check(assignment='simple_nn_batch')",
    "grader.check()",
    "import grader",
])
def test_the_self_check_cell_is_recognised(source: str) -> None:
    assert is_self_check(source)


@pytest.mark.parametrize("source", [
    "import grader\nw1 = grader.reference",  # reaching into the grader is not a self-check
    "import grader\nx = 1\ngrader.check()",
    "import numpy as np",
    "",
    "check()",
    "import grader.reference.simple_nn",
])
def test_anything_more_is_graded_as_written(source: str) -> None:
    assert not is_self_check(source)


@pytest.mark.slow
def test_an_honest_notebook_with_the_self_check_cell_is_neither_flagged_nor_warned(write_notebook) -> None:
    report = grade_notebook(write_notebook(CORRECT_CELLS + ["import grader\ngrader.check()"]), load_rubric(None),
                            Options())
    assert report.score == report.max_score
    assert [d.id for d in report.diagnoses] == []
    assert not any("ModuleNotFoundError" in w or "grader" in w for w in report.warnings), report.warnings
