"""Checks, error isolation and diagnosis, on implementations served in-process.

The functions here are test code (trusted), served by calibrate.TrustedSandbox,
which pushes every value through the wire codec as a real sandbox reply would.
"""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from grader.calibrate import grade_functions, reference_functions
from grader.rubric import load_rubric

RUBRIC = load_rubric("simple_nn")


def grade(functions, seed=0):
    run, diagnoses, score, max_score = grade_functions(functions, RUBRIC, seed)
    return run, [d.id for d in diagnoses], score, {r.id: r for r in run.results}


def with_(**overrides):
    functions = reference_functions(RUBRIC.assignment)
    functions.update(overrides)
    return functions


def student_nn(act, dact):
    """forward/backward written the way the notebook asks, calling the student's own pair."""
    def forward(x, w1, w2):
        return act(x @ w1) @ w2

    def backward(x, y, y_hat, w1, w2, eta):
        h = x @ w1
        w2_partials = (y_hat - y) * act(h)
        w1_partials = np.outer(x, (y_hat - y) * w2 * dact(h))
        return w1 - eta * w1_partials, w2 - eta * w2_partials
    return {"activation": act, "d_activation": dact, "forward": forward, "backward": backward}


def template_backward(x, y, y_hat, w1, w2, eta):
    w2_partials = (y_hat - y) * np.maximum(x @ w1, 0)
    w1_partials = np.outer((w2_partials > 0).astype(int), x)
    w1 -= eta * w1_partials
    w2 -= eta * w2_partials
    return w1, w2


def test_reference_scores_full_marks_with_no_diagnosis():
    run, ids, score, checks = grade(reference_functions(RUBRIC.assignment))
    assert score == 100 and ids == []
    assert all(r.passed for r in run.results)
    assert run.training.final_prediction == pytest.approx(1.0, abs=1e-6)


def test_template_backward_is_named_and_training_stops_short():
    run, ids, score, checks = grade(with_(backward=template_backward))
    assert ids == ["d_activation_on_w2_partials"]
    assert not checks["backward.values"].passed and not checks["backward.gradient"].passed
    assert run.training.final_prediction == pytest.approx(0.96689, abs=1e-5)
    assert checks["activation.values"].passed and checks["forward.values"].passed
    assert score == 50


def test_sigmoid_experiment_gets_full_forward_and_backward_credit_and_is_recognised():
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    run, ids, score, checks = grade(student_nn(sig, lambda z: sig(z) * (1 - sig(z))))
    assert run.recognised == "sigmoid" and run.graded_with == "sigmoid"
    for check in ("forward.values", "backward.values", "backward.gradient", "d_activation.gradient"):
        assert checks[check].passed, check
    assert not checks["activation.values"].passed  # the rubric asks for ReLU
    assert "activation_identity" not in ids and not any(i.startswith("d_activation") for i in ids)


def test_accepting_sigmoid_in_the_rubric_gives_full_marks(tmp_path):
    text = (RUBRIC.path and open(RUBRIC.path).read()).replace('accepted_activations = ["relu"]',
                                                             'accepted_activations = ["relu", "tanh"]')
    path = tmp_path / "tanh_ok.toml"
    path.write_text(text)
    (tmp_path / "simple_nn_seed.ipynb").write_bytes(Path(RUBRIC.path).with_name("simple_nn_seed.ipynb").read_bytes())
    run, diagnoses, score, max_score = grade_functions(student_nn(np.tanh, lambda z: 1 - np.tanh(z) ** 2),
                                                       load_rubric(str(path)), 0)
    assert score == max_score and diagnoses == []


def test_leaky_relu_pair_is_recognised_with_its_slope():
    leaky = lambda z: np.where(z > 0, z, 0.01 * z)  # noqa: E731
    run, ids, score, checks = grade(student_nn(leaky, lambda z: np.where(z > 0, 1.0, 0.01)))
    assert run.recognised == "leaky_relu"
    assert checks["backward.gradient"].passed and checks["forward.values"].passed


def test_a_wrong_derivative_costs_points_once():
    """backward that uses the student's own (wrong) d_activation is right given it: no second charge."""
    functions = student_nn(lambda z: np.maximum(z, 0), lambda z: np.ones_like(z))
    run, ids, score, checks = grade(functions)
    assert ids == ["d_activation_constant"]
    assert checks["backward.values"].passed and checks["backward.gradient"].passed
    assert "your own" in checks["backward.values"].message
    assert not checks["d_activation.values"].passed


def test_wrong_activation_does_not_fail_a_forward_written_correctly():
    functions = student_nn(lambda z: z * (z < 0), lambda z: (z > 0).astype(float))
    run, ids, score, checks = grade(functions)
    assert "relu_wrong_side" in ids
    assert checks["forward.values"].passed


@pytest.mark.parametrize("returned", ["list", "float32", "bool"])
def test_lists_float32_and_bools_are_accepted_when_values_are_right(returned):
    convert = {"list": lambda a: list(np.asarray(a)), "float32": lambda a: np.asarray(a, dtype=np.float32),
               "bool": lambda a: np.asarray(a) > 0}[returned]
    functions = with_(d_activation=lambda z: convert((np.asarray(z) > 0).astype(float)))
    if returned != "bool":
        functions["activation"] = lambda z: convert(np.maximum(z, 0))
    run, ids, score, checks = grade(functions)
    assert score == 100 and ids == []


def test_slope_at_exactly_zero_is_accepted_either_way():
    run, ids, score, _ = grade(with_(d_activation=lambda z: (np.asarray(z) >= 0).astype(float)))
    assert score == 100 and ids == []


def test_scalar_only_activation_is_told_apart_from_a_broken_one():
    _, ids, _, _ = grade(with_(activation=lambda z: max(0, z)))
    assert ids == ["activation_scalar_only"]

    def broken(z):
        return undefined_helper(z)  # noqa: F821
    _, ids, _, checks = grade(with_(activation=broken))
    assert ids == [] and "no known bug" not in checks["activation.values"].message  # message added by grade.py


def test_two_backward_bugs_are_both_named():
    def buggy(x, y, y_hat, w1, w2, eta):
        h = x @ w1
        w2_partials = (y_hat - y) * np.maximum(h, 0)
        w1_partials = np.outer(x, (y_hat - y) * w2 * (h > 0))
        return w2 - w2_partials, w1 - w1_partials
    _, ids, _, _ = grade(with_(backward=buggy))
    assert sorted(ids) == ["missing_learning_rate", "returns_swapped"]


def test_failing_probe_is_shown_with_inputs_expected_and_got():
    _, _, _, checks = grade(with_(forward=lambda x, w1, w2: float(np.maximum(x @ w1, 0) @ w2) + 0.5))
    details = checks["forward.values"].details
    assert set(details) >= {"inputs", "expected", "got"} and set(details["inputs"]) == {"x", "w1", "w2"}
    assert details["got"] == pytest.approx(details["expected"] + 0.5)


def test_missing_function_fails_its_checks_and_is_not_implemented():
    functions = reference_functions(RUBRIC.assignment)
    del functions["backward"]
    run, ids, score, checks = grade(functions)
    assert ids == ["not_implemented"]
    assert not checks["backward.values"].passed and not checks["training.converges"].passed
    assert checks["forward.values"].passed


def test_seed_changes_probes_but_not_verdicts():
    first, _, _, _ = grade(reference_functions(RUBRIC.assignment), seed=1)
    second, _, _, _ = grade(reference_functions(RUBRIC.assignment), seed=2)
    assert all(r.passed for r in first.results + second.results)


# --- property: correct-by-construction implementations always pass ------------

ACTIVATIONS = [
    lambda z: np.maximum(z, 0), lambda z: z * (z > 0), lambda z: np.where(z > 0, z, 0.0),
    lambda z: np.clip(z, 0, None), lambda z: (np.abs(z) + z) / 2, lambda z: [max(0.0, float(v)) for v in z],
]
DERIVATIVES = [
    lambda z: (z > 0).astype(float), lambda z: np.where(z > 0, 1, 0), lambda z: np.heaviside(z, 0.5),
    lambda z: (z > 0) * 1.0, lambda z: np.array([1.0 if v > 0 else 0.0 for v in z]), lambda z: np.sign(np.maximum(z, 0)),
]


def _forward_styles(act):
    return [
        lambda x, w1, w2: np.asarray(act(x @ w1)) @ w2,
        lambda x, w1, w2: np.dot(np.asarray(act(np.dot(x, w1))), w2),
        lambda x, w1, w2: float(np.sum(np.asarray(act(w1.T @ x)) * w2)),
        lambda x, w1, w2: (np.asarray(act((x.reshape(1, -1) @ w1).ravel())) @ w2.reshape(-1, 1)),
    ]


def _backward_styles(act, dact):
    def explicit(x, y, y_hat, w1, w2, eta):
        h = x @ w1
        delta = (y_hat - y) * w2 * np.asarray(dact(h))
        return w1 - eta * np.outer(x, delta), w2 - eta * (y_hat - y) * np.asarray(act(h))

    def loops(x, y, y_hat, w1, w2, eta):
        h = x @ w1
        g1, g2 = np.zeros_like(w1, dtype=float), np.zeros_like(w2, dtype=float)
        a, d = np.asarray(act(h)), np.asarray(dact(h))
        for j in range(len(w2)):
            g2[j] = (y_hat - y) * a[j]
            for i in range(len(x)):
                g1[i, j] = (y_hat - y) * w2[j] * d[j] * x[i]
        return [w1 - eta * g1, w2 - eta * g2]

    def in_place(x, y, y_hat, w1, w2, eta):
        h = x @ w1
        w1_partials = x[:, None] * ((y_hat - y) * w2 * np.asarray(dact(h)))[None, :]
        w2_partials = (y_hat - y) * np.asarray(act(h))
        w1 -= eta * w1_partials
        w2 -= eta * w2_partials
        return w1, w2
    return [explicit, loops, in_place]


@pytest.mark.slow
@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(0, len(ACTIVATIONS) - 1), st.integers(0, len(DERIVATIVES) - 1),
       st.integers(0, 3), st.integers(0, 2), st.integers(0, 10_000))
def test_any_correct_construction_scores_full_marks(a, d, f, b, seed):
    act, dact = ACTIVATIONS[a], DERIVATIVES[d]
    functions = {"activation": act, "d_activation": dact,
                 "forward": _forward_styles(act)[f], "backward": _backward_styles(act, dact)[b]}
    run, ids, score, checks = grade(functions, seed=seed)
    assert ids == [] and score == 100, [r for r in run.results if not r.passed]
