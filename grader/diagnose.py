"""The diagnose stage: name the bug by finding the mutant that behaves like the submission.

A function that failed its values check is compared, probe by probe, with every
mutant of the catalog (``grader.reference.mutants``) under each activation
context the checks used. A mutant matches when it raises where the student's
code raised and returns the same values everywhere else; shape errors are
evidence too (a transposed outer product only fails on non-square weights).
Two-bug combinations are tried for backward when no single bug explains it.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from grader.checks import CheckRun, Context, Evidence
from grader.compare import outcomes_agree, trusted_call
from grader.sandbox.process import CallOutcome
from grader.model import GRADED_FUNCTIONS, Diagnosis
from grader.memo import Memo, freeze_value, values_key
from grader.reference.mutants import HINTS, backward_pairs, mutants_for
from grader.reference.simple_nn import pair_key

NOT_FOUND = "No function named {name} is defined in the notebook: define it (check the spelling) and run its cell."
NOT_THIS_ASSIGNMENT = ("This notebook defines none of {names}, so it does not look like this assignment: check "
                       "that the notebook submitted is the right one.")
#: Pseudo-function of a diagnosis about the whole notebook.
NOTEBOOK = "notebook"
VALUES_CHECK = {"activation": "activation.values", "d_activation": "d_activation.values",
                "forward": "forward.values", "backward": "backward.values"}


#: What each mutant does on each probe, by (implementation, pure pair, the probes' values): the
#: probes are the same for every notebook of a batch, so each mutant runs once per process, not per notebook.
_MODEL_OUTCOMES = Memo(maxsize=1024)
Fields = tuple[str, Any, "str | None", "tuple[Any, ...] | None"]


def _fields(outcome: CallOutcome) -> Fields:
    """A trusted call's outcome as an immutable record (arrays read-only), safe to keep in the cache."""
    return outcome.status, freeze_value(outcome.value), outcome.error, freeze_value(outcome.args_after)


def _model_outcomes(impl: Callable[..., Any], context: Context | None, evidence: Evidence,
                    args_key: tuple | None) -> list[CallOutcome]:
    """``trusted_call`` of the mutant on every probe; cached unless the context is a student's own pair."""
    model = _bind(impl, context)
    pair = None if context is None else pair_key(context.pair)
    cacheable = args_key is not None and (context is None or pair is not None)
    key = (impl, pair, args_key) if cacheable else None
    records = _MODEL_OUTCOMES.get(key, lambda: tuple(_fields(trusted_call(model, args)) for args in evidence.args))
    return [CallOutcome(*record) for record in records]


def _behaves_like(evidence: Evidence, impl: Callable[..., Any], context: Context | None,
                  args_key: tuple | None) -> bool:
    """Agreement on every graded probe; tie-breaker probes count only for a model that fails on all graded ones.

    Scalar probes tell a scalar-only implementation (fails on arrays, fine on
    numbers) from a merely broken one; for every other bug, how a function
    treats a bare number is irrelevant (``np.ones(len(z))`` is still "constant").
    """
    scored = evidence.scored or [True] * len(evidence.args)
    models = _model_outcomes(impl, context, evidence, args_key)
    graded = [i for i, s in enumerate(scored) if s]
    strict = all(models[i].status == "raised" for i in graded)
    for i, (student, dont_care) in enumerate(zip(evidence.outcomes, evidence.dont_care)):
        if (scored[i] or strict) and not outcomes_agree(student, models[i], dont_care):
            return False
    return bool(evidence.args)


def _bind(impl: Callable[..., Any], context: Context | None) -> Callable[..., Any]:
    if context is None:
        return impl
    return lambda *args: impl(*args, context.pair)


def _contexts_for(function: str, run: CheckRun) -> list[Context | None]:
    return [None] if function in ("activation", "d_activation") else list(run.contexts)


def _args_key(evidence: Evidence) -> tuple | None:
    """The probes' values as a cache key (None if some argument is not a plain number or array)."""
    keys = []
    for args in evidence.args:
        key = values_key(args)
        if key is None:
            return None
        keys.append(key)
    return tuple(keys)


def _matching_ids(function: str, evidence: Evidence, run: CheckRun) -> list[str]:
    matched: list[str] = []
    args_key = _args_key(evidence)
    for mutant in mutants_for(function):
        if mutant.id in matched:
            continue
        if any(_behaves_like(evidence, variant, context, args_key)
               for context in _contexts_for(function, run) for variant in mutant.variants):
            matched.append(mutant.id)
    return matched


def _matching_pairs(evidence: Evidence, run: CheckRun) -> list[tuple[str, str]]:
    args_key = _args_key(evidence)
    return [ids for ids, impl in backward_pairs()
            if any(_behaves_like(evidence, impl, context, args_key) for context in run.contexts)]


#: The parameters the notebook's template calls each graded function with.
EXPECTED_PARAMETERS = {"activation": ("z",), "d_activation": ("z",), "forward": ("x", "w1", "w2"),
                       "backward": ("x", "y", "y_hat", "w1", "w2", "eta")}
WRONG_SIGNATURE = ("{name} takes ({found}), but it is called as {name}({expected}), as in the notebook's template, "
                   "so {calls}: {raised}; give it exactly these parameters, in this order.")


def wrong_signatures(functions: dict[str, Any], run: CheckRun) -> list[Diagnosis]:
    """``wrong_signature`` for a function whose definition cannot take the template's arguments and whose
    calls failed for it: names the expected and the found parameters and what the call raised."""
    diagnoses = []
    for name, expected in EXPECTED_PARAMETERS.items():
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


def diagnose(run: CheckRun, found: dict[str, bool]) -> list[Diagnosis]:
    passed = {r.id for r in run.results if r.passed}
    diagnoses: list[Diagnosis] = []
    if not any(found.get(function) for function in GRADED_FUNCTIONS):
        # One sentence for a notebook of another course, not one "check the spelling" per function.
        names = ", ".join(GRADED_FUNCTIONS[:-1]) + " or " + GRADED_FUNCTIONS[-1]
        return [Diagnosis("not_this_assignment", NOTEBOOK, NOT_THIS_ASSIGNMENT.format(names=names))]
    for function in GRADED_FUNCTIONS:
        if not found.get(function):
            diagnoses.append(Diagnosis("not_implemented", function, NOT_FOUND.format(name=function)))
            continue
        if VALUES_CHECK[function] in passed or function not in run.evidence:
            continue
        evidence = run.evidence[function]
        ids: Iterable[str] = _matching_ids(function, evidence, run)
        if not ids and function == "backward":
            pairs = _matching_pairs(evidence, run)
            ids = list(dict.fromkeys(i for pair in pairs[:1] for i in pair))
        diagnoses.extend(Diagnosis(i, function, HINTS[i]) for i in ids)
    return diagnoses


def unexplained(run: CheckRun, diagnoses: list[Diagnosis]) -> list[str]:
    """Functions that failed their values check with no catalogued bug to name."""
    named = {d.function for d in diagnoses}
    failed = {r.function for r in run.results if not r.passed and r.id in VALUES_CHECK.values()}
    return [f for f in GRADED_FUNCTIONS if f in failed and f not in named]
