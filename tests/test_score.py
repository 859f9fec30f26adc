"""Tests of the score stage: points, partial credit, and the fail-closed rules.

The rules under test exist so that a crash, a broken check or a forged value
can never raise a student's percentage.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.sandbox.limits import Limits
from grader.model import CheckResult
from pathlib import Path

from grader.rubric import CheckWeight, Rubric, load_rubric
from grader.score import apply_rubric


def make_rubric(**checks: tuple[float, bool]) -> Rubric:
    weights = {name.replace("__", "."): CheckWeight(points, partial, requires=())
               for name, (points, partial) in checks.items()}
    return Rubric(
        name="t",
        title="t",
        path="<test>",
        max_score=sum(w.points for w in weights.values()),
        accepted_families=("relu",),
        checks=weights,
        limits=Limits(),
    )


RUBRIC = make_rubric(forward__values=(20.0, True), training__converges=(10.0, False))


def result(check_id: str, passed: bool, fraction: float = 0.0) -> CheckResult:
    return CheckResult(id=check_id, function=check_id.split(".")[0], passed=passed, message="", fraction=fraction)


def test_all_passing_scores_the_maximum() -> None:
    checks = [result("forward.values", True, 1.0), result("training.converges", True, 1.0)]
    assert apply_rubric(checks, RUBRIC) == (30.0, 30.0)
    assert [(c.score, c.max_score) for c in checks] == [(20.0, 20.0), (10.0, 10.0)]


def test_bundled_rubric_all_passing_is_100() -> None:
    rubric = load_rubric()
    checks = [result(check_id, True, 1.0) for check_id in rubric.checks]
    assert apply_rubric(checks, rubric) == (100.0, 100.0)


def test_passed_earns_full_points_whatever_the_fraction() -> None:
    checks = [result("forward.values", True, 0.25)]
    apply_rubric(checks, RUBRIC)
    assert checks[0].score == 20.0


def test_partial_credit_is_points_times_fraction_rounded() -> None:
    checks = [result("forward.values", False, 2 / 3), result("training.converges", True, 1.0)]
    total, maximum = apply_rubric(checks, RUBRIC)
    assert checks[0].score == 13.33
    assert checks[0].max_score == 20.0
    assert (total, maximum) == (23.33, 30.0)


def test_all_or_nothing_check_ignores_the_fraction() -> None:
    checks = [result("forward.values", True, 1.0), result("training.converges", False, 0.9)]
    assert apply_rubric(checks, RUBRIC) == (20.0, 30.0)
    assert (checks[1].score, checks[1].max_score) == (0.0, 10.0)


def test_missing_check_result_costs_its_points() -> None:
    checks = [result("forward.values", True, 1.0)]
    assert apply_rubric(checks, RUBRIC) == (20.0, 30.0)


def test_no_results_at_all_scores_zero_of_the_maximum() -> None:
    assert apply_rubric([], RUBRIC) == (0.0, 30.0)


@pytest.mark.parametrize("fraction", [math.nan, -0.5, 1.5, math.inf, -math.inf, "0.9", None, True, [0.9]])
def test_suspicious_fraction_earns_nothing(fraction: object) -> None:
    check = result("forward.values", False)
    check.fraction = fraction  # type: ignore[assignment]
    assert apply_rubric([check], RUBRIC) == (0.0, 30.0)
    assert check.score == 0.0 and check.max_score == 20.0


def test_numpy_scalars_are_honoured() -> None:
    checks = [result("forward.values", np.bool_(False), np.float32(0.5)), result("training.converges", np.bool_(True))]
    assert apply_rubric(checks, RUBRIC) == (20.0, 30.0)
    assert checks[0].score == 10.0


@pytest.mark.parametrize("passed", ["yes", 1, [True], None])
def test_only_a_real_boolean_passes(passed: object) -> None:
    check = result("training.converges", False)
    check.passed = passed  # type: ignore[assignment]
    assert apply_rubric([check], RUBRIC) == (0.0, 30.0)


def test_check_not_in_the_rubric_is_shown_with_max_zero() -> None:
    checks = [result("backward.gradient", True, 1.0), result("forward.values", True, 1.0)]
    checks[0].score = 99.0
    assert apply_rubric(checks, RUBRIC) == (20.0, 30.0)
    assert (checks[0].score, checks[0].max_score) == (0.0, 0.0)


def test_duplicate_check_ids_count_once_with_the_lowest_score() -> None:
    checks = [result("forward.values", True, 1.0), result("forward.values", False, 0.5)]
    assert apply_rubric(checks, RUBRIC) == (10.0, 30.0)
    assert [(c.score, c.max_score) for c in checks] == [(10.0, 20.0), (0.0, 0.0)]


def test_rows_add_up_to_the_total() -> None:
    rubric = make_rubric(forward__values=(1 / 3, True), backward__values=(1 / 3, True), training__converges=(1 / 3, True))
    checks = [result(check_id, False, 0.999) for check_id in rubric.checks]
    total, maximum = apply_rubric(checks, rubric)
    assert total <= maximum
    assert total == round(sum(c.score for c in checks), 2)


def test_total_never_exceeds_the_maximum_after_rounding() -> None:
    rubric = make_rubric(forward__values=(0.333, False), backward__values=(0.333, False), training__converges=(0.333, False))
    checks = [result(check_id, True) for check_id in rubric.checks]
    total, maximum = apply_rubric(checks, rubric)
    assert maximum == pytest.approx(0.999)
    assert total <= maximum
    assert all(c.score <= c.max_score for c in checks)


def test_reapplying_is_idempotent() -> None:
    checks = [result("forward.values", False, 0.5)]
    first = apply_rubric(checks, RUBRIC)
    assert apply_rubric(checks, RUBRIC) == first
    assert checks[0].score == 10.0


def test_a_check_earns_nothing_until_the_checks_it_requires_pass() -> None:
    """simple_nn's training earns points only by gradient steps: backward.gradient must pass too."""
    rubric = load_rubric()
    checks = [result(check_id, check_id != "backward.gradient", float(check_id != "backward.gradient"))
              for check_id in rubric.checks]
    score, _ = apply_rubric(checks, rubric)
    training = next(c for c in checks if c.id == "training.converges")
    assert not training.passed and training.score == 0.0 and training.fraction == 0.0
    assert training.message.endswith("it earns no points until backward.gradient passes")
    assert score == 100 - rubric.checks["backward.gradient"].points - rubric.checks["training.converges"].points


def test_a_rubric_may_drop_the_requirement(tmp_path: Path) -> None:
    text = Path(load_rubric().path).read_text().replace(
        '[checks."training.converges"]\npoints = 10', '[checks."training.converges"]\npoints = 10\nrequires = []')
    path = tmp_path / "lenient.toml"
    path.write_text(text)
    (tmp_path / "simple_nn_seed.ipynb").write_bytes(Path(load_rubric().path).with_name("simple_nn_seed.ipynb").read_bytes())
    rubric = load_rubric(path)
    assert rubric.checks["training.converges"].requires == ()
    checks = [result(check_id, check_id != "backward.gradient", float(check_id != "backward.gradient"))
              for check_id in rubric.checks]
    apply_rubric(checks, rubric)
    assert next(c for c in checks if c.id == "training.converges").score == 10.0
