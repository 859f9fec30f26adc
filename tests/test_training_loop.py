"""The generic training check (grader.training): a declared Loop, run call by call or from the sandbox's
audited chain, on trusted implementations served through the wire codec as a sandbox reply would be.

Two loops: simple_nn's (forward binds y_hat, backward returns the new weights) and a batch loop whose
last step updates the weights in place. The sandbox's own chain (``train``) is a shortcut: an honest
one is believed after a sampled audit, a lying one never is.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from grader import memo
from grader.assignment import Assignment, Converges, Function, Loop, Probes, Reference, Step
from grader.load import Cell
from grader.model import CheckResult, Training
from grader.sandbox import protocol
from grader.sandbox.process import CallOutcome, CallRequest, Chain, LoopStep, Shape, SubprocessSandbox
from grader.training import check_training, reference_curve

# --------------------------------------------------------------------------- two assignments


def relu(z: Any) -> Any:
    return np.maximum(z, 0.0)


def forward(x: Any, w1: Any, w2: Any) -> float:
    return float(relu(x @ w1) @ w2)


def backward(x: Any, y: Any, y_hat: Any, w1: Any, w2: Any, eta: Any) -> tuple[Any, Any]:
    h = x @ w1
    return w1 - eta * np.outer(x, (y_hat - y) * w2 * (h > 0)), w2 - eta * (y_hat - y) * relu(h)


def template_backward(x: Any, y: Any, y_hat: Any, w1: Any, w2: Any, eta: Any) -> tuple[Any, Any]:
    """The bug the simple_nn template ships with: training stops short at 0.966886."""
    w2_partials = (y_hat - y) * np.maximum(x @ w1, 0)
    w1_partials = np.outer((w2_partials > 0).astype(int), x)
    w1 -= eta * w1_partials
    w2 -= eta * w2_partials
    return w1, w2


def diverging_backward(x: Any, y: Any, y_hat: Any, w1: Any, w2: Any, eta: Any) -> tuple[Any, Any]:
    h = x @ w1
    return w1 + 10 * eta * np.outer(x, (y_hat - y) * w2 * (h > 0)), w2 + 10 * eta * (y_hat - y) * relu(h)


def frozen_backward(x: Any, y: Any, y_hat: Any, w1: Any, w2: Any, eta: Any) -> tuple[Any, Any]:
    return w1, w2


def simple_start() -> dict[str, Any]:
    return {"x": np.array([2.0, 3.0]), "y": 1.0, "w1": np.array([[-0.78, 0.13], [0.85, 0.23]]),
            "w2": np.array([1.8, 0.40]), "eta": 0.01}


def loss(y_hat: Any, y: Any) -> float:
    difference = np.asarray(y_hat, dtype=float) - y
    return float(0.5 * np.sum(difference * difference))


SIMPLE_LOOP = Loop(start=simple_start, iterations=200,
                   steps=(Step("forward", result=("y_hat",)), Step("backward", result=("w1", "w2"))),
                   prediction="y_hat", target="y", loss=loss, like={"y_hat": "y"})
SIMPLE = Assignment(
    name="simple", title="simple_nn's loop",
    functions=(Function("forward", ("x", "w1", "w2")), Function("backward", ("x", "y", "y_hat", "w1", "w2", "eta"))),
    references={"forward": Reference(forward), "backward": Reference(backward)},
    probes=lambda rng: Probes({}), checks=(Converges("training.converges", SIMPLE_LOOP),),
)


def batch_forward(x: Any, w1: Any, w2: Any) -> Any:
    return relu(x @ w1) @ w2


def batch_backward(x: Any, y: Any, y_hat: Any, w1: Any, w2: Any) -> tuple[Any, Any]:
    h = x @ w1
    d = (y_hat - y) / len(y)
    return x.T @ (d[:, None] * w2[None, :] * (h > 0)), relu(h).T @ d


def step(w1: Any, w2: Any, w1_partials: Any, w2_partials: Any, eta: Any) -> None:
    w1 -= eta * w1_partials
    w2 -= eta * w2_partials


def rebinding_step(w1: Any, w2: Any, w1_partials: Any, w2_partials: Any, eta: Any) -> None:
    """Looks like an update, but only rebinds the local names: the caller's arrays stay as they were."""
    w1 = w1 - eta * w1_partials
    w2 = w2 - eta * w2_partials


def batch_start() -> dict[str, Any]:
    return {"x": np.array([[2.0, 3.0], [1.0, 0.5]]), "y": np.array([1.0, 0.5]),
            "w1": np.array([[-0.78, 0.13, 0.4], [0.85, 0.23, -0.3]]), "w2": np.array([1.8, 0.40, 0.5]), "eta": 0.2}


BATCH_LOOP = Loop(start=batch_start, iterations=200,
                  steps=(Step("forward", result=("y_hat",)), Step("backward", result=("w1_partials", "w2_partials")),
                         Step("step", in_place=("w1", "w2"))),
                  prediction="y_hat", target="y", loss=loss,
                  like={"y_hat": "y", "w1_partials": "w1", "w2_partials": "w2"})
BATCH = Assignment(
    name="batch", title="a batch loop with an in-place step",
    functions=(Function("forward", ("x", "w1", "w2")), Function("backward", ("x", "y", "y_hat", "w1", "w2")),
               Function("step", ("w1", "w2", "w1_partials", "w2_partials", "eta"))),
    references={"forward": Reference(batch_forward), "backward": Reference(batch_backward), "step": Reference(step)},
    probes=lambda rng: Probes({}), checks=(Converges("training.converges", BATCH_LOOP),),
)

SIMPLE_FUNCTIONS = {"forward": forward, "backward": backward}
BATCH_FUNCTIONS = {"forward": batch_forward, "backward": batch_backward, "step": step}


# --------------------------------------------------------------------------- serving them like a sandbox

def wire(value: Any) -> Any:
    blobs: list[bytes] = []
    return protocol.decode_value(protocol.encode_value(value, blobs), blobs)


class Served:
    """A Caller whose sandbox serves trusted functions, every value through the wire codec (as
    calibrate.TrustedSandbox does); ``train``/``replay`` only when given, as a sandbox may offer them."""

    def __init__(self, assignment: Assignment, functions: Mapping[str, Callable[..., Any]],
                 train: Callable[..., Chain | None] | None = None,
                 replay: Callable[..., dict[str, np.ndarray] | None] | None = None) -> None:
        self.functions = dict(functions)
        self.found = {name: name in functions for name in assignment.names}
        self.sandbox = self
        #: The function of every call the grader made (ordinary calls only).
        self.calls: list[str] = []
        if train is not None:
            self.train = train
        if replay is not None:
            self.replay = replay

    def serve(self, request: CallRequest) -> CallOutcome:
        function = self.functions.get(request.function)
        if function is None:
            return CallOutcome("missing")
        args = [wire(a) for a in request.args]
        try:
            with np.errstate(all="ignore"):
                value = function(*args)
        except Exception as exc:  # noqa: BLE001 - a served function's failure is that call's outcome
            return CallOutcome("raised", error=f"{type(exc).__name__}: {exc}")
        after = tuple(wire(a) for a in args) if request.args_after else None
        return CallOutcome("ok", value=wire(value), args_after=after)

    def call_many(self, requests: Sequence[CallRequest]) -> list[CallOutcome]:
        self.calls.extend(r.function for r in requests)
        return [self.serve(r) for r in requests]

    def call(self, function: str, arg_tuples: Sequence[tuple[Any, ...]], args_after: bool = True) -> list[CallOutcome]:
        if not self.found.get(function):
            return [CallOutcome("missing") for _ in arg_tuples]
        return self.call_many([CallRequest(function, args, args_after) for args in arg_tuples])

    def passed(self, check_id: str) -> bool:
        return False

    def output_excerpt(self) -> str:
        return ""

    def close(self) -> None:
        pass


def _bound(step: LoopStep, outcome: CallOutcome, shapes: Mapping[str, Shape]) -> dict[str, Any] | None:
    """What a call binds, read as the sandbox's worker reads it (protocol.shaped_values)."""
    if not outcome.ok:
        return None
    bound: dict[str, Any] = {}
    if step.result:
        values = protocol.shaped_values(outcome.value, [shapes[name] for name in step.result])
        if values is None:
            return None
        bound.update(zip(step.result, values, strict=True))
    for name in step.in_place:
        assert outcome.args_after is not None
        value = protocol.shaped_value(outcome.args_after[step.parameters.index(name)], shapes[name])
        if value is None:
            return None
        bound[name] = value
    return bound


def _stack(values: list[Any], shape: Shape) -> np.ndarray:
    if shape == ():
        return np.asarray(values, dtype=float)
    return np.stack(values) if values else np.zeros((0, *(shape or ())))


def honest_train(served: Served) -> Callable[..., Chain | None]:
    """The worker's ``train`` in Python: the loop run call by call, recorded as a chain."""
    def train(steps: Sequence[LoopStep], start: Mapping[str, Any], shapes: Mapping[str, Shape],
              iterations: int) -> Chain | None:
        state = {name: wire(value) for name, value in start.items()}
        outputs: list[dict[str, list[Any]]] = [{name: [] for name in s.bound} for s in steps]
        counts = [0] * len(steps)
        for iteration in range(iterations):
            for k, s in enumerate(steps):
                outcome = served.serve(CallRequest(s.function, tuple(state[p] for p in s.parameters), bool(s.in_place)))
                bound = _bound(s, outcome, shapes)
                if bound is None:
                    return Chain([{n: _stack(v, shapes[n]) for n, v in o.items()} for o in outputs], counts,
                                 iteration, k, s.function, outcome)
                for name, value in bound.items():
                    outputs[k][name].append(value)
                    state[name] = value
                counts[k] += 1
        return Chain([{n: _stack(v, shapes[n]) for n, v in o.items()} for o in outputs], counts)
    return train


def honest_replay(served: Served) -> Callable[..., dict[str, np.ndarray] | None]:
    """The worker's ``replay`` in Python: one step at every iteration, independently."""
    def replay(step: LoopStep, fixed: Mapping[str, Any], stacked: Mapping[str, np.ndarray], count: int,
               shapes: Mapping[str, Shape]) -> dict[str, np.ndarray] | None:
        outputs: dict[str, list[Any]] = {name: [] for name in step.bound}
        for i in range(count):
            args = tuple(fixed[p] if p in fixed else stacked[p][i] for p in step.parameters)
            bound = _bound(step, served.serve(CallRequest(step.function, args, bool(step.in_place))), shapes)
            if bound is None:
                return None
            for name, value in bound.items():
                outputs[name].append(value)
        return {name: _stack(values, shapes[name]) for name, values in outputs.items()}
    return replay


def run(assignment: Assignment, functions: Mapping[str, Callable[..., Any]], chain: str = "none",
        lie: Callable[[Chain], Chain] | None = None) -> tuple[CheckResult, Training, Served]:
    """The training check of ``assignment`` on ``functions``; ``chain``: "none" (call by call), "honest"
    (the sandbox's own chain and replays), or "lying" (its chain passed through ``lie`` first)."""
    served = Served(assignment, functions)
    if chain != "none":
        train, served.replay = honest_train(served), honest_replay(served)

        def offered(*args: Any) -> Chain | None:
            got = train(*args)
            return lie(got) if lie is not None and got is not None else got
        served.train = offered
    (check,) = assignment.checks
    assert isinstance(check, Converges)
    result, training = check_training(check, assignment, served, None)
    return result, training, served


# --------------------------------------------------------------------------- the verdicts

@pytest.mark.parametrize("chain", ["none", "honest"])
def test_simple_loop_converges_with_the_reference_functions(chain: str) -> None:
    result, training, _ = run(SIMPLE, SIMPLE_FUNCTIONS, chain)
    assert result.passed and result.fraction == 1.0
    assert result.message == "prediction after 200 iterations is 1.000000: reaches y = 1 (within 0.001)"
    assert training.ran == training.iterations == 200 and training.what_ran() == "200 iterations"
    assert isinstance(training.final_prediction, float) and training.target == 1.0
    assert training.loss == pytest.approx(training.reference_loss, rel=1e-9)
    assert result.details == {"final_prediction": training.final_prediction}


@pytest.mark.parametrize("chain", ["none", "honest"])
def test_the_template_bug_stops_short_of_the_target(chain: str) -> None:
    result, training, _ = run(SIMPLE, {**SIMPLE_FUNCTIONS, "backward": template_backward}, chain)
    assert not result.passed and result.fraction == 0.0
    assert result.message == "prediction after 200 iterations is 0.966886: does not reach y = 1 (within 0.001)"
    assert training.ran == 200


@pytest.mark.parametrize("chain", ["none", "honest"])
def test_batch_loop_with_an_in_place_step_converges(chain: str) -> None:
    result, training, _ = run(BATCH, BATCH_FUNCTIONS, chain)
    assert result.passed, result.message
    assert result.message == ("prediction after 200 iterations is [1.000134, 0.499565]: "
                              "reaches y = [1, 0.5] (within 0.001)")
    assert training.target == [1.0, 0.5]
    assert isinstance(training.final_prediction, list) and len(training.final_prediction) == 2
    assert training.loss == pytest.approx(training.reference_loss, rel=1e-9)


@pytest.mark.parametrize("chain", ["none", "honest"])
def test_an_in_place_step_that_rebinds_does_not_train(chain: str) -> None:
    result, training, _ = run(BATCH, {**BATCH_FUNCTIONS, "step": rebinding_step}, chain)
    assert not result.passed and "does not reach y = [1, 0.5]" in result.message
    assert training.ran == 200
    assert len(set(training.loss)) == 1  # the weights never moved: every iteration predicts the same


@pytest.mark.parametrize("chain", ["none", "honest"])
def test_a_diverging_loop_stops_and_names_the_iteration_and_the_function(chain: str) -> None:
    result, training, _ = run(SIMPLE, {**SIMPLE_FUNCTIONS, "backward": diverging_backward}, chain)
    assert not result.passed
    assert result.message == f"training stopped at iteration {training.ran + 1}: forward gave inf"
    assert 0 < training.ran < 200 and training.what_ran() == f"{training.ran} of 200 iterations (then it stopped)"


@pytest.mark.parametrize("chain", ["none", "honest"])
def test_an_in_place_update_to_infinity_stops_training(chain: str) -> None:
    huge = {**BATCH_FUNCTIONS, "step": lambda w1, w2, g1, g2, eta: step(w1, w2, g1 * 1e308, g2 * 1e308, eta)}
    result, training, _ = run(BATCH, huge, chain)
    assert not result.passed
    assert re.fullmatch(r"training stopped at iteration 1: step left w1 = \[\[.*inf.*", result.message, re.DOTALL)
    assert training.ran == 1


@pytest.mark.parametrize("chain", ["none", "honest"])
def test_a_result_of_the_wrong_shape_stops_training_with_a_clear_message(chain: str) -> None:
    transposed = {**BATCH_FUNCTIONS, "backward": lambda *args: tuple(g.T for g in batch_backward(*args))}
    result, training, _ = run(BATCH, transposed, chain)
    assert not result.passed
    assert result.message.startswith("training stopped at iteration 1: backward gave ([[")
    assert training.ran == 1  # the prediction of the first iteration was made
    result, training, _ = run(SIMPLE, {**SIMPLE_FUNCTIONS, "forward": lambda x, w1, w2: relu(x @ w1) * w2}, chain)
    assert result.message.startswith("training stopped at iteration 1: forward gave [")
    assert training.ran == 0 and training.final_prediction is None


def test_a_call_that_raises_stops_training_in_its_own_words() -> None:
    def broken(*args: Any) -> Any:
        raise ValueError("shapes (2,) and (3,) not aligned")
    result, _, _ = run(BATCH, {**BATCH_FUNCTIONS, "step": broken})
    assert result.message == ("training stopped at iteration 1: step raised ValueError: "
                              "shapes (2,) and (3,) not aligned")


def test_every_function_of_the_loop_must_be_defined() -> None:
    result, training, served = run(SIMPLE, {"forward": forward})
    assert result.message == "needs both forward and backward to be defined" and not result.passed
    assert served.calls == [] and training.ran == 0 and len(training.reference_loss) == 200
    result, _, _ = run(BATCH, {"forward": batch_forward, "backward": batch_backward})
    assert result.message == "needs forward, backward and step to be defined"


def test_an_honest_chain_is_believed_after_auditing_a_few_iterations() -> None:
    _, _, served = run(SIMPLE, SIMPLE_FUNCTIONS, "honest")
    # iterations 0, 100 and 199 of each step, one request per step
    assert sorted(served.calls) == ["backward"] * 3 + ["forward"] * 3
    _, _, served = run(BATCH, {**BATCH_FUNCTIONS, "step": rebinding_step}, "honest")
    assert len(served.calls) == 9


def test_the_reference_curve_is_computed_once_per_loop_and_pair() -> None:
    first = reference_curve(SIMPLE, SIMPLE_LOOP)
    assert reference_curve(SIMPLE, SIMPLE_LOOP) is first and len(first) == 200
    with memo.disabled():
        assert reference_curve(SIMPLE, SIMPLE_LOOP) == first
    assert reference_curve(BATCH, BATCH_LOOP)[-1] < 1e-6


# --------------------------------------------------------------------------- lying chains

def _converged_fixed_point(chain: Chain) -> Chain:
    """A chain that sits at weights predicting y exactly from the first iteration on."""
    n = chain.counts[0]
    w1, w2 = np.array([[0.1, 0.0], [0.1, 0.0]]), np.array([2.0, 0.0])
    return Chain([{"y_hat": np.ones(n)}, {"w1": np.stack([w1] * n), "w2": np.stack([w2] * n)}], [n, n])


def _one_honest_iteration_then_a_jump(chain: Chain) -> Chain:
    fake = _converged_fixed_point(chain)
    for k, outputs in enumerate(chain.outputs):
        for name, stack in outputs.items():
            fake.outputs[k][name][0] = stack[0]
    return fake


def _the_reference_run(chain: Chain) -> Chain:
    """The reference's own chain, exactly, offered for functions that do something else."""
    served = Served(SIMPLE, SIMPLE_FUNCTIONS)
    genuine = honest_train(served)(
        [LoopStep("forward", ("x", "w1", "w2"), ("y_hat",)),
         LoopStep("backward", ("x", "y", "y_hat", "w1", "w2", "eta"), ("w1", "w2"))],
        simple_start(), {"y_hat": (), "w1": (2, 2), "w2": (2,)}, 200)
    assert genuine is not None
    return genuine


def _claims_a_stop(chain: Chain) -> Chain:
    """Says backward raised at iteration 6 (and carries what it recorded until then)."""
    cut = [{name: stack[: 6 if k == 0 else 5] for name, stack in outputs.items()} for k, outputs in enumerate(chain.outputs)]
    return Chain(cut, [6, 5], 5, 1, "backward", CallOutcome("raised", error="ZeroDivisionError: division by zero"))


def _shorter_than_it_says(chain: Chain) -> Chain:
    return Chain([{n: s[:150] for n, s in o.items()} for o in chain.outputs], [150, 150])


LIES = {"fixed point": (frozen_backward, _converged_fixed_point),
        "one honest iteration": (frozen_backward, _one_honest_iteration_then_a_jump),
        "the reference's run": (template_backward, _the_reference_run),
        "a stop that does not happen": (backward, _claims_a_stop),
        "shorter than it says": (template_backward, _shorter_than_it_says)}


@pytest.mark.parametrize("lie", sorted(LIES))
@pytest.mark.parametrize("with_replay", [True, False])
def test_a_lying_chain_is_not_believed(lie: str, with_replay: bool) -> None:
    function, tamper = LIES[lie]
    functions = {**SIMPLE_FUNCTIONS, "backward": function}
    truth, truth_training, _ = run(SIMPLE, functions)
    served = Served(SIMPLE, functions)
    served.train = lambda *args: tamper(honest_train(Served(SIMPLE, functions))(*args))
    if with_replay:
        served.replay = honest_replay(Served(SIMPLE, functions))
    (check,) = SIMPLE.checks
    assert isinstance(check, Converges)
    result, training = check_training(check, SIMPLE, served, None)
    assert (result.passed, result.message) == (truth.passed, truth.message)
    assert training.loss == truth_training.loss


def test_a_lying_chain_of_a_batch_loop_is_not_believed() -> None:
    def lie(chain: Chain) -> Chain:
        outputs = [{name: stack.copy() for name, stack in o.items()} for o in chain.outputs]
        outputs[0]["y_hat"][:] = batch_start()["y"]  # every prediction exactly the target
        return Chain(outputs, list(chain.counts))
    functions = {**BATCH_FUNCTIONS, "step": rebinding_step}
    result, _, served = run(BATCH, functions, "lying", lie)
    assert not result.passed and "does not reach" in result.message
    assert len(served.calls) == 3 * 200  # the replay found the chain out: the loop ran call by call


# --------------------------------------------------------------------------- the sandbox's own ops

BATCH_CELLS = """import numpy as np
def forward(x, w1, w2):
    return np.maximum(x @ w1, 0) @ w2
def backward(x, y, y_hat, w1, w2):
    h = x @ w1
    d = (y_hat - y) / len(y)
    return x.T @ (d[:, None] * w2[None, :] * (h > 0)), np.maximum(h, 0).T @ d
def step(w1, w2, w1_partials, w2_partials, eta):
    w1 -= eta * w1_partials
    w2 -= eta * w2_partials
"""

#: Replaces the worker's ``train`` with one that claims every prediction hits the target.
FORGED_TRAIN = """import signal
_g = getattr(signal, '_sandbox_serve', print).__globals__
_honest = _g['train']
def _forged(header, blobs):
    reply, out = _honest(header, blobs)
    y_hat = _g['decode_value'](reply['outputs'][0]['y_hat'], out)
    y_hat[:] = np.array([1.0, 0.5])
    reply['outputs'][0]['y_hat'] = _g['encode_value'](y_hat, out)
    return reply, out
_g['train'] = _forged
"""


class Live:
    """A Caller on a real sandbox process."""

    def __init__(self, sandbox: SubprocessSandbox, found: Mapping[str, bool], chain: bool = True) -> None:
        self._sandbox, self.found, self.chain = sandbox, found, chain
        self.calls = 0

    @property
    def sandbox(self) -> Any:
        return self._sandbox if self.chain else Served(BATCH, {})  # no train/replay: call by call

    def call(self, function: str, arg_tuples: Sequence[tuple[Any, ...]], args_after: bool = True) -> list[CallOutcome]:
        self.calls += len(arg_tuples)
        return self._sandbox.call_many([CallRequest(function, args, args_after) for args in arg_tuples])

    def passed(self, check_id: str) -> bool:
        return False


REBINDING_CELLS = BATCH_CELLS.replace("    w1 -= eta * w1_partials", "    w1 = w1 - eta * w1_partials")


@pytest.mark.slow
@pytest.mark.parametrize("cells", [[BATCH_CELLS], [REBINDING_CELLS], [REBINDING_CELLS, FORGED_TRAIN]],
                         ids=["in place", "rebinds", "forged chain"])
def test_the_sandbox_runs_the_declared_loop_as_the_grader_would(cells: list[str]) -> None:
    (check,) = BATCH.checks
    assert isinstance(check, Converges)
    with SubprocessSandbox(graded=BATCH.names) as sandbox:
        execution = sandbox.run_notebook([Cell(i, source) for i, source in enumerate(cells)])
        found = {name: info.found for name, info in execution.functions.items()}
        assert all(found.values())
        live = Live(sandbox, found)
        by_chain = check_training(check, BATCH, live, None)
        by_calls = check_training(check, BATCH, Live(sandbox, found, chain=False), None)
        assert sandbox.tampering == []  # a forged chain is found out by the audit, not by the wire
    assert by_chain[0] == by_calls[0] and by_chain[1].loss == by_calls[1].loss
    assert by_chain[0].passed == (cells == [BATCH_CELLS])
    # An honest chain costs the audit's 3 iterations x 3 steps; a forged one is replayed and then run call by call.
    assert live.calls == (9 if len(cells) == 1 else 600)
