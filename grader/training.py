"""The training check: the template's training loop, run with the student's functions, reaches its target.

The loop is the assignment's declared ``Loop``: from ``start()``, ``iterations`` times its steps. A
step's call takes its arguments from the loop's state by the function's declared parameter names;
what it returns binds its ``result`` names (one name: the whole value; several: the elements of a
returned tuple or list), and its ``in_place`` arguments are taken back from the call after it ran.
Every bound value must be usable (``protocol.shaped_value``: finite, and of the shape of the start
value it is declared ``like``); the first that is not stops training, and the message says where.

The ground truth is call by call: each step one ordinary call, from the grader. The sandbox may
instead run the whole loop in one request (its ``train``), which saves a round trip per call; that
chain is only a shortcut and is audited before it is believed: it must be as long as it says; its
first, middle and last iterations (and the call that stopped it) are replayed as ordinary calls
and must give exactly what it recorded; and a chain that would earn the points without following
the reference's curve has every step of every iteration replayed (one ``replay`` request per step
function, or call by call). Anything that does not match is graded call by call.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from grader.assignment import Assignment, Converges, Impl, Loop, Pair
from grader.errors import AssignmentError
from grader.memo import Memo, joint_key
from grader.model import CheckResult, Training
from grader.outcomes import describe, gave
from grader.sandbox.process import CallOutcome, CallRequest, Chain, LoopStep, Shape
from grader.sandbox.protocol import shaped_value, shaped_values

#: How the losses of a chain must follow the reference's curve for its sampled audit to be enough.
CURVE_RTOL = 1e-6
CURVE_ATOL = 1e-12


class CallingSandbox(Protocol):
    """What grading needs of a sandbox: answers to calls (a live sandbox, or calibrate's trusted one).
    A sandbox may also offer ``train`` and ``replay``, found with ``getattr``."""

    def call_many(self, requests: Sequence[CallRequest]) -> list[CallOutcome]: ...


class Caller(Protocol):
    """What the training check needs of the grading it is part of."""

    @property
    def sandbox(self) -> CallingSandbox:
        """The live sandbox; its optional ``train`` and ``replay`` run many calls in one request."""
        ...

    @property
    def found(self) -> Mapping[str, bool]:
        """Which graded functions the notebook defines."""
        ...

    def call(self, function: str, arg_tuples: Sequence[tuple[Any, ...]], args_after: bool = True) -> list[CallOutcome]:
        """One outcome per argument tuple ("missing" ones for a function not found)."""
        ...

    def passed(self, check_id: str) -> bool:
        """Whether the check of that id ran and passed."""
        ...


# --------------------------------------------------------------------------- the loop as a plan

#: Where a step's argument comes from at iteration i: ("start", -1) the start state (never rebound);
#: ("step", j) what step j bound earlier in the same iteration; ("previous", j) what step j bound in
#: the previous iteration (the start value at iteration 0).
_Source = tuple[str, int]


@dataclass(frozen=True)
class _Plan:
    """A declared loop, resolved against its assignment: who takes what from where."""

    loop: Loop
    steps: tuple[LoopStep, ...]
    start: Mapping[str, Any]
    #: The shape each bound name must have (``protocol.shaped_value``).
    shapes: Mapping[str, Shape]
    #: Per step: parameter -> where its value comes from.
    sources: tuple[Mapping[str, _Source], ...]
    #: The first step that binds the prediction: the loss is recorded right after it.
    prediction_step: int

    @property
    def target(self) -> Any:
        return self.start[self.loop.target]

    @property
    def functions(self) -> tuple[str, ...]:
        """The steps' functions, each once, in order."""
        return tuple(dict.fromkeys(step.function for step in self.steps))


def _plan(assignment: Assignment, loop: Loop) -> _Plan:
    """The loop resolved against the assignment's function parameters; AssignmentError when it cannot run."""
    where = f"assignment {assignment.name!r}: the training loop"
    start = dict(loop.start())
    steps = tuple(LoopStep(step.function, tuple(assignment.function(step.function).parameters),
                           tuple(step.result), tuple(step.in_place)) for step in loop.steps)
    if not steps:
        raise AssignmentError(f"{where} has no steps.")
    last_binder = {name: k for k, step in enumerate(steps) for name in step.bound}
    bound_so_far: dict[str, int] = {}
    sources: list[dict[str, _Source]] = []
    for k, step in enumerate(steps):
        if len(set(step.bound)) != len(step.bound):
            raise AssignmentError(f"{where}: {step.function} binds a name twice ({', '.join(step.bound)}).")
        missing = [name for name in step.in_place if name not in step.parameters]
        if missing:
            raise AssignmentError(f"{where}: {step.function} updates {', '.join(missing)} in place, which it does "
                                  f"not take ({', '.join(step.parameters)}).")
        source: dict[str, _Source] = {}
        for name in step.parameters:
            if name in bound_so_far:
                source[name] = ("step", bound_so_far[name])
            elif name in last_binder and name in start:
                source[name] = ("previous", last_binder[name])
            elif name in start:
                source[name] = ("start", -1)
            else:
                raise AssignmentError(f"{where}: {step.function} takes {name!r}, which is neither a start value "
                                      "nor bound by an earlier step of the iteration.")
        sources.append(source)
        for name in step.bound:
            bound_so_far[name] = k
    prediction_step = next((k for k, step in enumerate(steps) if loop.prediction in step.bound), None)
    if prediction_step is None:
        raise AssignmentError(f"{where}: no step binds the prediction {loop.prediction!r}.")
    if loop.target not in start:
        raise AssignmentError(f"{where}: the target {loop.target!r} is not a start value.")
    shapes: dict[str, Shape] = {}
    for step in steps:
        for name in step.bound:
            like = loop.like.get(name, name if name in start else None)
            if like is not None and like not in start:
                raise AssignmentError(f"{where}: {name!r} is declared like {like!r}, which is not a start value.")
            shapes[name] = None if like is None else tuple(int(n) for n in np.shape(start[like]))
    return _Plan(loop, steps, start, shapes, tuple(sources), prediction_step)


# --------------------------------------------------------------------------- reading values

def _take(step: LoopStep, outcome: CallOutcome, shapes: Mapping[str, Shape]) -> dict[str, Any] | str:
    """What one call binds (name -> value), or why the loop cannot go on with it ("forward gave [inf]").

    Read exactly as the sandbox's chain reads it (``protocol.shaped_values``): numbers as floats,
    arrays as float64 arrays of their declared shapes."""
    if not outcome.ok:
        return f"{step.function} {gave(outcome)}"
    taken: dict[str, Any] = {}
    if step.result:
        values = shaped_values(outcome.value, tuple(shapes[name] for name in step.result))
        if values is None:
            return f"{step.function} {gave(outcome)}"
        taken.update(zip(step.result, values, strict=True))
    after = outcome.args_after
    for name in step.in_place:
        value = after[step.parameters.index(name)] if after is not None and len(after) == len(step.parameters) else None
        shaped = shaped_value(value, shapes[name])
        if shaped is None:
            return f"{step.function} left {name} = {describe(value)}"
        taken[name] = shaped
    return taken


def _row(stack: np.ndarray, index: int, shape: Shape) -> Any:
    """Iteration ``index`` of a chain's stacked values, as the call-by-call loop holds it (a number as a float)."""
    if shape is not None and len(shape) == 0:
        return float(stack[index])
    return np.asarray(stack[index])


def _same(value: Any, expected: Any) -> bool:
    """The same float64 numbers, bit for bit, in the same shape."""
    a, b = np.asarray(value, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def _plain(value: Any) -> float | list[Any]:
    """A number as a float, an array as a (nested) list of floats: what a report holds."""
    array = np.asarray(value, dtype=float)
    return float(array) if array.ndim == 0 else list(array.tolist())


def _loss(loop: Loop, prediction: Any, target: Any) -> float:
    """The declared loss as a float (inf where the instructor's loss overflows a Python float); call
    under ``np.errstate(all="ignore")``: a diverging student's loss is infinite, not a warning. NaN where the
    loss is not known (a student pack holds the loss only where the reference's training goes): the verdict
    is the prediction's, never the loss's."""
    try:
        return float(loop.loss(prediction, target))
    except OverflowError:
        return float("inf")
    except LookupError:
        return float("nan")


def _losses(loop: Loop, predictions: Sequence[Any], target: Any) -> list[float]:
    with np.errstate(all="ignore"):
        return [_loss(loop, prediction, target) for prediction in predictions]


def _within(prediction: Any, target: Any, tolerance: float) -> bool:
    if np.ndim(prediction) == 0 and np.ndim(target) == 0:
        return abs(float(prediction) - float(target)) <= tolerance
    try:
        with np.errstate(all="ignore"):
            return bool(np.all(np.abs(np.asarray(prediction, dtype=float) - np.asarray(target, dtype=float))
                               <= tolerance))
    except ValueError:  # shapes that do not broadcast: not the target
        return False


def _shown(value: Any, spec: str) -> str:
    """A number as ``format(value, spec)``; an array as numpy prints it, each number so formatted: [0.999999, 0.000001]."""
    if np.ndim(value) == 0:
        return format(float(value), spec)
    return np.array2string(np.asarray(value, dtype=float), separator=", ",
                           formatter={"float_kind": lambda v: format(float(v), spec)})


def _and(names: Sequence[str]) -> str:
    """"forward", "both forward and backward", "forward, backward and step"."""
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"both {names[0]} and {names[1]}"
    return f"{', '.join(names[:-1])} and {names[-1]}"


# --------------------------------------------------------------------------- the reference's curve

class _Identity:
    """A key part that is an object by identity (a loop, an assignment: they hold callables and mappings).
    The memo's key holds the object alive, so its identity cannot be reused."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj


#: Reference training curves: one per (assignment, loop, pure pair); a batch needs one or a few.
_CURVES = Memo(maxsize=64)


def reference_curve(assignment: Assignment, loop: Loop, pair: Pair | None = None) -> tuple[float, ...]:
    """The reference's loss after each iteration's prediction, with its functions bound to ``pair``
    (``assignment.as_student``; the helpers' default pair when None).

    The whole loop costs more than everything else the checks compute for a notebook, and depends
    only on the assignment, the loop and the pair, so it is computed once per process for each pure pair.
    """
    helpers = assignment.helpers
    chosen = pair or (helpers.default if helpers is not None else None)
    pair_part: Any = "no pair" if chosen is None else (chosen if chosen.pure else None)
    key = joint_key(_Identity(assignment), _Identity(loop), pair_part)
    curve: tuple[float, ...] = _CURVES.get(key, lambda: _reference_curve(assignment, loop, chosen))
    return curve


def _reference_curve(assignment: Assignment, loop: Loop, pair: Pair | None) -> tuple[float, ...]:
    """The loop run with the reference's own functions, on the trusted side (values bound as returned:
    the reference's are already of their shapes). Stops where the reference fails (an undefined point)."""
    plan = _plan(assignment, loop)
    functions: Mapping[str, Impl] = assignment.as_student(pair)
    state = dict(plan.start)
    losses: list[float] = []
    with np.errstate(all="ignore"):
        for _ in range(loop.iterations):
            for k, step in enumerate(plan.steps):
                args = tuple(np.array(state[name]) if isinstance(state[name], np.ndarray) else state[name]
                             for name in step.parameters)
                try:
                    value = functions[step.function](*args)
                    if len(step.result) == 1:
                        state[step.result[0]] = value
                    elif step.result:
                        state.update(zip(step.result, tuple(value), strict=True))
                except Exception:  # noqa: BLE001 - the reference undefined here (a point not tabulated): the curve ends
                    return tuple(losses)
                for name in step.in_place:
                    state[name] = args[step.parameters.index(name)]
                if k == plan.prediction_step:
                    losses.append(_loss(loop, state[loop.prediction], plan.target))  # under errstate above
    return tuple(losses)


# --------------------------------------------------------------------------- the check

def check_training(check: Converges, assignment: Assignment, caller: Caller,
                   pair: Pair | None) -> tuple[CheckResult, Training]:
    """Run the declared loop with the notebook's functions (audited chain, or call by call) and judge
    whether its last prediction is within ``loop.tolerance`` of the target; the Training is for the report."""
    loop = check.loop
    plan = _plan(assignment, loop)
    reference_loss = list(reference_curve(assignment, loop, pair))
    training = Training(loop.iterations, None, _plain(plan.target), [], reference_loss)
    functions = plan.functions
    if not all(caller.found.get(function) for function in functions):
        return CheckResult(check.id, check.function, False, f"needs {_and(functions)} to be defined"), training
    audited = _audited_chain(plan, caller, reference_loss)
    if audited is not None:
        predictions, training.loss, failure = audited
    else:
        predictions, failure = _train_call_by_call(plan, caller)
        training.loss = _losses(loop, predictions, plan.target)
    final = predictions[-1] if predictions else None
    training.final_prediction = None if final is None else _plain(final)
    if failure is not None:
        return CheckResult(check.id, check.function, False, f"training stopped at {failure}"), training
    ok = final is not None and _within(final, plan.target, loop.tolerance)
    verdict = "reaches" if ok else "does not reach"
    shown = "nothing" if final is None else _shown(final, ".6f")
    message = (f"prediction after {loop.iterations} iterations is {shown}: "
               f"{verdict} {loop.target} = {_shown(plan.target, 'g')} (within {loop.tolerance:g})")
    return (CheckResult(check.id, check.function, ok, message, float(ok),
                        details={"final_prediction": training.final_prediction}), training)


def _train_call_by_call(plan: _Plan, caller: Caller) -> tuple[list[Any], str | None]:
    """The ground truth: every step one ordinary call, from the start state. The predictions (one per
    iteration that got that far) and, when training stopped, "iteration N: forward gave ..."."""
    state = dict(plan.start)
    predictions: list[Any] = []
    for iteration in range(plan.loop.iterations):
        for k, step in enumerate(plan.steps):
            args = tuple(state[name] for name in step.parameters)
            (outcome,) = caller.call(step.function, [args], args_after=bool(step.in_place))
            taken = _take(step, outcome, plan.shapes)
            if isinstance(taken, str):
                return predictions, f"iteration {iteration + 1}: {taken}"
            state.update(taken)
            if k == plan.prediction_step:
                predictions.append(state[plan.loop.prediction])
    return predictions, None


def _argument(plan: _Plan, chain: Chain, k: int, name: str, iteration: int) -> Any:
    """Step k's argument ``name`` at ``iteration`` according to the chain: what the call-by-call loop
    would pass there if the chain is true."""
    kind, j = plan.sources[k][name]
    if kind == "start" or (kind == "previous" and iteration == 0):
        return plan.start[name]
    return _row(chain.outputs[j][name], iteration - (kind == "previous"), plan.shapes[name])


def _chain_predictions(plan: _Plan, chain: Chain) -> list[Any]:
    name = plan.loop.prediction
    stack = chain.outputs[plan.prediction_step][name]
    return [_row(stack, i, plan.shapes[name]) for i in range(len(stack))]


def _audited_chain(plan: _Plan, caller: Caller,
                   reference_loss: Sequence[float]) -> tuple[list[Any], list[float], str | None] | None:
    """The sandbox's own run of the loop (predictions, their losses, and where it stopped), if it offers one and it is
    what the notebook's functions do; None to go call by call.

    The chain is the sandbox's word, and the sandbox's code can be replaced by the notebook, so: it
    must be as long as it says, with values of the declared shapes; the first, the middle and the
    last iteration (and the call that stopped it) replay identically as ordinary calls; and a chain
    that would earn the training points without following the reference's curve has every step of
    every iteration replayed. Its first iteration's arguments are the grader's own start state, and
    every later argument is a value the replays check, so a chain that passes is the call-by-call run.
    """
    train = getattr(caller.sandbox, "train", None)
    if train is None:
        return None
    iterations = plan.loop.iterations
    chain = train(plan.steps, plan.start, plan.shapes, iterations)
    if not isinstance(chain, Chain) or len(chain.outputs) != len(plan.steps) or len(chain.counts) != len(plan.steps):
        return None
    done = chain.done
    if (chain.stop_step is None) != (done == iterations) or done > iterations:
        return None
    for k, step in enumerate(plan.steps):
        if set(chain.outputs[k]) != set(step.bound):
            return None
        for name in step.bound:
            stack, shape = chain.outputs[k][name], plan.shapes[name]
            if len(stack) != chain.counts[k] or (shape is not None and stack.shape[1:] != shape):
                return None
    predictions = _chain_predictions(plan, chain)
    losses = _losses(plan.loop, predictions, plan.target)
    if (_earns_credit_off_the_reference_curve(plan, chain, predictions, losses, reference_loss)
            and not _replays(plan, caller, chain)):
        return None
    stopped = _sampled_iterations_replay(plan, caller, chain)
    if stopped is None:
        return None
    return predictions, losses, (None if chain.stop_step is None else f"iteration {done + 1}: {stopped}")


def _earns_credit_off_the_reference_curve(plan: _Plan, chain: Chain, predictions: Sequence[Any], losses: Sequence[float],
                                          reference_loss: Sequence[float]) -> bool:
    if chain.stop_step is not None or not predictions:
        return False
    if not _within(predictions[-1], plan.target, plan.loop.tolerance):
        return False
    expected = np.asarray(reference_loss[: len(losses)], dtype=float)
    return not (len(expected) == len(losses)
                and np.allclose(np.asarray(losses, dtype=float), expected, rtol=CURVE_RTOL, atol=CURVE_ATOL))


def _sampled_iterations_replay(plan: _Plan, caller: Caller, chain: Chain) -> str | None:
    """Replay iterations 0, done // 2, done - 1 as ordinary calls (one request per step), and, for a chain
    that stopped, its last iteration up to the call that stopped it, which must stop training again.
    None when anything differs; else how the stopping call failed, in the ordinary call's words ("" when
    the chain ran to the end)."""
    done = chain.done
    last = chain.stop_step if chain.stop_step is not None else -1
    sampled = sorted({0, done // 2, done - 1, done} & set(range(done + 1)))
    stopped = ""
    for k, step in enumerate(plan.steps):
        # Iteration ``done`` exists only in a chain that stopped, and only up to the step that stopped it.
        iterations = [i for i in sampled if i < done or k <= last]
        if not iterations:
            continue
        outcomes = caller.call(step.function,
                               [tuple(_argument(plan, chain, k, name, i) for name in step.parameters) for i in iterations],
                               args_after=bool(step.in_place))
        for i, outcome in zip(iterations, outcomes, strict=True):
            taken = _take(step, outcome, plan.shapes)
            if i == done and k == last:  # the chain says this call stopped training
                if not isinstance(taken, str):
                    return None
                stopped = taken
            elif isinstance(taken, str) or not all(_same(taken[name], chain.outputs[k][name][i]) for name in step.bound):
                return None
    return stopped


def _stacked_arguments(plan: _Plan, chain: Chain, k: int, count: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Step k's arguments at iterations 0..count-1 by the chain: (the same for every call, one row per call)."""
    fixed: dict[str, Any] = {}
    stacked: dict[str, np.ndarray] = {}
    for name in plan.steps[k].parameters:
        kind, j = plan.sources[k][name]
        if kind == "start":
            fixed[name] = plan.start[name]
        elif kind == "step":
            stacked[name] = chain.outputs[j][name][:count]
        else:
            rows = chain.outputs[j][name]
            first = np.asarray(plan.start[name], dtype=float).reshape((1, *rows.shape[1:]))
            stacked[name] = np.concatenate([first, rows[: count - 1]])
    return fixed, stacked


def _replays(plan: _Plan, caller: Caller, chain: Chain) -> bool:
    """Whether every step of every iteration of ``chain`` is what its function gives when called with the
    chain's own arguments: one ``replay`` request per step, or call by call where that fails."""
    done = chain.done
    replay = getattr(caller.sandbox, "replay", None)
    for k, step in enumerate(plan.steps):
        got = None
        if replay is not None and caller.found.get(step.function):
            try:
                fixed, stacked = _stacked_arguments(plan, chain, k, done)
            except ValueError:  # a start value not of its rows' shape: call by call
                pass
            else:
                got = replay(step, fixed, stacked, done, {name: plan.shapes[name] for name in step.bound})
        if got is not None:
            if not all(_same(got[name], chain.outputs[k][name][:done]) for name in step.bound):
                return False
            continue
        outcomes = caller.call(step.function, [tuple(_argument(plan, chain, k, name, i) for name in step.parameters)
                                               for i in range(done)], args_after=bool(step.in_place))
        for i, outcome in enumerate(outcomes):
            taken = _take(step, outcome, plan.shapes)
            if isinstance(taken, str) or not all(_same(taken[name], chain.outputs[k][name][i]) for name in step.bound):
                return False
    return True
