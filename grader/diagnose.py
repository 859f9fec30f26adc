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
from grader.model import GRADED_FUNCTIONS, Diagnosis
from grader.reference.mutants import HINTS, backward_pairs, mutants_for

NOT_FOUND = "No function named {name} is defined in the notebook: define it (check the spelling) and run its cell."
VALUES_CHECK = {"activation": "activation.values", "d_activation": "d_activation.values",
                "forward": "forward.values", "backward": "backward.values"}


def _behaves_like(evidence: Evidence, model: Callable[..., Any]) -> bool:
    """Agreement on every graded probe; tie-breaker probes count only for a model that fails on all graded ones.

    Scalar probes tell a scalar-only implementation (fails on arrays, fine on
    numbers) from a merely broken one; for every other bug, how a function
    treats a bare number is irrelevant (``np.ones(len(z))`` is still "constant").
    """
    scored = evidence.scored or [True] * len(evidence.args)
    models = [trusted_call(model, args) for args in evidence.args]
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


def _matching_ids(function: str, evidence: Evidence, run: CheckRun) -> list[str]:
    matched: list[str] = []
    for mutant in mutants_for(function):
        if mutant.id in matched:
            continue
        if any(_behaves_like(evidence, _bind(variant, context))
               for context in _contexts_for(function, run) for variant in mutant.variants):
            matched.append(mutant.id)
    return matched


def _matching_pairs(evidence: Evidence, run: CheckRun) -> list[tuple[str, str]]:
    return [ids for ids, impl in backward_pairs()
            if any(_behaves_like(evidence, _bind(impl, context)) for context in run.contexts)]


def diagnose(run: CheckRun, found: dict[str, bool]) -> list[Diagnosis]:
    passed = {r.id for r in run.results if r.passed}
    diagnoses: list[Diagnosis] = []
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
