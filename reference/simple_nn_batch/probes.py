"""Where the simple_nn_batch functions are evaluated: the template's own data, and seeded random batches.

The template's data is a square batch (two samples of two inputs) through a square w1 with every
hidden pre-activation positive, so on its own it hides transposes, batch-size mistakes and every
bug in the activation's slope. The random probes are therefore non-square (n, n_in and n_hidden
mostly differ), have batch sizes from 1 to 4, and mixed-sign pre-activations kept at least
KINK_MARGIN from ReLU's kink, which is what makes the finite-difference checks meaningful.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from grader.assignment import Probe, Probes

from .reference import RELU, backward, forward, start

#: Smallest |pre-activation| allowed in a random probe. Finite differences use steps of at most
#: 1e-3 on weights multiplying inputs below 2, so every perturbed pre-activation stays on the
#: same side of 0 (the DESIGN's |z| > 10·h rule).
KINK_MARGIN = 0.1
#: (batch size, n_in, n_hidden) of the random network probes. Mostly non-square so a transposed
#: product shows (as a wrong shape or an error); (3, 3, 2) lets "x.T @ w1" run and (3, 2, 2) lets
#: "x @ w1.T" run, so those transposes are seen giving wrong values on mixed signs too; a batch of
#: one is where a mean equals a sum, which tells the batch bugs from the others.
RANDOM_SHAPES: tuple[tuple[int, int, int], ...] = ((1, 3, 4), (2, 4, 3), (3, 3, 2), (4, 2, 3), (3, 2, 2))
#: Learning rates of the random probes (step's own check): never 1, so a missing eta shows.
RATES = (0.01, 0.05, 0.1)


def hidden(values: Mapping[str, Any]) -> np.ndarray:
    """The hidden pre-activation ``x @ w1``, shape (n, n_hidden): where forward and backward call the activation."""
    result: np.ndarray = np.asarray(values["x"]) @ np.asarray(values["w1"])
    return result


def template_values() -> dict[str, Any]:
    """The template's start, with the partials its first iteration computes (so step's check on it is
    exactly the loop's first step)."""
    values = start()
    y_hat = forward(values["x"], values["w1"], values["w2"], RELU)
    w1_partials, w2_partials = backward(values["x"], values["y"], y_hat, values["w1"], values["w2"], RELU)
    return {**values, "w1_partials": w1_partials, "w2_partials": w2_partials}


def _away_from_kink(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Mixed-sign values with |v| >= KINK_MARGIN, both signs present (when there are two or more)."""
    while True:
        values = rng.uniform(-2.0, 2.0, shape)
        values = np.where(np.abs(values) < KINK_MARGIN, np.sign(values + 1e-12) * (KINK_MARGIN + 0.3), values)
        if values.size < 2 or (values.min() < 0 < values.max()):
            return values


def _network_probe(rng: np.random.Generator, name: str, n: int, n_in: int, n_hidden: int) -> Probe:
    """A random batch whose every hidden pre-activation is at least KINK_MARGIN from 0, with both signs.

    Rejection sampling, as simple_nn does it: inputs of magnitude 0.5 to 2 with random signs, so no
    input is near 0 either, and output weights away from 0, so every hidden unit matters.
    """
    for _ in range(10_000):
        x = rng.uniform(0.5, 2.0, (n, n_in)) * rng.choice([-1.0, 1.0], (n, n_in))
        w1 = rng.normal(0.0, 0.8, (n_in, n_hidden))
        w2 = rng.normal(0.0, 1.0, n_hidden)
        h = x @ w1
        if np.min(np.abs(h)) >= KINK_MARGIN and h.min() < 0 < h.max() and np.min(np.abs(w2)) > 0.05:
            y = np.round(rng.uniform(-1.0, 2.0, n), 3)
            eta = float(rng.choice(RATES))
            w1_partials = rng.normal(0.0, 1.0, (n_in, n_hidden))
            w2_partials = rng.normal(0.0, 1.0, n_hidden)
            return Probe(name, {"x": x, "y": y, "w1": w1, "w2": w2, "eta": eta,
                                "w1_partials": w1_partials, "w2_partials": w2_partials})
    raise RuntimeError("could not draw a probe away from the kink")  # pragma: no cover


def network_probes(rng: np.random.Generator) -> list[Probe]:
    """The template's own data first, then one random batch per shape of RANDOM_SHAPES."""
    probes = [Probe("notebook data", template_values())]
    for i, (n, n_in, n_hidden) in enumerate(RANDOM_SHAPES, start=1):
        probes.append(_network_probe(rng, f"random batch of {n}, {n_in} inputs, {n_hidden} hidden #{i}",
                                     n, n_in, n_hidden))
    return probes


def helper_probes(rng: np.random.Generator, network: list[Probe]) -> list[Probe]:
    """Inputs for activation and d_activation.

    The template's own pre-activations (a 2x2 matrix: forward calls the activation on a batch),
    mixed-sign vectors and matrices, one vector with exact zeros (the derivative is not graded
    there for ReLU), a random probe's hidden layer, and unscored scalars that tell a scalar-only or
    vector-only implementation from a merely broken one. Vectors and matrices are both scored, so a
    helper that loops over the elements of a vector (and so fails on a batch) loses points.
    """
    probes = [Probe("notebook pre-activation", {"z": hidden(network[0].values)})]
    probes.append(Probe("mixed signs, length 4", {"z": _away_from_kink(rng, (4,))}))
    probes.append(Probe("mixed signs, 3x2 matrix", {"z": _away_from_kink(rng, (3, 2))}))
    with_zero = _away_from_kink(rng, (7,))
    with_zero[[1, 4]] = 0.0
    probes.append(Probe("mixed signs with exact zeros", {"z": with_zero}))
    probes.append(Probe("a probe's hidden layer", {"z": hidden(network[4].values)}))
    probes.append(Probe("scalar 1.5", {"z": 1.5}, scored=False))
    probes.append(Probe("scalar -2.0", {"z": -2.0}, scored=False))
    return probes


def derivative_grid() -> np.ndarray:
    """Points for recognising the activation and checking d_activation numerically (none near the kink)."""
    grid = np.linspace(-3.0, 3.0, 24)
    result: np.ndarray = grid[np.abs(grid) >= KINK_MARGIN]
    return result


def draw(rng: np.random.Generator) -> Probes:
    """Every probe of one seed; the network set is drawn first so a seed's reports stay reproducible."""
    network = network_probes(rng)
    helper = helper_probes(rng, network)
    return Probes({"helper": helper, "network": network}, derivative_grid())
