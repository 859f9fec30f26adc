"""The trusted side's per-process caches give exactly what a fresh computation gives.

Each cache is checked twice: a cached value equals a fresh one (for two seeds,
pairs or inputs), and an entry is never returned for a different input. The
end-to-end tests grade the reference and every catalogued mutant with caching
disabled, then twice with it (cold, then warm), interleaving seeds, and require
identical results.
"""
import ast
import dataclasses
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from grader import checks
from grader import diagnose
from grader import integrity
from grader import probe
from grader.calibrate import grade_functions, reference_functions
from grader.checks import Context, Evidence
from grader.compare import ATOL_SCALE, RTOL, arrays_close, trusted_call
from grader import memo
from grader.reference import mutants, simple_nn as ref
from grader.rubric import load_rubric

RUBRIC = load_rubric("simple_nn")
FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"


@pytest.fixture(autouse=True)
def cold_caches():
    memo.clear_all()
    yield
    memo.clear_all()


def fresh_curve(pair, start, iterations=200):
    """The training check's reference loop as it was written before the cache."""
    losses, w1, w2 = [], start.w1.copy(), start.w2.copy()
    with np.errstate(all="ignore"):
        for _ in range(iterations):
            y_hat = ref.forward(start.x, w1, w2, pair)
            losses.append(ref.loss(y_hat, start.y))
            w1, w2 = ref.backward(start.x, start.y, y_hat, w1, w2, start.eta, pair)
    return losses


def curve(pair, start, iterations=200):
    return ref.training_curve(start.x, start.y, start.w1, start.w2, start.eta, iterations, pair)


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
    start = probe.notebook_probe()
    expected = fresh_curve(pair, start)
    assert list(curve(pair, start)) == expected
    assert list(curve(pair, start)) == expected  # from the cache


def test_training_curve_cache_keeps_pairs_starts_and_lengths_apart():
    start = probe.notebook_probe()
    other = dataclasses.replace(start, w1=start.w1 - 0.5, y=0.5, eta=0.05)  # some negative pre-activations
    for pair in (ref.RELU, ref.TANH, ref.leaky_relu(0.1), ref.leaky_relu(0.2)):
        for where in (start, other):
            for iterations in (200, 50):
                assert list(curve(pair, where, iterations)) == fresh_curve(pair, where, iterations)
    assert curve(ref.RELU, start) != curve(ref.TANH, start) != curve(ref.RELU, other)
    assert curve(ref.leaky_relu(0.1), other) != curve(ref.leaky_relu(0.2), other)


def test_leaky_relu_is_one_object_per_alpha():
    assert ref.leaky_relu(0.1) is ref.leaky_relu(0.1) and ref.leaky_relu(0.1) is not ref.leaky_relu(0.2)


def test_a_students_pair_is_never_cached():
    table = {}
    pair = ref.ActivationPair("yours", lambda z: table.get("act", np.maximum)(z, 0.0), lambda z: (z > 0) * 1.0)
    start = probe.notebook_probe()
    before = list(curve(pair, start))
    table["act"] = np.minimum  # the pair now computes something else: a cache would hide it
    assert list(curve(pair, start)) == fresh_curve(pair, start) != before
    assert len(ref._CURVES) == 0


def test_a_caller_cannot_change_the_cached_curve():
    start = probe.notebook_probe()
    got = curve(ref.RELU, start)
    assert isinstance(got, tuple)
    listed = list(got)
    listed[0] = 123.0
    assert list(curve(ref.RELU, start)) == fresh_curve(ref.RELU, start)


# --- probes ---------------------------------------------------------------------------------------

def fresh_probes(seed):
    rng = np.random.default_rng(seed)
    network = probe.network_probes(rng)
    return network, probe.activation_probes(rng, network)


def same_probe(a, b):
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            if not (isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_probes_for_a_seed_equal_a_fresh_draw_cold_and_warm(seed):
    network, activation = fresh_probes(seed)
    for _ in range(2):
        got_network, got_activation = probe.probes_for_seed(seed)
        assert len(got_network) == len(network) and len(got_activation) == len(activation)
        assert all(same_probe(a, b) for a, b in zip(got_network, network))
        assert all(same_probe(a, b) for a, b in zip(got_activation, activation))


def test_probes_differ_between_seeds_and_a_caller_cannot_change_them():
    first, _ = probe.probes_for_seed(0)
    assert not same_probe(probe.probes_for_seed(1)[0][1], first[1])
    first[1].w1[0, 0] = 99.0  # writable, like a fresh draw, but a copy
    first[0].x[:] = 0.0
    again, activation = probe.probes_for_seed(0)
    fresh_network, fresh_activation = fresh_probes(0)
    assert all(same_probe(a, b) for a, b in zip(again, fresh_network))
    assert all(same_probe(a, b) for a, b in zip(activation, fresh_activation))
    assert again[1].w1.flags.writeable


# --- finite differences of the reference -------------------------------------------------------------

def reference_loss(pair):
    return lambda points: [ref.loss(ref.forward(x, w1, w2, pair), y) for x, w1, w2, y in points]


def test_reference_gradients_equal_a_fresh_computation_for_each_probe_pair_and_eps():
    network, _ = fresh_probes(3)
    for pair in (ref.RELU, ref.SIGMOID):
        for eps in (checks.GRAD_EPS_FLOAT64, checks.GRAD_EPS_FLOAT32):
            for p in network:
                fresh = checks._numerical_gradients(p, eps, reference_loss(pair))
                for _ in range(2):
                    got = checks._reference_gradients(p, eps, pair, reference_loss(pair))
                    assert all(np.array_equal(g, f) and g.shape == f.shape for g, f in zip(got, fresh))
    assert len(checks._REFERENCE_GRADIENTS) == 2 * 2 * len({p.name for p in network})


def test_reference_gradients_are_not_cached_for_a_students_pair():
    pair = ref.ActivationPair("yours", ref.RELU.act, ref.RELU.dact)
    network, _ = fresh_probes(0)
    checks._reference_gradients(network[1], 1e-6, pair, reference_loss(pair))
    assert len(checks._REFERENCE_GRADIENTS) == 0


def original_points(probe_, eps):
    """checks._numerical_gradients' points as they were built before the cache."""
    points = []
    for which, weights in ((0, probe_.w1), (1, probe_.w2)):
        for index in np.ndindex(weights.shape):
            for sign in (1.0, -1.0):
                w1, w2 = probe_.w1.copy(), probe_.w2.copy()
                (w1, w2)[which][index] += sign * eps
                points.append((w1, w2))
    return points


def test_perturbed_weights_equal_a_fresh_construction_and_are_read_only():
    for seed in (0, 9):
        network, _ = fresh_probes(seed)
        for p in network:
            for eps in (1e-6, 1e-3):
                for _ in range(2):
                    got = checks._perturbed_weights(p.w1, p.w2, eps)
                    fresh = original_points(p, eps)
                    assert len(got) == len(fresh)
                    assert all(a.tobytes() == c.tobytes() and b.tobytes() == d.tobytes() and a.shape == c.shape
                               for (a, b), (c, d) in zip(got, fresh))
    with pytest.raises(ValueError):
        got[0][0][0] = 1.0


def test_family_values_recognise_exactly_as_np_allclose_did():
    grid = probe.derivative_grid()
    rng = np.random.default_rng(0)
    for family in ref.FIXED_FAMILIES + (ref.leaky_relu(0.05),):
        base = np.asarray(family.act(grid), dtype=float)
        for scale in (0.0, 1e-7, 1e-6, 5e-5, 1e-4, 1e-3):
            values = base * (1 + scale * rng.choice([-1.0, 1.0], grid.shape)) + scale * rng.normal(size=grid.shape)
            expected = next((f.name for f in ref.FIXED_FAMILIES
                             if np.allclose(values, f.act(grid), rtol=1e-4, atol=1e-6)), None)
            got = next((f.name for f, e, a, finite in checks._family_values(grid)
                        if bool((np.abs(values - e) <= 1e-6 + 1e-4 * a).all())), None)
            assert got == expected
    assert [row[0] for row in checks._family_values(grid)] == list(ref.FIXED_FAMILIES)
    assert all(row[3] for row in checks._family_values(grid))


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
            a, b = checks._student_loss(outcome, 0.5), general_loss(outcome, 0.5)
            assert (a is None and b is None) or (a == b or (np.isnan(a) and np.isnan(b)))
            assert type(a) is type(b)
    befores = [np.array([1.0, -2.0]), np.array([[0.5, 0.0], [-0.0, 1.0]]), 0.3, 1.0, np.array([np.nan, 1.0])]
    for before in befores:
        for after in (before, np.array(before, dtype=float).copy(), np.float64(before) if np.ndim(before) == 0 else None,
                      np.array(before, dtype=np.float32), np.array(before) + 1e-12, np.array(before) + 1.0, -0.0, None):
            assert checks._unchanged(after, before) == values_close(after, np.asarray(before, dtype=float))


# --- mutant outcomes (diagnosis) ------------------------------------------------------------------------

def evidence_for(function, seed, y_hat_shift=0.0):
    network, activation = fresh_probes(seed)
    if function == "activation":
        args = [(p.z,) for p in activation]
    else:
        args = [(p.x, p.y, ref.forward(p.x, p.w1, p.w2) + y_hat_shift, p.w1, p.w2, p.eta) for p in network]
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
            impls = [v for m in mutants.mutants_for(function) for v in m.variants]
            if function == "backward":
                impls += [impl for _, impl in mutants.backward_pairs()[:5]]
            for impl in impls:
                for context in (contexts if function == "backward" else [None]):
                    bound = diagnose._bind(impl, context)
                    fresh = [trusted_call(bound, args) for args in evidence.args]
                    got = model_outcomes(impl, context, evidence)
                    assert all(same_outcome(g, f) for g, f in zip(got, fresh)), (impl, context, seed, shift)


def test_mutant_outcomes_are_not_cached_for_a_students_pair_and_are_read_only():
    evidence = evidence_for("backward", 0)
    yours = Context("your own activation and derivative", ref.ActivationPair("yours", ref.RELU.act, ref.RELU.dact))
    impl = mutants.mutants_for("backward")[2].variants[0]
    model_outcomes(impl, yours, evidence)
    assert len(diagnose._MODEL_OUTCOMES) == 0
    got = model_outcomes(impl, Context("relu", ref.RELU), evidence)
    assert len(diagnose._MODEL_OUTCOMES) == 1
    with pytest.raises(ValueError):
        got[0].value[0][0, 0] = 1.0
    got[0].value = None  # the outcome objects are new each time
    assert model_outcomes(impl, Context("relu", ref.RELU), evidence)[0].value is not None


def test_backward_pairs_are_the_same_objects_every_time():
    first, second = mutants.backward_pairs(), mutants.backward_pairs()
    assert first == second and all(a[1] is b[1] for a, b in zip(first, second))
    first.clear()
    assert mutants.backward_pairs() == second


# --- end to end: calibrate's reference and mutants, cold / warm / uncached ------------------------------

def report_of(functions, seed):
    run, diagnoses, score, max_score = grade_functions(functions, RUBRIC, seed)
    checks_ = [(r.id, r.function, r.passed, r.message, r.fraction, r.score, repr(r.details)) for r in run.results]
    training = None if run.training is None else dataclasses.astuple(run.training)
    return checks_, [dataclasses.astuple(d) for d in diagnoses], score, training, run.warnings, run.graded_with


def submissions():
    subs = [reference_functions()]
    for mutant in mutants.CATALOG:
        for variant in mutant.variants[:1]:
            functions = reference_functions()
            if mutant.function in ("forward", "backward"):
                functions[mutant.function] = (lambda v: lambda *args: v(*args, ref.RELU))(variant)
            else:
                functions[mutant.function] = variant
            subs.append(functions)
    sigmoid = reference_functions()
    sigmoid.update(activation=ref.SIGMOID.act, d_activation=ref.SIGMOID.dact,
                   forward=lambda x, w1, w2: ref.forward(x, w1, w2, ref.SIGMOID),
                   backward=lambda *a: ref.backward(*a, ref.SIGMOID))
    return subs + [sigmoid]


def test_grading_with_warm_caches_equals_grading_without_them():
    subs = submissions()
    with memo.disabled():
        expected = {(i, seed): report_of(s, seed) for seed in (0, 5) for i, s in enumerate(subs)}
    for _ in range(2):  # cold, then warm; the seeds interleaved so one seed's entries meet the other's inputs
        for i, s in enumerate(subs):
            for seed in (0, 5):
                assert report_of(s, seed) == expected[(i, seed)], (i, seed)


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
