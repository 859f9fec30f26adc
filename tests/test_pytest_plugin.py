"""The pytest plugin (grader/integrations/pytest_plugin.py): one test per rubric check, by pytest's conventions.

The end-to-end runs use ``runpytest_subprocess``, so the plugin is loaded the way a
course repository gets it: through the ``pytest11`` entry point of the installed
package (or ``-p grader`` when autoloading is off). The in-process runs swap the
grading function for a fake to check what the plugin does around it: which notebooks
it collects, node ids, JUnit, the pass mark, usage errors.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

# Imported here, before any pytester run: an in-process run restores sys.modules afterwards, and a
# grader module first imported inside one would be re-imported as a second copy by the next run,
# out of reach of monkeypatch.
import grader.grade  # noqa: F401
import grader.render._common  # noqa: F401
import grader.render.html  # noqa: F401
import grader.rubric  # noqa: F401
import grader.sandbox.confine  # noqa: F401
from grader.model import CheckResult, Diagnosis, FunctionInfo, Report
from tests.conftest import REPO, SEED

pytest_plugins = ["pytester"]

CHECKS = ["activation.values", "d_activation.values", "d_activation.gradient", "forward.values",
          "backward.values", "backward.gradient", "training.converges"]
FAILING = ["backward.values", "backward.gradient", "training.converges"]
POINTS = {"activation.values": 15, "d_activation.values": 10, "d_activation.gradient": 5, "forward.values": 20,
          "backward.values": 20, "backward.gradient": 20, "training.converges": 10}
CORRECT = REPO / "tests" / "fixtures" / "notebooks" / "correct" / "relu_maximum_docstrings.ipynb"


@pytest.fixture
def autoload(monkeypatch):
    """Plugins load from entry points, as in a plain ``pytest`` run."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)


def _seed_copy(pytester, name="simple_nn_seed.ipynb", source=SEED):
    target = pytester.path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _touch(pytester, *names):
    """Notebook files for the fake grader (it never reads them; the plugin only needs them to exist)."""
    for name in names:
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")


def _testcases(path):
    root = ET.parse(path).getroot()
    return {case.get("name"): case for case in root.iter("testcase")}


def _suite_properties(path):
    """The testsuite-level properties (where xunit2 allows them), by name."""
    root = ET.parse(path).getroot()
    return {p.get("name"): p.get("value") for suite in root.iter("testsuite")
            for props in suite.findall("properties") for p in props.findall("property")}


# The rules of the junit-10.xsd schema (Jenkins; the one pytest's own tests validate xunit2 against),
# for what pytest writes: which elements may hold which, and which attributes each may carry.
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]{0,3})?")
SUITES_ATTRS = {"name", "time", "tests", "failures", "errors"}
SUITE_REQUIRED = {"name", "tests", "failures", "errors"}
SUITE_ATTRS = SUITE_REQUIRED | {"group", "time", "skipped", "timestamp", "hostname", "id", "package", "file", "log",
                                "url", "version"}
SUITE_CHILDREN = {"testsuite", "properties", "testcase", "system-out", "system-err"}
CASE_ATTRS = {"name", "time", "classname", "group"}
CASE_CHILDREN = {"skipped", "error", "failure", "system-out", "system-err"}
VERDICT_ATTRS = {"type", "message"}


def assert_valid_xunit2(path):
    """Fail with the first place where the file breaks the schema's rules."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and set(root.attrib) <= SUITES_ATTRS
    suites = list(root)
    assert suites and all(suite.tag == "testsuite" for suite in suites)
    for suite in suites:
        assert SUITE_REQUIRED <= set(suite.attrib) <= SUITE_ATTRS, suite.attrib
        assert SUREFIRE_TIME.fullmatch(suite.get("time", "")), suite.get("time")
        for child in suite:
            assert child.tag in SUITE_CHILDREN, child.tag
            if child.tag == "properties":
                for prop in child:
                    assert prop.tag == "property" and set(prop.attrib) == {"name", "value"}, prop.attrib
            if child.tag != "testcase":
                continue
            assert "name" in child.attrib and set(child.attrib) <= CASE_ATTRS, child.attrib
            for part in child:
                assert part.tag in CASE_CHILDREN, f"<{part.tag}> inside <testcase name={child.get('name')!r}>"
                assert len(part) == 0, f"<{part.tag}> holds elements"
                if part.tag in ("skipped", "error", "failure"):
                    assert set(part.attrib) <= VERDICT_ATTRS, part.attrib


# --------------------------------------------------------------------------- in process, with a fake grader


def _report(path, checks, status="graded", error=None):
    return Report(submission=str(path), rubric="simple_nn", status=status, error=error,
                  score=sum(c.score for c in checks), max_score=100.0, checks=checks,
                  diagnoses=[Diagnosis("outer_transposed", "backward", "The outer product is transposed.")],
                  functions={"backward": FunctionInfo("backward", True, "function")})


def _half_marks(path):
    """50 of 100, like the seed notebook: the backward checks and training fail."""
    checks = [CheckResult(c, c.split(".")[0], c not in FAILING, "ok" if c not in FAILING else f"{c} is wrong",
                          1.0 if c not in FAILING else 0.0, score=0 if c in FAILING else POINTS[c],
                          max_score=POINTS[c]) for c in CHECKS]
    return _report(path, checks)


def _full_marks(path):
    checks = [CheckResult(c, c.split(".")[0], True, "ok", 1.0, score=POINTS[c], max_score=POINTS[c]) for c in CHECKS]
    return _report(path, checks)


@pytest.fixture
def fake_grader(monkeypatch, autoload):
    """Replace grade_notebook; ``calls`` records every notebook graded, ``make`` builds the report."""
    state = {"calls": [], "make": _full_marks}

    def grade_notebook(path, rubric, options):
        state["calls"].append((str(path), options.seed, rubric.name))
        return state["make"](path)

    monkeypatch.setattr("grader.grade.grade_notebook", grade_notebook)
    return state


def _run(pytester, *args):
    # hypothesis's plugin re-imports its whole package on every in-process run (pytester restores
    # sys.modules after each): 1.5 s a run, for nothing these runs use.
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args)


def test_grades_once_per_notebook_and_a_missing_check_fails_closed(pytester, fake_grader):
    _touch(pytester, "a.ipynb")
    checks = [CheckResult(c, c.split(".")[0], True, "ok", 1.0, score=1.0, max_score=1.0)
              for c in CHECKS if c != "training.converges"]
    checks[4] = CheckResult("backward.values", "backward", False, "3 of 6 probes differ", 0.5, score=10, max_score=20)
    fake_grader["make"] = lambda path: _report(path, checks)
    result = _run(pytester, "--grader-notebook", "a.ipynb", "--grader-seed", "7")
    result.assert_outcomes(passed=6, failed=2)
    assert [(call[0].endswith("a.ipynb"), call[1]) for call in fake_grader["calls"]] == [(True, 7)]
    result.stdout.fnmatch_lines([
        "3 of 6 probes differ (10 / 20 points)",
        "known mistake outer_transposed: The outer product is transposed.",
        "training.converges did not run, so it scores 0 of 10.",
    ])


def test_collecting_does_not_grade(pytester, fake_grader):
    _touch(pytester, "a.ipynb", "b.ipynb")
    fake_grader["make"] = lambda path: pytest.fail("graded while collecting")
    result = _run(pytester, "--collect-only", "-q", "--grader-notebook", "a.ipynb", "--grader-notebook", "b.ipynb")
    result.stdout.fnmatch_lines(["a.ipynb::grading", "a.ipynb::activation.values", "b.ipynb::training.converges",
                                 "16 tests collected*"])
    assert fake_grader["calls"] == []


def test_a_grader_crash_fails_every_item(pytester, fake_grader):
    _touch(pytester, "a.ipynb")

    def crash(path):
        raise RuntimeError("internal grader bug")

    fake_grader["make"] = crash
    result = _run(pytester, "--grader-notebook", "a.ipynb")
    result.assert_outcomes(failed=8)
    assert len(fake_grader["calls"]) == 1
    result.stdout.fnmatch_lines(["not graded: the grader itself failed on *a.ipynb:", "*RuntimeError: internal grader bug"])


def _verbose_ids(result, verdict="PASSED"):
    """The node ids ``pytest -v`` printed, as they are printed."""
    return re.findall(rf"^(\S.*::\S+) {verdict}\b", result.stdout.str(), re.MULTILINE)


def test_verbose_ids_paste_back_and_run_alone(pytester, fake_grader, monkeypatch):
    _touch(pytester, "nb.ipynb")
    pytester.makeini("[pytest]\ngrader_notebooks = nb.ipynb\n")
    ids = _verbose_ids(_run(pytester, "-v"))
    assert ids == [f"nb.ipynb::{name}" for name in ["grading", *CHECKS]]

    fake_grader["calls"].clear()
    for node_id in ids:  # the ini's notebook is not added when the command line names what to run
        again = _run(pytester, "-v", node_id)
        again.assert_outcomes(passed=1)
        assert _verbose_ids(again) == [node_id]
    assert len(fake_grader["calls"]) == len(ids)

    # The option with an id of its notebook: that item alone, not the notebook twice.
    again = _run(pytester, "--grader-notebook", "nb.ipynb", "nb.ipynb::backward.gradient", "-v")
    assert _verbose_ids(again) == ["nb.ipynb::backward.gradient"]
    again = _run(pytester, "--grader-notebook", "nb.ipynb", "--deselect", "nb.ipynb::grading", "-q")
    again.assert_outcomes(passed=7)

    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    again = _run(pytester, "-v", "test_plain.py")  # as with testpaths: the ini's notebook is not run, and said so
    assert _verbose_ids(again) == ["test_plain.py::test_one"]
    again.stdout.fnmatch_lines(["grader: not run, as the command line names its own paths: nb.ipynb (grader_notebooks)"])

    # From a subfolder, -v prints ids relative to it, and they run from there.
    monkeypatch.chdir(pytester.mkdir("sub"))
    ids = _verbose_ids(_run(pytester, "-v"))
    assert ids[:2] == ["../nb.ipynb::grading", "../nb.ipynb::activation.values"] and len(ids) == 8
    assert "not run" not in _run(pytester).stdout.str()
    again = _run(pytester, "-v", ids[5])
    assert _verbose_ids(again) == ["../nb.ipynb::backward.values"]


def test_positional_notebooks_are_graded_only_with_the_plugin_on_and_folders_are_never_walked(pytester, fake_grader):
    _touch(pytester, "nb.ipynb", "lectures/week1.ipynb", "lectures/.ipynb_checkpoints/week1-checkpoint.ipynb")
    pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")

    def collected(*args):
        result = _run(pytester, "--collect-only", "-q", *args)
        return result, [line for line in result.stdout.lines if "::" in line]

    result, ids = collected()  # no plugin options: notebooks are not test files
    assert ids == ["test_plain.py::test_one"]
    result, ids = collected("--grader")  # on, but walking a folder never picks a notebook
    assert ids == ["test_plain.py::test_one"]
    result, ids = collected("--grader", "nb.ipynb", "lectures/week1.ipynb")
    assert ids == [f"{nb}::{name}" for nb in ("nb.ipynb", "lectures/week1.ipynb") for name in ["grading", *CHECKS]]
    result, ids = collected("--grader-notebook", "nb.ipynb")  # named: graded beside the project's tests
    assert ids == [f"nb.ipynb::{name}" for name in ["grading", *CHECKS]] + ["test_plain.py::test_one"]
    result, ids = collected("nb.ipynb")  # an argument pytest has no collector for: its own usage error
    assert result.ret == pytest.ExitCode.USAGE_ERROR and ids == []
    assert fake_grader["calls"] == []


AWKWARD = ["we::ird.ipynb", "my nb [v2].ipynb", "my nb.ipynb", "we/ird.ipynb"]


def test_awkward_notebook_names_get_distinct_valid_ids_and_junit_names(pytester, fake_grader):
    _touch(pytester, *AWKWARD)
    args = [f"--grader-notebook={name}" for name in AWKWARD]
    result = _run(pytester, *args, "-rA", "--junitxml", "junit.xml")
    result.assert_outcomes(passed=32)
    ids = re.findall(r"^PASSED (.+)$", result.stdout.str(), re.MULTILINE)
    assert len(ids) == len(set(ids)) == 32
    for node_id in ids:  # pytest's id syntax splits each into the notebook's path and one check
        path, name = node_id.rsplit("::", 1)
        assert name in ["grading", *CHECKS] and "::" not in path and "[" not in path
    assert {node_id.rsplit("::", 1)[0] for node_id in ids} == {
        "we%3A%3Aird.ipynb", "my nb %5Bv2%5D.ipynb", "my nb.ipynb", "we/ird.ipynb"}

    assert_valid_xunit2(pytester.path / "junit.xml")
    root = ET.parse(pytester.path / "junit.xml").getroot()
    names = [(case.get("classname"), case.get("name")) for case in root.iter("testcase")]
    assert len(names) == len(set(names)) == 32
    assert {name for _, name in names} == {"grading", *CHECKS}

    # Ids select: --deselect takes the escaped one; a name pytest can read is a plain argument.
    _run(pytester, *args, "--deselect", "we%3A%3Aird.ipynb::grading").assert_outcomes(passed=31)
    again = _run(pytester, "--grader", "my nb.ipynb::backward.gradient", "-v")
    assert _verbose_ids(again) == ["my nb.ipynb::backward.gradient"]


def test_a_notebook_outside_the_rootdir_has_an_id_that_runs(pytester, fake_grader, monkeypatch):
    project = pytester.mkdir("course")
    (project / "pytest.ini").write_text("[pytest]\n")
    _touch(pytester, "submissions/nb.ipynb")
    monkeypatch.chdir(project)
    result = _run(pytester, "-v", "--grader-notebook=../submissions/nb.ipynb")
    ids = _verbose_ids(result)
    expected = (pytester.path / "submissions" / "nb.ipynb").as_posix()
    assert ids == [f"{expected}::{name}" for name in ["grading", *CHECKS]]  # not "::grading"
    again = _run(pytester, "-v", "--grader", ids[3])  # an argument outside: pytest picks a rootdir above both
    again.assert_outcomes(passed=1)
    assert [Path(node_id.split("::")[0]).name for node_id in _verbose_ids(again)] == ["nb.ipynb"]
    assert _verbose_ids(again)[0].endswith("submissions/nb.ipynb::d_activation.gradient")


def test_junit_is_valid_xunit2_with_points_in_suite_properties_and_messages(pytester, fake_grader):
    _touch(pytester, "nb.ipynb")
    fake_grader["make"] = _half_marks
    result = _run(pytester, "--grader-notebook", "nb.ipynb", "--junitxml", "junit.xml")
    result.assert_outcomes(passed=5, failed=3)
    junit = pytester.path / "junit.xml"
    assert_valid_xunit2(junit)
    cases = _testcases(junit)
    assert list(cases) == ["grading", *CHECKS]
    assert all(case.find("properties") is None for case in cases.values())
    failure = cases["backward.values"].find("failure")
    assert failure.get("message") == "backward.values is wrong (0 / 20 points)"
    assert "known mistake outer_transposed" in failure.text
    properties = _suite_properties(junit)
    assert properties == {"nb.ipynb::grading": "50/100",
                          **{f"nb.ipynb::{check}": f"{0 if check in FAILING else POINTS[check]}/{POINTS[check]}"
                             for check in CHECKS}}

    # xunit1 allows properties per test case: there they are too.
    _run(pytester, "--grader-notebook", "nb.ipynb", "--junitxml", "junit1.xml", "-o", "junit_family=xunit1")
    cases = _testcases(pytester.path / "junit1.xml")
    props = {name: {p.get("name"): p.get("value") for p in case.iter("property")} for name, case in cases.items()}
    assert props["grading"] == {"score": "50", "max_score": "100"}
    assert props["backward.gradient"] == {"score": "0", "max_score": "20"}


def test_a_pass_mark_decides_the_build_failed_checks_are_xfail(pytester, fake_grader):
    _touch(pytester, "nb.ipynb")
    fake_grader["make"] = _half_marks
    result = _run(pytester, "--grader-notebook", "nb.ipynb", "--grader-fail-under", "60", "-rA",
                  "--junitxml", "junit.xml")
    result.assert_outcomes(passed=5, xfailed=3, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "grader: 1 notebook, rubric simple_nn (*), seed 0, pass mark 60%",
        "XFAIL nb.ipynb::backward.values - *backward.values is wrong (0 / 20 points); known mistake outer_transposed",
        "FAILED nb.ipynb::score - score 50 / 100 (50%)*",
    ])
    result.stdout.fnmatch_lines(["*_ score (nb.ipynb) _*", "score 50 / 100 (50%) is under the pass mark of 60%",
                                 "backward.values: 0 / 20", "backward.gradient: 0 / 20", "training.converges: 0 / 10"])
    assert_valid_xunit2(pytester.path / "junit.xml")
    cases = _testcases(pytester.path / "junit.xml")
    assert list(cases) == ["grading", *CHECKS, "score"]
    skipped = cases["backward.gradient"].find("skipped")
    assert skipped.get("type") == "pytest.xfail" and "(0 / 20 points)" in skipped.get("message")
    assert cases["score"].find("failure") is not None
    assert _suite_properties(pytester.path / "junit.xml")["nb.ipynb::score"] == "50/100"
    assert len(fake_grader["calls"]) == 1

    # At the mark is a pass; the ini sets it, the option wins over the ini.
    pytester.makeini("[pytest]\ngrader_fail_under = 50\n")
    result = _run(pytester, "--grader-notebook", "nb.ipynb")
    result.assert_outcomes(passed=6, xfailed=3)
    assert result.ret == pytest.ExitCode.OK
    result = _run(pytester, "--grader-notebook", "nb.ipynb", "--grader-fail-under", "50.5")
    result.assert_outcomes(passed=5, xfailed=3, failed=1)
    result = _run(pytester, "--grader-notebook", "nb.ipynb", "--runxfail")  # as for any xfail: failures again
    result.assert_outcomes(passed=6, failed=3)
    result.stdout.fnmatch_lines(["*_ backward.values (nb.ipynb) _*", "backward.values is wrong (0 / 20 points)",
                                 "known mistake outer_transposed: The outer product is transposed."])


@pytest.mark.parametrize(("args", "ini", "expected"), [
    (["--grader-fail-under", "150"], "",
     "*argument --grader-fail-under: Setting fail_under = 150 from the pytest command line (--grader-fail-under) is "
     "not valid: expected a number from 0 to 100 (percent of the maximum score)."),
    (["--grader-fail-under", "nan"], "", "*Setting fail_under = nan from the pytest command line*"),
    ([], "grader_fail_under = lots",
     "ERROR: grader: Setting fail_under = 'lots' from the ini file *tox.ini (grader_fail_under) is not valid: "
     "expected a number from 0 to 100 (percent of the maximum score)."),
])
def test_a_bad_pass_mark_is_a_usage_error_naming_it(pytester, fake_grader, args, ini, expected):
    _touch(pytester, "nb.ipynb")
    pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest_subprocess("--grader-notebook", "nb.ipynb", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_a_missing_notebook_is_one_usage_error(pytester, fake_grader):
    _touch(pytester, "here.ipynb")
    result = _run(pytester, "--grader-notebook", "here.ipynb", "--grader-notebook", "gone.ipynb")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: grader: no notebook gone.ipynb in * (--grader-notebook paths are relative to "
                                 "the directory pytest runs in); check the path and the file name."])
    assert "failed" not in result.stdout.str() and fake_grader["calls"] == []

    pytester.makeini("[pytest]\ngrader_notebooks =\n    here.ipynb\n    sub/gone.ipynb\n    lost.ipynb\n")
    result = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: grader: no notebooks sub/gone.ipynb, lost.ipynb in the rootdir * "
                                 "(grader_notebooks in *tox.ini lists paths relative to it); check the path and the "
                                 "file name."])

    result = _run(pytester, "--grader-notebook", str(pytester.path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: grader: * is a folder, not a notebook; name the .ipynb file itself."])


def test_bad_rubric_is_a_usage_error(pytester, autoload):
    _seed_copy(pytester)
    result = pytester.runpytest_subprocess("--grader-notebook", "simple_nn_seed.ipynb", "--grader-rubric", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: grader: No rubric named 'nope'*"])


def test_the_plugin_module_imports_nothing_heavy():
    """The entry point loads it into every pytest run of the environment."""
    code = ("import sys, grader.integrations.pytest_plugin\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'grader')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['grader', 'grader.integrations', 'grader.integrations.pytest_plugin']"


# --------------------------------------------------------------------------- real grading, pytest in a subprocess


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
    # The failure text is the check's message with its points and the named bug: no traceback.
    result.stdout.fnmatch_lines([
        "*_ backward.values (simple_nn_seed.ipynb) _*",
        "6 of 6 probes differ from the reference* (0 / 20 points)",
        "known mistake d_activation_on_w2_partials: The w1 gradient applies d_activation*",
        "*_ training.converges (simple_nn_seed.ipynb) _*",
        "prediction after 200 iterations is 0.966886: does not reach y = 1* (0 / 10 points)",
    ])
    assert "Traceback" not in out and "NotebookCheckFailed" not in out and "raise " not in out

    junit = pytester.path / "junit.xml"
    assert_valid_xunit2(junit)
    cases = _testcases(junit)
    assert list(cases) == ["grading", *CHECKS]
    assert {case.get("classname") for case in cases.values()} == {"simple_nn_seed.ipynb"}
    failed = [name for name, case in cases.items() if case.find("failure") is not None]
    assert failed == FAILING
    failure = cases["backward.gradient"].find("failure")
    assert failure.get("message").startswith("implied gradient wrong on 6 of 6 probes")
    assert failure.get("message").endswith("(0 / 20 points)") and "\n" not in failure.get("message")
    assert "known mistake d_activation_on_w2_partials" in failure.text
    properties = _suite_properties(junit)
    assert properties["simple_nn_seed.ipynb::grading"] == "50/100"
    assert properties["simple_nn_seed.ipynb::backward.values"] == "0/20"
    assert properties["simple_nn_seed.ipynb::activation.values"] == "15/15"
    assert sum(int(properties[f"simple_nn_seed.ipynb::{c}"].split("/")[0]) for c in CHECKS) == 50


@pytest.mark.slow
def test_a_pass_mark_over_two_real_notebooks(pytester, autoload):
    """The seed (50/100) under a pass mark of 60 fails the build by its ::score item alone; a correct one passes."""
    _seed_copy(pytester)
    _seed_copy(pytester, "correct.ipynb", CORRECT)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--grader-notebook", "simple_nn_seed.ipynb",
                                           "--grader-notebook", "correct.ipynb", "--grader-fail-under", "60", "-rA",
                                           "--junitxml", "junit.xml")
    result.assert_outcomes(passed=14, xfailed=3, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "XFAIL simple_nn_seed.ipynb::backward.gradient - *implied gradient wrong on 6 of 6 probes* (0 / 20 points); "
        "known mistake d_activation_on_w2_partials",
        "FAILED simple_nn_seed.ipynb::score - score 50 / 100 (50%)*",
    ])
    result.stdout.fnmatch_lines(["PASSED correct.ipynb::score"])
    assert_valid_xunit2(pytester.path / "junit.xml")
    properties = _suite_properties(pytester.path / "junit.xml")
    assert properties["correct.ipynb::score"] == "100/100" and properties["simple_nn_seed.ipynb::score"] == "50/100"

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--grader-notebook", "simple_nn_seed.ipynb",
                                           "--grader-fail-under", "50")
    result.assert_outcomes(passed=6, xfailed=3)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.slow
def test_ini_option_paths_are_relative_to_the_rootdir_and_the_command_line_wins(pytester, autoload, monkeypatch):
    _seed_copy(pytester, "notebooks/simple_nn_seed.ipynb")
    pytester.makeini("[pytest]\ngrader_notebooks =\n    notebooks/simple_nn_seed.ipynb\n")
    (pytester.path / "notes.txt").write_text("these are my notes, not a notebook\n")
    monkeypatch.chdir(pytester.mkdir("elsewhere"))  # run from a subdirectory: the rootdir still anchors the path

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rf", "--junitxml", "../junit.xml")
    result.assert_outcomes(passed=5, failed=3)
    result.stdout.fnmatch_lines(["FAILED ../notebooks/simple_nn_seed.ipynb::backward.gradient - implied*"])
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
        "*_ grading (homework.ipynb) _*",
        "not graded: *homework.ipynb is not a Jupyter notebook: *; export it again from Jupyter*resubmit.",
        "*_ activation.values (homework.ipynb) _*",
        "not graded, so 0 of 15 points: *homework.ipynb is not a Jupyter notebook*",
    ])
    assert "Traceback" not in out
    junit = pytester.path / "junit.xml"
    assert_valid_xunit2(junit)
    cases = _testcases(junit)
    assert list(cases) == ["grading", *CHECKS]
    message = cases["grading"].find("failure").get("message")
    assert message.startswith("not graded: ") and message.endswith("resubmit.") and "\n" not in message
    assert _suite_properties(junit)["homework.ipynb::grading"] == "0/100"


@pytest.mark.slow
def test_without_options_notebooks_are_left_alone(pytester, autoload):
    _seed_copy(pytester)
    pytester.makepyfile(test_plain="import sys\n\ndef test_one():\n"
                                   "    assert 'numpy' not in sys.modules and 'grader.rubric' not in sys.modules\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    assert ".ipynb" not in result.stdout.str() and "grader:" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*collected 1 item"])


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


# --------------------------------------------------------------------------- pytest-xdist

# A conftest for the runs under xdist: each worker process loads it, so each grades with this fake,
# which logs which process graded which notebook.
XDIST_CONFTEST = '''
import os

import grader.grade
from grader.model import CheckResult, Report


def grade_notebook(path, rubric, options):
    with open(os.environ["GRADING_LOG"], "a") as log:
        log.write(f"{os.getpid()} {os.path.basename(path)}\\n")
    checks = [CheckResult(c, c.split(".")[0], True, "ok", 1.0, score=w.points, max_score=w.points)
              for c, w in rubric.checks.items()]
    return Report(submission=str(path), rubric=rubric.name, status="graded", score=rubric.max_score,
                  max_score=rubric.max_score, checks=checks)


grader.grade.grade_notebook = grade_notebook
'''


@pytest.mark.slow
@pytest.mark.parametrize("dist", ["load", "loadfile"])
def test_under_xdist_each_process_grades_a_notebook_at_most_once(pytester, autoload, monkeypatch, dist):
    pytest.importorskip("xdist")
    log = pytester.path / "grading.log"
    monkeypatch.setenv("GRADING_LOG", str(log))
    pytester.makeconftest(XDIST_CONFTEST)
    notebooks = ["a.ipynb", "b.ipynb", "c.ipynb"]
    _touch(pytester, *notebooks)
    args = [f"--grader-notebook={name}" for name in notebooks]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist", dist, *args,
                                           "--grader-fail-under", "90", "--junitxml", "junit.xml")
    result.assert_outcomes(passed=27)
    gradings = Counter(tuple(line.split()) for line in log.read_text().splitlines())
    assert gradings and max(gradings.values()) == 1  # per process, per notebook
    assert len({pid for pid, _ in gradings}) <= 2  # the workers graded, not the controller
    per_notebook = Counter(name for _, name in gradings)
    assert set(per_notebook) == set(notebooks)
    if dist == "loadfile":  # a notebook's items on one worker: graded once in the whole run
        assert all(count == 1 for count in per_notebook.values())
    # The points travel from the workers to the controller's JUnit file.
    junit = pytester.path / "junit.xml"
    assert_valid_xunit2(junit)
    properties = _suite_properties(junit)
    assert len(properties) == 27 and properties["b.ipynb::score"] == "100/100"
