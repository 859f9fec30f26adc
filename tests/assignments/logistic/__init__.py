"""logistic: a deliberately different assignment, declared here in tests/ only.

Its functions (``predict``, ``gradient``, ``update``), shapes, probes, checks and bugs share
nothing with the bundled network assignments, and it was added without touching the core:
the test that assignments really are plug-ins (tests/test_assignment_plugin.py).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from grader.assignment import (
    Assignment, Converges, Function, Gradient, Loop, Mutant, Objective, Probe, Probes, Reference, Step, Update, Values,
)

X = np.array([[1.0, 2.0, -1.0], [-1.5, 0.5, 2.0], [2.0, -1.0, 0.5], [-0.5, -2.0, 1.0]])
Y = np.array([1.0, 0.0, 1.0, 0.0])


def _sigmoid(z: Any) -> Any:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def predict(X: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return _sigmoid(X @ w + b)  # type: ignore[no-any-return]


def loss(p: np.ndarray, y: np.ndarray) -> float:
    """Summed cross-entropy."""
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return float(-np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def gradient(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    error = predict(X, w, b) - y
    return X.T @ error, float(np.sum(error))


def update(w: np.ndarray, b: float, dw: np.ndarray, db: float, lr: float) -> tuple[np.ndarray, float]:
    return w - lr * dw, b - lr * db


def _draw(rng: np.random.Generator) -> Probes:
    probes = [Probe("the template's data", {"X": X.copy(), "y": Y.copy(), "w": np.zeros(3), "b": 0.0,
                                             "dw": np.ones(3), "db": 0.5, "lr": 0.1})]
    for i, (n, d) in enumerate(((5, 3), (6, 2), (3, 4)), start=1):
        probes.append(Probe(f"random {n}x{d} #{i}", {
            "X": rng.normal(0, 1, (n, d)), "y": rng.integers(0, 2, n).astype(float), "w": rng.normal(0, 0.5, d),
            "b": float(rng.normal()), "dw": rng.normal(0, 1, d), "db": float(rng.normal()),
            "lr": float(rng.choice([0.05, 0.1]))}))
    return Probes({"points": probes})


def _predict_without_sigmoid(X: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return X @ w + b  # type: ignore[no-any-return]


def _gradient_sign_flipped(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    dw, db = gradient(X, y, w, b)
    return -dw, -db


def _gradient_mean(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    dw, db = gradient(X, y, w, b)
    return dw / len(y), db / len(y)


def _update_ascends(w: np.ndarray, b: float, dw: np.ndarray, db: float, lr: float) -> tuple[np.ndarray, float]:
    return w + lr * dw, b + lr * db


ASSIGNMENT = Assignment(
    name="logistic",
    title="Logistic regression by gradient descent",
    functions=(Function("predict", ("X", "w", "b")), Function("gradient", ("X", "y", "w", "b")),
               Function("update", ("w", "b", "dw", "db", "lr"))),
    references={"predict": Reference(predict), "gradient": Reference(gradient), "update": Reference(update)},
    probes=_draw,
    checks=(
        Values("predict.values", "predict", "points"),
        Values("gradient.values", "gradient", "points"),
        Gradient("gradient.numerical", "gradient", "points", Objective("predict", loss, "y"), ("w", "b")),
        Update("update.step", "update", "points", ("w", "b"), ("dw", "db"), "lr"),
        Converges("fit.converges", Loop(
            start=lambda: {"X": X.copy(), "y": Y.copy(), "w": np.zeros(3), "b": 0.0, "lr": 0.5},
            iterations=300,
            steps=(Step("predict", result=("p",)), Step("gradient", result=("dw", "db")),
                   Step("update", result=("w", "b"))),
            prediction="p", target="y", loss=loss, like={"p": "y", "dw": "w", "db": "b"}, tolerance=0.05,
        ), function="fit", requires=("gradient.numerical", "update.step")),
    ),
    mutants=(
        Mutant("predict_without_sigmoid", "predict", "predict returns the score X @ w + b: pass it through the "
               "sigmoid to get a probability.", (_predict_without_sigmoid,)),
        Mutant("gradient_sign_flipped", "gradient", "The gradient points the wrong way: it is X.T @ (p - y), "
               "not X.T @ (y - p).", (_gradient_sign_flipped,)),
        Mutant("gradient_averaged", "gradient", "The gradient is averaged over the samples, but the loss is "
               "their sum: drop the division by n.", (_gradient_mean,)),
        Mutant("update_ascends", "update", "update adds the gradient: gradient descent subtracts it.",
               (_update_ascends,)),
    ),
    warn_if_mutates=("gradient",),
)
