"""The notebook runs as it does in Jupyter (issue 13): the working directory is on ``sys.path`` and
``__name__`` is ``"__main__"``, in both backends and in a fork of the fork server.

Written the way students write it: a helper module saved with ``%%writefile`` in one cell and
imported by the graded functions in a later one.
"""
from __future__ import annotations

import pytest

from conftest import CORRECT_CELLS, notebook_json
from grader.forkserver import ForkServer
from grader.grade import Options, grade_notebook
from grader.rubric import load_rubric

HELPER_MODULE = ("%%writefile nn_helpers.py\nimport numpy as np\n\n\ndef relu(z):\n    return np.maximum(z, 0)\n\n\n"
                 "def relu_slope(z):\n    return (z > 0).astype(float)\n")
#: The correct notebook's activation pair, taken from the helper module instead.
USES_HELPERS = ("from nn_helpers import relu, relu_slope\n\n\ndef activation(z):\n    return relu(z)\n\n\n"
                "def d_activation(z):\n    return relu_slope(z)\n")
MAIN_GUARD = "if __name__ == '__main__':\n    print('ran as __main__')\n"


@pytest.mark.parametrize("backend", ["subprocess", "fork server", "kernel"])
def test_a_writefile_module_imports_and_the_notebook_is_main(tmp_path, backend):
    path = tmp_path / "student.ipynb"
    path.write_text(notebook_json([HELPER_MODULE] + CORRECT_CELLS + [USES_HELPERS, MAIN_GUARD]))
    rubric = load_rubric(None)
    if backend == "fork server":
        with ForkServer() as server:
            report = grade_notebook(path, rubric, Options(server=server))
    else:
        report = grade_notebook(path, rubric, Options(backend=backend))
    assert [cell.status for cell in report.cells] == ["ok"] * len(report.cells)
    assert report.score == report.max_score
    assert "ran as __main__" in report.output_excerpt
    assert not any("ModuleNotFoundError" in warning for warning in report.warnings)


def test_one_cell_numbering_everywhere(tmp_path):
    """Cell n (counting every cell from 1, markdown too) is "Cell n" in the warnings, "Cell In[n]" in an
    IPython traceback, "<cell-n>" in a plain one, and "cell n" in the HTML page."""
    from grader.render import html

    path = tmp_path / "numbered.ipynb"
    path.write_text(notebook_json(["x = 1", "%time y = 2\n1 / 0", "z = 3\n1 / 0"]))  # a markdown cell comes first
    report = grade_notebook(path, load_rubric(None), Options())
    assert "Cell 3 raised ZeroDivisionError: division by zero; the cells after it still ran." in report.warnings
    assert "Cell 4 raised ZeroDivisionError: division by zero; the cells after it still ran." in report.warnings
    assert "Cell In[3], line 2" in report.output_excerpt and "<cell-4>" in report.output_excerpt
    assert "Cell In[1]" not in report.output_excerpt
    page = html.render(report)
    assert "cell 3 — error" in page and "cell 4 — error" in page
