"""The pytest plugin (grader/pytest_plugin.py): one test per rubric check, graded once, JUnit-ready.

The end-to-end runs use ``runpytest_subprocess``, so the plugin is loaded the way a
course repository gets it: through the ``pytest11`` entry point of the installed
package (or ``-p grader`` when autoloading is off). The in-process runs swap the
grading function for a fake to check what the plugin does around it.
"""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

# Imported here, before any pytester run: an in-process run restores sys.modules afterwards, and a
# grader module first imported inside one would be re-imported as a second copy by the next run,
# out of reach of monkeypatch.
import grader.grade  # noqa: F401
import grader.render._common  # noqa: F401
from grader.model import CheckResult, Diagnosis, FunctionInfo, Report
from tests.conftest import SEED

pytest_plugins = ["pytester"]

CHECKS = ["activation.values", "d_activation.values", "d_activation.gradient", "forward.values",
          "backward.values", "backward.gradient", "training.converges"]
FAILING = ["backward.values", "backward.gradient", "training.converges"]


@pytest.fixture
def autoload(monkeypatch):
    """Plugins load from entry points, as in a plain ``pytest`` run."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)


def _seed_copy(pytester, name="simple_nn_seed.ipynb"):
    target = pytester.path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SEED, target)
    return target


def _testcases(path):
    root = ET.parse(path).getroot()
    return {case.get("name"): case for case in root.iter("testcase")}


def _properties(case):
    return {p.get("name"): p.get("value") for p in case.iter("property")}


@pytest.mark.slow
def test_seed_notebook_one_test_per_check_with_hints_and_junit(pytester, autoload):
    _seed_copy(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--grader-notebook", "simple_nn_seed.ipynb",
                                           "--junitxml", "junit.xml", "-rA")
    result.assert_outcomes(passed=5, failed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["grader: 1 notebook, rubric simple_nn (*), seed 0", "collected 8 items"])
    for check in ["grading", *CHECKS]:
        verdict = "FAILED" if check in FAILING else "PASSED"
        result.stdout.fnmatch_lines([f"{verdict} simple_nn_seed.ipynb::{check}*"])
    # The failure text is the check's message, its points and the named bug: no traceback.
    result.stdout.fnmatch_lines([
        "*_ simple_nn_seed.ipynb::backward.values _*",
        "6 of 6 probes differ from the reference*",
        "points: 0 / 20",
        "known mistake d_activation_on_w2_partials: The w1 gradient applies d_activation*",
        "*_ simple_nn_seed.ipynb::training.converges _*",
        "prediction after 200 iterations is 0.966886: does not reach y = 1*",
        "points: 0 / 10",
    ])
    assert "Traceback" not in out and "NotebookCheckFailed" not in out and "raise " not in out

    cases = _testcases(pytester.path / "junit.xml")
    assert list(cases) == ["grading", *CHECKS]
    assert {case.get("classname") for case in cases.values()} == {"simple_nn_seed.ipynb"}
    failed = [name for name, case in cases.items() if case.find("failure") is not None]
    assert failed == FAILING
    failure = cases["backward.gradient"].find("failure")
    assert failure.get("message").startswith("implied gradient wrong on 6 of 6 probes")
    assert "\n" not in failure.get("message")
    assert "known mistake d_activation_on_w2_partials" in failure.text
    assert _properties(cases["grading"]) == {"score": "50", "max_score": "100"}
    assert _properties(cases["backward.values"]) == {"score": "0", "max_score": "20"}
    assert _properties(cases["activation.values"]) == {"score": "15", "max_score": "15"}
    assert sum(float(_properties(cases[c])["score"]) for c in CHECKS) == 50


@pytest.mark.slow
def test_ini_option_paths_are_relative_to_the_rootdir_and_the_command_line_wins(pytester, autoload, monkeypatch):
    _seed_copy(pytester, "notebooks/simple_nn_seed.ipynb")
    pytester.makeini("[pytest]\ngrader_notebooks =\n    notebooks/simple_nn_seed.ipynb\n")
    (pytester.path / "notes.txt").write_text("these are my notes, not a notebook\n")
    monkeypatch.chdir(pytester.mkdir("elsewhere"))  # run from a subdirectory: the rootdir still anchors the path

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rf", "--junitxml", "../junit.xml")
    result.assert_outcomes(passed=5, failed=3)
    result.stdout.fnmatch_lines(["FAILED *notebooks/simple_nn_seed.ipynb::backward.gradient - implied*"])
    cases = _testcases(pytester.path / "junit.xml")
    assert list(cases) == ["grading", *CHECKS]
    assert {case.get("classname") for case in cases.values()} == {"notebooks.simple_nn_seed.ipynb"}

    # A notebook on the command line replaces the ini's: a text file is graded instead and cannot be.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--grader-notebook", "../notes.txt")
    result.assert_outcomes(failed=8)
    assert "simple_nn_seed" not in result.stdout.str()


@pytest.mark.slow
def test_not_a_notebook_fails_the_grading_item_with_one_sentence(pytester, monkeypatch):
    # Autoloading off: the plugin is named explicitly, by its entry point name.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    (pytester.path / "homework.ipynb").write_text("print('I wrote a script instead')\n")
    result = pytester.runpytest_subprocess("-p", "grader", "--grader-notebook", "homework.ipynb",
                                           "--junitxml", "junit.xml")
    result.assert_outcomes(failed=8)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*_ homework.ipynb::grading _*",
        "not graded: *homework.ipynb is not a Jupyter notebook: *; export it again from Jupyter*resubmit.",
        "*_ homework.ipynb::activation.values _*",
        "not graded, so 0 of 15 points: *homework.ipynb is not a Jupyter notebook*",
    ])
    assert "Traceback" not in out
    cases = _testcases(pytester.path / "junit.xml")
    assert list(cases) == ["grading", *CHECKS]
    message = cases["grading"].find("failure").get("message")
    assert message.startswith("not graded: ") and message.endswith("resubmit.") and "\n" not in message
    assert _properties(cases["grading"]) == {"score": "0", "max_score": "100"}


@pytest.mark.slow
def test_without_options_notebooks_are_left_alone(pytester, autoload):
    _seed_copy(pytester)
    pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    assert ".ipynb" not in result.stdout.str() and "grader:" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*collected 1 item"])


def test_bad_rubric_is_a_usage_error(pytester, autoload):
    _seed_copy(pytester)
    result = pytester.runpytest_subprocess("--grader-notebook", "simple_nn_seed.ipynb", "--grader-rubric", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: grader: No rubric named 'nope'*"])


# --------------------------------------------------------------------------- in process, with a fake grader


def _report(path, checks, status="graded", error=None):
    return Report(submission=str(path), rubric="simple_nn", status=status, error=error,
                  score=sum(c.score for c in checks), max_score=100.0, checks=checks,
                  diagnoses=[Diagnosis("outer_transposed", "backward", "The outer product is transposed.")],
                  functions={"backward": FunctionInfo("backward", True, "function")})


@pytest.fixture
def fake_grader(monkeypatch, autoload):
    """Replace grade_notebook; ``calls`` records every notebook graded, ``make`` builds the report."""
    state = {"calls": [], "make": None}

    def grade_notebook(path, rubric, options):
        state["calls"].append((str(path), options.seed, rubric.name))
        return state["make"](path)

    monkeypatch.setattr("grader.grade.grade_notebook", grade_notebook)
    return state


def test_grades_once_per_notebook_and_a_missing_check_fails_closed(pytester, fake_grader):
    checks = [CheckResult(c, c.split(".")[0], True, "ok", 1.0, score=1.0, max_score=1.0)
              for c in CHECKS if c != "training.converges"]
    checks[4] = CheckResult("backward.values", "backward", False, "3 of 6 probes differ", 0.5, score=10, max_score=20)
    fake_grader["make"] = lambda path: _report(path, checks)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--grader-notebook", "a.ipynb",
                                          "--grader-seed", "7")
    result.assert_outcomes(passed=6, failed=2)
    assert [(call[0].endswith("a.ipynb"), call[1]) for call in fake_grader["calls"]] == [(True, 7)]
    result.stdout.fnmatch_lines([
        "3 of 6 probes differ", "points: 10 / 20",
        "known mistake outer_transposed: The outer product is transposed.",
        "training.converges did not run, so it scores 0 of 10.",
    ])


def test_collecting_does_not_grade(pytester, fake_grader):
    fake_grader["make"] = lambda path: pytest.fail("graded while collecting")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q",
                                          "--grader-notebook", "a.ipynb", "--grader-notebook", "b.ipynb")
    result.stdout.fnmatch_lines(["a.ipynb::grading", "a.ipynb::activation.values", "*b.ipynb::training.converges",
                                 "16 tests collected*"])
    assert fake_grader["calls"] == []


def test_a_grader_crash_fails_every_item(pytester, fake_grader):
    def crash(path):
        raise RuntimeError("internal grader bug")

    fake_grader["make"] = crash
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--grader-notebook", "a.ipynb")
    result.assert_outcomes(failed=8)
    assert len(fake_grader["calls"]) == 1
    result.stdout.fnmatch_lines(["not graded: the grader itself failed on *a.ipynb:", "*RuntimeError: internal grader bug"])


@pytest.mark.slow
def test_operator_notices_go_to_the_terminal_summary_not_into_a_test(pytester, autoload, monkeypatch):
    """What this machine did not enforce is for whoever runs the build: a section of its own, never a failure text."""
    monkeypatch.setenv("GRADER_NO_NAMESPACES", "1")
    _seed_copy(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--grader-notebook", "simple_nn_seed.ipynb",
                                           "--junitxml", "junit.xml", "-rA")
    out = result.stdout.str()
    if result.ret == pytest.ExitCode.USAGE_ERROR:
        # A root grader whose interpreter the sandbox uid cannot reach refuses instead, in one sentence.
        assert "will not run student code" in result.stderr.str() and "Traceback" not in result.stderr.str()
        return
    result.stdout.fnmatch_lines(["*grader: notes for the operator*", "*namespaces were unavailable*"])
    summary = out.split("grader: notes for the operator")[0]
    assert "namespaces were unavailable" not in summary
    junit = (pytester.path / "junit.xml").read_text()
    assert "namespaces were unavailable" not in junit
