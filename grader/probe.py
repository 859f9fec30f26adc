"""The probe stage: choose the inputs the student's functions are called with.

Probes are chosen on the trusted side from a seeded generator, so a report can
be reproduced with ``--seed``. They cover the notebook's own data (where every
pre-activation is positive, so it cannot reveal most backward bugs) and general
shapes with mixed-sign pre-activations kept well away from ReLU's kink, which is
what makes the finite-difference checks meaningful.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from grader.memo import Memo, frozen

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


@dataclass(frozen=True)
class NetworkProbe:
    """One point at which forward and backward are evaluated."""

    name: str
    x: np.ndarray
    w1: np.ndarray
    w2: np.ndarray
    y: float
    eta: float

    @property
    def hidden_pre_activation(self) -> np.ndarray:
        return self.x @ self.w1


@dataclass(frozen=True)
class ActivationProbe:
    """An input for activation / d_activation; unscored probes only help diagnosis."""

    name: str
    z: np.ndarray | float
    scored: bool = True


def notebook_probe() -> NetworkProbe:
    return NetworkProbe("notebook data", NOTEBOOK_X.copy(), NOTEBOOK_W1.copy(), NOTEBOOK_W2.copy(), NOTEBOOK_Y, NOTEBOOK_ETA)


def _away_from_kink(rng: np.random.Generator, size: int) -> np.ndarray:
    """Mixed-sign values with |v| >= KINK_MARGIN and both signs present."""
    while True:
        values = rng.uniform(-2.0, 2.0, size)
        values = np.where(np.abs(values) < KINK_MARGIN, np.sign(values + 1e-12) * (KINK_MARGIN + 0.3), values)
        if size < 2 or (values.min() < 0 < values.max()):
            return values


def _network_probe(rng: np.random.Generator, name: str, n_in: int, n_hidden: int) -> NetworkProbe:
    for _ in range(1000):
        x = rng.uniform(0.5, 2.0, n_in) * rng.choice([-1.0, 1.0], n_in)
        w1 = rng.normal(0.0, 0.8, (n_in, n_hidden))
        w2 = rng.normal(0.0, 1.0, n_hidden)
        h = x @ w1
        if np.min(np.abs(h)) >= KINK_MARGIN and h.min() < 0 < h.max() and np.min(np.abs(w2)) > 0.05:
            y = float(np.round(rng.uniform(-1.0, 2.0), 3))
            eta = float(rng.choice([0.01, 0.05, 0.1]))
            return NetworkProbe(name, x, w1, w2, y, eta)
    raise RuntimeError("could not draw a probe away from the kink")  # pragma: no cover


def network_probes(rng: np.random.Generator) -> list[NetworkProbe]:
    probes = [notebook_probe()]
    for i, (n_in, n_hidden) in enumerate(GENERAL_SHAPES, start=1):
        probes.append(_network_probe(rng, f"random {n_in}x{n_hidden} #{i}", n_in, n_hidden))
    return probes


def activation_probes(rng: np.random.Generator, network: list[NetworkProbe]) -> list[ActivationProbe]:
    """The notebook's own pre-activations, general vectors (one with exact zeros), and scalars."""
    probes = [ActivationProbe("notebook pre-activation", network[0].hidden_pre_activation)]
    probes.append(ActivationProbe("mixed signs, length 4", _away_from_kink(rng, 4)))
    with_zero = _away_from_kink(rng, 7)
    with_zero[[1, 4]] = 0.0
    probes.append(ActivationProbe("mixed signs with exact zeros", with_zero))
    probes.append(ActivationProbe("a probe's hidden layer", network[3].hidden_pre_activation))
    # Scalars are not graded (the notebook only uses vectors) but tell a
    # scalar-only implementation from one that is simply broken.
    probes.append(ActivationProbe("scalar 1.5", 1.5, scored=False))
    probes.append(ActivationProbe("scalar -2.0", -2.0, scored=False))
    return probes


def derivative_grid() -> np.ndarray:
    """Points for recognising the activation and checking d_activation numerically."""
    grid = np.linspace(-3.0, 3.0, 24)
    return grid[np.abs(grid) >= KINK_MARGIN]


def _frozen_network(probe: NetworkProbe) -> NetworkProbe:
    return replace(probe, x=frozen(probe.x), w1=frozen(probe.w1), w2=frozen(probe.w2))


def _frozen_activation(probe: ActivationProbe) -> ActivationProbe:
    return replace(probe, z=frozen(probe.z)) if isinstance(probe.z, np.ndarray) else probe


def _writable_network(probe: NetworkProbe) -> NetworkProbe:
    return replace(probe, x=probe.x.copy(), w1=probe.w1.copy(), w2=probe.w2.copy())


def _writable_activation(probe: ActivationProbe) -> ActivationProbe:
    return replace(probe, z=probe.z.copy()) if isinstance(probe.z, np.ndarray) else probe


def _draw(seed: int) -> tuple[tuple[NetworkProbe, ...], tuple[ActivationProbe, ...]]:
    rng = np.random.default_rng(seed)
    network = network_probes(rng)
    activation = activation_probes(rng, network)
    return tuple(map(_frozen_network, network)), tuple(map(_frozen_activation, activation))


#: Probes by seed: a batch grades every notebook with the same one.
_BY_SEED = Memo(maxsize=16)


def probes_for_seed(seed: int) -> tuple[list[NetworkProbe], list[ActivationProbe]]:
    """The network and activation probes of ``seed``, as ``network_probes`` then ``activation_probes``
    draw them from ``np.random.default_rng(seed)``.

    Drawn once per process for each integer seed (the rejection sampling costs
    more than the rest of the probe stage), and handed out as fresh writable
    copies, so nothing a caller does to its probes reaches the next caller.
    """
    key = ("seed", seed) if type(seed) is int else None
    network, activation = _BY_SEED.get(key, lambda: _draw(seed))
    return list(map(_writable_network, network)), list(map(_writable_activation, activation))
