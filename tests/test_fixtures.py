"""Every fixture notebook (student styles) graded end to end, against tests/fixtures/manifest.json.

Also prints the fixture-set figures quoted in the README, and holds them to the thresholds:

* false alarms on correct notebooks: 0 (a diagnosis, or a point lost, on a full-marks notebook);
* buggy notebooks that lose points: 100 %;
* buggy notebooks named right: >= 95 % (every expected id, and where the manifest gives the
  parameters a bug affects, a diagnosis with that id naming exactly those parameters);
* exceptions out of grading: 0 (grading must always return a report);
* correct functions that lose points because of another function's mistake: 0 (each
  fixture's ``functions_correct`` keep full marks on all their checks and get no diagnosis).
"""
from __future__ import annotations

import functools
import json
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grader.grade import Options, grade_notebook
from grader.rubric import load_rubric
from grader.sandbox.limits import Limits

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
FUNCS = ("activation", "d_activation", "forward", "backward")
# Small limits keep the suite fast; the hanging-cell fixture still gets stopped.
LIMITS = Limits(cell_timeout_s=3, call_timeout_s=3, total_timeout_s=90)
#: Thresholds of the issue ("numbers to reach").
NAMED_AT_LEAST = 0.95


class Raised:
    """What grading raised instead of returning a report (kept so one exception fails one fixture)."""

    def __init__(self, exc: BaseException):
        self.text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def __repr__(self) -> str:
        return self.text.strip().splitlines()[-1]


@functools.cache
def _rubric():
    return load_rubric("simple_nn")


def _grade(name: str, **options):
    try:
        return grade_notebook(FIXTURES / "notebooks" / name, _rubric(), Options(limits=LIMITS, **options))
    except Exception as exc:  # noqa: BLE001 - counted: grading must always return a report
        return Raised(exc)


@pytest.fixture(scope="session")
def reports():
    names = sorted(MANIFEST)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(names, pool.map(_grade, names), strict=True))


# -- what the manifest expects, and how a report measures up -----------------------------------
def expected_ids(entry: dict) -> list[str]:
    return [d if isinstance(d, str) else d["id"] for d in entry["diagnoses"]]


def naming_problems(entry: dict, report) -> list[str]:
    """Expected diagnoses the report lacks: a missing id, or the id without the expected parameters."""
    problems = []
    for expected in entry["diagnoses"]:
        if isinstance(expected, str):
            if not any(d.id == expected for d in report.diagnoses):
                problems.append(f"no {expected}")
            continue
        same_id = [d for d in report.diagnoses if d.id == expected["id"]]
        wanted = sorted(expected["parameters"])
        if not same_id:
            problems.append(f"no {expected['id']} (on {', '.join(wanted)})")
        elif not any(sorted(d.parameters) == wanted for d in same_id):
            found = "; ".join(f"on ({', '.join(d.parameters)})" for d in same_id)
            problems.append(f"{expected['id']} {found}, expected on ({', '.join(wanted)})")
    return problems


def correct_functions(entry: dict) -> list[str]:
    return entry.get("functions_correct", [f for f in FUNCS if f not in entry["functions_failing"]])


def hurt_correct_functions(entry: dict, report) -> list[str]:
    """The manifest's correct functions that lose points or are blamed for a bug anyway."""
    hurt = []
    for function in correct_functions(entry):
        lost = [f"{c.id} {c.score:g}/{c.max_score:g}" for c in report.checks
                if c.function == function and c.score < c.max_score]
        blamed = [d.id for d in report.diagnoses if d.function == function]
        if lost or blamed:
            hurt.append(f"{function} ({', '.join(lost + blamed)})")
    return hurt


def undeserved_checks(entry: dict, report) -> list[str]:
    """Checks the manifest says must earn nothing that earned points."""
    by_id = {c.id: c for c in report.checks}
    return [f"{cid} {by_id[cid].score:g}/{by_id[cid].max_score:g}" for cid in entry.get("checks_failing", [])
            if cid in by_id and by_id[cid].score > 0]


def describe(report) -> str:
    """The report's verdicts in one line, for a failure message."""
    if isinstance(report, Raised):
        return f"raised {report!r}"
    lost = ", ".join(f"{c.id} {c.score:g}/{c.max_score:g}" for c in report.checks if c.score < c.max_score)
    diagnoses = ", ".join(f"{d.id}[{d.function}{': ' + ','.join(d.parameters) if d.parameters else ''}]"
                          for d in report.diagnoses)
    return f"{report.score:g}/{report.max_score:g}; lost: {lost or '-'}; diagnoses: {diagnoses or '-'}"


# -- one test per fixture ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_fixture_is_graded_as_expected(reports, name):
    expected, report = MANIFEST[name], reports[name]
    assert not isinstance(report, Raised), report.text
    ids = [d.id for d in report.diagnoses]
    assert report.status == "graded", report.error
    if expected["expect_full_marks"]:
        assert report.score == report.max_score, [c.message for c in report.checks if not c.passed]
        assert ids == []
        return
    assert naming_problems(expected, report) == [], describe(report)
    if expected["category"] == "buggy":
        assert report.score < report.max_score
    for function in expected.get("functions_failing", []):
        lost = [c for c in report.checks if c.function == function and not c.passed]
        assert lost or any(d.function == function for d in report.diagnoses), f"{function}: {describe(report)}"
    assert undeserved_checks(expected, report) == [], describe(report)
    assert hurt_correct_functions(expected, report) == [], describe(report)
    if expected.get("activation") and expected["activation"] != "relu":
        assert report.functions["activation"].recognised_as == expected["activation"]
        assert all(c.passed for c in report.checks if c.function in ("forward", "backward"))


# -- the figures -----------------------------------------------------------------------------------------
def fixture_figures(reports) -> tuple[list[str], dict[str, list[str]]]:
    """The printed lines and, per threshold, the offending fixtures (with what the report said)."""
    graded = {n: r for n, r in reports.items() if not isinstance(r, Raised)}
    raised = sorted(n for n in reports if n not in graded)
    buggy = sorted(n for n in MANIFEST if MANIFEST[n]["category"] == "buggy")
    correct = sorted(n for n in MANIFEST if MANIFEST[n]["expect_full_marks"])
    with_parameters = sorted(n for n in buggy if any(isinstance(d, dict) for d in MANIFEST[n]["diagnoses"]))
    flawed = sorted(n for n in MANIFEST if not MANIFEST[n]["expect_full_marks"])

    kept = [n for n in buggy if n not in graded or not graded[n].score < graded[n].max_score]
    unnamed = {n: (["raised"] if n not in graded else naming_problems(MANIFEST[n], graded[n])) for n in buggy}
    unnamed = {n: p for n, p in unnamed.items() if p}
    wrong_parameters = [n for n in with_parameters if n in unnamed]
    alarms = [n for n in correct if n not in graded or graded[n].diagnoses or graded[n].score < graded[n].max_score]
    pairs = sum(len(correct_functions(MANIFEST[n])) for n in flawed)
    hurt = {n: (["raised"] if n not in graded else hurt_correct_functions(MANIFEST[n], graded[n])) for n in flawed}
    hurt = {n: h for n, h in hurt.items() if h}
    n_hurt = sum(len(h) for h in hurt.values())
    undeserved = {n: undeserved_checks(MANIFEST[n], graded[n]) for n in flawed if n in graded}
    undeserved = {n: u for n, u in undeserved.items() if u}

    lines = [
        f"fixture figures: {len(buggy) - len(kept)}/{len(buggy)} buggy lose points, "
        f"{len(buggy) - len(unnamed)}/{len(buggy)} named right, "
        f"{len(alarms)}/{len(correct)} false alarms on correct",
        f"  named with the right id and the right parameter: {len(with_parameters) - len(wrong_parameters)}"
        f"/{len(with_parameters)} (fixtures whose manifest gives the parameters)",
        f"  exceptions out of grading: {len(raised)}/{len(MANIFEST)}",
        f"  correct functions losing points for another function's mistake: {n_hurt}/{pairs} "
        f"(in {len(hurt)} of {len(flawed)} notebooks that are not all correct)",
        f"  checks that must earn nothing but did: {sum(len(u) for u in undeserved.values())}",
    ]

    def listed(names):
        return [f"{n}: {describe(reports[n])}" for n in names]

    offenders = {
        "false alarms on correct notebooks (must be 0)": listed(alarms),
        "buggy notebooks that keep every point (must be 0)": listed(kept),
        "exceptions out of grading (must be 0)": [f"{n}: {reports[n]!r}" for n in raised],
        "correct functions that lose points or are blamed (must be 0)":
            [f"{n}: {'; '.join(h)} -- {describe(reports[n])}" for n, h in sorted(hurt.items())],
        "checks that must earn nothing (must be 0)": [f"{n}: {'; '.join(u)}" for n, u in sorted(undeserved.items())],
    }
    if len(buggy) - len(unnamed) < NAMED_AT_LEAST * len(buggy):
        offenders[f"buggy notebooks not named right (at least {NAMED_AT_LEAST:.0%} must be)"] = [
            f"{n}: {'; '.join(p)} -- {describe(reports[n])}" for n, p in sorted(unnamed.items())]
    misses = [f"{n}: {'; '.join(p)} -- {describe(reports[n])}" for n, p in sorted(unnamed.items())]
    if misses:
        lines.append("  not named right (within the threshold or not):")
        lines.extend(f"    {m}" for m in misses)
    return lines, {k: v for k, v in offenders.items() if v}


def test_fixture_set_figures(reports, capsys):
    lines, offenders = fixture_figures(reports)
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert offenders == {}, "\n" + "\n".join(f"{what}:\n  " + "\n  ".join(names) for what, names in offenders.items())


def test_the_manifest_is_well_formed():
    for name, entry in MANIFEST.items():
        assert entry["category"] == name.split("/", 1)[0], name
        assert set(entry["functions_missing"]) <= set(entry["functions_failing"]) <= set(FUNCS), name
        assert set(correct_functions(entry)) == set(FUNCS) - set(entry["functions_failing"]), name
        for diagnosis in entry["diagnoses"]:
            assert isinstance(diagnosis, str) or (set(diagnosis) == {"id", "parameters"} and diagnosis["parameters"]), name
        if entry["expect_full_marks"]:
            assert not entry["diagnoses"] and not entry["functions_failing"] and not entry.get("checks_failing"), name


def test_the_figures_name_the_offenders():
    """A threshold miss lists the offending fixtures, with what the report said."""
    from grader.model import CheckResult, Diagnosis, Report

    def report(score, diagnoses=(), checks=()):
        return Report("x", "simple_nn", "graded", score=score, max_score=100, diagnoses=list(diagnoses),
                      checks=list(checks))

    correct = next(n for n in sorted(MANIFEST) if MANIFEST[n]["expect_full_marks"])
    buggy = next(n for n in sorted(MANIFEST) if MANIFEST[n]["category"] == "buggy")
    fake = {n: report(100 if MANIFEST[n]["expect_full_marks"] else 50,
                      [Diagnosis(i, "backward", "") if isinstance(d, str) else Diagnosis(i, "backward", "", tuple(d["parameters"]))
                       for d, i in zip(MANIFEST[n]["diagnoses"], expected_ids(MANIFEST[n]), strict=True)])
            for n in MANIFEST}
    fake[correct] = report(90, [Diagnosis("missing_learning_rate", "backward", "")])
    fake[buggy] = Raised(RuntimeError("boom"))
    _, offenders = fixture_figures(fake)
    assert any(correct in line for line in offenders["false alarms on correct notebooks (must be 0)"])
    assert offenders["exceptions out of grading (must be 0)"] == [f"{buggy}: RuntimeError: boom"]
    assert any(buggy in line for line in offenders["buggy notebooks that keep every point (must be 0)"])
    hurt_entry = next(n for n in sorted(MANIFEST) if MANIFEST[n]["category"] == "buggy"
                      and "forward" in correct_functions(MANIFEST[n]) and n != buggy)
    fake[hurt_entry].checks.append(CheckResult("forward.values", "forward", False, "", score=0, max_score=20))
    _, offenders = fixture_figures(fake)
    assert any(hurt_entry in line and "forward (forward.values 0/20)" in line
               for line in offenders["correct functions that lose points or are blamed (must be 0)"])


@pytest.fixture(scope="session")
def kernel_reports():
    """Every fixture through the kernel backend (nbclient + ipykernel), the next kernel starting
    while the current notebook is graded, as batch grading does."""
    from grader.sandbox.kernel import KernelSandbox

    names = sorted(MANIFEST)
    graded, upcoming = {}, KernelSandbox(LIMITS)
    try:
        for i, name in enumerate(names):
            current, upcoming = upcoming, (KernelSandbox(LIMITS) if i + 1 < len(names) else None)
            graded[name] = _grade(name, backend="kernel", prestarted=current)
    finally:
        if upcoming is not None:
            upcoming.close()
    return graded


def _verdicts(report) -> tuple:
    if isinstance(report, Raised):
        return ("raised", repr(report))
    return (report.status, report.score, [(c.id, c.passed, c.score) for c in report.checks],
            sorted((d.id, d.parameters) for d in report.diagnoses))


def test_both_backends_give_identical_reports_on_every_fixture(reports, kernel_reports):
    assert all(isinstance(r, Raised) or r.backend == "kernel" for r in kernel_reports.values())
    different = {name: (_verdicts(reports[name]), _verdicts(kernel_reports[name]))
                 for name in MANIFEST if _verdicts(reports[name]) != _verdicts(kernel_reports[name])}
    assert different == {}
