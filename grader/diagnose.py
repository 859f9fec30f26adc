"""The diagnose stage: name the bug by finding the mutant that behaves like the submission.

A function that failed its values check is compared, probe by probe, with every
mutant of the assignment's catalogue under each helper context the checks used. A mutant matches when it raises where the student's
code raised and returns the same values everywhere else; shape errors are
evidence too (a transposed outer product only fails on non-square weights).
Two-bug combinations (which the assignment declares) are tried when no single bug explains
a function.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from grader.assignment import Assignment
from grader.checks import CheckRun, Context, Evidence
from grader.compare import outcomes_agree, trusted_call
from grader.memo import Memo, freeze_value, values_key
from grader.model import Diagnosis
from grader.sandbox.process import CallOutcome, CallStatus
from grader.structure import structural

NOT_FOUND = "No function named {name} is defined in the notebook: define it (check the spelling) and run its cell."
NOT_THIS_ASSIGNMENT = ("This notebook defines none of {names}, so it does not look like this assignment: check "
                       "that the notebook submitted is the right one.")
#: Pseudo-function of a diagnosis about the whole notebook.
NOTEBOOK = "notebook"


#: What each mutant does on each probe, by (implementation, pure pair, the probes' values): the
#: probes are the same for every notebook of a batch, so each mutant runs once per process, not per notebook.
_MODEL_OUTCOMES = Memo(maxsize=1024)
Fields = tuple[CallStatus, Any, "str | None", "tuple[Any, ...] | None"]


def _fields(outcome: CallOutcome) -> Fields:
    """A trusted call's outcome as an immutable record (arrays read-only), safe to keep in the cache."""
    return outcome.status, freeze_value(outcome.value), outcome.error, freeze_value(outcome.args_after)


def _model_outcomes(impl: Callable[..., Any], context: Context | None, evidence: Evidence,
                    args_key: tuple[Any, ...] | None) -> list[CallOutcome]:
    """``trusted_call`` of the mutant on every probe; cached unless the context is a student's own pair."""
    model = _bind(impl, context)
    pair = None if context is None or context.pair is None or not context.pair.pure else context.pair
    cacheable = args_key is not None and (context is None or pair is not None)
    key = (impl, pair, args_key) if cacheable else None
    records = _MODEL_OUTCOMES.get(key, lambda: tuple(_fields(trusted_call(model, args)) for args in evidence.args))
    return [CallOutcome(*record) for record in records]


def _behaves_like(evidence: Evidence, impl: Callable[..., Any], context: Context | None,
                  args_key: tuple[Any, ...] | None) -> bool:
    """Agreement on every graded probe; tie-breaker probes count only for a model that fails on all graded ones.

    Scalar probes tell a scalar-only implementation (fails on arrays, fine on
    numbers) from a merely broken one; for every other bug, how a function
    treats a bare number is irrelevant (``np.ones(len(z))`` is still "constant").
    """
    scored = evidence.scored or [True] * len(evidence.args)
    models = _model_outcomes(impl, context, evidence, args_key)
    graded = [i for i, s in enumerate(scored) if s]
    strict = all(models[i].status == "raised" for i in graded)
    for i, (student, dont_care) in enumerate(zip(evidence.outcomes, evidence.dont_care, strict=False)):
        if (scored[i] or strict) and not outcomes_agree(student, models[i], dont_care):
            return False
    return bool(evidence.args)


def _bind(impl: Callable[..., Any], context: Context | None) -> Callable[..., Any]:
    if context is None:
        return impl
    return lambda *args: impl(*args, context.pair)


def _contexts_for(assignment: Assignment, function: str, run: CheckRun) -> list[Context | None]:
    """The contexts a mutant of ``function`` runs in: each of the run's, for a function that uses the helpers."""
    helpers = assignment.helpers
    if helpers is None or function not in helpers.dependents:
        return [None]
    return list(run.contexts)


def _args_key(evidence: Evidence) -> tuple[Any, ...] | None:
    """The probes' values as a cache key (None if some argument is not a plain number or array)."""
    keys = []
    for args in evidence.args:
        key = values_key(args)
        if key is None:
            return None
        keys.append(key)
    return tuple(keys)


def _matching_ids(assignment: Assignment, function: str, evidence: Evidence, run: CheckRun) -> list[str]:
    matched: list[str] = []
    args_key = _args_key(evidence)
    contexts = _contexts_for(assignment, function, run)
    for mutant in assignment.mutants:
        if mutant.function != function or mutant.id in matched:
            continue
        if any(_behaves_like(evidence, variant, context, args_key)
               for context in contexts for variant in mutant.variants):
            matched.append(mutant.id)
    return matched


def _matching_combinations(assignment: Assignment, function: str, evidence: Evidence,
                           run: CheckRun) -> list[tuple[str, ...]]:
    combinations = assignment.combinations.get(function)
    if combinations is None:
        return []
    args_key = _args_key(evidence)
    contexts = _contexts_for(assignment, function, run)
    return [ids for ids, impl in combinations()
            if any(_behaves_like(evidence, impl, context, args_key) for context in contexts)]


MUTATES_INPUT = ("{name} changes its argument{s} {names} in place, and that changes the results of {users}: "
                 "work on a copy ({first} = {first}.copy()) or build a new array instead of writing into "
                 "{them}.")
WRONG_SIGNATURE = ("{name} takes ({found}), but it is called as {name}({expected}), as in the notebook's template, "
                   "so {calls}: {raised}; give it exactly these parameters, in this order.")


def wrong_signatures(assignment: Assignment, functions: dict[str, Any], run: CheckRun) -> list[Diagnosis]:
    """``wrong_signature`` for a function whose definition cannot take the template's arguments and whose
    calls failed for it: names the expected and the found parameters and what the call raised."""
    diagnoses = []
    for name, expected in ((f.name, f.parameters) for f in assignment.functions):
        info = functions.get(name)
        parameters = getattr(info, "parameters", None)
        if parameters is None or getattr(info, "variadic", False) or len(parameters) == len(expected):
            continue
        evidence = run.evidence.get(name)
        raised = next((o.error for o in (evidence.outcomes if evidence else []) if o.status == "raised"
                       and o.error and o.error.startswith("TypeError")), None)
        if raised is None:
            continue  # a default value makes the call work: its checks say the rest
        diagnoses.append(Diagnosis("wrong_signature", name, WRONG_SIGNATURE.format(
            name=name, found=", ".join(parameters), expected=", ".join(expected),
            calls="every check of it could not call it", raised=raised)))
    return diagnoses


def _listed(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def diagnose(assignment: Assignment, run: CheckRun, found: dict[str, bool]) -> list[Diagnosis]:
    # The evidence holds a student's values (inf, NaN, 1e308): comparing them overflows, which is no warning.
    with np.errstate(all="ignore"):
        return _diagnose(assignment, run, found)


def _diagnose(assignment: Assignment, run: CheckRun, found: dict[str, bool]) -> list[Diagnosis]:
    passed = {r.id for r in run.results if r.passed}
    diagnoses: list[Diagnosis] = []
    names = assignment.names
    if not any(found.get(function) for function in names):
        # One sentence for a notebook of another course, not one "check the spelling" per function.
        return [Diagnosis("not_this_assignment", NOTEBOOK, NOT_THIS_ASSIGNMENT.format(names=_listed(names)))]
    for function in names:
        if not found.get(function):
            diagnoses.append(Diagnosis("not_implemented", function, NOT_FOUND.format(name=function)))
            continue
        values_check = assignment.values_check(function)
        if values_check is None or values_check in passed or function not in run.evidence:
            continue
        evidence = run.evidence[function]
        ids: Iterable[str] = _matching_ids(assignment, function, evidence, run)
        if not ids:
            combinations = _matching_combinations(assignment, function, evidence, run)
            ids = list(dict.fromkeys(i for combination in combinations[:1] for i in combination))
        if not ids:  # no mutant spells it out: say what is wrong with its gradient, parameter by parameter
            diagnoses.extend(structural(assignment, run, function))
            continue
        hints = {m.id: m.hint for m in assignment.mutants if m.function == function}
        diagnoses.extend(Diagnosis(i, function, hints[i]) for i in ids if i in hints)
    return diagnoses


def mutations(assignment: Assignment, run: CheckRun) -> list[Diagnosis]:
    """``mutates_input`` for a helper that writes into its argument where that changes results: a function
    that uses it failed its values check (its caller's array changed under it).

    A function that writes into its own arguments after using them computes its own result right; whether
    its caller is hurt depends on the caller (the template's loop rebinds the weights), so that is a
    warning, not a diagnosis: a correct notebook never gets one."""
    failed = {r.id for r in run.results if not r.passed}
    helpers = assignment.helpers
    diagnoses: list[Diagnosis] = []
    if helpers is None:
        return diagnoses
    for function, names in run.mutated.items():
        if function not in (helpers.function, helpers.derivative):
            continue
        users = helpers.dependents
        checks = [assignment.values_check(f) for f in users]
        if not any(check in failed for check in checks if check is not None) and not run.substituted.get(function):
            continue  # harmless here: the warning says it
        diagnoses.append(Diagnosis("mutates_input", function, MUTATES_INPUT.format(
            name=function, s="s" if len(names) > 1 else "", names=", ".join(names), first=names[0],
            users=" and ".join(users), them="them" if len(names) > 1 else "it")))
    return diagnoses


def unexplained(assignment: Assignment, run: CheckRun, diagnoses: list[Diagnosis]) -> list[str]:
    """Functions that failed their values check with no catalogued bug to name."""
    named = {d.function for d in diagnoses}
    values_checks = {assignment.values_check(f) for f in assignment.names} - {None}
    failed = {r.function for r in run.results if not r.passed and r.id in values_checks}
    return [f for f in assignment.names if f in failed and f not in named]
