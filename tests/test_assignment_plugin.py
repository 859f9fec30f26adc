"""Assignments are plug-ins: a third assignment, declared only in tests/, is graded by the unchanged core.

``tests/assignments/logistic`` shares nothing with the bundled network assignments (its functions
are predict/gradient/update, its shapes and data are its own, its loop returns new parameters);
if grading it needs an edit to grader/, the plug-in is not real. End-to-end: each test grades a
notebook written the way a student would, in a real sandbox.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Callable

import pytest

from grader.assignment import bundled, load_assignment
from grader.cli import main
from grader.errors import AssignmentError
from grader.grade import Options, grade_notebook
from grader.rubric import load_rubric

LOGISTIC = Path(__file__).parent / "assignments" / "logistic"
REPO = Path(__file__).resolve().parents[1]

CORRECT = [
    "import numpy as np",
    "X = np.array([[1.0, 2.0, -1.0], [-1.5, 0.5, 2.0], [2.0, -1.0, 0.5], [-0.5, -2.0, 1.0]])\ny = np.array([1.0, 0, 1, 0])",
    "def sigmoid(z):\n    return 1 / (1 + np.exp(-z))\n\n"
    "def predict(X, w, b):\n    return sigmoid(np.dot(X, w) + b)",
    "def gradient(X, y, w, b):\n    err = predict(X, w, b) - y\n    return X.T.dot(err), err.sum()",
    "def update(w, b, dw, db, lr):\n    return w - lr * dw, b - lr * db",
    "w, b = np.zeros(3), 0.0\nfor i in range(300):\n    dw, db = gradient(X, y, w, b)\n    w, b = update(w, b, dw, db, 0.5)\n"
    "print(predict(X, w, b).round(3))",
]


def _grade(write_notebook: Callable[..., Path], cells: list[str]):
    return grade_notebook(write_notebook(cells), load_rubric(None, LOGISTIC), Options())


@pytest.mark.slow
def test_a_correct_logistic_notebook_earns_full_marks(write_notebook: Callable[..., Path]) -> None:
    report = _grade(write_notebook, CORRECT)
    assert report.status == "graded", report.error
    assert [c.id for c in report.checks] == ["predict.values", "gradient.values", "gradient.numerical",
                                             "update.step", "fit.converges"]
    assert report.score == report.max_score == 50, [(c.id, c.message) for c in report.checks if not c.passed]
    assert list(report.functions) == ["predict", "gradient", "update"]
    assert report.graded_with is None and report.assignment == "logistic"
    assert report.training is not None and report.training.ran == 300


@pytest.mark.slow
def test_a_logistic_bug_is_isolated_and_named(write_notebook: Callable[..., Path]) -> None:
    cells = list(CORRECT)
    cells[3] = "def gradient(X, y, w, b):\n    err = y - predict(X, w, b)\n    return X.T @ err, np.sum(err)"
    report = _grade(write_notebook, cells)
    failed = {c.id for c in report.checks if not c.passed}
    assert {"gradient.values", "gradient.numerical", "fit.converges"} >= failed >= {"gradient.values"}
    assert "predict.values" not in failed and "update.step" not in failed
    assert [(d.id, d.function) for d in report.diagnoses] == [("gradient_sign_flipped", "gradient")]


@pytest.mark.slow
def test_an_update_that_ascends_fails_the_step_check_only_there(write_notebook: Callable[..., Path]) -> None:
    cells = list(CORRECT)
    cells[4] = "def update(w, b, dw, db, lr):\n    w = w + lr * dw\n    b += lr * db\n    return w, b"
    report = _grade(write_notebook, cells)
    step = next(c for c in report.checks if c.id == "update.step")
    assert not step.passed and "gradient step" in step.message
    assert ("update_ascends", "update") in [(d.id, d.function) for d in report.diagnoses]
    assert all(c.passed for c in report.checks if c.id in ("predict.values", "gradient.values", "gradient.numerical"))


@pytest.mark.slow
def test_the_cli_grades_the_logistic_assignment_by_path(write_notebook: Callable[..., Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = write_notebook(CORRECT)
    code = main(["check", str(path), "--assignment", str(LOGISTIC), "--format", "json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["score"] == 50 and document["assignment"] == "logistic"


def test_calibrate_is_clean_for_the_logistic_assignment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--assignment", str(LOGISTIC)]) == 0, capsys.readouterr().out


def test_an_unknown_assignment_is_one_sentence_listing_the_bundled_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "x.ipynb", "--assignment", "simple_cnn"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "simple_cnn" in message
    assert all(name in message for name in ("simple_nn", "simple_nn_batch"))


def test_bundled_assignments() -> None:
    assert {"simple_nn", "simple_nn_batch"} <= set(bundled())
    with pytest.raises(AssignmentError, match="bundled ones are"):
        load_assignment("no_such_assignment")


def test_a_rubric_that_names_another_assignment_than_asked_is_refused(tmp_path: Path) -> None:
    text = (LOGISTIC / "rubric.toml").read_text().replace('assignment = "."', f'assignment = "{LOGISTIC}"')
    rubric = tmp_path / "r.toml"
    rubric.write_text(text)
    assert load_rubric(rubric).assignment.name == "logistic"
    with pytest.raises(Exception, match="not the assignment asked for"):
        load_rubric(rubric, "simple_nn")


# --- the core knows no assignment ------------------------------------------------------------------

#: What belongs to the bundled assignments: their function names, parameters and check ids.
ASSIGNMENT_WORDS = {"activation", "d_activation", "forward", "backward", "w1", "w2", "y_hat", "eta",
                    "w1_partials", "w2_partials", "relu", "sigmoid", "predict"}
#: Core modules: loading, the sandbox and its protocol, comparison, checks, diagnosis, scoring, rendering, batch.
CORE = ["load.py", "probe.py", "checks.py", "diagnose.py", "score.py", "compare.py", "grade.py", "model.py",
        "rubric.py", "calibrate.py", "template.py", "training.py", "sandbox", "render", "batch"]


def _code_words(path: Path) -> set[str]:
    """Identifiers and string constants of a module, without its docstrings and comments."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.update(w.strip(".,:;()'\"") for w in node.value.replace(".", " ").split())
    return words


@pytest.mark.parametrize("part", CORE)
def test_the_core_names_no_function_of_any_assignment(part: str) -> None:
    root = REPO / "grader" / part
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    found = {f"{f.relative_to(REPO)}: {sorted(_code_words(f) & ASSIGNMENT_WORDS)}" for f in files
             if _code_words(f) & ASSIGNMENT_WORDS}
    assert not found, found
