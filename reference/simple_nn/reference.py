"""The reference implementation of the assignment, on the trusted side only.

Everything is parameterised by an ``ActivationPair`` so the same code grades a
ReLU network and a student's consistent experiment with sigmoid or tanh (error
isolation: a wrong activation costs points once, in the activation checks).
The sandbox never sees this module.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from grader.assignment import Pair
from grader.memo import Memo, frozen, joint_key, value_key

ArrayFn = Callable[[np.ndarray], np.ndarray]


#: An activation and its derivative (``f``, ``df``): the core's helper pair.
ActivationPair = Pair


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


@lru_cache(maxsize=64)
def leaky_relu(alpha: float) -> ActivationPair:
    """One pair object per alpha (a plain number), so values computed with it can be cached by pair."""
    return ActivationPair(
        "leaky_relu",
        lambda z: np.where(np.asarray(z) > 0, z, alpha * np.asarray(z, dtype=float)),
        lambda z: np.where(np.asarray(z) > 0, 1.0, alpha),
        pure=True,
    )


def elu(alpha: float = 1.0) -> ActivationPair:
    return ActivationPair(
        "elu",
        lambda z: np.where(np.asarray(z) > 0, z, alpha * np.expm1(np.minimum(z, 0))),
        lambda z: np.where(np.asarray(z) > 0, 1.0, alpha * np.exp(np.minimum(z, 0))),
        pure=True,
    )


RELU = ActivationPair(
    "relu",
    lambda z: np.maximum(np.asarray(z, dtype=float), 0.0),
    lambda z: (np.asarray(z) > 0).astype(float),
    pure=True,
    display="ReLU",
)
SIGMOID = ActivationPair("sigmoid", _sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z)), pure=True)
TANH = ActivationPair("tanh", np.tanh, lambda z: 1.0 - np.tanh(z) ** 2, pure=True)
SOFTPLUS = ActivationPair("softplus", lambda z: np.logaddexp(0.0, z), _sigmoid, pure=True)
SILU = ActivationPair(
    "silu",
    lambda z: np.asarray(z, dtype=float) * _sigmoid(z),
    lambda z: _sigmoid(z) * (1.0 + np.asarray(z, dtype=float) * (1.0 - _sigmoid(z))),
    pure=True,
)
IDENTITY = ActivationPair("identity", lambda z: np.asarray(z, dtype=float), lambda z: np.ones_like(z, dtype=float),
                          pure=True)

#: Families with no free parameter, tried when recognising a student's activation.
FIXED_FAMILIES: tuple[ActivationPair, ...] = (RELU, SIGMOID, TANH, SOFTPLUS, SILU, IDENTITY, elu(1.0))


def loss(y_hat: float, y: float) -> float:
    """The notebook's squared-error loss L; the trusted side never uses the student's L.

    Written as a product rather than ``** 2``: Python's float power raises OverflowError past
    1e154, and a diverging student's training must give an infinite loss, not a crash."""
    difference = y_hat - y
    return 0.5 * difference * difference


def forward(x: np.ndarray, w1: np.ndarray, w2: np.ndarray, pair: ActivationPair = RELU) -> float:
    return float(pair.f(x @ w1) @ w2)


def backward(
    x: np.ndarray, y: float, y_hat: float, w1: np.ndarray, w2: np.ndarray, eta: float,
    pair: ActivationPair = RELU,
) -> tuple[np.ndarray, np.ndarray]:
    """One gradient step; returns new arrays and leaves the inputs untouched."""
    h = x @ w1
    d_loss = y_hat - y
    w2_partials = d_loss * pair.f(h)
    w1_partials = np.outer(x, d_loss * w2 * pair.df(h))
    return w1 - eta * w1_partials, w2 - eta * w2_partials


def gradients(x: np.ndarray, y: float, w1: np.ndarray, w2: np.ndarray, pair: ActivationPair = RELU) -> tuple[np.ndarray, np.ndarray]:
    """Analytic dL/dw1, dL/dw2 at (w1, w2) with y_hat = forward(x, w1, w2)."""
    h = x @ w1
    d_loss = forward(x, w1, w2, pair) - y
    return np.outer(x, d_loss * w2 * pair.df(h)), d_loss * pair.f(h)


def pair_key(pair: ActivationPair) -> ActivationPair | None:
    """``pair`` itself when values computed with it may be cached (a pure pair), else None."""
    return pair if pair.pure else None


def _training_curve(x: np.ndarray, y: float, w1: np.ndarray, w2: np.ndarray, eta: float, iterations: int,
                    pair: ActivationPair) -> tuple[float, ...]:
    losses = []
    with np.errstate(all="ignore"):
        for _ in range(iterations):
            y_hat = forward(x, w1, w2, pair)
            losses.append(loss(y_hat, y))
            w1, w2 = backward(x, y, y_hat, w1, w2, eta, pair)
    return tuple(losses)


#: Reference training curves: one per (pair, start, eta, iterations); a batch needs one or a few.
_CURVES = Memo(maxsize=64)


def training_curve(x: np.ndarray, y: float, w1: np.ndarray, w2: np.ndarray, eta: float, iterations: int,
                   pair: ActivationPair = RELU) -> tuple[float, ...]:
    """The reference's loss before each of ``iterations`` gradient steps from (w1, w2).

    Two hundred forward and backward steps cost more than everything else the
    checks compute for a notebook, and depend only on the pair and the start,
    so the curve is computed once per process for each pure pair.
    """
    key = joint_key(pair_key(pair), value_key(x), value_key(y), value_key(w1), value_key(w2), value_key(eta),
                    value_key(iterations))
    return _CURVES.get(key, lambda: _training_curve(frozen(x), y, frozen(w1), frozen(w2), eta, iterations, pair))
