"""The trusted side's per-process caches give exactly what a fresh computation gives.

Each cache is checked twice: a cached value equals a fresh one (for two seeds,
pairs or inputs), and an entry is never returned for a different input. The
end-to-end tests grade the reference and every catalogued mutant with caching
disabled, then twice with it (cold, then warm), interleaving seeds, and require
identical results.

The assignment is a plug-in (``grader.assignment``): its reference, mutants and probes are
the modules of ``reference/simple_nn/``, imported by ``load_assignment`` under a private
package name, and reached here through ``assignment_module``.
"""
import ast
import dataclasses
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import checks, diagnose, integrity, memo, probe, training
from grader.assignment import Converges, Gradient, Pair, load_assignment
from grader.calibrate import grade_functions, reference_functions
from grader.checks import CheckRun, Context, Evidence
from grader.compare import ATOL_SCALE, RTOL, arrays_close, trusted_call
from grader.rubric import load_rubric

RUBRIC = load_rubric("simple_nn")
ASSIGNMENT = load_assignment("simple_nn")
FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"


def assignment_module(name):
    """One module of the assignment's package (``reference``, ``mutants``, ``probes``), as the loader imported it."""
    folder = Path(ASSIGNMENT.path).resolve()
    found = [module for key, module in list(sys.modules.items())
             if (key.startswith("grader_assignment_") or key.startswith("grader.reference."))
             and key.endswith(f"{ASSIGNMENT.name}.{name}")
             and Path(getattr(module, "__file__", None) or "").resolve().parent == folder]
    assert len(found) == 1, (name, [getattr(m, "__name__", "?") for m in found])
    return found[0]


ref = assignment_module("reference")
mutants = assignment_module("mutants")
probes_module = assignment_module("probes")
HELPERS = ASSIGNMENT.helpers
LOOP = next(c.loop for c in ASSIGNMENT.checks if isinstance(c, Converges))
GRADIENT = next(c for c in ASSIGNMENT.checks if isinstance(c, Gradient))
OBJECTIVE = GRADIENT.objective
#: forward's parameters (x, w1, w2): what the loss of the gradient check is a function of.
OBJECTIVE_PARAMETERS = ASSIGNMENT.function(OBJECTIVE.function).parameters
#: How the grader names the reference's objective in the finite-difference cache's key.
OBJECTIVE_IDENT = (OBJECTIVE, ASSIGNMENT.references[OBJECTIVE.function].function)


def mutants_for(function):
    return [m for m in ASSIGNMENT.mutants if m.function == function]


@pytest.fixture(autouse=True)
def cold_caches():
    memo.clear_all()
    yield
    memo.clear_all()


def fresh_curve(pair, start, iterations=200):
    """The training check's reference loop as it was written before the cache."""
    losses, w1, w2 = [], start["w1"].copy(), start["w2"].copy()
    x, y, eta = start["x"], start["y"], start["eta"]
    with np.errstate(all="ignore"):
        for _ in range(iterations):
            y_hat = ref.forward(x, w1, w2, pair)
            losses.append(ref.loss(y_hat, y))
            w1, w2 = ref.backward(x, y, y_hat, w1, w2, eta, pair)
    return losses


def loop_from(start, iterations):
    """The assignment's training loop from another start, for another number of iterations."""
    def fresh_start():
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in start.items()}
    return dataclasses.replace(LOOP, start=fresh_start, iterations=iterations)


def curve(pair, loop=LOOP):
    return training.reference_curve(ASSIGNMENT, loop, pair)


# --- memo ---------------------------------------------------------------------------------

def test_memo_is_bounded_least_recently_used_and_never_caches_a_none_key():
    cache = memo.Memo(maxsize=2)
    calls = []
    compute = lambda value: (lambda: calls.append(value) or value)
    assert cache.get("a", compute(1)) == 1 and cache.get("b", compute(2)) == 2
    assert cache.get("a", compute(99)) == 1  # hit; "b" is now the least recently used
    assert cache.get("c", compute(3)) == 3 and len(cache) == 2
    assert cache.get("b", compute(4)) == 4  # "b" was evicted
    assert cache.get(None, compute(5)) == 5 and cache.get(None, compute(6)) == 6
    assert calls == [1, 2, 3, 4, 5, 6]


def test_value_keys_tell_apart_what_could_compute_differently():
    key = memo.value_key
    a = np.array([1.0, 2.0])
    assert key(a) == key(a.copy())
    assert key(a) != key(a.astype(np.float32)) != key(a.reshape(2, 1))
    assert key(np.array([[1.0, 2.0], [3.0, 4.0]])) != key(np.array([[1.0, 2.0], [3.0, 4.0]]).T.copy())
    assert key(0.0) != key(-0.0) and key(1.0) != key(1) and key(1.0) != key(np.float64(1.0))
    assert key(0.1) == key(0.1) and key(2**80) == key(2**80) and key(2**80) != key(2**80 + 1)
    assert key([1.0]) is None and key(None) is None and key(np.array([object()])) is None
    assert memo.values_key((a, 1.0)) == memo.values_key((a.copy(), 1.0))
    assert memo.values_key((a, [1.0])) is None


def test_disabled_neither_reads_nor_fills_a_cache():
    cache = memo.Memo(maxsize=4)
    cache.get("k", lambda: 1)
    with memo.disabled():
        assert cache.get("k", lambda: 2) == 2 and cache.get("j", lambda: 3) == 3
    assert cache.get("k", lambda: 4) == 1 and cache.get("j", lambda: 5) == 5


# --- reference training curve ----------------------------------------------------------------

@pytest.mark.parametrize("pair", [ref.RELU, ref.SIGMOID, ref.TANH, ref.leaky_relu(0.1), ref.elu(1.0)], ids=lambda p: p.name)
def test_training_curve_equals_a_fresh_computation_cold_and_warm(pair):
    start = probes_module.notebook_values()
    expected = fresh_curve(pair, start, LOOP.iterations)
    assert list(curve(pair)) == expected
    assert list(curve(pair)) == expected  # from the cache
    assert len(training._CURVES) == 1


def test_training_curve_without_a_pair_is_the_default_pairs():
    expected = fresh_curve(HELPERS.default, probes_module.notebook_values(), LOOP.iterations)
    for _ in range(2):
        assert list(curve(None)) == expected and list(curve(HELPERS.default)) == expected
    assert len(training._CURVES) == 1


def test_training_curve_cache_keeps_pairs_starts_and_lengths_apart():
    start = probes_module.notebook_values()
    other = {**start, "w1": start["w1"] - 0.5, "y": 0.5, "eta": 0.05}  # some negative pre-activations
    starts = {"start": start, "other": other}
    loops = {(where, iterations): loop_from(starts[where], iterations) for where in starts for iterations in (200, 50)}
    pairs = (ref.RELU, ref.TANH, ref.leaky_relu(0.1), ref.leaky_relu(0.2))
    for _ in range(2):  # cold, then warm
        for pair in pairs:
            for (where, iterations), loop in loops.items():
                assert list(curve(pair, loop)) == fresh_curve(pair, starts[where], iterations)
    assert len(training._CURVES) == len(pairs) * len(loops)
    assert curve(ref.RELU) == curve(ref.RELU, loops["start", 200])  # the same loop, declared twice
    assert curve(ref.RELU, loops["start", 200]) != curve(ref.TANH, loops["start", 200]) \
        != curve(ref.RELU, loops["other", 200])
    assert curve(ref.leaky_relu(0.1), loops["other", 200]) != curve(ref.leaky_relu(0.2), loops["other", 200])


def test_leaky_relu_is_one_object_per_alpha():
    assert ref.leaky_relu(0.1) is ref.leaky_relu(0.1) and ref.leaky_relu(0.1) is not ref.leaky_relu(0.2)


def test_a_students_pair_is_never_cached():
    table = {}
    pair = Pair("yours", lambda z: table.get("act", np.maximum)(z, 0.0), lambda z: (z > 0) * 1.0)
    start = probes_module.notebook_values()
    before = list(curve(pair))
    table["act"] = np.minimum  # the pair now computes something else: a cache would hide it
    assert list(curve(pair)) == fresh_curve(pair, start) != before
    assert len(training._CURVES) == 0


def test_a_caller_cannot_change_the_cached_curve():
    start = probes_module.notebook_values()
    got = curve(ref.RELU)
    assert isinstance(got, tuple)
    listed = list(got)
    listed[0] = 123.0
    assert list(curve(ref.RELU)) == fresh_curve(ref.RELU, start)


# --- probes ---------------------------------------------------------------------------------------

def fresh_probes(seed):
    """Every probe of ``seed``, drawn afresh by the assignment."""
    return ASSIGNMENT.probes(np.random.default_rng(seed))


def network_of(seed):
    return list(fresh_probes(seed).sets["network"])


def same_value(x, y):
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.dtype == y.dtype
                and x.shape == y.shape and x.tobytes() == y.tobytes())
    return type(x) is type(y) and x == y


def same_probe(a, b):
    return (type(a) is type(b) and a.name == b.name and a.scored == b.scored and list(a.values) == list(b.values)
            and all(same_value(a.values[k], b.values[k]) for k in a.values))


def same_probes(a, b):
    return (list(a.sets) == list(b.sets) and same_value(a.grid, b.grid)
            and all(len(a.sets[n]) == len(b.sets[n]) and all(same_probe(p, q) for p, q in zip(a.sets[n], b.sets[n]))
                    for n in a.sets))


@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_probes_for_a_seed_equal_a_fresh_draw_cold_and_warm(seed):
    fresh = fresh_probes(seed)
    assert set(fresh.sets) == {"network", "activation"} and fresh.grid is not None
    for _ in range(2):
        assert same_probes(probe.probes_for_seed(ASSIGNMENT, seed), fresh)
    assert len(probe._BY_SEED) == 1


def test_probes_differ_between_seeds_and_a_caller_cannot_change_them():
    first = probe.probes_for_seed(ASSIGNMENT, 0)
    assert not same_probe(probe.probes_for_seed(ASSIGNMENT, 1).sets["network"][1], first.sets["network"][1])
    network = first.sets["network"]
    network[1].values["w1"][0, 0] = 99.0  # writable, like a fresh draw, but a copy
    network[0].values["x"][:] = 0.0
    network[2].values["y"] = 123.0
    first.sets["activation"][1].values["z"][:] = 0.0
    first.grid[:] = 0.0
    first.sets["network"] = ()
    again = probe.probes_for_seed(ASSIGNMENT, 0)
    assert same_probes(again, fresh_probes(0))
    assert again.sets["network"][1].values["w1"].flags.writeable and again.grid.flags.writeable


# --- finite differences of the reference -------------------------------------------------------------

def reference_loss(pair):
    """The grader's batch evaluator of the reference's loss: points are (forward's arguments, target)."""
    return lambda points: [ref.loss(ref.forward(*args, pair), target) for args, target in points]


def numerical(p, wrt, eps, pair):
    return checks._numerical_gradients(p, OBJECTIVE_PARAMETERS, wrt, OBJECTIVE.target, eps, reference_loss(pair))


def reference_gradients(p, wrt, eps, pair):
    return checks._reference_gradients(OBJECTIVE_IDENT, p, OBJECTIVE_PARAMETERS, wrt, OBJECTIVE.target, eps, pair,
                                       reference_loss(pair))


def test_reference_gradients_equal_a_fresh_computation_for_each_probe_pair_wrt_and_eps():
    network = network_of(3)
    everything = GRADIENT.parameters
    for pair in (ref.RELU, ref.SIGMOID):
        for eps in (checks.GRAD_EPS_FLOAT64, checks.GRAD_EPS_FLOAT32):
            for wrt in (everything, everything[-1:]):
                for p in network:
                    fresh = numerical(p, wrt, eps, pair)
                    assert len(fresh) == len(wrt)
                    for _ in range(2):
                        got = reference_gradients(p, wrt, eps, pair)
                        assert len(got) == len(fresh)
                        assert all(np.array_equal(g, f) and g.shape == f.shape for g, f in zip(got, fresh))
    assert len(checks._REFERENCE_GRADIENTS) == 2 * 2 * 2 * len({p.name for p in network})
    with pytest.raises(ValueError):
        got[0][0] = 1.0  # read-only: a caller cannot change the cached gradients


def test_reference_gradients_are_not_cached_for_a_students_pair():
    pair = Pair("yours", ref.RELU.f, ref.RELU.df)
    network = network_of(0)
    got = reference_gradients(network[1], GRADIENT.parameters, 1e-6, pair)
    fresh = numerical(network[1], GRADIENT.parameters, 1e-6, pair)
    assert all(np.array_equal(g, f) for g, f in zip(got, fresh))
    assert len(checks._REFERENCE_GRADIENTS) == 0


def original_points(probe_, eps):
    """checks._numerical_gradients' points as they were built before the cache."""
    points = []
    for which, weights in ((0, probe_.values["w1"]), (1, probe_.values["w2"])):
        for index in np.ndindex(weights.shape):
            for sign in (1.0, -1.0):
                w1, w2 = probe_.values["w1"].copy(), probe_.values["w2"].copy()
                (w1, w2)[which][index] += sign * eps
                points.append((w1, w2))
    return points


def test_perturbed_weights_equal_a_fresh_construction_and_are_read_only():
    for seed in (0, 9):
        for p in network_of(seed):
            for eps in (1e-6, 1e-3):
                for _ in range(2):
                    got = checks._perturbed((p.values["w1"], p.values["w2"]), eps)
                    fresh = original_points(p, eps)
                    assert len(got) == len(fresh)
                    assert all(len(g) == 2 for g in got)
                    assert all(a.tobytes() == c.tobytes() and b.tobytes() == d.tobytes() and a.shape == c.shape
                               and b.shape == d.shape and a.dtype == c.dtype and b.dtype == d.dtype
                               for (a, b), (c, d) in zip(got, fresh))
    with pytest.raises(ValueError):
        got[0][0][0] = 1.0


def test_family_values_recognise_exactly_as_np_allclose_did():
    grid = probes_module.derivative_grid()
    rng = np.random.default_rng(0)
    families = HELPERS.families
    for family in families + (ref.leaky_relu(0.05),):
        base = np.asarray(family.f(grid), dtype=float)
        for scale in (0.0, 1e-7, 1e-6, 5e-5, 1e-4, 1e-3):
            values = base * (1 + scale * rng.choice([-1.0, 1.0], grid.shape)) + scale * rng.normal(size=grid.shape)
            expected = next((f.name for f in families if np.allclose(values, f.f(grid), rtol=1e-4, atol=1e-6)), None)
            got = next((f.name for f, e, a, finite in checks._family_values(HELPERS, grid)
                        if bool((np.abs(values - e) <= 1e-6 + 1e-4 * a).all())), None)
            assert got == expected
    rows = checks._family_values(HELPERS, grid)
    assert [row[0] for row in rows] == list(families) == list(ref.FIXED_FAMILIES)
    assert all(row[3] for row in rows)
    for family, expected, expected_abs, _ in rows:
        fresh = np.array(family.f(grid), dtype=float)
        assert expected.tobytes() == fresh.tobytes() and expected_abs.tobytes() == np.abs(fresh).tobytes()
    with pytest.raises(ValueError):
        rows[0][1][0] = 1.0  # read-only
    other = grid[:-1]  # another grid is another entry
    assert all(row[1].shape == other.shape for row in checks._family_values(HELPERS, other))


def test_student_loss_and_unchanged_agree_with_the_general_path():
    from grader.compare import as_array, values_close
    from grader.sandbox.process import CallOutcome

    def general_loss(outcome, y):
        v = as_array(outcome.value) if outcome.ok else None
        return ref.loss(float(v.reshape(())), y) if v is not None and v.size == 1 else None

    values = [1.5, np.float64(-0.25), np.float64(np.nan), np.inf, np.array(2.0), np.array([3.0]), np.float32(0.1),
              np.array([1.0, 2.0]), None, [1.0], True, 3]
    for value in values:
        for outcome in (CallOutcome("ok", value=value), CallOutcome("raised", error="x")):
            a, b = checks._student_loss(outcome, 0.5, ref.loss), general_loss(outcome, 0.5)
            assert (a is None and b is None) or (a == b or (np.isnan(a) and np.isnan(b)))
            assert type(a) is type(b)
    befores = [np.array([1.0, -2.0]), np.array([[0.5, 0.0], [-0.0, 1.0]]), 0.3, 1.0, np.array([np.nan, 1.0])]
    for before in befores:
        for after in (before, np.array(before, dtype=float).copy(), np.float64(before) if np.ndim(before) == 0 else None,
                      np.array(before, dtype=np.float32), np.array(before) + 1e-12, np.array(before) + 1.0, -0.0, None):
            assert checks._unchanged(after, before) == values_close(after, np.asarray(before, dtype=float))


# --- mutant outcomes (diagnosis) ------------------------------------------------------------------------

def evidence_for(function, seed, y_hat_shift=0.0):
    drawn = fresh_probes(seed)
    if function == "activation":
        args = [(p.values["z"],) for p in drawn.sets["activation"]]
    else:
        args = [(v["x"], v["y"], ref.forward(v["x"], v["w1"], v["w2"]) + y_hat_shift, v["w1"], v["w2"], v["eta"])
                for v in (p.values for p in drawn.sets["network"])]
    return Evidence(args, [], [None] * len(args), [True] * len(args))


def same_outcome(a, b):
    def same(x, y):
        if isinstance(x, tuple):
            return isinstance(y, tuple) and len(x) == len(y) and all(same(i, j) for i, j in zip(x, y))
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return np.array_equal(x, y) and np.asarray(x).dtype == np.asarray(y).dtype
        return type(x) is type(y) and x == y
    return a.status == b.status and a.error == b.error and same(a.value, b.value) and same(a.args_after, b.args_after)


def model_outcomes(impl, context, evidence):
    return diagnose._model_outcomes(impl, context, evidence, diagnose._args_key(evidence))


def test_mutant_outcomes_equal_fresh_calls_for_different_seeds_pairs_and_y_hats():
    contexts = [Context("relu", ref.RELU), Context("tanh", ref.TANH)]
    cases = [("backward", seed, shift) for seed in (0, 1) for shift in (0.0, 0.5)] + [("activation", 0, 0), ("activation", 1, 0)]
    for _ in range(2):  # cold, then warm
        for function, seed, shift in cases:
            evidence = evidence_for(function, seed, shift)
            impls = [v for m in mutants_for(function) for v in m.variants]
            if function == "backward":
                impls += [impl for _, impl in ASSIGNMENT.combinations["backward"]()[:5]]
            for impl in impls:
                for context in (contexts if function in HELPERS.dependents else [None]):
                    bound = diagnose._bind(impl, context)
                    fresh = [trusted_call(bound, args) for args in evidence.args]
                    got = model_outcomes(impl, context, evidence)
                    assert len(got) == len(fresh)
                    assert all(same_outcome(g, f) for g, f in zip(got, fresh)), (impl, context, seed, shift)


def test_mutant_outcomes_are_not_cached_for_a_students_pair_and_are_read_only():
    evidence = evidence_for("backward", 0)
    yours = Context("your own activation and derivative", Pair("yours", ref.RELU.f, ref.RELU.df))
    impl = next(m for m in mutants_for("backward") if m.id == "outer_transposed").variants[0]
    model_outcomes(impl, yours, evidence)
    assert len(diagnose._MODEL_OUTCOMES) == 0
    got = model_outcomes(impl, Context("relu", ref.RELU), evidence)
    assert len(diagnose._MODEL_OUTCOMES) == 1
    with pytest.raises(ValueError):
        got[0].value[0][0, 0] = 1.0
    got[0].value = None  # the outcome objects are new each time
    assert model_outcomes(impl, Context("relu", ref.RELU), evidence)[0].value is not None


def test_matching_caches_only_the_pure_pairs_contexts_and_names_the_same_bugs():
    """Diagnosis as the grader runs it: every context of the run (``_contexts_for``), the student's own among them."""
    evidence = evidence_for("backward", 0)
    bug = next(m for m in mutants_for("backward") if m.id == "stale_w2").variants[0]
    evidence.outcomes = [trusted_call(lambda *a: bug(*a, ref.RELU), args) for args in evidence.args]
    yours = Context("your own activation and derivative", Pair("yours", ref.RELU.f, ref.RELU.df))
    run = CheckRun([], {"backward": evidence}, [Context("relu", ref.RELU), yours], None, "relu", None, [])
    assert diagnose._contexts_for(ASSIGNMENT, "backward", run) == run.contexts
    assert diagnose._contexts_for(ASSIGNMENT, "activation", run) == [None]
    with memo.disabled():
        expected = diagnose._matching_ids(ASSIGNMENT, "backward", evidence, run)
    assert "stale_w2" in expected
    for _ in range(2):  # cold, then warm
        assert diagnose._matching_ids(ASSIGNMENT, "backward", evidence, run) == expected
    keys = list(diagnose._MODEL_OUTCOMES._data)
    assert keys and all(key[1] is ref.RELU for key in keys)


def test_backward_pairs_are_the_same_objects_every_time():
    backward_pairs = ASSIGNMENT.combinations["backward"]
    assert backward_pairs is mutants.backward_pairs
    first, second = backward_pairs(), backward_pairs()
    assert first == second and all(a[1] is b[1] for a, b in zip(first, second))
    first.clear()
    assert backward_pairs() == second


# --- end to end: calibrate's reference and mutants, cold / warm / uncached ------------------------------

def report_of(functions, seed):
    run, diagnoses, score, max_score = grade_functions(functions, RUBRIC, seed)
    checks_ = [(r.id, r.function, r.passed, r.message, r.fraction, r.score, repr(r.details)) for r in run.results]
    training_ = None if run.training is None else dataclasses.astuple(run.training)
    return checks_, [dataclasses.astuple(d) for d in diagnoses], score, training_, run.warnings, run.graded_with


def _clipped(z):
    return np.clip(np.asarray(z, dtype=float), 0.0, 1.0)


#: A helper of no family: graded in the student's own (tabulated, never cached) context.
CLIPPED = Pair("clipped", _clipped, lambda z: ((np.asarray(z) > 0) & (np.asarray(z) < 1)).astype(float))


def submissions():
    subs = [reference_functions(ASSIGNMENT)]
    for mutant in ASSIGNMENT.mutants:
        for variant in mutant.variants[:1]:
            functions = reference_functions(ASSIGNMENT)
            if mutant.function in HELPERS.dependents:
                functions[mutant.function] = (lambda v: lambda *args: v(*args, HELPERS.default))(variant)
            else:
                functions[mutant.function] = variant
            subs.append(functions)
    # A consistent family, a fitted family and a helper of no family: each way contexts are chosen.
    return subs + [ASSIGNMENT.as_student(ref.SIGMOID), ASSIGNMENT.as_student(ref.leaky_relu(0.1)),
                   ASSIGNMENT.as_student(CLIPPED)]


@pytest.mark.slow
def test_grading_with_warm_caches_equals_grading_without_them():
    subs = submissions()
    with memo.disabled():
        expected = {(i, seed): report_of(s, seed) for seed in (0, 5) for i, s in enumerate(subs)}
    assert expected[(len(subs) - 3, 0)][5] == "sigmoid" and expected[(len(subs) - 2, 0)][5] == "leaky_relu"
    caches = (probe._BY_SEED, training._CURVES, checks._PERTURBED, checks._REFERENCE_GRADIENTS,
              checks._FAMILY_VALUES, diagnose._MODEL_OUTCOMES)
    assert not any(len(cache) for cache in caches)  # disabled: nothing was filled
    for _ in range(2):  # cold, then warm; the seeds interleaved so one seed's entries meet the other's inputs
        for i, s in enumerate(subs):
            for seed in (0, 5):
                assert report_of(s, seed) == expected[(i, seed)], (i, seed)
    assert all(cache.hits for cache in caches), [(cache.hits, len(cache)) for cache in caches]  # every cache was used


# --- comparison --------------------------------------------------------------------------------------

def original_arrays_close(got, expected, dont_care=None):
    """compare.arrays_close as it was, with np.isclose."""
    from grader.compare import as_array
    got_arr, exp_arr = as_array(got), np.asarray(expected, dtype=float)
    if got_arr is None:
        return False
    if got_arr.size == 1 and exp_arr.size == 1:
        got_arr, exp_arr = got_arr.reshape(()), exp_arr.reshape(())
    if got_arr.shape != exp_arr.shape:
        return False
    if not np.all(np.isfinite(got_arr)):
        return bool(np.array_equal(got_arr, exp_arr, equal_nan=True))
    atol = ATOL_SCALE * max(1.0, float(np.max(np.abs(exp_arr), initial=0.0)))
    close = np.isclose(got_arr, exp_arr, rtol=RTOL, atol=atol)
    if dont_care is not None:
        mask = np.broadcast_to(np.asarray(dont_care, dtype=bool), close.shape)
        close = np.where(mask, (got_arr >= -atol) & (got_arr <= 1 + atol), close)
    return bool(np.all(close))


special = st.sampled_from([0.0, -0.0, 1e-6, -1e-6, 1.0 + 1e-5, 1e308, -1e308, np.inf, -np.inf, np.nan])
element = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), special,
                    st.floats(-3, 3), st.floats(-1e-5, 1e-5))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(element, element), min_size=0, max_size=6), st.booleans(), st.booleans(),
       st.lists(st.booleans(), min_size=6, max_size=6), st.sampled_from([0.0, 1e-7, 1e-5, 1e-3]))
def test_arrays_close_agrees_with_numpy_isclose(pairs, scalar, with_mask, mask, nudge):
    got = np.array([g for g, _ in pairs], dtype=float)
    expected = np.array([e for _, e in pairs], dtype=float)
    with np.errstate(over="ignore"):  # near 1e308, a nudge may overflow to inf: a case worth comparing too
        near = expected * (1 + nudge) + nudge  # also values just inside and outside the tolerance
    masks = np.array(mask[: len(pairs)]) if with_mask else None

    def agree(*args):
        outcomes = []
        for compare in (arrays_close, original_arrays_close):
            try:
                outcomes.append(compare(*args))
            except ValueError as exc:  # e.g. a length-1 mask against values compared as scalars
                outcomes.append(type(exc))
        return outcomes[0] == outcomes[1]

    with np.errstate(over="ignore", invalid="ignore"):
        for g in (got, near, expected):
            if scalar and len(pairs):
                assert agree(g[0], expected[0])
            assert agree(g, expected, masks)
            assert agree(g.astype(np.float32), expected)


# --- integrity scan ----------------------------------------------------------------------------------------

def fixture_sources():
    sources = []
    for path in sorted(FIXTURES.glob("*/*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        sources += [c.source for c in notebook.cells if c.cell_type == "code"]
    return sources


HOSTILE = [
    "import grader\nfrom reference import simple_nn\n__import__('grader.checks')",
    "import sys\nsys.modules['x'] = 1\nf = sys._getframe().f_back.f_globals",
    "open('/etc/passwd')\nos.write(5, b'x')\nsignal.signal(1, None)\nsetattr(np, 'sum', max)\nnp.sum = max\nnp.x += 1",
    "x = '/proc/self/fd/3'\nwith open('../secret') as f: pass\n%timeit 1\n!ls",
    "def f(:\n  import grader\nopen('/x')",  # does not parse: scanned line by line
]


def test_fast_scan_finds_what_the_node_visitor_finds_in_the_same_order():
    for source in fixture_sources() + HOSTILE:
        code = "\n".join("" if integrity._MAGIC_LINE.match(line) else line for line in source.splitlines())
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        fast, slow = integrity._Scanner(), integrity._Scanner()
        assert fast.scan(tree)
        slow.visit(tree)
        assert fast.hits == slow.hits


def test_a_tree_too_deep_for_the_fast_walk_is_visited_recursively():
    shallow = "x = " + "+".join(["open('/etc/a')"] * 50)
    deep = "x = " + "+".join(["open('/etc/a')"] * (integrity._Scanner.MAX_FAST_DEPTH + 10))
    for source in (shallow, deep):
        slow = integrity._Scanner()
        slow.visit(ast.parse(source))
        assert integrity.scan_source(source) == slow.hits
    assert not integrity._Scanner().scan(ast.parse(deep))
    too_deep = "x = " + "+".join(["1"] * (sys.getrecursionlimit() + 10)) + "\nimport grader"
    assert integrity.scan_source(too_deep) == [(integrity.GRADER_IMPORT, 2, "import grader")]


def test_scan_cache_equals_a_fresh_scan_and_hands_out_copies():
    sources = fixture_sources() + HOSTILE
    with memo.disabled():
        fresh = [integrity.scan_source(s) for s in sources]
    for _ in range(2):
        assert [integrity.scan_source(s) for s in sources] == fresh
    hits = integrity.scan_source(HOSTILE[0])
    hits.append(("x", 0, "y"))
    assert integrity.scan_source(HOSTILE[0]) == fresh[len(fixture_sources())]
    assert integrity.scan_source(HOSTILE[0] + "\nimport os") == fresh[len(fixture_sources())]
    assert integrity.scan_source(HOSTILE[1]) != integrity.scan_source(HOSTILE[0])
