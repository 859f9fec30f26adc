"""The check stage: every verdict, computed on the trusted side from returned numbers.

The sandbox is only ever asked "what does f return for these inputs?". Which
inputs, what the answer should be, and whether it is right are all decided
here, against the reference in ``grader.reference`` and against finite
differences of the student's own functions.

Error isolation: ``forward`` and ``backward`` are judged in two *contexts* —
the primary activation pair (ReLU, or the student's own pair when it is a
self-consistent, recognised activation), and the student's own activation and
derivative exactly as written (tabulated from the sandbox at the probe points).
A forward or backward that is right given the student's own helpers passes, so a
mistake in ``d_activation`` costs points once, in ``d_activation``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from grader.compare import arrays_close, as_array, values_close
from grader.sandbox.protocol import weight_pair
from grader.sandbox.process import CallOutcome, CallRequest, Chain, Sandbox
from grader.model import CheckResult, Training
from grader.probe import (
    NOTEBOOK_ITERATIONS, ActivationProbe, NetworkProbe, derivative_grid, notebook_probe, probes_for_seed,
)
from grader.reference import simple_nn as ref
from grader.memo import Memo, freeze_value, joint_key, value_key
from grader.reference.simple_nn import ActivationPair

# Gradient-check tolerances, after torch.autograd.gradcheck (eps 1e-6, atol
# 1e-5, rtol 1e-3): central differences in float64 with a 1e-6 step are
# accurate to ~1e-9 on these smooth, kink-free probes, so 1e-3 relative error
# only fails a genuinely wrong gradient (a wrong one is off by O(1); CS231n
# calls > 1e-2 wrong). A float32 submission gets a 1e-3 step, whose truncation
# error (~1e-6) still sits well inside the tolerance.
GRAD_EPS_FLOAT64 = 1e-6
GRAD_EPS_FLOAT32 = 1e-3
GRAD_ATOL = 1e-5
GRAD_RTOL = 1e-3
#: |final prediction - y| accepted after the notebook's 200 iterations
#: (the reference reaches 1.0000000; the template's bug stops at 0.96689).
TRAINING_TOLERANCE = 1e-3


_FAILED_CALL = {"raised": "raised", "timeout": "was stopped", "crashed": "crashed the sandbox",
                "missing": "found no function", "protocol": "returned no usable answer"}


def _call_failure(outcome: CallOutcome) -> str:
    """``": the call raised MemoryError: ..."`` for a call that did not return, so the reason reaches the student."""
    if outcome.ok:
        return ""
    error = f": {outcome.error}" if outcome.error else ""
    return f": the call {_FAILED_CALL.get(outcome.status, outcome.status)}{error}"


@dataclass
class Context:
    """An activation pair under which forward/backward are judged."""

    name: str
    pair: ActivationPair


@dataclass
class Evidence:
    """The calls made to one student function, kept for diagnosis."""

    args: list[tuple[Any, ...]] = field(default_factory=list)
    outcomes: list[CallOutcome] = field(default_factory=list)
    dont_care: list[np.ndarray | None] = field(default_factory=list)
    #: False for tie-breaker probes (scalars) that are not graded.
    scored: list[bool] = field(default_factory=list)


@dataclass
class CheckRun:
    results: list[CheckResult]
    evidence: dict[str, Evidence]
    contexts: list[Context]
    recognised: str | None
    graded_with: str
    training: Training | None
    warnings: list[str]


class _Tabulated:
    """An activation known only at the points where the sandbox was asked for it."""

    def __init__(self) -> None:
        self.table: dict[bytes, np.ndarray] = {}

    @staticmethod
    def _key(z: Any) -> bytes:
        z = np.asarray(z, dtype=float)
        return z.shape.__repr__().encode() + z.tobytes()

    def add(self, z: np.ndarray, value: np.ndarray) -> None:
        self.table[self._key(z)] = value

    def __call__(self, z: Any) -> np.ndarray:
        try:
            return self.table[self._key(z)]
        except KeyError:
            raise LookupError("value not tabulated") from None


def _describe(value: Any, limit: int = 160) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_describe(v, limit // 2) for v in value) + ")"
    if isinstance(value, CallOutcome):
        return _describe(value.value) if value.ok else _failed_call(value)
    array = as_array(value)
    text = repr(value) if array is None else np.array2string(np.round(array, 6), separator=", ", threshold=20)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: How a failed call reads after "forward gave" and the like: "backward raised TypeError: …", never "gave raised".
_FAILED_CALL_WORDS = {"raised": "raised {error}", "timeout": "ran past its time limit",
                      "crashed": "crashed the sandbox ({error})", "missing": "is not defined",
                      "protocol": "broke the grader's protocol ({error})"}


def _failed_call(outcome: CallOutcome) -> str:
    text = _FAILED_CALL_WORDS.get(outcome.status, outcome.status + " ({error})").format(
        error=outcome.error or "no reason given")
    return text.replace(" (no reason given)", "")


def _gave(outcome: Any) -> str:
    """"gave [[inf, …]]" for a value training cannot go on with, "raised TypeError: …" for a failed call."""
    if isinstance(outcome, CallOutcome) and not outcome.ok:
        return _failed_call(outcome)
    return f"gave {_describe(outcome)}"


def _json(value: Any) -> Any:
    if isinstance(value, CallOutcome):
        return _json(value.value) if value.ok else {"status": value.status, "error": value.error}
    if isinstance(value, (tuple, list)):
        return [_json(v) for v in value]
    array = as_array(value)
    if array is None:
        return None if value is None else repr(value)
    return np.round(array, 8).tolist()


class Grading:
    """Runs every check for one submission against one live sandbox."""

    def __init__(self, sandbox: Sandbox, found: dict[str, bool], accepted_activations: Sequence[str], seed: int) -> None:
        self.sandbox = sandbox
        self.found = found
        self.accepted = tuple(accepted_activations)
        self.network, self.activation_inputs = probes_for_seed(seed)
        self.results: list[CheckResult] = []
        self.evidence: dict[str, Evidence] = {}
        self.warnings: list[str] = []

    # --- helpers --------------------------------------------------------------

    def _call(self, function: str, arg_tuples: Sequence[tuple[Any, ...]], args_after: bool = True) -> list[CallOutcome]:
        if not self.found.get(function):
            return [CallOutcome("missing") for _ in arg_tuples]
        return self.sandbox.call_many([CallRequest(function, args, args_after) for args in arg_tuples])

    def _missing(self, check_id: str, function: str) -> CheckResult:
        return CheckResult(check_id, function, False, f"No function named {function} is defined in the notebook.")

    def _add(self, result: CheckResult) -> None:
        self.results.append(result)

    # --- activation and its derivative -----------------------------------------

    def run(self) -> CheckRun:
        grid = derivative_grid()
        recognised, consistent, student_pair = self._activation_checks(grid)
        primary = self._primary_context(recognised, consistent)
        contexts = [primary]
        if student_pair is not None and not (consistent and recognised == primary.name):
            contexts.append(Context("your own activation and derivative", student_pair))
        forward_ok = self._forward_check(contexts)
        self._backward_checks(contexts, forward_ok)
        training = self._training_check(primary)
        graded_with = primary.name
        return CheckRun(self.results, self.evidence, contexts, recognised, graded_with, training, self.warnings)

    def _activation_checks(self, grid: np.ndarray) -> tuple[str | None, bool, ActivationPair | None]:
        probes = self.activation_inputs
        eps = GRAD_EPS_FLOAT64
        z_args = [(p.z,) for p in probes]
        grid_args = [(grid,), (grid + eps,), (grid - eps,)]
        net_args = [(p.hidden_pre_activation,) for p in self.network]
        act = self._call("activation", z_args + grid_args + net_args)
        dact = self._call("d_activation", z_args + [(grid,)] + net_args)
        act_probe, act_grid, act_net = act[: len(probes)], act[len(probes): len(probes) + 3], act[len(probes) + 3:]
        dact_probe, dact_grid, dact_net = dact[: len(probes)], dact[len(probes)], dact[len(probes) + 1:]

        recognised = self._recognise(grid, act_grid[0])
        family = self._family_pair(recognised, grid, act_grid[0])
        self._family = family
        accepted = family if (family is not None and recognised in self.accepted) else ref.RELU
        zero_masks = [np.asarray(p.z) == 0 if accepted.name in ("relu", "leaky_relu") else None for p in probes]

        self._values_check("activation.values", "activation", probes, z_args, act_probe, accepted.act, None, accepted.name)
        self._values_check("d_activation.values", "d_activation", probes, z_args, dact_probe, accepted.dact,
                           zero_masks, accepted.name, derivative=True)
        consistent = self._derivative_gradient_check(grid, eps, act_grid, dact_grid)

        student_pair = None
        if all(o.ok and as_array(o.value) is not None for o in act_net + dact_net):
            act_table, dact_table = _Tabulated(), _Tabulated()
            for probe, a, d in zip(self.network, act_net, dact_net):
                h = probe.hidden_pre_activation
                a_val, d_val = as_array(a.value), as_array(d.value)
                if a_val.shape == h.shape and d_val.shape == h.shape:
                    act_table.add(h, a_val)
                    dact_table.add(h, d_val)
            if len(act_table.table) == len({p.hidden_pre_activation.tobytes() for p in self.network}):
                student_pair = ActivationPair("yours", act_table, dact_table)
        return recognised, consistent, student_pair

    def _values_check(self, check_id: str, function: str, probes: list[ActivationProbe], args: list[tuple],
                      outcomes: list[CallOutcome], expected_fn: Callable, masks: list | None, family: str,
                      derivative: bool = False) -> None:
        evidence = Evidence(list(args), list(outcomes), list(masks or [None] * len(args)), [p.scored for p in probes])
        self.evidence[function] = evidence
        if not self.found.get(function):
            self._add(self._missing(check_id, function))
            return
        scored = [i for i, p in enumerate(probes) if p.scored]
        passed, first_failure = 0, None
        for i in scored:
            expected = expected_fn(np.asarray(probes[i].z, dtype=float))
            if outcomes[i].ok and arrays_close(outcomes[i].value, expected, evidence.dont_care[i]):
                passed += 1
            elif first_failure is None:
                first_failure = (i, expected)
        what = f"the slope of {family}" if derivative else family
        if first_failure is None:
            self._add(CheckResult(check_id, function, True, f"matches {what} on {len(scored)} probes", 1.0))
            return
        i, expected = first_failure
        message = (f"{len(scored) - passed} of {len(scored)} probes differ from {what} "
                   f"(e.g. {probes[i].name}{_call_failure(outcomes[i])})")
        details = {"probe": probes[i].name, "inputs": {"z": _json(probes[i].z)},
                   "expected": _json(expected), "got": _json(outcomes[i])}
        self._add(CheckResult(check_id, function, False, message, passed / len(scored), details=details))

    def _recognise(self, grid: np.ndarray, outcome: CallOutcome) -> str | None:
        values = as_array(outcome.value) if outcome.ok else None
        if values is None or values.shape != grid.shape or not np.all(np.isfinite(values)):
            return None
        for family, expected, expected_abs, finite in _family_values(grid):
            if (bool((np.abs(values - expected) <= 1e-6 + 1e-4 * expected_abs).all()) if finite
                    else np.allclose(values, expected, rtol=1e-4, atol=1e-6)):
                return family.name
        if self._leaky_alpha(grid, values) is not None:
            return "leaky_relu"
        return None

    @staticmethod
    def _leaky_alpha(grid: np.ndarray, values: np.ndarray) -> float | None:
        positive, negative = grid > 0, grid < 0
        if not np.allclose(values[positive], grid[positive], rtol=1e-4, atol=1e-6):
            return None
        ratios = values[negative] / grid[negative]
        alpha = float(np.median(ratios))
        if 0 < alpha < 1 and np.allclose(ratios, alpha, rtol=1e-4, atol=1e-7):
            return alpha
        return None

    def _family_pair(self, name: str | None, grid: np.ndarray, outcome: CallOutcome) -> ActivationPair | None:
        if name is None:
            return None
        if name == "leaky_relu":
            return ref.leaky_relu(self._leaky_alpha(grid, as_array(outcome.value)))
        return next(f for f in ref.FIXED_FAMILIES if f.name == name)

    def _derivative_gradient_check(self, grid: np.ndarray, eps: float, act_grid: list[CallOutcome],
                                   dact_grid: CallOutcome) -> bool:
        """d_activation against central differences of the student's own activation; True if consistent."""
        check_id, function = "d_activation.gradient", "d_activation"
        if not self.found.get(function):
            self._add(self._missing(check_id, function))
            return False
        values = [as_array(o.value) if o.ok else None for o in act_grid]
        slope = as_array(dact_grid.value) if dact_grid.ok else None
        values_passed = any(r.id == "d_activation.values" and r.passed for r in self.results)
        usable = all(v is not None and v.shape == grid.shape for v in values)
        if not usable or slope is None or slope.shape != grid.shape:
            reason = ("your activation does not return an array for an array input, so it cannot be "
                      "differentiated numerically" if not usable else
                      f"d_activation(z) for an array z {_gave(dact_grid)}")
            self._add(CheckResult(check_id, function, values_passed,
                                  ("matches ReLU's slope; " if values_passed else "") + reason, float(values_passed)))
            return False
        numeric = (values[1] - values[2]) / (2 * eps)
        rel_error = float(np.max(np.abs(slope - numeric) / np.maximum(1e-8, np.abs(slope) + np.abs(numeric))))
        consistent = bool(np.all(np.abs(slope - numeric) <= GRAD_ATOL + GRAD_RTOL * np.abs(numeric)))
        if consistent:
            message = f"matches the numerical derivative of your activation (max relative error {rel_error:.1e})"
        elif values_passed:
            message = "matches ReLU's slope, but not the numerical derivative of your activation: check activation"
        else:
            worst = int(np.argmax(np.abs(slope - numeric)))
            message = (f"does not match the numerical derivative of your activation (relative error {rel_error:.1e}; "
                       f"at z = {grid[worst]:.3f}: got {slope[worst]:.6g}, finite differences give {numeric[worst]:.6g})")
        passed = consistent or values_passed
        self._add(CheckResult(check_id, function, passed, message, float(passed),
                              details={} if passed else {"max_relative_error": rel_error}))
        return consistent

    def _primary_context(self, recognised: str | None, consistent: bool) -> Context:
        if consistent and self._family is not None and recognised != "relu":
            self.warnings.append(f"Your activation was recognised as {recognised}; forward and backward were graded with it.")
            return Context(recognised, self._family)
        return Context("relu", ref.RELU)

    # --- forward ------------------------------------------------------------------

    def _network_check(self, check_id: str, function: str, probes: list[NetworkProbe], args: list[tuple],
                       outcomes: list[CallOutcome], expected: dict[str, list[Any]]) -> tuple[bool, str | None]:
        """Pass when every probe matches under one context; returns (passed, matching context)."""
        if not self.found.get(function):
            self._add(self._missing(check_id, function))
            return False, None
        scores = {}
        for name, values in expected.items():
            scores[name] = [o.ok and values[i] is not None and values_close(o.value, values[i]) for i, o in enumerate(outcomes)]
        best = max(scores, key=lambda n: sum(scores[n]))
        hits = scores[best]
        total = len(outcomes)
        if all(hits):
            note = "" if best == next(iter(expected)) else f" (with {best})"
            self._add(CheckResult(check_id, function, True, f"matches the reference on {total} probes{note}", 1.0))
            return True, best
        i = hits.index(False)
        first = next(iter(expected))
        message = (f"{total - sum(hits)} of {total} probes differ from the reference "
                   f"(e.g. {probes[i].name}{_call_failure(outcomes[i])})")
        details = {"probe": probes[i].name, "inputs": _json_inputs(function, args[i]),
                   "expected": _json(expected[first][i]), "got": _json(outcomes[i])}
        self._add(CheckResult(check_id, function, False, message, sum(hits) / total, details=details))
        return False, None

    def _forward_check(self, contexts: list[Context]) -> bool:
        args = [(p.x, p.w1, p.w2) for p in self.network]
        outcomes = self._call("forward", args)
        self.evidence["forward"] = Evidence(args, outcomes, [None] * len(args))
        expected = {c.name: [_safe(lambda: ref.forward(p.x, p.w1, p.w2, c.pair)) for p in self.network] for c in contexts}
        passed, matched = self._network_check("forward.values", "forward", self.network, args, outcomes, expected)
        self._forward_outcomes = outcomes
        #: The pair under which the student's forward equals the reference's forward, when it does.
        self._forward_pair = next((c.pair for c in contexts if c.name == matched), None) if passed else None
        return passed

    # --- backward -------------------------------------------------------------------

    def _loss_function(self, use_student: bool, pair: ActivationPair) -> Callable[[list[tuple]], list[float | None]]:
        """Batch evaluator of L(forward(x, w1, w2), y): the student's forward (in the sandbox) or the reference's."""
        def evaluate(points: list[tuple]) -> list[float | None]:
            if use_student:
                outcomes = self._call("forward", [(x, w1, w2) for x, w1, w2, _ in points], args_after=False)
                return [_student_loss(o, y) for o, (_, _, _, y) in zip(outcomes, points)]
            return [ref.loss(ref.forward(x, w1, w2, pair), y) for x, w1, w2, y in points]
        return evaluate

    def _backward_checks(self, contexts: list[Context], forward_ok: bool) -> None:
        primary = contexts[0]
        # y_hat must be forward(x, w1, w2) for the gradient check to mean anything:
        # take the student's own value when their forward is right, else the reference's.
        y_hats = []
        for probe, outcome in zip(self.network, self._forward_outcomes):
            value = as_array(outcome.value) if (forward_ok and outcome.ok) else None
            y_hats.append(float(value.reshape(())) if value is not None and value.size == 1
                          else ref.forward(probe.x, probe.w1, probe.w2, primary.pair))
        args = [(p.x, p.y, y_hat, p.w1, p.w2, p.eta) for p, y_hat in zip(self.network, y_hats)]
        outcomes = self._call("backward", args)
        self.evidence["backward"] = Evidence(args, outcomes, [None] * len(args))
        expected = {c.name: [_safe(lambda: ref.backward(p.x, p.y, yh, p.w1, p.w2, p.eta, c.pair))
                             for p, yh in zip(self.network, y_hats)] for c in contexts}
        values_passed, matched = self._network_check("backward.values", "backward", self.network, args, outcomes, expected)
        self._report_mutation(args, outcomes)
        self._gradient_check(contexts, forward_ok, args, outcomes, expected, matched)

    def _report_mutation(self, args: list[tuple], outcomes: list[CallOutcome]) -> None:
        names = ("x", "y", "y_hat", "w1", "w2", "eta")
        changed: set[str] = set()
        for call_args, outcome in zip(args, outcomes):
            if outcome.ok and outcome.args_after and len(outcome.args_after) == len(call_args):
                for name, before, after in zip(names, call_args, outcome.args_after):
                    if not _unchanged(after, before):
                        changed.add(name)
        if changed:
            listed = ", ".join(n for n in names if n in changed)
            self.warnings.append(f"backward changes its arguments in place ({listed}); the caller's arrays change too.")

    def _gradient_check(self, contexts: list[Context], forward_ok: bool, args: list[tuple],
                        outcomes: list[CallOutcome], expected: dict[str, list[Any]], matched: str | None) -> None:
        check_id, function = "backward.gradient", "backward"
        if not self.found.get(function):
            self._add(self._missing(check_id, function))
            return
        primary = contexts[0]
        float32 = any(o.ok and getattr(o.value, "dtype", None) == np.float32 for o in self._forward_outcomes)
        eps = GRAD_EPS_FLOAT32 if float32 else GRAD_EPS_FLOAT64
        # The loss is differentiated through the student's forward only when it is right under a pair
        # the reference cannot evaluate away from the probes (their own tabulated activation). When it
        # equals the reference's forward under a pair of the reference's own, or is wrong, the
        # reference's forward stands in: the same finite differences (or the right ones), computed
        # once per probe for the whole class instead of 72 sandbox calls per notebook.
        own_forward = forward_ok and self._forward_pair is not None and not self._forward_pair.pure
        pair = self._forward_pair or primary.pair
        loss_of = self._loss_function(own_forward, pair)
        passed, worst_error, first_failure = 0, 0.0, None
        for index, (probe, call_args, outcome) in enumerate(zip(self.network, args, outcomes)):
            implied = _implied_gradients(probe, outcome)
            ok = False
            if implied is not None:
                numeric = (_numerical_gradients(probe, eps, loss_of) if own_forward
                           else _reference_gradients(probe, eps, pair, loss_of))
                if numeric is not None:
                    flat_a, flat_n = np.concatenate([g.ravel() for g in implied]), np.concatenate([g.ravel() for g in numeric])
                    rel = np.abs(flat_a - flat_n) / np.maximum(1e-8, np.abs(flat_a) + np.abs(flat_n))
                    worst_error = max(worst_error, float(rel.max()))
                    ok = bool(np.all(np.abs(flat_a - flat_n) <= GRAD_ATOL + GRAD_RTOL * np.abs(flat_n)))
            if not ok and len(contexts) > 1 and matched == contexts[1].name:
                ok = True  # right given the student's own d_activation: that mistake is charged there
            passed += ok
            if not ok and first_failure is None:
                first_failure = (index, implied)
        total = len(outcomes)
        if first_failure is None:
            note = " (given your own d_activation)" if matched and len(contexts) > 1 and matched == contexts[1].name else ""
            self._add(CheckResult(check_id, function, True,
                                  f"implied gradients match finite differences on {total} probes{note}", 1.0,
                                  details={"max_relative_error": worst_error}))
            return
        index, implied = first_failure
        probe = self.network[index]
        if implied is None:
            why = f"no (w1, w2) of the right shapes returned for {probe.name}"
        else:
            why = f"largest relative error {worst_error:.2g} vs finite differences"
        self._add(CheckResult(check_id, function, False,
                              f"implied gradient wrong on {total - passed} of {total} probes ({why})",
                              passed / total, details={"probe": probe.name, "max_relative_error": worst_error}))

    # --- end to end -------------------------------------------------------------------

    def _train_call_by_call(self, start: NetworkProbe, training: Training) -> str | None:
        """The ground truth: every step is one forward and one backward call from here."""
        w1, w2 = start.w1.copy(), start.w2.copy()
        for step in range(NOTEBOOK_ITERATIONS):
            (out,) = self._call("forward", [(start.x, w1, w2)], args_after=False)
            y_hat = _forward_value(out)
            if y_hat is None:
                return f"iteration {step + 1}: forward {_gave(out)}"
            training.final_prediction = y_hat
            training.loss.append(ref.loss(y_hat, start.y))
            (out,) = self._call("backward", [(start.x, start.y, y_hat, w1, w2, start.eta)], args_after=False)
            new = _weights(out, w1.shape, w2.shape)
            if new is None:
                return f"iteration {step + 1}: backward {_gave(out)}"
            w1, w2 = new
        return None

    def _audited_chain(self, start: NetworkProbe, reference_loss: Sequence[float], pair: Any) -> Chain | None:
        """The sandbox's own run of the chain, if it offers one and it is what the notebook's functions do.

        The chain is the sandbox's word, and the sandbox's code can be replaced by the notebook, so:
        it must start from the probe's own weights and be as long as it says; the first, the last and
        a middle step (and the step that stopped it) replay identically as ordinary calls; and a
        chain that would earn the training points without following the reference's curve has every
        one of its steps replayed (two batches of calls). Any mismatch falls back to call by call.
        """
        train = getattr(self.sandbox, "train", None)
        if train is None:
            return None
        chain = train(start.x, start.y, start.eta, start.w1, start.w2, NOTEBOOK_ITERATIONS)
        if chain is None:
            return None
        done = len(chain.y_hats)
        if (len(chain.w1s) == 0 or chain.w1s[0].shape != start.w1.shape or chain.w2s[0].shape != start.w2.shape
                or not (np.array_equal(chain.w1s[0], start.w1) and np.array_equal(chain.w2s[0], start.w2))):
            return None
        if (chain.stop_function is None) != (done == NOTEBOOK_ITERATIONS) or done > NOTEBOOK_ITERATIONS:
            return None
        if (self._earns_credit_off_the_reference_curve(chain, start, reference_loss)
                and not self._replays(chain, start, pair)):
            return None
        for step in sorted({0, done // 2, done - 1, done} & set(range(done + 1))):
            if step >= len(chain.w1s):
                continue
            w1, w2 = chain.w1s[step], chain.w2s[step]
            (out,) = self._call("forward", [(start.x, w1, w2)], args_after=False)
            y_hat = _forward_value(out)
            if step == done:  # the chain says forward failed here (or ran out of iterations)
                if (y_hat is None) != (chain.stop_function == "forward"):
                    return None
                continue
            if y_hat is None or y_hat != float(chain.y_hats[step]):
                return None
            (out,) = self._call("backward", [(start.x, start.y, y_hat, w1, w2, start.eta)], args_after=False)
            new = _weights(out, w1.shape, w2.shape)
            if step + 1 < len(chain.w1s):
                if new is None or not (np.array_equal(new[0], chain.w1s[step + 1])
                                       and np.array_equal(new[1], chain.w2s[step + 1])):
                    return None
            elif (new is None) != (chain.stop_function == "backward"):
                return None
        return chain

    @staticmethod
    def _earns_credit_off_the_reference_curve(chain: Chain, start: NetworkProbe, reference_loss: Sequence[float]) -> bool:
        if chain.stop_function is not None or not len(chain.y_hats):
            return False
        if not abs(float(chain.y_hats[-1]) - start.y) <= TRAINING_TOLERANCE:
            return False
        losses = np.array([ref.loss(float(y_hat), start.y) for y_hat in chain.y_hats])
        expected = np.asarray(reference_loss[: len(losses)], dtype=float)
        return not (len(expected) == len(losses) and np.allclose(losses, expected, rtol=1e-6, atol=1e-12))

    def _replays(self, chain: Chain, start: NetworkProbe, pair: Any) -> bool:
        """Whether every step of ``chain`` is what forward and backward give when called.

        A forward that passed its values check is the reference's: its outputs are then computed
        here (to within 1e-9, far too little to steer training) instead of replayed in the sandbox.
        The calls go in one request per function (``replay``), or one by one where that fails.
        """
        done = len(chain.y_hats)
        w1s, w2s, y_hats = chain.w1s[:done], chain.w2s[:done], np.asarray(chain.y_hats[:done], dtype=float)
        if any(r.id == "forward.values" and r.passed for r in self.results):
            if getattr(pair, "pure", False):  # every step at once: x @ w1 for a stack of w1s
                with np.errstate(all="ignore"):
                    expected = np.einsum("ni,ni->n", pair.act(np.matmul(start.x, w1s)), w2s)
            else:
                expected = np.array([_safe(lambda i=i: ref.forward(start.x, w1s[i], w2s[i], pair)) for i in range(done)],
                                    dtype=float)
            if not np.allclose(y_hats, expected, rtol=1e-9, atol=1e-12):
                return False
        else:
            values = self._replay_in_one("forward", start, w1s, w2s, y_hats)
            if values is None:
                outs = self._call("forward", [(start.x, w1s[i], w2s[i]) for i in range(done)], args_after=False)
                values = [_forward_value(out) for out in outs]
            if any(values[i] is None or float(values[i]) != float(y_hats[i]) for i in range(done)):
                return False
        steps = min(done, len(chain.w1s) - 1)
        news = self._replay_in_one("backward", start, w1s[:steps], w2s[:steps], y_hats[:steps])
        if news is not None:
            return bool(np.array_equal(news[0], chain.w1s[1:steps + 1]) and np.array_equal(news[1], chain.w2s[1:steps + 1]))
        backwards = self._call("backward", [(start.x, start.y, float(y_hats[i]), w1s[i], w2s[i], start.eta)
                                            for i in range(steps)], args_after=False)
        for i, out in enumerate(backwards):
            new = _weights(out, start.w1.shape, start.w2.shape)
            if new is None or not (np.array_equal(new[0], chain.w1s[i + 1]) and np.array_equal(new[1], chain.w2s[i + 1])):
                return False
        return True

    def _replay_in_one(self, function: str, start: NetworkProbe, w1s: Any, w2s: Any, y_hats: Any) -> Any:
        replay = getattr(self.sandbox, "replay", None)
        if replay is None or not self.found.get(function) or not len(w1s):
            return None
        return replay(function, start.x, start.y, start.eta, w1s, w2s, y_hats)

    @staticmethod
    def _walk_chain(chain: Chain, training: Training) -> str | None:
        for step, y_hat in enumerate(chain.y_hats):
            training.final_prediction = float(y_hat)
            training.loss.append(ref.loss(float(y_hat), training.target))
        if chain.stop_function is None:
            return None
        return f"iteration {chain.stop_step + 1}: {chain.stop_function} {_gave(chain.stop_outcome)}"

    def _training_check(self, primary: Context) -> Training | None:
        check_id, function = "training.converges", "training"
        start = notebook_probe()
        reference_loss = list(ref.training_curve(start.x, start.y, start.w1, start.w2, start.eta,
                                                 NOTEBOOK_ITERATIONS, primary.pair))
        training = Training(NOTEBOOK_ITERATIONS, None, start.y, [], reference_loss)
        if not (self.found.get("forward") and self.found.get("backward")):
            self._add(CheckResult(check_id, function, False, "needs both forward and backward to be defined"))
            return training
        chain = self._audited_chain(start, reference_loss, primary.pair)
        failure = self._walk_chain(chain, training) if chain is not None else self._train_call_by_call(start, training)
        if failure is None:
            final = training.final_prediction
            ok = final is not None and abs(final - start.y) <= TRAINING_TOLERANCE
            verdict = "reaches" if ok else "does not reach"
            message = (f"prediction after {NOTEBOOK_ITERATIONS} iterations is {final:.6f}: "
                       f"{verdict} y = {start.y:g} (within {TRAINING_TOLERANCE:g})")
            self._add(CheckResult(check_id, function, ok, message, float(ok), details={"final_prediction": final}))
        else:
            self._add(CheckResult(check_id, function, False, f"training stopped at {failure}"))
        return training


def _forward_value(out: CallOutcome) -> float | None:
    """The scalar prediction a forward call gave, or None when training cannot go on with it."""
    y_hat = as_array(out.value) if out.ok else None
    if y_hat is None or y_hat.size != 1 or not np.isfinite(y_hat).all():
        return None
    return float(y_hat.reshape(()))


def _safe(compute: Callable[[], Any]) -> Any:
    """The reference's answer, or None when it is undefined for this context (e.g. an untabulated point)."""
    try:
        with np.errstate(all="ignore"):
            return compute()
    except (LookupError, ValueError, FloatingPointError):
        return None


def _json_inputs(function: str, args: tuple) -> dict[str, Any]:
    names = {"forward": ("x", "w1", "w2"), "backward": ("x", "y", "y_hat", "w1", "w2", "eta")}[function]
    return {n: _json(a) for n, a in zip(names, args)}


def _weights(outcome: CallOutcome, shape1: tuple, shape2: tuple) -> tuple[np.ndarray, np.ndarray] | None:
    """The (w1, w2) a backward call returned, if it is a pair of finite arrays of the right shapes."""
    return weight_pair(outcome.value, shape1, shape2) if outcome.ok else None


def _implied_gradients(probe: NetworkProbe, outcome: CallOutcome) -> tuple[np.ndarray, np.ndarray] | None:
    new = _weights(outcome, probe.w1.shape, probe.w2.shape)
    if new is None:
        return None
    return (probe.w1 - new[0]) / probe.eta, (probe.w2 - new[1]) / probe.eta


def _numerical_gradients(probe: NetworkProbe, eps: float, loss_of) -> tuple[np.ndarray, np.ndarray] | None:
    """Central differences of L(forward(x, w1, w2), y) over every weight, evaluated in one batch."""
    points = [(probe.x, w1, w2, probe.y) for w1, w2 in _perturbed_weights(probe.w1, probe.w2, eps)]
    losses = loss_of(points)
    if any(v is None for v in losses):
        return None
    diffs = (np.array(losses[0::2]) - np.array(losses[1::2])) / (2 * eps)
    n1 = probe.w1.size
    return diffs[:n1].reshape(probe.w1.shape), diffs[n1:].reshape(probe.w2.shape)


def _perturb(w1: np.ndarray, w2: np.ndarray, eps: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The finite-difference points, built as ``_numerical_gradients`` always built them, then made read-only."""
    pairs = []
    for which, weights in ((0, w1), (1, w2)):
        for index in np.ndindex(weights.shape):
            for sign in (1.0, -1.0):
                p1, p2 = w1.copy(), w2.copy()
                (p1, p2)[which][index] += sign * eps
                pairs.append((freeze_value(p1), freeze_value(p2)))
    return tuple(pairs)


#: The finite-difference points of each probe: the same few probes for every notebook of a batch.
_PERTURBED = Memo(maxsize=256)


def _perturbed_weights(w1: np.ndarray, w2: np.ndarray, eps: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(w1, w2) with one weight moved by +eps then -eps, for every weight of w1 then w2, as read-only arrays.

    They only ever go to the sandbox (which receives a copy through the wire) or
    to the reference, so they are built once per probe and eps, not per notebook.
    """
    return _PERTURBED.get(joint_key(value_key(w1), value_key(w2), value_key(eps)), lambda: _perturb(w1, w2, eps))


def _student_loss(outcome: CallOutcome, y: float) -> float | None:
    """L(y_hat, y) for the prediction a forward call returned, or None when it is not a single number."""
    value = outcome.value if outcome.ok else None
    if type(value) in (float, np.float64):  # the usual reply: as_array then float() gives the same number
        return ref.loss(float(value), y)
    v = as_array(value) if outcome.ok else None
    return ref.loss(float(v.reshape(())), y) if v is not None and v.size == 1 else None


def _unchanged(after: Any, before: Any) -> bool:
    """``values_close(after, before)`` for an argument as the call left it, with the usual case first:
    the same float64 bits (equal values compare close, also NaN and inf with equal_nan) or an equal float."""
    if isinstance(after, np.ndarray) and isinstance(before, np.ndarray):
        if after.dtype == before.dtype == np.float64 and after.shape == before.shape \
                and after.tobytes() == before.tobytes():
            return True
    elif type(after) in (float, np.float64) and type(before) in (float, np.float64) and after == before:
        return True
    return values_close(after, np.asarray(before, dtype=float))


#: The fixed families' activations on the recognition grid (pure functions of the grid).
_FAMILY_VALUES = Memo(maxsize=8)


def _family_values(grid: np.ndarray) -> tuple[tuple[ActivationPair, np.ndarray, np.ndarray, bool], ...]:
    """(family, act(grid), |act(grid)|, all finite) for each fixed family, for recognising an activation.

    Recognition is ``np.allclose(values, act(grid), rtol=1e-4, atol=1e-6)``: for
    finite values (the caller checks) and a finite act(grid) that is exactly
    ``|values - act(grid)| <= 1e-6 + 1e-4 * |act(grid)|`` everywhere, without
    np.allclose's ~20 µs of argument handling per family; a family with a
    non-finite value on the grid keeps np.allclose.
    """
    def compute() -> tuple:
        rows = []
        for family in ref.FIXED_FAMILIES:
            expected = np.array(family.act(grid), dtype=float)
            finite = bool(np.isfinite(expected).all())
            rows.append((family, freeze_value(expected), freeze_value(np.abs(expected)), finite))
        return tuple(rows)
    return _FAMILY_VALUES.get(value_key(grid), compute)


#: Finite differences of the reference's own loss (used when the student's forward failed), by probe and pair.
_REFERENCE_GRADIENTS = Memo(maxsize=256)


def _reference_gradients(probe: NetworkProbe, eps: float, pair: ActivationPair,
                         loss_of) -> tuple[np.ndarray, np.ndarray] | None:
    """``_numerical_gradients`` with the reference's loss: depends only on the probe, eps and a pure pair, so cached."""
    key = joint_key(ref.pair_key(pair), value_key(probe.x), value_key(probe.w1), value_key(probe.w2),
                    value_key(probe.y), value_key(eps))
    return _REFERENCE_GRADIENTS.get(key, lambda: freeze_value(_numerical_gradients(probe, eps, loss_of)))


def run_checks(sandbox: Sandbox, found: dict[str, bool], accepted_activations: Sequence[str], seed: int) -> CheckRun:
    return Grading(sandbox, found, accepted_activations, seed).run()
