"""Diagnosis by structure: variants of catalogue bugs that no mutant spells out are named by parameter.

Each backward below is written the way a student would get it slightly wrong; no exact mutant matches
it (the catalogue's ``missing_learning_rate`` leaves eta out of *both* updates), so diagnosis compares
the gradient each update implies with the true one, parameter by parameter. Graded through the
trusted side (calibrate's in-process sandbox, values through the wire codec), so these are unit tests.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from grader.calibrate import grade_functions, reference_functions
from grader.rubric import load_rubric

RUBRIC = load_rubric("simple_nn")


def relu(z: Any) -> Any:
    return np.maximum(0, z)


def slope(z: Any) -> Any:
    return (np.asarray(z) > 0).astype(float)


def _diagnosed(backward: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    functions = reference_functions(RUBRIC.assignment)
    functions["backward"] = backward
    _, diagnoses, score, max_score = grade_functions(functions, RUBRIC, 0)
    assert score < max_score
    return [(d.id, d.function, d.parameters) for d in diagnoses]


def eta_missing_on_w1(x, y, y_hat, w1, w2, eta):  # type: ignore[no-untyped-def]
    h = x @ w1
    w2_partials = (y_hat - y) * relu(h)
    w1_partials = np.outer(x, (y_hat - y) * w2 * slope(h))
    return w1 - w1_partials, w2 - eta * w2_partials


def sign_flipped_on_w2(x, y, y_hat, w1, w2, eta):  # type: ignore[no-untyped-def]
    h = x @ w1
    w2_partials = (y_hat - y) * relu(h)
    w1_partials = np.outer(x, (y_hat - y) * w2 * slope(h))
    return w1 - eta * w1_partials, w2 + eta * w2_partials


def loss_derivative_left_out_of_both(x, y, y_hat, w1, w2, eta):  # type: ignore[no-untyped-def]
    h = x @ w1
    return w1 - eta * np.outer(x, w2 * slope(h)), w2 - eta * relu(h)


def template_bug_partly_fixed(x, y, y_hat, w1, w2, eta):  # type: ignore[no-untyped-def]
    h = x @ w1
    w2_partials = (y_hat - y) * relu(h)
    w1_partials = np.outer(x, (y_hat - y) * w2 * slope(w2_partials))  # the slope taken of the w2 partials
    return w1 - eta * w1_partials, w2 - eta * w2_partials


@pytest.mark.parametrize(("backward", "expected"), [
    (eta_missing_on_w1, ("missing_learning_rate", "backward", ("w1",))),
    (sign_flipped_on_w2, ("gradient_sign_flipped", "backward", ("w2",))),
    (template_bug_partly_fixed, ("d_activation_on_w2_partials", "backward", ("w1",))),
], ids=lambda v: getattr(v, "__name__", ""))
def test_a_variant_is_named_with_the_parameter_it_affects(backward: Any, expected: tuple[str, str, tuple[str, ...]]) -> None:
    assert expected in _diagnosed(backward)


def test_the_loss_derivative_left_out_of_both_gradients_is_named_on_both() -> None:
    named = _diagnosed(loss_derivative_left_out_of_both)
    assert ("missing_loss_derivative", "backward", ("w1", "w2")) in named, named


def test_an_unnamed_shape_is_said_in_one_sentence() -> None:
    def twice_the_w1_step(x, y, y_hat, w1, w2, eta):  # type: ignore[no-untyped-def]
        h = x @ w1
        w1_partials = np.outer(x, (y_hat - y) * w2 * slope(h))
        return w1 - 2 * eta * w1_partials, w2 - eta * (y_hat - y) * relu(h)

    functions = reference_functions(RUBRIC.assignment)
    functions["backward"] = twice_the_w1_step
    _, diagnoses, _, _ = grade_functions(functions, RUBRIC, 0)
    assert [(d.id, d.parameters) for d in diagnoses] == [("gradient_structure", ("w1",))]
    assert diagnoses[0].message == "The w1 step is 2\u00d7 what it should be."


def test_exact_mutants_keep_their_names() -> None:
    """What the catalogue already names is named as before (calibrate proves every mutant)."""
    def both_rates_missing(x, y, y_hat, w1, w2, eta):  # type: ignore[no-untyped-def]
        h = x @ w1
        return w1 - np.outer(x, (y_hat - y) * w2 * slope(h)), w2 - (y_hat - y) * relu(h)

    assert [d[:2] for d in _diagnosed(both_rates_missing)] == [("missing_learning_rate", "backward")]


def test_a_batch_variant_is_named_with_its_parameter() -> None:
    """simple_nn_batch: the w1 partials averaged over the batch, the w2 partials summed (one of two fixed)."""
    rubric = load_rubric("simple_nn_batch")

    def w1_averaged(x, y, y_hat, w1, w2):  # type: ignore[no-untyped-def]
        h = x @ w1
        error = y_hat - y
        w2_partials = relu(h).T @ error
        w1_partials = x.T @ (np.outer(error, w2) * slope(h))
        return w1_partials / len(y), w2_partials

    functions = reference_functions(rubric.assignment)
    functions["backward"] = w1_averaged
    _, diagnoses, score, max_score = grade_functions(functions, rubric, 0)
    assert score < max_score
    assert ("mean_instead_of_sum", ("w1",)) in [(d.id, d.parameters) for d in diagnoses], diagnoses
