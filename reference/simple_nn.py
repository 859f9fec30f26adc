"""The reference implementation of the assignment, on the trusted side only.

Everything is parameterised by an ``ActivationPair`` so the same code grades a
ReLU network and a student's consistent experiment with sigmoid or tanh (error
isolation: a wrong activation costs points once, in the activation checks).
The sandbox never sees this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

ArrayFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ActivationPair:
    """An activation and its derivative, as the trusted side evaluates them."""

    name: str
    act: ArrayFn
    dact: ArrayFn


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def leaky_relu(alpha: float) -> ActivationPair:
    return ActivationPair(
        f"leaky_relu",
        lambda z: np.where(np.asarray(z) > 0, z, alpha * np.asarray(z, dtype=float)),
        lambda z: np.where(np.asarray(z) > 0, 1.0, alpha),
    )


def elu(alpha: float = 1.0) -> ActivationPair:
    return ActivationPair(
        "elu",
        lambda z: np.where(np.asarray(z) > 0, z, alpha * np.expm1(np.minimum(z, 0))),
        lambda z: np.where(np.asarray(z) > 0, 1.0, alpha * np.exp(np.minimum(z, 0))),
    )


RELU = ActivationPair(
    "relu",
    lambda z: np.maximum(np.asarray(z, dtype=float), 0.0),
    lambda z: (np.asarray(z) > 0).astype(float),
)
SIGMOID = ActivationPair("sigmoid", _sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z)))
TANH = ActivationPair("tanh", np.tanh, lambda z: 1.0 - np.tanh(z) ** 2)
SOFTPLUS = ActivationPair("softplus", lambda z: np.logaddexp(0.0, z), _sigmoid)
SILU = ActivationPair(
    "silu",
    lambda z: np.asarray(z, dtype=float) * _sigmoid(z),
    lambda z: _sigmoid(z) * (1.0 + np.asarray(z, dtype=float) * (1.0 - _sigmoid(z))),
)
IDENTITY = ActivationPair("identity", lambda z: np.asarray(z, dtype=float), lambda z: np.ones_like(z, dtype=float))

#: Families with no free parameter, tried when recognising a student's activation.
FIXED_FAMILIES: tuple[ActivationPair, ...] = (RELU, SIGMOID, TANH, SOFTPLUS, SILU, IDENTITY, elu(1.0))


def loss(y_hat: float, y: float) -> float:
    """The notebook's squared-error loss L; the trusted side never uses the student's L."""
    return 0.5 * (y_hat - y) ** 2


def forward(x: np.ndarray, w1: np.ndarray, w2: np.ndarray, pair: ActivationPair = RELU) -> float:
    return float(pair.act(x @ w1) @ w2)


def backward(
    x: np.ndarray, y: float, y_hat: float, w1: np.ndarray, w2: np.ndarray, eta: float,
    pair: ActivationPair = RELU,
) -> tuple[np.ndarray, np.ndarray]:
    """One gradient step; returns new arrays and leaves the inputs untouched."""
    h = x @ w1
    d_loss = y_hat - y
    w2_partials = d_loss * pair.act(h)
    w1_partials = np.outer(x, d_loss * w2 * pair.dact(h))
    return w1 - eta * w1_partials, w2 - eta * w2_partials


def gradients(x: np.ndarray, y: float, w1: np.ndarray, w2: np.ndarray, pair: ActivationPair = RELU) -> tuple[np.ndarray, np.ndarray]:
    """Analytic dL/dw1, dL/dw2 at (w1, w2) with y_hat = forward(x, w1, w2)."""
    h = x @ w1
    d_loss = forward(x, w1, w2, pair) - y
    return np.outer(x, d_loss * w2 * pair.dact(h)), d_loss * pair.act(h)
