"""``grader.check()`` run inside a real Jupyter kernel (nbclient), as a student would in their notebook."""
from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import CORRECT_CELLS, SEED

pytest.importorskip("ipykernel")


def _run(cells: list[str], extra: list[str]) -> list:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(c) for c in cells + extra]
    NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True).execute()
    return notebook.cells[len(cells):]


def _outputs(cell, kind: str) -> list:
    return [o for o in cell.outputs if o.output_type == kind]


@pytest.mark.slow
def test_self_check_grades_the_kernels_functions_without_importing_the_reference():
    seed = nbformat.read(SEED, as_version=4)
    cells = [c.source for c in seed.cells if c.cell_type == "code"]
    shown, modules, data = _run(cells, [
        "import grader\ngrader.check()",
        "import sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('grader', 'reference')))",
        "import json\nprint(json.dumps(grader.check('backward', display=False)))",
    ])
    (html,) = [o.data["text/html"] for o in _outputs(shown, "display_data")]
    assert "d_activation_on_w2_partials" in html and "<img" in html  # the hint and the loss curve
    assert "backward.gradient" in html
    assert modules.outputs[0].text.strip() == "['grader', 'grader.errors', 'grader.integrations', 'grader.integrations.selfcheck']"
    report = json.loads("".join(o.text for o in _outputs(data, "stream")))
    assert report["score"] == 50 and [d["id"] for d in report["diagnoses"]] == ["d_activation_on_w2_partials"]


@pytest.mark.slow
def test_self_check_sees_the_current_definitions_not_the_saved_notebook():
    fixed = CORRECT_CELLS[:-1] + [CORRECT_CELLS[-1].replace("w2 * d_activation(h)", "w2 * d_activation(h) * 0")]
    _, data = _run(fixed, [
        "import grader",
        "import json\nprint(json.dumps(grader.check(display=False)))\n" + CORRECT_CELLS[-1]
        + "\nprint(json.dumps(grader.check(display=False)))",
    ])
    text = "".join(o.text for o in _outputs(data, "stream"))
    before, after = (json.loads(line) for line in text.strip().splitlines())
    assert before["score"] < 100 and after["score"] == 100


def test_outside_jupyter_it_says_what_to_do_instead():
    import grader
    from grader.integrations.selfcheck import SelfCheckError

    with pytest.raises(SelfCheckError, match="grader check NOTEBOOK"):
        grader.check()
    with pytest.raises(SelfCheckError):
        grader.check("nonsense")
