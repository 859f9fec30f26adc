"""Where the simple_nn functions are evaluated: the notebook's own data, and seeded general probes.

The notebook's data makes every pre-activation positive, so it cannot reveal most backward
bugs; the general probes have mixed-sign pre-activations kept well away from ReLU's kink,
which is what makes the finite-difference checks meaningful.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from grader.assignment import Probe, Probes

# The notebook's own initialisation (cells "re-initialize weights").
NOTEBOOK_X = np.array([2.0, 3.0])
NOTEBOOK_Y = 1.0
NOTEBOOK_W1 = np.array([[-0.78, 0.13], [0.85, 0.23]])
NOTEBOOK_W2 = np.array([1.8, 0.40])
NOTEBOOK_ETA = 0.01
NOTEBOOK_ITERATIONS = 200

#: Smallest |pre-activation| allowed in a general probe. Finite differences use
#: steps of at most 1e-3 on weights of inputs below 3, so every perturbed
#: pre-activation stays on the same side of 0 (the DESIGN's |z| > 10·h rule).
KINK_MARGIN = 0.1
#: (n_in, n_hidden) of the general probes: square ones hide transposes, so most are not.
GENERAL_SHAPES = ((2, 2), (2, 2), (3, 4), (3, 4), (4, 3))


def notebook_values() -> dict[str, Any]:
    """The notebook's own starting point, as fresh arrays."""
    return {"x": NOTEBOOK_X.copy(), "w1": NOTEBOOK_W1.copy(), "w2": NOTEBOOK_W2.copy(), "y": NOTEBOOK_Y,
            "eta": NOTEBOOK_ETA}


def hidden(values: Mapping[str, Any]) -> np.ndarray:
    """The hidden pre-activation ``x @ w1``: where forward and backward evaluate the activation."""
    result: np.ndarray = values["x"] @ values["w1"]
    return result


def _away_from_kink(rng: np.random.Generator, size: int) -> np.ndarray:
    """Mixed-sign values with |v| >= KINK_MARGIN and both signs present."""
    while True:
        values = rng.uniform(-2.0, 2.0, size)
        values = np.where(np.abs(values) < KINK_MARGIN, np.sign(values + 1e-12) * (KINK_MARGIN + 0.3), values)
        if size < 2 or (values.min() < 0 < values.max()):
            return values


def _network_probe(rng: np.random.Generator, name: str, n_in: int, n_hidden: int) -> Probe:
    for _ in range(1000):
        x = rng.uniform(0.5, 2.0, n_in) * rng.choice([-1.0, 1.0], n_in)
        w1 = rng.normal(0.0, 0.8, (n_in, n_hidden))
        w2 = rng.normal(0.0, 1.0, n_hidden)
        h = x @ w1
        if np.min(np.abs(h)) >= KINK_MARGIN and h.min() < 0 < h.max() and np.min(np.abs(w2)) > 0.05:
            y = float(np.round(rng.uniform(-1.0, 2.0), 3))
            eta = float(rng.choice([0.01, 0.05, 0.1]))
            return Probe(name, {"x": x, "w1": w1, "w2": w2, "y": y, "eta": eta})
    raise RuntimeError("could not draw a probe away from the kink")  # pragma: no cover


def network_probes(rng: np.random.Generator) -> list[Probe]:
    probes = [Probe("notebook data", notebook_values())]
    for i, (n_in, n_hidden) in enumerate(GENERAL_SHAPES, start=1):
        probes.append(_network_probe(rng, f"random {n_in}x{n_hidden} #{i}", n_in, n_hidden))
    return probes


def activation_probes(rng: np.random.Generator, network: list[Probe]) -> list[Probe]:
    """The notebook's own pre-activations, general vectors (one with exact zeros), and scalars."""
    probes = [Probe("notebook pre-activation", {"z": hidden(network[0].values)})]
    probes.append(Probe("mixed signs, length 4", {"z": _away_from_kink(rng, 4)}))
    with_zero = _away_from_kink(rng, 7)
    with_zero[[1, 4]] = 0.0
    probes.append(Probe("mixed signs with exact zeros", {"z": with_zero}))
    probes.append(Probe("a probe's hidden layer", {"z": hidden(network[3].values)}))
    # Scalars are not graded (the notebook only uses vectors) but tell a
    # scalar-only implementation from one that is simply broken.
    probes.append(Probe("scalar 1.5", {"z": 1.5}, scored=False))
    probes.append(Probe("scalar -2.0", {"z": -2.0}, scored=False))
    return probes


def derivative_grid() -> np.ndarray:
    """Points for recognising the activation and checking d_activation numerically."""
    grid = np.linspace(-3.0, 3.0, 24)
    return grid[np.abs(grid) >= KINK_MARGIN]


def draw(rng: np.random.Generator) -> Probes:
    """Every probe of one seed, drawn in the order that keeps reports reproducible across versions."""
    network = network_probes(rng)
    activation = activation_probes(rng, network)
    return Probes({"network": network, "activation": activation}, derivative_grid())
