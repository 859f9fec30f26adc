"""simple_nn_batch: the course's revision of "A simple neural network - from scratch", one week later.

Students write ``activation`` and ``d_activation`` (ReLU and its slope, as in the seed), ``forward``
(a batch through the 2-layer network, one prediction per sample), ``backward`` (the partials of the
loss summed over the batch, returned as ``(w1_partials, w2_partials)``) and ``step`` (one gradient
step applied to w1 and w2 in place). The template (``rubrics/simple_nn_batch.ipynb``) keeps the
seed's bug in its batch form: d_activation applied to the w2 partials; the catalogue names it
``d_activation_on_w2_partials``, as simple_nn does.
"""
from __future__ import annotations

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
    Reference,
    Step,
    Structure,
    Update,
    Values,
)

from .mutants import MUTANTS, combinations
from .probes import draw, hidden
from .reference import FIXED_FAMILIES, ITERATIONS, RELU, backward, fit_leaky_relu, forward, loss, start, step

ASSIGNMENT = Assignment(
    name="simple_nn_batch",
    title="A simple neural network - from scratch, on a batch",
    functions=(
        Function("activation", ("z",)),
        Function("d_activation", ("z",)),
        Function("forward", ("x", "w1", "w2")),
        Function("backward", ("x", "y", "y_hat", "w1", "w2")),
        Function("step", ("w1", "w2", "w1_partials", "w2_partials", "eta")),
    ),
    references={
        "forward": Reference(forward, uses_helpers=True),
        "backward": Reference(backward, uses_helpers=True),
        "step": Reference(step, uses_helpers=False),
    },
    probes=draw,
    helpers=Helpers(
        function="activation", derivative="d_activation", default=RELU, families=FIXED_FAMILIES,
        dependents=("forward", "backward"), evaluated_at=hidden, fitted=(("leaky_relu", fit_leaky_relu),),
        kinked=("relu", "leaky_relu"),
    ),
    checks=(
        HelperValues("activation.values", "activation", "helper"),
        HelperValues("d_activation.values", "d_activation", "helper", derivative=True),
        HelperDerivative("d_activation.gradient", "d_activation"),
        Values("forward.values", "forward", "network"),
        Values("backward.values", "backward", "network", derived={"y_hat": "forward"}),
        Gradient("backward.gradient", "backward", "network", Objective("forward", loss, "y"), ("w1", "w2")),
        Update("step.update", "step", "network", ("w1", "w2"), ("w1_partials", "w2_partials"), "eta",
               in_place=True),
        Converges("training.converges", Loop(
            # Fresh arrays every time: step writes into w1 and w2.
            start=start, iterations=ITERATIONS,
            steps=(
                Step("forward", result=("y_hat",)),
                Step("backward", result=("w1_partials", "w2_partials")),
                Step("step", in_place=("w1", "w2")),
            ),
            prediction="y_hat", target="y", loss=loss,
            like={"y_hat": "y", "w1_partials": "w1", "w2_partials": "w2"}, tolerance=1e-3,
        ), requires=("backward.gradient", "step.update")),
    ),
    mutants=MUTANTS,
    combinations={"backward": combinations},
    warn_if_mutates=("forward", "backward"),
    structure=Structure(
        ids={"sign": "gradient_sign_flipped", "transposed": "outer_transposed",
             "missing:the batch size n": "mean_instead_of_sum"},
        factors={"the batch size n": lambda arguments: len(arguments["y"])},
    ),
)
