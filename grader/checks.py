"""The check stage: every verdict, computed on the trusted side from returned numbers.

The sandbox is only ever asked "what does f return for these inputs?". Which inputs,
what the answer should be, and whether it is right are all decided here, against the
assignment's reference and against finite differences of the student's own functions.
The assignment picks the checks (``grader.assignment``: values, a helper's derivative,
gradients, a gradient step, convergence, inputs left alone, the signature); this module
knows how to run each kind and no function of any assignment.

Error isolation: when the assignment declares helpers (an activation and its slope), the
functions that use them are judged in two *contexts* — the primary pair (the default, or
the student's own pair when it is a self-consistent family the rubric accepts), and the
student's own helpers exactly as written (tabulated from the sandbox at the probe points).
A function that is right given the student's own helpers passes, so a mistake in a helper
costs points once, in the helper.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from grader.assignment import (
    Assignment,
    CheckKind,
    Converges,
    Gradient,
    HelperDerivative,
    Helpers,
    HelperValues,
    NotMutated,
    Pair,
    Probe,
    Signature,
    Update,
    Values,
)
from grader.compare import arrays_close, as_array, values_close
from grader.memo import Memo, freeze_value, joint_key, value_key
from grader.model import CheckResult, Training
from grader.outcomes import failed_call, gave, rounded
from grader.probe import arguments, probes_for_seed
from grader.sandbox.process import CallOutcome, CallRequest
from grader.training import CallingSandbox, check_training

# Gradient-check tolerances, after torch.autograd.gradcheck (eps 1e-6, atol
# 1e-5, rtol 1e-3): central differences in float64 with a 1e-6 step are
# accurate to ~1e-9 on smooth, kink-free probes, so 1e-3 relative error
# only fails a genuinely wrong gradient (a wrong one is off by O(1); CS231n
# calls > 1e-2 wrong). A float32 submission gets a 1e-3 step, whose truncation
# error (~1e-6) still sits well inside the tolerance.
GRAD_EPS_FLOAT64 = 1e-6
GRAD_EPS_FLOAT32 = 1e-3
GRAD_ATOL = 1e-5
GRAD_RTOL = 1e-3


_FAILED_CALL = {"raised": "raised", "timeout": "was stopped", "crashed": "crashed the sandbox",
                "missing": "found no function", "protocol": "returned no usable answer"}


def _call_failure(outcome: CallOutcome) -> str:
    """``": the call raised MemoryError: ..."`` for a call that did not return, so the reason reaches the student."""
    if outcome.ok:
        return ""
    error = f": {outcome.error}" if outcome.error else ""
    return f": the call {_FAILED_CALL.get(outcome.status, outcome.status)}{error}"


def _and(names: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass
class Context:
    """A helper pair under which the functions that use it are judged."""

    name: str
    pair: Pair | None


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
    #: The family the helper's dependents were graded with (None without helpers).
    graded_with: str | None
    training: Training | None
    warnings: list[str]
    #: The arguments each function changed in place on some probe (a function declared to update
    #: arguments in place is not counted for those): diagnosis names it where that changes results.
    mutated: dict[str, list[str]] = field(default_factory=dict)
    #: Per function with a gradient check, the gradients it gave beside the true ones, probe by probe.
    gradients: dict[str, list[GradientEvidence]] = field(default_factory=dict)
    #: Helper -> the functions that were right only once a stand-in replaced it (isolation by substitution).
    substituted: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class GradientEvidence:
    """On one probe: the arguments of the call, and per parameter the gradient the function gave (returned, or
    implied by its step) and the true one (central differences); what structural diagnosis compares."""

    arguments: Mapping[str, Any]
    parameters: tuple[str, ...]
    claimed: tuple[np.ndarray, ...]
    true: tuple[np.ndarray, ...]


class _Tabulated:
    """A helper known only at the points where the sandbox was asked for it."""

    def __init__(self) -> None:
        self.table: dict[bytes, np.ndarray] = {}

    @staticmethod
    def _key(z: Any) -> bytes:
        array = np.asarray(z, dtype=float)
        return repr(array.shape).encode() + array.tobytes()

    def add(self, z: np.ndarray, value: np.ndarray) -> None:
        self.table[self._key(z)] = value

    def __call__(self, z: Any) -> np.ndarray:
        try:
            return self.table[self._key(z)]
        except KeyError:
            raise LookupError("value not tabulated") from None


def _json(value: Any) -> Any:
    if isinstance(value, CallOutcome):
        return _json(value.value) if value.ok else {"status": value.status, "error": value.error}
    if isinstance(value, (tuple, list)):
        return [_json(v) for v in value]
    array = as_array(value)
    if array is None:
        return None if value is None else repr(value)
    return rounded(array, 8).tolist()


@dataclass
class _Called:
    """One function's calls on one probe set, shared by every check of it."""

    probes: list[Probe]
    args: list[tuple[Any, ...]]
    outcomes: list[CallOutcome]
    #: Expected values by context name, in context order (the primary first).
    expected: dict[str, list[Any]] = field(default_factory=dict)
    #: The context under which every probe matched, when one did.
    matched: str | None = None
    passed: bool = False


class Grading:
    """Runs every check of an assignment for one submission against one live sandbox."""

    def __init__(self, sandbox: CallingSandbox, found: Mapping[str, bool], assignment: Assignment,
                 accepted: Sequence[str], seed: int, signatures: Mapping[str, Any] | None = None) -> None:
        self.sandbox = sandbox
        self.found = found
        self.assignment = assignment
        self.accepted = tuple(accepted)
        self.signatures = signatures or {}
        self.probes = probes_for_seed(assignment, seed)
        self.results: list[CheckResult] = []
        self.evidence: dict[str, Evidence] = {}
        self.warnings: list[str] = []
        self.contexts: list[Context] = [Context("reference", None)]
        self.recognised: str | None = None
        self.training: Training | None = None
        self._helpers_done = False
        self._called: dict[str, _Called] = {}
        self._helper_calls: dict[str, Any] = {}
        self.gradients: dict[str, list[GradientEvidence]] = {}
        #: Helper -> the functions that were right only with a stand-in in its place.
        self.substituted: dict[str, list[str]] = {}

    # --- helpers --------------------------------------------------------------

    def call(self, function: str, arg_tuples: Sequence[tuple[Any, ...]], args_after: bool = True) -> list[CallOutcome]:
        if not self.found.get(function):
            return [CallOutcome("missing") for _ in arg_tuples]
        return self.sandbox.call_many([CallRequest(function, args, args_after) for args in arg_tuples])

    _call = call

    def passed(self, check_id: str) -> bool:
        return any(r.id == check_id and r.passed for r in self.results)

    def _missing(self, check_id: str, function: str) -> CheckResult:
        return CheckResult(check_id, function, False, f"No function named {function} is defined in the notebook.")

    def _add(self, result: CheckResult) -> None:
        self.results.append(result)

    def _parameters(self, function: str) -> tuple[str, ...]:
        return self.assignment.function(function).parameters

    @property
    def primary(self) -> Context:
        return self.contexts[0]

    # --- the run -----------------------------------------------------------------

    def run(self) -> CheckRun:
        for check in self.assignment.checks:
            self._run_check(check)
        graded_with = self.primary.name if self.assignment.helpers is not None else None
        mutated = self._mutated()
        for function, names in mutated.items():
            if function not in self.assignment.warn_if_mutates:  # those were warned about with their check
                self.warnings.append(f"{function} changes its arguments in place ({', '.join(names)}); "
                                     "the caller's arrays change too.")
        return CheckRun(self.results, self.evidence, self.contexts, self.recognised, graded_with, self.training,
                        self.warnings, mutated, self.gradients, self.substituted)

    def _mutated(self) -> dict[str, list[str]]:
        """Every function's arguments changed in place (from the calls its checks made), except the ones it
        is declared to update in place."""
        allowed = {c.function: set(c.parameters) for c in self.assignment.checks
                   if isinstance(c, Update) and c.in_place}
        mutated = {}
        for function in self.assignment.names:
            evidence = self.evidence.get(function)
            if evidence is None or not self.found.get(function):
                continue
            names = [n for n in self._changed_arguments(function, evidence.args, evidence.outcomes)
                     if n not in allowed.get(function, set())]
            if names:
                mutated[function] = names
        return mutated

    def _run_check(self, check: CheckKind) -> None:
        helpers = self.assignment.helpers
        if helpers is not None and not self._helpers_done and not isinstance(check, Signature):
            self._helper_phase(helpers)
        if isinstance(check, HelperValues):
            self._helper_values_check(check)
        elif isinstance(check, HelperDerivative):
            self._derivative_gradient_check(check)
        elif isinstance(check, Values):
            self._values_check(check)
        elif isinstance(check, Gradient):
            self._gradient_check(check)
        elif isinstance(check, Update):
            self._update_check(check)
        elif isinstance(check, Converges):
            self._training_check(check)
        elif isinstance(check, NotMutated):
            self._not_mutated_check(check)
        elif isinstance(check, Signature):
            self._signature_check(check)

    # --- the helper pair (an activation and its derivative) ---------------------------

    def _helper_probe_set(self) -> str:
        return next((c.probes for c in self.assignment.checks if isinstance(c, HelperValues)), "")

    def _dependent_probes(self, helpers: Helpers) -> list[Probe]:
        """Every probe a dependent is evaluated on, once each, in check order."""
        names = []
        for check in self.assignment.checks:
            if (isinstance(check, (Values, Gradient, NotMutated, Update)) and check.function in helpers.dependents
                    and check.probes not in names):
                names.append(check.probes)
        return [p for name in names for p in self.probes.sets.get(name, ())]

    def _helper_phase(self, helpers: Helpers) -> None:
        """Call the helper and its derivative everywhere they are needed (two requests), recognise the
        family, and build the contexts the dependents are judged in."""
        self._helpers_done = True
        probes = list(self.probes.sets.get(self._helper_probe_set(), ()))
        grid = self.probes.grid if self.probes.grid is not None else np.linspace(-3.0, 3.0, 24)
        eps = GRAD_EPS_FLOAT64
        z_args = [arguments(p, self._parameters(helpers.function)) for p in probes]
        grid_args = [(grid,), (grid + eps,), (grid - eps,)]
        dependent = self._dependent_probes(helpers)
        net_args = [(helpers.evaluated_at(p.values),) for p in dependent]
        act = self.call(helpers.function, z_args + grid_args + net_args)
        dact = self.call(helpers.derivative, z_args + [(grid,)] + net_args)
        n = len(probes)
        act_probe, act_grid, act_net = act[:n], act[n: n + 3], act[n + 3:]
        dact_probe, dact_grid, dact_net = dact[:n], dact[n], dact[n + 1:]

        recognised = self._recognise(helpers, grid, act_grid[0])
        family = self._family_pair(helpers, recognised, grid, act_grid[0])
        accepted = family if (family is not None and recognised in self.accepted) else helpers.default
        self._helper_calls = {"probes": probes, "z_args": z_args, "act_probe": act_probe, "dact_probe": dact_probe,
                              "grid": grid, "eps": eps, "act_grid": act_grid, "dact_grid": dact_grid,
                              "accepted": accepted, "family": family}
        self.recognised = recognised

        student_pair = None
        if all(o.ok and as_array(o.value) is not None for o in act_net + dact_net):
            act_table, dact_table = _Tabulated(), _Tabulated()
            for (h,), a, d in zip(net_args, act_net, dact_net, strict=False):
                a_val, d_val = as_array(a.value), as_array(d.value)
                if a_val is not None and d_val is not None and a_val.shape == h.shape and d_val.shape == h.shape:
                    act_table.add(h, a_val)
                    dact_table.add(h, d_val)
            if len(act_table.table) == len({np.asarray(h).tobytes() for (h,) in net_args}):
                student_pair = Pair("yours", act_table, dact_table)
        self._student_pair = student_pair
        self._consistent: bool | None = None

    def _contexts_ready(self) -> None:
        """The primary context (and the student's own), decided once the derivative check has run."""
        helpers = self.assignment.helpers
        if helpers is None or getattr(self, "_contexts_decided", False):
            return
        self._contexts_decided = True
        if self._consistent is None:
            self._consistent = self._derivative_consistent(helpers)
        consistent, recognised, family = self._consistent, self.recognised, self._helper_calls["family"]
        if consistent and family is not None and recognised != helpers.default.name:
            self.warnings.append(f"Your {helpers.function} was recognised as {recognised}; "
                                 f"{_and(helpers.dependents)} were graded with it.")
            primary = Context(str(recognised), family)
        else:
            primary = Context(helpers.default.name, helpers.default)
        self.contexts = [primary]
        if self._student_pair is not None and not (consistent and recognised == primary.name):
            self.contexts.append(Context(f"your own {helpers.function} and derivative", self._student_pair))

    def _helper_values_check(self, check: HelperValues) -> None:
        helpers = self.assignment.helpers
        assert helpers is not None
        calls = self._helper_calls
        probes: list[Probe] = calls["probes"]
        accepted: Pair = calls["accepted"]
        outcomes = calls["dact_probe"] if check.derivative else calls["act_probe"]
        expected_fn = accepted.df if check.derivative else accepted.f
        masks = ([np.asarray(p.values[helpers.parameter]) == 0 if accepted.name in helpers.kinked else None
                  for p in probes] if check.derivative else None)
        self._tabulated_values_check(check.id, check.function, probes, calls["z_args"], outcomes, expected_fn, masks,
                                     accepted.name, helpers.parameter, check.derivative)

    def _tabulated_values_check(self, check_id: str, function: str, probes: list[Probe], args: list[tuple[Any, ...]],
                                outcomes: list[CallOutcome], expected_fn: Callable[..., Any],
                                masks: list[np.ndarray | None] | None, family: str, parameter: str,
                                derivative: bool) -> None:
        evidence = Evidence(list(args), list(outcomes), list(masks or [None] * len(args)), [p.scored for p in probes])
        self.evidence[function] = evidence
        if not self.found.get(function):
            self._add(self._missing(check_id, function))
            return
        scored = [i for i, p in enumerate(probes) if p.scored]
        passed, first_failure = 0, None
        for i in scored:
            expected = expected_fn(np.asarray(probes[i].values[parameter], dtype=float))
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
        details = {"probe": probes[i].name, "inputs": {parameter: _json(probes[i].values[parameter])},
                   "expected": _json(expected), "got": _json(outcomes[i])}
        self._add(CheckResult(check_id, function, False, message, passed / len(scored), details=details))

    def _recognise(self, helpers: Helpers, grid: np.ndarray, outcome: CallOutcome) -> str | None:
        values = as_array(outcome.value) if outcome.ok else None
        if values is None or values.shape != grid.shape or not np.all(np.isfinite(values)):
            return None
        for family, expected, expected_abs, finite in _family_values(helpers, grid):
            if (bool((np.abs(values - expected) <= 1e-6 + 1e-4 * expected_abs).all()) if finite
                    else np.allclose(values, expected, rtol=1e-4, atol=1e-6)):
                return family.name
        for name, fit in helpers.fitted:
            if fit(grid, values) is not None:
                return name
        return None

    @staticmethod
    def _family_pair(helpers: Helpers, name: str | None, grid: np.ndarray, outcome: CallOutcome) -> Pair | None:
        if name is None:
            return None
        for fitted_name, fit in helpers.fitted:
            if fitted_name == name:
                values = as_array(outcome.value)
                return fit(grid, values) if values is not None else None
        return next((f for f in helpers.families if f.name == name), None)

    def _derivative_values(self) -> tuple[list[np.ndarray | None], np.ndarray | None, bool]:
        calls = self._helper_calls
        grid = calls["grid"]
        values = [as_array(o.value) if o.ok else None for o in calls["act_grid"]]
        dact_grid: CallOutcome = calls["dact_grid"]
        slope = as_array(dact_grid.value) if dact_grid.ok else None
        usable = all(v is not None and v.shape == grid.shape for v in values)
        return values, slope, usable

    def _derivative_consistent(self, helpers: Helpers) -> bool:
        """Whether the derivative matches central differences of the student's own helper on the grid."""
        if not self.found.get(helpers.derivative):
            return False
        grid, eps = self._helper_calls["grid"], self._helper_calls["eps"]
        values, slope, usable = self._derivative_values()
        if not usable or slope is None or slope.shape != grid.shape:
            return False
        numeric = (values[1] - values[2]) / (2 * eps)  # type: ignore[operator]
        return bool(np.all(np.abs(slope - numeric) <= GRAD_ATOL + GRAD_RTOL * np.abs(numeric)))

    def _derivative_gradient_check(self, check: HelperDerivative) -> None:
        """The derivative against central differences of the student's own helper."""
        helpers = self.assignment.helpers
        assert helpers is not None
        check_id, function = check.id, check.function
        if not self.found.get(function):
            self._add(self._missing(check_id, function))
            self._consistent = False
            return
        grid, eps = self._helper_calls["grid"], self._helper_calls["eps"]
        values, slope, usable = self._derivative_values()
        values_check = self.assignment.values_check(function)
        values_passed = values_check is not None and self.passed(values_check)
        default = helpers.default.shown
        if not usable or slope is None or slope.shape != grid.shape:
            parameter = helpers.parameter
            reason = (f"your {helpers.function} does not return an array for an array input, so it cannot be "
                      "differentiated numerically" if not usable else
                      f"{function}({parameter}) for an array {parameter} {gave(self._helper_calls['dact_grid'])}")
            self._add(CheckResult(check_id, function, values_passed,
                                  (f"matches {default}'s slope; " if values_passed else "") + reason,
                                  float(values_passed)))
            self._consistent = False
            return
        numeric = (values[1] - values[2]) / (2 * eps)  # type: ignore[operator]
        rel_error = float(np.max(np.abs(slope - numeric) / np.maximum(1e-8, np.abs(slope) + np.abs(numeric))))
        consistent = bool(np.all(np.abs(slope - numeric) <= GRAD_ATOL + GRAD_RTOL * np.abs(numeric)))
        if consistent:
            message = f"matches the numerical derivative of your {helpers.function} (max relative error {rel_error:.1e})"
        elif values_passed:
            message = (f"matches {default}'s slope, but not the numerical derivative of your {helpers.function}: "
                       f"check {helpers.function}")
        else:
            worst = int(np.argmax(np.abs(slope - numeric)))
            message = (f"does not match the numerical derivative of your {helpers.function} (relative error "
                       f"{rel_error:.1e}; at {helpers.parameter} = {grid[worst]:.3f}: got {slope[worst]:.6g}, "
                       f"finite differences give {numeric[worst]:.6g})")
        passed = consistent or values_passed
        self._add(CheckResult(check_id, function, passed, message, float(passed),
                              details={} if passed else {"max_relative_error": rel_error}))
        self._consistent = consistent

    # --- values against the reference ----------------------------------------------------

    def _uses_helpers(self, function: str) -> bool:
        reference = self.assignment.references.get(function)
        return reference is not None and reference.uses_helpers and self.assignment.helpers is not None

    def _expected(self, function: str, args: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
        """The reference's answer on every probe, under each context (one context without helpers)."""
        self._contexts_ready()
        implementation = self.assignment.references[function].function
        if not self._uses_helpers(function):
            return {"reference": [_safe(partial(_call_with, implementation, a)) for a in args]}
        return {c.name: [_safe(partial(_call_with, implementation, a, c.pair)) for a in args] for c in self.contexts}

    def _derived(self, check: Values, probe_index: int, probe: Probe) -> dict[str, Any]:
        """Arguments that are another function's value on this probe: the student's when that function
        passed its values check, else the reference's under the primary context."""
        derived: dict[str, Any] = {}
        for name, source in check.derived.items():
            called = self._ensure_called(source, check.probes)
            reference_value = called.expected[next(iter(called.expected))][probe_index] if called.expected else None
            if reference_value is None:
                reference_value = self._reference_value(source, probe)
            outcome = called.outcomes[probe_index]
            value = as_array(outcome.value) if (called.passed and outcome.ok) else None
            if value is not None and value.size == np.size(reference_value):
                derived[name] = float(value.reshape(())) if np.ndim(reference_value) == 0 else value.reshape(
                    np.shape(reference_value))
            else:
                derived[name] = reference_value
        return derived

    def _reference_value(self, function: str, probe: Probe) -> Any:
        self._contexts_ready()
        implementation = self.assignment.references[function].function
        args = arguments(probe, self._parameters(function))
        if self._uses_helpers(function):
            return implementation(*_copies(args), self.primary.pair)
        return implementation(*_copies(args))

    def _ensure_called(self, function: str, probe_set: str) -> _Called:
        """``function``'s calls on ``probe_set``, made by its values check or now (without a verdict)."""
        key = f"{function}@{probe_set}"
        if key not in self._called:
            check = next((c for c in self.assignment.checks if isinstance(c, Values) and c.function == function
                          and c.probes == probe_set), None)
            self._values_check(check or Values("", function, probe_set), record=check is not None)
        return self._called[key]

    def _values_check(self, check: Values, record: bool = True) -> None:
        """Pass when every probe matches under one context."""
        self._contexts_ready()
        function = check.function
        probes = list(self.probes.sets.get(check.probes, ()))
        args = [arguments(p, self._parameters(function), self._derived(check, i, p) if check.derived else None)
                for i, p in enumerate(probes)]
        outcomes = self.call(function, args)
        called = _Called(probes, args, outcomes)
        self._called[f"{function}@{check.probes}"] = called
        if record:
            self.evidence[function] = Evidence(args, outcomes, [None] * len(args))
        called.expected = self._expected(function, args)
        if not record:
            return
        if not self.found.get(function):
            self._add(self._missing(check.id, function))
            return
        expected = called.expected
        scores = {name: [o.ok and values[i] is not None and values_close(o.value, values[i])
                         for i, o in enumerate(outcomes)] for name, values in expected.items()}
        best = max(scores, key=lambda n: sum(scores[n]))
        hits = scores[best]
        total = len(outcomes)
        if all(hits):
            note = "" if best == next(iter(expected)) else f" (with {best})"
            self._add(CheckResult(check.id, function, True, f"matches the reference on {total} probes{note}", 1.0))
            called.passed, called.matched = True, best
        elif self._right_with_working_helpers(check, called):
            pass  # judged again with stand-ins for the broken helpers, and right: its result is recorded there
        else:
            i = hits.index(False)
            first = next(iter(expected))
            message = (f"{total - sum(hits)} of {total} probes differ from the reference "
                       f"(e.g. {probes[i].name}{_call_failure(outcomes[i])})")
            details = {"probe": probes[i].name, "inputs": self._json_inputs(function, args[i]),
                       "expected": _json(expected[first][i]), "got": _json(outcomes[i])}
            self._add(CheckResult(check.id, function, False, message, sum(hits) / total, details=details))
        if function in self.assignment.warn_if_mutates:
            self._report_mutation(function, args, outcomes)

    def _broken_helpers(self) -> list[str]:
        """The helper functions (helper, derivative) that are missing or failed their values check."""
        helpers = self.assignment.helpers
        if helpers is None:
            return []
        broken = []
        for name in (helpers.function, helpers.derivative):
            values_check = self.assignment.values_check(name)
            evidence = self.evidence.get(name)
            if not self.found.get(name) or (values_check is not None and any(
                    r.id == values_check and not r.passed for r in self.results)) or (
                    evidence is not None and self._changed_arguments(name, evidence.args, evidence.outcomes)):
                broken.append(name)  # missing, wrong, or writing into the array its caller still uses
        return broken

    def _right_with_working_helpers(self, check: Values, called: _Called) -> bool:
        """Isolation by substitution: a function that uses broken helpers is called again with stand-ins in
        their place (values of the default pair at the points it evaluates them, held by the sandbox; no
        code of the grader's), and passes when it is then right. One mistake costs points once."""
        helpers = self.assignment.helpers
        function = check.function
        substitute = getattr(self.sandbox, "substitute", None)
        restore = getattr(self.sandbox, "restore", None)
        broken = self._broken_helpers()
        if helpers is None or function not in helpers.dependents or not broken or substitute is None \
                or restore is None or not self.found.get(function):
            return False
        default = helpers.default
        points: dict[bytes, np.ndarray] = {}
        for probe in called.probes:
            point = np.asarray(helpers.evaluated_at(probe.values), dtype=float)
            points.setdefault(repr(point.shape).encode() + point.tobytes(), point)
        tables = {name: [(point, np.asarray((default.f if name == helpers.function else default.df)(point),
                                            dtype=float)) for point in points.values()] for name in broken}
        if not substitute(tables):
            return False
        try:
            outcomes = self.call(function, called.args)
        finally:
            restore()
        implementation = self.assignment.references[function].function
        expected = [_safe(partial(_call_with, implementation, a, default)) for a in called.args]
        if not all(o.ok and e is not None and values_close(o.value, e)
                   for o, e in zip(outcomes, expected, strict=True)):
            return False
        fixed = " and ".join(broken)
        verb = "are" if len(broken) > 1 else "is"
        for name in broken:
            self.substituted.setdefault(name, []).append(function)
        self._add(CheckResult(check.id, function, True,
                              f"matches the reference on {len(outcomes)} probes once {fixed} {verb} fixed "
                              f"(checked with a working {fixed} in {'their' if len(broken) > 1 else 'its'} place)",
                              1.0))
        self.warnings.append(f"{function} is right once {fixed} {verb} fixed: it was checked with a working "
                             f"{fixed} in {'their' if len(broken) > 1 else 'its'} place.")
        primary = self.primary
        called.passed = True
        called.matched = primary.name if primary.pair is default else None
        called.outcomes = outcomes
        called.expected = {primary.name: expected}
        return True

    def _json_inputs(self, function: str, args: tuple[Any, ...]) -> dict[str, Any]:
        return {n: _json(a) for n, a in zip(self._parameters(function), args, strict=False)}

    def _matched_pair(self, function: str, probe_set: str) -> Pair | None:
        called = self._called.get(f"{function}@{probe_set}")
        if called is None or not called.passed:
            return None
        return next((c.pair for c in self.contexts if c.name == called.matched), None)

    def _changed_arguments(self, function: str, args: list[tuple[Any, ...]], outcomes: list[CallOutcome]) -> list[str]:
        names = self._parameters(function)
        changed: set[str] = set()
        for call_args, outcome in zip(args, outcomes, strict=False):
            if outcome.ok and outcome.args_after and len(outcome.args_after) == len(call_args):
                for name, before, after in zip(names, call_args, outcome.args_after, strict=False):
                    if not _unchanged(after, before):
                        changed.add(name)
        return [n for n in names if n in changed]

    def _report_mutation(self, function: str, args: list[tuple[Any, ...]], outcomes: list[CallOutcome]) -> None:
        changed = self._changed_arguments(function, args, outcomes)
        if changed:
            self.warnings.append(f"{function} changes its arguments in place ({', '.join(changed)}); "
                                 "the caller's arrays change too.")

    # --- gradients against finite differences ------------------------------------------------

    def _loss_function(self, objective: Any, use_student: bool, pair: Pair | None
                       ) -> Callable[[list[tuple[tuple[Any, ...], Any]]], list[float | None]]:
        """Batch evaluator of loss(f(args), target): the student's f (in the sandbox) or the reference's."""
        function, loss = objective.function, objective.loss

        def evaluate(points: list[tuple[tuple[Any, ...], Any]]) -> list[float | None]:
            if use_student:
                outcomes = self.call(function, [args for args, _ in points], args_after=False)
                return [_student_loss(o, target, loss) for o, (_, target) in zip(outcomes, points, strict=False)]
            implementation = self.assignment.references[function].function
            with_pair = self._uses_helpers(function)
            return [loss(implementation(*args, pair) if with_pair else implementation(*args), target)
                    for args, target in points]
        return evaluate

    def _gradient_check(self, check: Gradient) -> None:
        function = check.function
        if not self.found.get(function):
            self._add(self._missing(check.id, function))
            return
        helpers = self.assignment.helpers
        called = self._ensure_called(function, check.probes)
        objective = check.objective
        source = self._ensure_called(objective.function, check.probes)
        float32 = any(o.ok and getattr(o.value, "dtype", None) == np.float32 for o in source.outcomes)
        eps = GRAD_EPS_FLOAT32 if float32 else GRAD_EPS_FLOAT64
        # The loss is differentiated through the student's own function only when it is right under a pair
        # the reference cannot evaluate away from the probes (their own tabulated helper). When it equals the
        # reference under a pair of the reference's own, or is wrong, the reference stands in: the same finite
        # differences (or the right ones), computed once per probe for the whole class.
        own_pair = self._matched_pair(objective.function, check.probes)
        own = source.passed and own_pair is not None and not own_pair.pure
        pair = own_pair or self.primary.pair
        loss_of = self._loss_function(objective, own, pair)
        parameters = self._parameters(objective.function)
        given_own = len(self.contexts) > 1 and called.matched == self.contexts[1].name
        passed, worst_error, first_failure, compared = 0, 0.0, None, False
        for index, (probe, call_args, outcome) in enumerate(zip(called.probes, called.args, called.outcomes, strict=False)):
            claimed = self._claimed_gradients(check, probe, call_args, outcome)
            ok = False
            if claimed is not None:
                try:
                    numeric = (_numerical_gradients(probe, parameters, check.parameters, objective.target, eps, loss_of)
                               if own else _reference_gradients(
                                   (objective, self.assignment.references[objective.function].function), probe,
                                   parameters, check.parameters, objective.target, eps, pair, loss_of))
                except LookupError:  # a student pack without this point: through the student's own function
                    numeric = self._through_own_function(probe, parameters, check, eps, pair) if source.passed else None
                if numeric is not None:
                    self.gradients.setdefault(function, []).append(GradientEvidence(
                        dict(zip(self._parameters(function), call_args, strict=False)), check.parameters, claimed,
                        numeric))
                    compared = True  # a relative error is only reported when one was measured
                    flat_a = np.concatenate([g.ravel() for g in claimed])
                    flat_n = np.concatenate([g.ravel() for g in numeric])
                    rel = np.abs(flat_a - flat_n) / np.maximum(1e-8, np.abs(flat_a) + np.abs(flat_n))
                    worst_error = max(worst_error, float(rel.max()))
                    ok = bool(np.all(np.abs(flat_a - flat_n) <= GRAD_ATOL + GRAD_RTOL * np.abs(flat_n)))
            if not ok and given_own:
                ok = True  # right given the student's own derivative: that mistake is charged there
            passed += ok
            if not ok and first_failure is None:
                first_failure = (index, claimed)
        total = len(called.outcomes)
        what = "implied gradients" if check.rate else "gradients"
        if first_failure is None:
            note = f" (given your own {helpers.derivative})" if given_own and helpers is not None else ""
            self._add(CheckResult(check.id, function, True,
                                  f"{what} match finite differences on {total} probes{note}", 1.0,
                                  details={"max_relative_error": worst_error}))
            return
        index, claimed = first_failure
        probe = called.probes[index]
        if claimed is None:
            why = f"no ({', '.join(check.parameters)}) of the right shapes returned for {probe.name}"
        else:
            why = f"largest relative error {worst_error:.2g} vs finite differences"
        self._add(CheckResult(check.id, function, False,
                              f"{what[:-1]} wrong on {total - passed} of {total} probes ({why})",
                              passed / total, details={"probe": probe.name, **(
                                  {"max_relative_error": worst_error} if compared else {})}))

    def _through_own_function(self, probe: Probe, parameters: tuple[str, ...], check: Gradient, eps: float,
                              pair: Pair | None) -> tuple[np.ndarray, ...] | None:
        """Central differences of the loss through the student's own (passing) function; None when even that
        cannot be evaluated (a student pack holding no loss there)."""
        try:
            return _numerical_gradients(probe, parameters, check.parameters, check.objective.target, eps,
                                        self._loss_function(check.objective, True, pair))
        except LookupError:
            return None

    def _claimed_gradients(self, check: Gradient, probe: Probe, args: tuple[Any, ...],
                           outcome: CallOutcome) -> tuple[np.ndarray, ...] | None:
        """The gradients a call gave: returned, or implied by the parameters it returned after one step."""
        shapes = [np.shape(probe.values[p]) for p in check.parameters]
        returned = shaped_arrays(outcome.value, shapes) if outcome.ok else None
        if returned is None:
            return None
        if check.rate is None:
            return returned
        rate = probe.values[check.rate]
        return tuple((np.asarray(probe.values[p]) - new) / rate for p, new in zip(check.parameters, returned, strict=False))

    # --- a gradient step ----------------------------------------------------------------------

    def _update_check(self, check: Update) -> None:
        function = check.function
        probes = list(self.probes.sets.get(check.probes, ()))
        args = [arguments(p, self._parameters(function)) for p in probes]
        outcomes = self.call(function, args)
        self.evidence[function] = Evidence(args, outcomes, [None] * len(args))
        if not self.found.get(function):
            self._add(self._missing(check.id, function))
            return
        names = self._parameters(function)
        expected = [tuple(np.asarray(p.values[w], dtype=float) - p.values[check.rate] * np.asarray(p.values[g])
                          for w, g in zip(check.parameters, check.gradients, strict=False)) for p in probes]
        hits, first = [], None
        for probe, call_args, outcome, want in zip(probes, args, outcomes, expected, strict=False):
            if not outcome.ok:
                got, why = None, failed_call(outcome)
            elif check.in_place:
                after = outcome.args_after or ()
                got = tuple(after[names.index(p)] for p in check.parameters) if len(after) == len(names) else None
                why = "its arguments came back unchanged" if got is not None and all(
                    _unchanged(g, np.asarray(probe.values[p])) for g, p in zip(got, check.parameters, strict=False)) else \
                    f"{', '.join(check.parameters)} were not updated as a gradient step"
            else:
                got = shaped_arrays(outcome.value, [np.shape(w) for w in want])
                why = f"it did not return ({', '.join(check.parameters)}) after a gradient step"
            ok = got is not None and all(values_close(g, w) for g, w in zip(got, want, strict=False))
            hits.append(ok)
            if not ok and first is None:
                first = (probe, call_args, outcome, want, why)
        total = len(probes)
        where = "in place" if check.in_place else "and returns them"
        if first is None:
            self._add(CheckResult(check.id, function, True,
                                  f"updates {', '.join(check.parameters)} {where} as a gradient step on {total} probes",
                                  1.0))
            return
        probe, call_args, outcome, want, why = first
        message = f"{total - sum(hits)} of {total} probes differ from a gradient step (e.g. {probe.name}: {why})"
        details = {"probe": probe.name, "inputs": self._json_inputs(function, call_args), "expected": _json(want),
                   "got": _json(outcome if not check.in_place or not outcome.ok else outcome.args_after)}
        self._add(CheckResult(check.id, function, False, message, sum(hits) / total, details=details))

    # --- inputs left alone, and the signature ------------------------------------------------

    def _not_mutated_check(self, check: NotMutated) -> None:
        function = check.function
        if not self.found.get(function):
            self._add(self._missing(check.id, function))
            return
        called = self._called.get(f"{function}@{check.probes}")
        if called is None:
            probes = list(self.probes.sets.get(check.probes, ()))
            args = [arguments(p, self._parameters(function)) for p in probes]
            called = _Called(probes, args, self.call(function, args))
        changed = self._changed_arguments(function, called.args, called.outcomes)
        if changed:
            self._add(CheckResult(check.id, function, False,
                                  f"changes its arguments in place ({', '.join(changed)}); the caller's arrays "
                                  "change too: work on copies", 0.0))
        else:
            self._add(CheckResult(check.id, function, True,
                                  f"leaves its arguments as it found them on {len(called.args)} probes", 1.0))

    def _signature_check(self, check: Signature) -> None:
        function = check.function
        if not self.found.get(function):
            self._add(self._missing(check.id, function))
            return
        expected = self._parameters(function)
        info = self.signatures.get(function)
        parameters = getattr(info, "parameters", None)
        variadic = bool(getattr(info, "variadic", False))
        if parameters is None:
            self._add(CheckResult(check.id, function, False, "its parameters could not be read"))
            return
        ok = tuple(parameters) == expected or (variadic and len(parameters) <= len(expected))
        message = (f"takes ({', '.join(expected)}), as the template calls it" if ok else
                   f"takes ({', '.join(parameters)}), but the template calls it as {function}({', '.join(expected)})")
        self._add(CheckResult(check.id, function, ok, message, float(ok)))

    # --- end to end -------------------------------------------------------------------

    def _training_check(self, check: Converges) -> None:
        self._contexts_ready()
        result, training = check_training(check, self.assignment, self, self.primary.pair)
        if not result.passed and self._isolated_helpers():
            retried = self._training_with_working_helpers(check)
            if retried is not None:
                result, training = retried
        self._add(result)
        self.training = training

    def _isolated_helpers(self) -> list[str]:
        """The broken helpers some dependent was found right without: by substitution, or under the student's
        own pair (the same finding, reached by evaluating the reference with their helpers)."""
        names = set(self.substituted)
        if len(self.contexts) > 1 and any(called.passed and called.matched == self.contexts[1].name
                                          for called in self._called.values()):
            names.update(self._broken_helpers())
        return sorted(names)

    def _training_with_working_helpers(self, check: Converges) -> tuple[CheckResult, Training] | None:
        """The training loop again, with live stand-ins for the helpers its functions were right without
        (they ask the grader for each value over the channel): training that then converges is the helper's
        mistake, already charged there, so it earns its points. None when that cannot be run or still fails."""
        helpers = self.assignment.helpers
        substitute = getattr(self.sandbox, "substitute_live", None)
        restore = getattr(self.sandbox, "restore", None)
        if helpers is None or substitute is None or restore is None:
            return None
        default = helpers.default
        names = self._isolated_helpers()
        functions = {name: (default.f if name == helpers.function else default.df) for name in names}
        if not substitute(functions):
            return None
        try:
            result, training = check_training(check, self.assignment, self, default)
        finally:
            restore()
        if not result.passed:
            return None
        fixed = " and ".join(names)
        verb = "are" if len(names) > 1 else "is"
        result.message += f"; once {fixed} {verb} fixed (trained with a working {fixed} in {'their' if len(names) > 1 else 'its'} place)"
        self.warnings.append(f"training reaches the target once {fixed} {verb} fixed: it was run with a working "
                             f"{fixed} in {'their' if len(names) > 1 else 'its'} place.")
        return result, training


def shaped_arrays(value: Any, shapes: Sequence[tuple[int, ...]]) -> tuple[np.ndarray, ...] | None:
    """The arrays a call returned, if it is a tuple of finite arrays of ``shapes`` (a 1-d one may come
    in any shape of the right size, as ``w2.flatten()`` does); one shape takes a bare array too."""
    if len(shapes) == 1 and not isinstance(value, (tuple, list)):
        value = (value,)
    if not isinstance(value, (tuple, list)) or len(value) != len(shapes):
        return None
    arrays = []
    for item, shape in zip(value, shapes, strict=False):
        array = as_array(item)
        if array is None:
            return None
        if array.shape != tuple(shape):
            if len(shape) > 1 or array.size != int(np.prod(shape)):
                return None
            array = array.reshape(shape)
        if not np.isfinite(array).all():
            return None
        arrays.append(array)
    return tuple(arrays)


def _call_with(implementation: Callable[..., Any], args: tuple[Any, ...], *pair: Pair | None) -> Any:
    """``implementation`` on fresh copies of ``args`` (and the pair, for a function that uses the helpers)."""
    return implementation(*_copies(args), *pair)


def _copies(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Fresh copies of array arguments: a reference that updates in place must not touch the probes."""
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def _safe(compute: Callable[[], Any]) -> Any:
    """The reference's answer, or None when it is undefined for this context (e.g. an untabulated point)."""
    try:
        with np.errstate(all="ignore"):
            return compute()
    except (LookupError, ValueError, FloatingPointError):
        return None


def _perturb(values: tuple[np.ndarray, ...], eps: float) -> tuple[tuple[np.ndarray, ...], ...]:
    """Every parameter with one element moved by +eps then -eps, in order, as read-only arrays."""
    points = []
    for which, array in enumerate(values):
        for index in np.ndindex(np.shape(array)):
            for sign in (1.0, -1.0):
                moved = [np.array(v, dtype=float, copy=True) for v in values]
                moved[which][index] += sign * eps
                points.append(tuple(freeze_value(m) for m in moved))
    return tuple(points)


#: The finite-difference points of each probe: the same few probes for every notebook of a batch.
_PERTURBED = Memo(maxsize=256)


def _perturbed(values: tuple[np.ndarray, ...], eps: float) -> tuple[tuple[np.ndarray, ...], ...]:
    key = joint_key(*(value_key(v) for v in values), value_key(eps))
    return _PERTURBED.get(key, lambda: _perturb(values, eps))


def _numerical_gradients(probe: Probe, parameters: tuple[str, ...], wrt: tuple[str, ...], target: str, eps: float,
                         loss_of: Callable[[list[tuple[tuple[Any, ...], Any]]], list[float | None]]
                         ) -> tuple[np.ndarray, ...] | None:
    """Central differences of loss(f(...), target) over every element of ``wrt``, evaluated in one batch."""
    base = [np.asarray(probe.values[w]) for w in wrt]
    points = []
    for moved in _perturbed(tuple(base), eps):
        values = dict(probe.values)
        values.update(zip(wrt, moved, strict=False))
        points.append((tuple(values[p] for p in parameters), probe.values[target]))
    losses = loss_of(points)
    if any(v is None for v in losses):
        return None
    diffs = (np.array(losses[0::2]) - np.array(losses[1::2])) / (2 * eps)
    gradients, start = [], 0
    for array in base:
        gradients.append(diffs[start: start + array.size].reshape(array.shape))
        start += array.size
    return tuple(gradients)


#: Finite differences of the reference's own loss (used when the student's function failed), by probe and pair.
_REFERENCE_GRADIENTS = Memo(maxsize=256)


def _reference_gradients(ident: Any, probe: Probe, parameters: tuple[str, ...], wrt: tuple[str, ...], target: str,
                         eps: float, pair: Pair | None, loss_of: Callable[[list[tuple[tuple[Any, ...], Any]]], list[float | None]]
                         ) -> tuple[np.ndarray, ...] | None:
    """``_numerical_gradients`` with the reference's loss: depends only on the probe, eps and a pure pair, so cached."""
    key = joint_key(("objective", ident), ("pair", pair), ("wrt", wrt), *(value_key(probe.values[p]) for p in parameters),
                    value_key(probe.values[target]), value_key(eps)) if (pair is None or pair.pure) else None
    return _REFERENCE_GRADIENTS.get(  # type: ignore[no-any-return]
        key, lambda: freeze_value(_numerical_gradients(probe, parameters, wrt, target, eps, loss_of)))


def _student_loss(outcome: CallOutcome, target: Any, loss: Callable[[Any, Any], float]) -> float | None:
    """loss(value, target) for the value a call returned, or None when it is not of the target's size."""
    value = outcome.value if outcome.ok else None
    if np.ndim(target) == 0:
        if type(value) in (float, np.float64):  # the usual reply: as_array then float() gives the same number
            return loss(float(value), target)  # type: ignore[arg-type]
        v = as_array(value) if outcome.ok else None
        return loss(float(v.reshape(())), target) if v is not None and v.size == 1 else None
    v = as_array(value) if outcome.ok else None
    if v is None or v.size != np.size(target):
        return None
    return loss(v.reshape(np.shape(target)), target)


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


#: The fixed families' values on the recognition grid (pure functions of the grid).
_FAMILY_VALUES = Memo(maxsize=8)


def _family_values(helpers: Helpers, grid: np.ndarray) -> tuple[tuple[Pair, np.ndarray, np.ndarray, bool], ...]:
    """(family, f(grid), |f(grid)|, all finite) for each fixed family, for recognising a helper.

    Recognition is ``np.allclose(values, f(grid), rtol=1e-4, atol=1e-6)``: for
    finite values (the caller checks) and a finite f(grid) that is exactly
    ``|values - f(grid)| <= 1e-6 + 1e-4 * |f(grid)|`` everywhere, without
    np.allclose's ~20 µs of argument handling per family; a family with a
    non-finite value on the grid keeps np.allclose.
    """
    def compute() -> tuple[tuple[Pair, np.ndarray, np.ndarray, bool], ...]:
        rows = []
        for family in helpers.families:
            expected = np.array(family.f(grid), dtype=float)
            finite = bool(np.isfinite(expected).all())
            rows.append((family, freeze_value(expected), freeze_value(np.abs(expected)), finite))
        return tuple(rows)
    return _FAMILY_VALUES.get(joint_key(("families", helpers.families), value_key(grid)), compute)


def run_checks(sandbox: CallingSandbox, found: Mapping[str, bool], assignment: Assignment, accepted: Sequence[str],
               seed: int, signatures: Mapping[str, Any] | None = None) -> CheckRun:
    # Every number here may be a student's (inf, NaN, 1e308): an overflow is a value to judge, never a warning
    # (which a grader run with ``-W error`` would raise).
    with np.errstate(all="ignore"):
        return Grading(sandbox, found, assignment, accepted, seed, signatures).run()
