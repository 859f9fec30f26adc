"""simple_nn: "A simple neural network - from scratch", the week-4 tutorial as handed out.

Students write ``activation`` and ``d_activation`` (ReLU and its slope), ``forward`` (one
sample through a 2-layer network) and ``backward`` (one gradient step, returning the new
weights). The template itself applies ``d_activation`` to the w2 partials; the catalogue
names that bug ``dact_on_w2_partials``.
"""
from __future__ import annotations

import numpy as np

from grader.assignment import (
    Assignment,
    Converges,
    Function,
    Gradient,
    HelperDerivative,
    Helpers,
    HelperValues,
    Loop,
    Objective,
    Pair,
    Reference,
    Step,
    Structure,
    Values,
)

from .mutants import CATALOG, backward_pairs
from .probes import NOTEBOOK_ITERATIONS, draw, hidden, notebook_values
from .reference import FIXED_FAMILIES, RELU, backward, forward, leaky_relu, loss


def fit_leaky_relu(grid: np.ndarray, values: np.ndarray) -> Pair | None:
    """A leaky ReLU with the slope the values show on the negative side, if that is what they are."""
    positive, negative = grid > 0, grid < 0
    if not np.allclose(values[positive], grid[positive], rtol=1e-4, atol=1e-6):
        return None
    ratios = values[negative] / grid[negative]
    alpha = float(np.median(ratios))
    if 0 < alpha < 1 and np.allclose(ratios, alpha, rtol=1e-4, atol=1e-7):
        return leaky_relu(alpha)
    return None


ASSIGNMENT = Assignment(
    name="simple_nn",
    title="A simple neural network - from scratch",
    functions=(
        Function("activation", ("z",)),
        Function("d_activation", ("z",)),
        Function("forward", ("x", "w1", "w2")),
        Function("backward", ("x", "y", "y_hat", "w1", "w2", "eta")),
    ),
    references={"forward": Reference(forward, uses_helpers=True), "backward": Reference(backward, uses_helpers=True)},
    probes=draw,
    helpers=Helpers(
        function="activation", derivative="d_activation", default=RELU, families=FIXED_FAMILIES,
        dependents=("forward", "backward"), evaluated_at=hidden, fitted=(("leaky_relu", fit_leaky_relu),),
        kinked=("relu", "leaky_relu"),
    ),
    checks=(
        HelperValues("activation.values", "activation", "activation"),
        HelperValues("d_activation.values", "d_activation", "activation", derivative=True),
        HelperDerivative("d_activation.gradient", "d_activation"),
        Values("forward.values", "forward", "network"),
        Values("backward.values", "backward", "network", derived={"y_hat": "forward"}),
        Gradient("backward.gradient", "backward", "network", Objective("forward", loss, "y"), ("w1", "w2"), rate="eta"),
        Converges("training.converges", Loop(
            start=notebook_values, iterations=NOTEBOOK_ITERATIONS,
            steps=(Step("forward", result=("y_hat",)), Step("backward", result=("w1", "w2"))),
            prediction="y_hat", target="y", loss=loss, like={"y_hat": "y"}, tolerance=1e-3,
        ), requires=("backward.gradient",)),
    ),
    mutants=CATALOG,
    combinations={"backward": backward_pairs},
    warn_if_mutates=("backward",),
    structure=Structure(
        ids={"sign": "gradient_sign_flipped", "rate": "missing_learning_rate", "transposed": "outer_transposed",
             "missing:the loss derivative y_hat - y": "missing_loss_derivative",
             "sign_of:the loss derivative y_hat - y": "d_activation_on_w2_partials"},
        factors={"the loss derivative y_hat - y": lambda arguments: arguments["y_hat"] - arguments["y"]},
    ),
)
