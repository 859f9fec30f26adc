"""simple_nn_batch's reference implementation, on the trusted side only.

The course's revision of the seed: ``x`` is a batch (one sample per row), the loss ``L`` is summed
over the batch, ``backward`` returns the partials instead of stepping, and ``step`` applies the
update to the caller's arrays in place. Everything that uses the activation takes the pair as its
last argument, so the same code grades a ReLU network and a student's consistent experiment with
another activation (error isolation: a wrong activation costs points once, in its own checks).

The activation families are copied from the simple_nn package rather than imported: an assignment
package is loaded by path under a private name and may only import itself relatively, so two
assignments never depend on each other's files.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from grader.assignment import Pair


def _constant(values: Any) -> np.ndarray:
    """A read-only float array: the template's data must never be changed by a caller in place."""
    array = np.array(values, dtype=float)
    array.setflags(write=False)
    return array


# --------------------------------------------------------------------------- the template's data

#: The batch of two samples, one per row, and their targets (cell "toy mlp example").
X = _constant([[2.0, 3.0], [3.0, 4.0]])
Y = _constant([1.0, 0.0])
#: The fixed initial weights, as in the seed (cells "re-initialize weights").
W1 = _constant([[-0.78, 0.13], [0.85, 0.23]])
W2 = _constant([1.8, 0.40])
#: Measured from W1, W2 with ReLU: 0.03 for 2000 iterations reaches Y (within 1e-3 after 1134 steps);
#: 0.01 for 200 stops near [0.35, 0.47]; 0.04 and 0.05 kill both hidden units (prediction [0, 0]).
ETA = 0.03
ITERATIONS = 2000


def start() -> dict[str, Any]:
    """The template's starting point as fresh writable arrays (step updates w1 and w2 in place)."""
    return {"x": X.copy(), "y": Y.copy(), "w1": W1.copy(), "w2": W2.copy(), "eta": ETA}


# --------------------------------------------------------------------------- activation families


def _float(z: Any) -> np.ndarray:
    return np.asarray(z, dtype=float)


def _sigmoid(z: Any) -> np.ndarray:
    """The logistic function through tanh: no overflow warning for large negative z."""
    result: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * _float(z)))
    return result


def _relu(z: Any) -> np.ndarray:
    result: np.ndarray = np.maximum(_float(z), 0.0)
    return result


def _relu_slope(z: Any) -> np.ndarray:
    result: np.ndarray = (_float(z) > 0).astype(float)
    return result


@lru_cache(maxsize=64)
def leaky_relu(alpha: float) -> Pair:
    """One pair object per alpha (a plain number), so values computed with it can be cached by pair."""

    def f(z: Any) -> np.ndarray:
        z = _float(z)
        result: np.ndarray = np.where(z > 0, z, alpha * z)
        return result

    def df(z: Any) -> np.ndarray:
        result: np.ndarray = np.where(_float(z) > 0, 1.0, alpha)
        return result

    return Pair("leaky_relu", f, df, pure=True, display=f"leaky ReLU (slope {alpha:g} below 0)")


def elu(alpha: float = 1.0) -> Pair:
    """ELU; only alpha = 1 is a recognised family (a fitted alpha is not worth the ambiguity)."""

    def f(z: Any) -> np.ndarray:
        z = _float(z)
        result: np.ndarray = np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))
        return result

    def df(z: Any) -> np.ndarray:
        z = _float(z)
        result: np.ndarray = np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0.0)))
        return result

    return Pair("elu", f, df, pure=True, display="ELU")


def _tanh(z: Any) -> np.ndarray:
    result: np.ndarray = np.tanh(_float(z))
    return result


def _tanh_slope(z: Any) -> np.ndarray:
    t = np.tanh(_float(z))
    result: np.ndarray = 1.0 - t * t
    return result


def _softplus(z: Any) -> np.ndarray:
    result: np.ndarray = np.logaddexp(0.0, _float(z))
    return result


def _silu(z: Any) -> np.ndarray:
    z = _float(z)
    result: np.ndarray = z * _sigmoid(z)
    return result


def _silu_slope(z: Any) -> np.ndarray:
    z = _float(z)
    s = _sigmoid(z)
    result: np.ndarray = s * (1.0 + z * (1.0 - s))
    return result


def _identity(z: Any) -> np.ndarray:
    return _float(z)


def _ones(z: Any) -> np.ndarray:
    result: np.ndarray = np.ones_like(_float(z))
    return result


RELU = Pair("relu", _relu, _relu_slope, pure=True, display="ReLU")
SIGMOID = Pair("sigmoid", _sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z)), pure=True)
TANH = Pair("tanh", _tanh, _tanh_slope, pure=True)
SOFTPLUS = Pair("softplus", _softplus, _sigmoid, pure=True)
SILU = Pair("silu", _silu, _silu_slope, pure=True, display="SiLU")
IDENTITY = Pair("identity", _identity, _ones, pure=True)
ELU = elu(1.0)

#: Families with no free parameter, tried in this order when recognising a student's activation.
FIXED_FAMILIES: tuple[Pair, ...] = (RELU, SIGMOID, TANH, SOFTPLUS, SILU, IDENTITY, ELU)


def fit_leaky_relu(grid: np.ndarray, values: np.ndarray) -> Pair | None:
    """A leaky ReLU with the slope the values show below 0, if that is what they are; else None.

    The identity on the positive side and one constant ratio in (0, 1) on the negative side: a
    ratio of 0 is ReLU (a fixed family, tried first) and 1 the identity.
    """
    grid = _float(grid)
    try:
        values = _float(values)
    except (TypeError, ValueError):
        return None
    if values.shape != grid.shape or not np.all(np.isfinite(values)):
        return None
    positive, negative = grid > 0, grid < 0
    if not positive.any() or not negative.any():
        return None
    if not np.allclose(values[positive], grid[positive], rtol=1e-4, atol=1e-6):
        return None
    ratios = values[negative] / grid[negative]
    alpha = float(np.median(ratios))
    if 0 < alpha < 1 and np.allclose(ratios, alpha, rtol=1e-4, atol=1e-7):
        return leaky_relu(round(alpha, 12))
    return None


# --------------------------------------------------------------------------- the network


def loss(y_hat: Any, y: Any) -> float:
    """The template's ``L``: half the squared error, summed over the batch.

    Written as a product rather than ``** 2``: Python's float power raises OverflowError past
    1e154, and a diverging student's training must give an infinite loss, not a crash.
    """
    difference = _float(y_hat) - _float(y)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(0.5 * np.sum(difference * difference))


def forward(x: np.ndarray, w1: np.ndarray, w2: np.ndarray, pair: Pair) -> np.ndarray:
    """One prediction per sample: shape (n,) for x of shape (n, n_in).

    The pair is called on the whole hidden pre-activation ``x @ w1`` at once, never row by row:
    a student's own pair is tabulated at exactly that array (``Helpers.evaluated_at``).
    """
    hidden = _float(x) @ _float(w1)
    result: np.ndarray = _float(pair.f(hidden)) @ _float(w2)
    return result


def backward(x: np.ndarray, y: np.ndarray, y_hat: np.ndarray, w1: np.ndarray, w2: np.ndarray,
             pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """The partials of ``loss(forward(x, w1, w2), y)``: (dL/dw1, dL/dw2), shaped like w1 and w2.

    Summed over the batch, as L is; the inputs are left untouched.
    """
    x = _float(x)
    hidden = x @ _float(w1)
    error = _float(y_hat) - _float(y)                               # dL/dy_hat, shape (n,)
    w2_partials: np.ndarray = _float(pair.f(hidden)).T @ error      # (n_hidden,)
    delta = np.outer(error, _float(w2)) * _float(pair.df(hidden))   # dL/dhidden, (n, n_hidden)
    w1_partials: np.ndarray = x.T @ delta                           # (n_in, n_hidden)
    return w1_partials, w2_partials


def step(w1: np.ndarray, w2: np.ndarray, w1_partials: np.ndarray, w2_partials: np.ndarray, eta: float) -> None:
    """One gradient-descent step written into the caller's arrays; returns None, as the template's does."""
    w1 -= eta * w1_partials
    w2 -= eta * w2_partials


def train(pair: Pair = RELU, eta: float = ETA, iterations: int = ITERATIONS,
          values: dict[str, Any] | None = None,
          on_step: Callable[[int, np.ndarray], None] | None = None) -> tuple[np.ndarray, tuple[float, ...]]:
    """The template's training loop with the reference: (the last prediction, the loss before each step).

    For tests and for choosing ETA and ITERATIONS; the grader runs the loop itself (``Converges``).
    """
    start_values = values if values is not None else start()
    x, y = start_values["x"], start_values["y"]
    w1, w2 = _float(start_values["w1"]).copy(), _float(start_values["w2"]).copy()
    losses: list[float] = []
    y_hat = forward(x, w1, w2, pair)
    with np.errstate(all="ignore"):
        for i in range(iterations):
            y_hat = forward(x, w1, w2, pair)
            losses.append(loss(y_hat, y))
            if on_step is not None:
                on_step(i, y_hat)
            w1_partials, w2_partials = backward(x, y, y_hat, w1, w2, pair)
            step(w1, w2, w1_partials, w2_partials, eta)
    return y_hat, tuple(losses)
