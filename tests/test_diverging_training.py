"""A student whose training diverges gets a report, not a traceback (issue 13), and the report says
how far training got, in every format."""
from __future__ import annotations

import json

import pytest

from conftest import CORRECT_CELLS, notebook_json
from grader.grade import Options, grade_notebook
from grader.render import html, json_report, markdown, text
from grader.rubric import load_rubric

pytestmark = pytest.mark.slow

#: Sign flipped and the w1 gradient transposed: the weights grow until the loss overflows a float.
DIVERGING_BACKWARD = ("def backward(x, y, y_hat, w1, w2, eta):\n    h = x @ w1\n"
                      "    w2_partials = d_L(y_hat, y) * activation(h)\n"
                      "    w1_partials = np.outer(x, d_L(y_hat, y) * w2 * d_activation(h)).T\n"
                      "    return w1 + eta * w1_partials, w2 + eta * w2_partials\n")


@pytest.mark.parametrize("backend", ["subprocess", "kernel"])
def test_a_diverging_training_is_graded_and_says_where_it_stopped(tmp_path, backend):
    path = tmp_path / "diverges.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + [DIVERGING_BACKWARD]))
    report = grade_notebook(path, load_rubric(None), Options(backend=backend))
    assert report.status == "graded"
    checks = {check.id: check for check in report.checks}
    assert not checks["training.converges"].passed and not checks["backward.values"].passed
    assert checks["forward.values"].passed and checks["activation.values"].passed
    training = report.training
    assert training is not None and 0 < training.ran < training.iterations
    stopped = f"{training.ran} of {training.iterations} iterations (then it stopped)"
    assert f"iteration {training.ran}" in checks["training.converges"].message
    assert stopped in text.render(report)
    assert stopped in markdown.render(report)
    assert stopped in html.render(report)
    document = json.loads(json_report.render(report))
    assert document["training"]["iterations_run"] == training.ran
    assert document["training"]["iterations"] == training.iterations
