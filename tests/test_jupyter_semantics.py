"""The notebook runs as it does in Jupyter (issue 13): the working directory is on ``sys.path`` and
``__name__`` is ``"__main__"``, in both backends and in a fork of the fork server.

Written the way students write it: a helper module saved with ``%%writefile`` in one cell and
imported by the graded functions in a later one.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CORRECT_CELLS, notebook_json
from grader.sandbox.forkserver import ForkServer
from grader.grade import Options, grade_notebook
from grader.rubric import load_rubric

pytestmark = pytest.mark.slow

HELPER_MODULE = ("%%writefile nn_helpers.py\nimport numpy as np\n\n\ndef relu(z):\n    return np.maximum(z, 0)\n\n\n"
                 "def relu_slope(z):\n    return (z > 0).astype(float)\n")
#: The correct notebook's activation pair, taken from the helper module instead.
USES_HELPERS = ("from nn_helpers import relu, relu_slope\n\n\ndef activation(z):\n    return relu(z)\n\n\n"
                "def d_activation(z):\n    return relu_slope(z)\n")
MAIN_GUARD = "if __name__ == '__main__':\n    print('ran as __main__')\n"


def grade_on(backend: str, path: Path):
    """The notebook at ``path`` graded by the default rubric on ``backend`` ("subprocess", "kernel"), or
    forked from a fork server ("fork server")."""
    if backend == "fork server":
        with ForkServer() as server:
            return grade_notebook(path, load_rubric(None), Options(server=server))
    return grade_notebook(path, load_rubric(None), Options(backend=backend))


@pytest.mark.parametrize("backend", ["subprocess", "fork server", "kernel"])
def test_a_writefile_module_imports_and_the_notebook_is_main(tmp_path, backend):
    path = tmp_path / "student.ipynb"
    path.write_text(notebook_json([HELPER_MODULE] + CORRECT_CELLS + [USES_HELPERS, MAIN_GUARD]))
    report = grade_on(backend, path)
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


def test_a_wrong_signature_is_named_with_both_parameter_lists_and_what_the_call_raised(tmp_path):
    """A backward that takes four arguments (the next revision's shape) is not "6 of 6 probes differ"."""
    four = "def backward(x, y, y_hat, w1):\n    return np.outer(x, y_hat - y), (y_hat - y) * np.ones(2)\n"
    path = tmp_path / "four.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + [four]))
    report = grade_notebook(path, load_rubric(None), Options())
    (diagnosis,) = [d for d in report.diagnoses if d.function == "backward"]
    assert diagnosis.id == "wrong_signature"
    assert "backward takes (x, y, y_hat, w1)" in diagnosis.message
    assert "backward(x, y, y_hat, w1, w2, eta)" in diagnosis.message
    assert "TypeError: backward() takes 4 positional arguments but 6 were given" in diagnosis.message
    checks = {c.id: c for c in report.checks}
    assert "wrong_signature" in checks["backward.values"].message and "probes differ" not in checks["backward.values"].message
    assert "no known bug matches" not in checks["backward.values"].message
    assert checks["forward.values"].passed  # the other functions are graded as usual
    assert report.functions["backward"].parameters == ("x", "y", "y_hat", "w1")


def test_a_default_argument_is_not_a_wrong_signature(tmp_path):
    flexible = ("def backward(x, y, y_hat, w1, w2, eta=0.1, verbose=False):\n    h = x @ w1\n"
                "    w2_partials = d_L(y_hat, y) * activation(h)\n"
                "    w1_partials = np.outer(x, d_L(y_hat, y) * w2 * d_activation(h))\n"
                "    return w1 - eta * w1_partials, w2 - eta * w2_partials\n")
    path = tmp_path / "flexible.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + [flexible]))
    report = grade_notebook(path, load_rubric(None), Options())
    assert report.score == report.max_score
    assert not any(d.id == "wrong_signature" for d in report.diagnoses)


#: The helper module as a student submits it: a .py file beside the notebook, not written by a cell.
HELPER_FILE = HELPER_MODULE.split("\n", 1)[1]


@pytest.mark.parametrize("backend", ["subprocess", "fork server", "kernel"])
def test_a_py_file_submitted_beside_the_notebook_imports(tmp_path, backend):
    """In Jupyter the working directory is the notebook's folder: a module saved there imports."""
    folder = tmp_path / "student-a"
    folder.mkdir()
    (folder / "nn_helpers.py").write_text(HELPER_FILE)
    path = folder / "student.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + [USES_HELPERS]))
    report = grade_on(backend, path)
    assert not any("ModuleNotFoundError" in warning for warning in report.warnings), report.warnings
    assert [cell.status for cell in report.cells] == ["ok"] * len(report.cells)
    assert report.score == report.max_score


def test_a_py_file_in_a_class_folder_is_not_carried_into_anyones_sandbox(tmp_path):
    """Beside several notebooks a .py file could be anyone's: it is not taken (the import fails, and says so)."""
    (tmp_path / "nn_helpers.py").write_text(HELPER_FILE)
    (tmp_path / "other.ipynb").write_text(notebook_json(CORRECT_CELLS))
    path = tmp_path / "student.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + [USES_HELPERS]))
    report = grade_notebook(path, load_rubric(None), Options())
    assert any("ModuleNotFoundError" in warning and "nn_helpers" in warning for warning in report.warnings)


def test_a_py_file_beside_a_notebook_in_a_zip_export_imports(tmp_path):
    """An LMS export zips each student's upload: a helper module in the same folder of the archive imports;
    in a folder shared by two notebooks it is nobody's, and is not carried."""
    import json
    import zipfile

    from grader.cli import main

    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("alice/nn.ipynb", notebook_json(CORRECT_CELLS + [USES_HELPERS]))
        zipped.writestr("alice/nn_helpers.py", HELPER_FILE)
        zipped.writestr("shared/bob.ipynb", notebook_json(CORRECT_CELLS + [USES_HELPERS]))
        zipped.writestr("shared/carol.ipynb", notebook_json(CORRECT_CELLS))
        zipped.writestr("shared/nn_helpers.py", HELPER_FILE)
    out = tmp_path / "out"
    assert main(["grade", str(archive), "--out", str(out), "--jobs", "1"]) == 0
    reports = {Path(doc["submission"]).name: doc for doc in
               (json.loads(p.read_text()) for p in (out / "reports").glob("*.json"))}
    alice = next(doc for name, doc in reports.items() if "alice" in doc["submission"])
    bob = next(doc for name, doc in reports.items() if "bob" in doc["submission"])
    assert not any("ModuleNotFoundError" in w for w in alice["warnings"]), alice["warnings"]
    assert any("ModuleNotFoundError" in w for w in bob["warnings"])


#: Plain-Python cells that use what IPython puts in a notebook's namespace and builtins, then a magic (which
#: the shell runs), then a plain cell again: in a one-off sandbox the shell is made only when first needed.
IPYTHON_NAMES = [
    "import pickle, sys, __main__\nclass Point:\n    pass\n"
    "print('main is the notebook:', __main__.Point is Point, sys.modules['__main__'].__dict__ is globals())\n"
    "print('pickles:', type(pickle.loads(pickle.dumps(Point()))).__name__)\n"
    "print('flag:', __IPYTHON__)",
    "display('shown by display')\nprint('shell:', type(get_ipython()).__name__ != 'NoneType')",
    "before_magic = 41",
    "%time after_magic = before_magic + 1",
    "print('kept:', after_magic, 'In' in globals(), callable(exit), get_ipython().user_ns is globals())",
]


@pytest.mark.parametrize("backend", ["subprocess", "fork server", "kernel"])
def test_ipythons_own_get_ipython_finds_the_shell_in_the_first_cell(tmp_path, backend):
    """``from IPython import get_ipython`` (IPython's function, not the notebook's name) returns the shell
    even when no cell before needed one: in a one-off sandbox the shell is made for the cell that names IPython."""
    first = ("from IPython import get_ipython\nget_ipython().run_line_magic('matplotlib', 'inline')\n"
             "print('shell found')")
    path = tmp_path / "get_ipython_first.ipynb"
    path.write_text(notebook_json([first] + CORRECT_CELLS))
    report = grade_on(backend, path)
    assert [cell.status for cell in report.cells] == ["ok"] * len(report.cells), report.warnings
    assert "shell found" in report.output_excerpt and report.score == report.max_score


@pytest.mark.parametrize("backend", ["subprocess", "fork server", "kernel"])
def test_what_ipython_provides_is_there_before_and_after_the_shell_is_made(tmp_path, backend):
    path = tmp_path / "ipython_names.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + IPYTHON_NAMES))
    report = grade_on(backend, path)
    assert [cell.status for cell in report.cells] == ["ok"] * len(report.cells), report.warnings
    excerpt = report.output_excerpt
    for line in ("main is the notebook: True True", "pickles: Point", "flag: True", "shell: True",
                 "kept: 42 True True True"):
        assert line in excerpt, (line, excerpt)
    if backend != "kernel":  # a kernel sends what display() shows as display data, not to stdout
        assert "shown by display" in excerpt
    assert report.score == report.max_score
