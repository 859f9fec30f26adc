"""Every fixture notebook (student styles) graded end to end, against tests/fixtures/manifest.json.

Also prints the fixture-set figures quoted in the README: how many buggy
notebooks lose points, how many are named with the right id, false alarms.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grader.grade import Options, grade_notebook
from grader.sandbox.limits import Limits
from grader.rubric import load_rubric

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
# Small limits keep the suite fast; the hanging-cell fixture still gets stopped.
LIMITS = Limits(cell_timeout_s=3, call_timeout_s=3, total_timeout_s=90)


@pytest.fixture(scope="session")
def reports():
    rubric = load_rubric("simple_nn")
    names = sorted(MANIFEST)
    with ThreadPoolExecutor(max_workers=2) as pool:
        graded = pool.map(lambda n: grade_notebook(FIXTURES / "notebooks" / n, rubric, Options(limits=LIMITS)), names)
        return dict(zip(names, graded))


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_fixture_is_graded_as_expected(reports, name):
    expected, report = MANIFEST[name], reports[name]
    ids = [d.id for d in report.diagnoses]
    assert report.status == "graded", report.error
    if expected["expect_full_marks"]:
        assert report.score == report.max_score, [c.message for c in report.checks if not c.passed]
        assert ids == []
        return
    for bug in expected["diagnoses"]:
        assert bug in ids, f"expected {bug}, got {ids}"
    if expected["category"] == "buggy":
        assert report.score < report.max_score
    for function in expected.get("functions_failing", []):
        lost = [c for c in report.checks if c.function == function and not c.passed]
        assert lost or any(d.function == function for d in report.diagnoses), function
    if expected.get("activation") and expected["activation"] != "relu":
        assert report.functions["activation"].recognised_as == expected["activation"]
        assert all(c.passed for c in report.checks if c.function in ("forward", "backward"))


def test_fixture_set_figures(reports, capsys):
    buggy = [n for n in MANIFEST if MANIFEST[n]["category"] == "buggy"]
    correct = [n for n in MANIFEST if MANIFEST[n]["expect_full_marks"]]
    lose = sum(reports[n].score < reports[n].max_score for n in buggy)
    named = sum(set(MANIFEST[n]["diagnoses"]) <= {d.id for d in reports[n].diagnoses} for n in buggy)
    false_alarms = sum(bool(reports[n].diagnoses) or reports[n].score < reports[n].max_score for n in correct)
    with capsys.disabled():
        print(f"\nfixture figures: {lose}/{len(buggy)} buggy lose points, {named}/{len(buggy)} named right, "
              f"{false_alarms}/{len(correct)} false alarms on correct")
    assert lose == len(buggy) and false_alarms == 0
    assert named >= 0.95 * len(buggy)


@pytest.fixture(scope="session")
def kernel_reports():
    """Every fixture through the kernel backend (nbclient + ipykernel), the next kernel starting
    while the current notebook is graded, as batch grading does."""
    from grader.sandbox.kernel import KernelSandbox

    rubric = load_rubric("simple_nn")
    names = sorted(MANIFEST)
    graded, upcoming = {}, KernelSandbox(LIMITS)
    try:
        for i, name in enumerate(names):
            current, upcoming = upcoming, (KernelSandbox(LIMITS) if i + 1 < len(names) else None)
            graded[name] = grade_notebook(FIXTURES / "notebooks" / name, rubric,
                                          Options(limits=LIMITS, backend="kernel", prestarted=current))
    finally:
        if upcoming is not None:
            upcoming.close()
    return graded


def _verdicts(report) -> tuple:
    return (report.status, report.score, [(c.id, c.passed, c.score) for c in report.checks],
            sorted(d.id for d in report.diagnoses))


def test_both_backends_give_identical_reports_on_every_fixture(reports, kernel_reports):
    assert all(r.backend == "kernel" for r in kernel_reports.values())
    different = {name: (_verdicts(reports[name]), _verdicts(kernel_reports[name]))
                 for name in MANIFEST if _verdicts(reports[name]) != _verdicts(kernel_reports[name])}
    assert different == {}
