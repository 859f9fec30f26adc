"""simple_nn_batch's declaration, checked without a sandbox.

The reference must be right (its partials are the loss's central differences, its training from
the template's start converges with the template's eta), the probes reproducible, the template a
valid notebook defining the five functions, and the bug catalogue useful: every mutant differs from
the reference on the probes, and no two mutants of one function agree on every probe (a pair that
did could never be told apart, so one name would be a guess). The fixtures' manifest is checked
the same way: each notebook's functions, run in this process, behave as the manifest says.
"""
from __future__ import annotations

import ast
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import numpy as np
import pytest

from grader.assignment import Assignment, Impl, Mutant, Pair, Probe, load_assignment

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "rubrics" / "simple_nn_batch.ipynb"
RUBRIC = REPO / "rubrics" / "simple_nn_batch.toml"
FIXTURES = REPO / "tests" / "fixtures" / "simple_nn_batch"
SEEDS = (0, 1, 2, 12345)
FUNCTIONS = ("activation", "d_activation", "forward", "backward", "step")


@pytest.fixture(scope="module")
def assignment() -> Assignment:
    return load_assignment("simple_nn_batch")


def _module(assignment: Assignment, name: str) -> ModuleType:
    """One of the assignment's own modules, as the loader imported it (under its private package name)."""
    package = assignment.references["forward"].function.__module__.rsplit(".", 1)[0]
    return sys.modules[f"{package}.{name}"]


@pytest.fixture(scope="module")
def ref(assignment: Assignment) -> ModuleType:
    return _module(assignment, "reference")


@pytest.fixture(scope="module")
def mutants_module(assignment: Assignment) -> ModuleType:
    return _module(assignment, "mutants")


# --------------------------------------------------------------------------- outcomes, as grader.compare sees them

Outcome = tuple[Any, ...]


def _copy(value: Any) -> Any:
    return np.array(value, dtype=float) if isinstance(value, np.ndarray) else value


def _outcome(function: Callable[..., Any], args: Sequence[Any]) -> Outcome:
    """("raised", is NotImplementedError) or ("ok", value, arguments after the call), on copies of args."""
    copies = tuple(_copy(a) for a in args)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = function(*copies)
    except NotImplementedError:
        return ("raised", True)
    except Exception:  # noqa: BLE001 - any other failure is one outcome: it raised
        return ("raised", False)
    return ("ok", value, copies)


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(_close(x, y) for x, y in zip(a, b, strict=True)))
    try:
        x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        return False
    return x.shape == y.shape and bool(np.allclose(x, y, rtol=1e-6, atol=1e-9, equal_nan=True))


def _same(a: Outcome, b: Outcome) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "raised":
        return bool(a[1] == b[1])
    if a[1] is None and b[1] is None:
        return _close(a[2], b[2])
    return _close(a[1], b[1])


def _probes(assignment: Assignment, seed: int) -> Mapping[str, Sequence[Probe]]:
    return assignment.probes(np.random.default_rng(seed)).sets


def _calls(assignment: Assignment, ref: ModuleType, function: str, seed: int,
           pair: Pair) -> list[tuple[tuple[Any, ...], bool]]:
    """The arguments ``function`` is called with on each probe of its set, and whether the probe is scored."""
    sets = _probes(assignment, seed)
    parameters = assignment.function(function).parameters
    probes = sets["helper"] if function in ("activation", "d_activation") else sets["network"]
    calls = []
    for probe in probes:
        values = dict(probe.values)
        if function == "backward":
            values["y_hat"] = ref.forward(values["x"], values["w1"], values["w2"], pair)
        calls.append((tuple(values[p] for p in parameters), probe.scored))
    return calls


def _bound(assignment: Assignment, function: str, impl: Impl, pair: Pair) -> Callable[..., Any]:
    if function in ("forward", "backward"):
        return lambda *args: impl(*args, pair)
    return impl


def _reference(assignment: Assignment, function: str, pair: Pair) -> Callable[..., Any]:
    if function == "activation":
        return pair.f
    if function == "d_activation":
        return pair.df
    return _bound(assignment, function, assignment.references[function].function, pair)


def _signature(calls: list[tuple[tuple[Any, ...], bool]], function: Callable[..., Any]) -> list[tuple[Outcome, bool]]:
    return [(_outcome(function, args), scored) for args, scored in calls]


def _differ(a: list[tuple[Outcome, bool]], b: list[tuple[Outcome, bool]]) -> bool:
    """As grader.diagnose tells models apart: on scored probes, and on tie-breakers only when one of
    them raises on every scored probe."""
    if any(not _same(x, y) for (x, scored), (y, _) in zip(a, b, strict=True) if scored):
        return True
    strict = all(x[0] == "raised" for x, scored in a if scored) or all(y[0] == "raised" for y, scored in b if scored)
    return strict and any(not _same(x, y) for (x, _), (y, _) in zip(a, b, strict=True))


def _variants(assignment: Assignment) -> Iterator[tuple[Mutant, Impl]]:
    for mutant in assignment.mutants:
        for variant in mutant.variants:
            yield mutant, variant


# --------------------------------------------------------------------------- the reference


def _numeric_gradient(objective: Callable[[np.ndarray], float], w: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(w)
    for index in np.ndindex(w.shape):
        plus, minus = w.copy(), w.copy()
        plus[index] += eps
        minus[index] -= eps
        grad[index] = (objective(plus) - objective(minus)) / (2 * eps)
    return grad


def _loss_of(ref: ModuleType, pair: Pair, x: np.ndarray, y: np.ndarray, w1: np.ndarray | None = None,
             w2: np.ndarray | None = None) -> Callable[[np.ndarray], float]:
    """The loss as a function of the one weight matrix not given."""
    def objective(w: np.ndarray) -> float:
        value: float = ref.loss(ref.forward(x, w if w1 is None else w1, w if w2 is None else w2, pair), y)
        return value
    return objective


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("pair_name", ["RELU", "SIGMOID", "TANH"])
def test_partials_are_central_differences_of_the_loss(assignment: Assignment, ref: ModuleType, seed: int,
                                                      pair_name: str) -> None:
    pair = getattr(ref, pair_name)
    for probe in _probes(assignment, seed)["network"]:
        x, y, w1, w2 = (np.asarray(probe.values[k], dtype=float) for k in ("x", "y", "w1", "w2"))
        y_hat = ref.forward(x, w1, w2, pair)
        assert y_hat.shape == y.shape, probe.name
        w1_partials, w2_partials = ref.backward(x, y, y_hat, w1, w2, pair)
        numeric_w1 = _numeric_gradient(_loss_of(ref, pair, x, y, w2=w2), w1)
        numeric_w2 = _numeric_gradient(_loss_of(ref, pair, x, y, w1=w1), w2)
        assert w1_partials.shape == w1.shape and w2_partials.shape == w2.shape, probe.name
        np.testing.assert_allclose(w1_partials, numeric_w1, rtol=1e-5, atol=1e-7, err_msg=probe.name)
        np.testing.assert_allclose(w2_partials, numeric_w2, rtol=1e-5, atol=1e-7, err_msg=probe.name)


def test_loss_sums_over_the_batch_and_never_overflows(ref: ModuleType) -> None:
    assert ref.loss(np.array([2.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert ref.loss(np.array([1e200, 0.0]), np.array([0.0, 0.0])) == float("inf")


def test_step_updates_in_place_and_returns_none(ref: ModuleType) -> None:
    w1, w2 = np.ones((2, 3)), np.ones(3)
    same_w1, same_w2 = w1, w2
    assert ref.step(w1, w2, np.full((2, 3), 2.0), np.full(3, 4.0), 0.5) is None
    assert same_w1 is w1 and same_w2 is w2
    np.testing.assert_allclose(w1, 0.0)
    np.testing.assert_allclose(w2, -1.0)


def test_template_eta_and_iterations_converge(ref: ModuleType) -> None:
    y_hat, losses = ref.train(ref.RELU, ref.ETA, ref.ITERATIONS)
    assert (ref.ETA, ref.ITERATIONS) == (0.03, 2000)
    assert np.max(np.abs(y_hat - ref.Y)) < 1e-3
    assert losses[-1] < 1e-6 < losses[0]


def test_seed_eta_and_iterations_do_not_converge(ref: ModuleType) -> None:
    """The seed's 0.01 for 200 stops near [0.35, 0.47]; 0.05 kills both hidden units."""
    y_hat, _ = ref.train(ref.RELU, 0.01, 200)
    assert np.max(np.abs(y_hat - ref.Y)) > 0.1
    np.testing.assert_allclose(y_hat, [0.35, 0.47], atol=0.01)
    dead, _ = ref.train(ref.RELU, 0.05, ref.ITERATIONS)
    np.testing.assert_allclose(dead, [0.0, 0.0], atol=1e-12)


def test_template_data_is_read_only_and_start_is_fresh(ref: ModuleType) -> None:
    for constant in (ref.X, ref.Y, ref.W1, ref.W2):
        assert not constant.flags.writeable
    first, second = ref.start(), ref.start()
    first["w1"] -= 1.0
    np.testing.assert_allclose(second["w1"], ref.W1)


def test_leaky_relu_is_fitted_and_others_are_not(ref: ModuleType) -> None:
    grid = np.linspace(-3.0, 3.0, 24)
    fitted = ref.fit_leaky_relu(grid, np.where(grid > 0, grid, 0.01 * grid))
    assert fitted is not None and fitted.name == "leaky_relu"
    np.testing.assert_allclose(fitted.df(np.array([-1.0, 1.0])), [0.01, 1.0])
    assert ref.fit_leaky_relu(grid, np.maximum(grid, 0)) is None
    assert ref.fit_leaky_relu(grid, np.tanh(grid)) is None
    assert ref.fit_leaky_relu(grid, grid[:3]) is None


# --------------------------------------------------------------------------- probes


def _probe_arrays(assignment: Assignment, seed: int) -> list[Any]:
    sets = _probes(assignment, seed)
    return [(name, p.name, p.scored, {k: np.asarray(v).tolist() for k, v in p.values.items()})
            for name, probes in sets.items() for p in probes]


def test_probes_are_reproducible_for_a_seed(assignment: Assignment) -> None:
    assert _probe_arrays(assignment, 7) == _probe_arrays(assignment, 7)
    assert _probe_arrays(assignment, 7) != _probe_arrays(assignment, 8)
    grid_a = assignment.probes(np.random.default_rng(7)).grid
    assert grid_a is not None and np.min(np.abs(grid_a)) >= 0.1


@pytest.mark.parametrize("seed", SEEDS)
def test_network_probes_are_general(assignment: Assignment, ref: ModuleType, seed: int) -> None:
    network = _probes(assignment, seed)["network"]
    first = network[0].values
    for key, constant in (("x", ref.X), ("y", ref.Y), ("w1", ref.W1), ("w2", ref.W2)):
        np.testing.assert_array_equal(first[key], constant)
    assert first["eta"] == ref.ETA
    batch_sizes = set()
    for probe in network[1:]:
        v = probe.values
        h = np.asarray(v["x"]) @ np.asarray(v["w1"])
        assert np.min(np.abs(h)) >= 0.1 and h.min() < 0 < h.max(), probe.name
        assert v["w1_partials"].shape == v["w1"].shape and v["w2_partials"].shape == v["w2"].shape
        assert v["y"].shape == (len(v["x"]),) and v["eta"] != 1
        batch_sizes.add(len(v["x"]))
    assert batch_sizes == {1, 2, 3, 4}
    assert sum(np.shape(p.values["w1"])[0] != np.shape(p.values["w1"])[1] for p in network) >= 3


@pytest.mark.parametrize("seed", SEEDS)
def test_helper_probes(assignment: Assignment, ref: ModuleType, seed: int) -> None:
    helper = _probes(assignment, seed)["helper"]
    np.testing.assert_allclose(helper[0].values["z"], ref.X @ ref.W1)
    scored = [np.asarray(p.values["z"]) for p in helper if p.scored]
    assert {z.ndim for z in scored} == {1, 2}
    assert any(np.any(z == 0) for z in scored)
    assert all(np.all((z == 0) | (np.abs(z) >= 0.1)) for z in scored)
    assert any(not p.scored and np.ndim(p.values["z"]) == 0 for p in helper)


# --------------------------------------------------------------------------- the catalogue


@pytest.mark.parametrize("seed", SEEDS)
def test_every_mutant_differs_from_the_reference(assignment: Assignment, ref: ModuleType, seed: int) -> None:
    for mutant, variant in _variants(assignment):
        calls = _calls(assignment, ref, mutant.function, seed, ref.RELU)
        expected = _signature(calls, _reference(assignment, mutant.function, ref.RELU))
        got = _signature(calls, _bound(assignment, mutant.function, variant, ref.RELU))
        assert _differ(expected, got), f"{mutant.function}:{mutant.id} ({variant.__name__}) equals the reference"


@pytest.mark.parametrize("seed", SEEDS)
def test_no_two_mutants_are_indistinguishable(assignment: Assignment, ref: ModuleType, seed: int) -> None:
    for function in FUNCTIONS:
        calls = _calls(assignment, ref, function, seed, ref.RELU)
        models = [(mutant.id, _signature(calls, _bound(assignment, function, variant, ref.RELU)))
                  for mutant, variant in _variants(assignment) if mutant.function == function]
        for i, (id_a, a) in enumerate(models):
            for id_b, b in models[i + 1:]:
                if id_a != id_b:
                    assert _differ(a, b), f"{function}: {id_a} and {id_b} agree on every probe of seed {seed}"


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_combinations_are_new_bugs(assignment: Assignment, ref: ModuleType, seed: int) -> None:
    """Every two-bug backward differs from the reference, from every single bug and from every other pair."""
    calls = _calls(assignment, ref, "backward", seed, ref.RELU)
    singles = {mutant.id: _signature(calls, _bound(assignment, "backward", variant, ref.RELU))
               for mutant, variant in _variants(assignment) if mutant.function == "backward"}
    singles["reference"] = _signature(calls, _reference(assignment, "backward", ref.RELU))
    pairs = [(ids, _signature(calls, _bound(assignment, "backward", impl, ref.RELU)))
             for ids, impl in assignment.combinations["backward"]()]
    assert len(pairs) > 40
    for ids, signature in pairs:
        for name, single in singles.items():
            assert _differ(signature, single), f"{ids} behaves like {name}"
    for i, (ids_a, a) in enumerate(pairs):
        for ids_b, b in pairs[i + 1:]:
            assert _differ(a, b), f"{ids_a} and {ids_b} agree on every probe"


def test_mutants_are_of_declared_functions_with_hints(assignment: Assignment, mutants_module: ModuleType) -> None:
    for mutant in assignment.mutants:
        assert mutant.function in FUNCTIONS and mutant.variants
        assert mutant.hint == mutants_module.HINTS[mutant.id]
    assert set(mutants_module.HINTS) == {m.id for m in assignment.mutants}
    ids = {m.id for m in assignment.mutants}
    assert {"d_activation_on_w2_partials", "mean_instead_of_sum", "outer_transposed", "missing_d_activation",
            "gradient_sign_flipped", "step_not_in_place", "step_sign_flipped", "step_missing_eta",
            "forward_missing_activation", "forward_transposed", "not_implemented"} <= ids
    assert {m.function for m in assignment.mutants if m.id == "not_implemented"} == set(FUNCTIONS)


def test_template_bug_is_the_catalogued_one(assignment: Assignment, ref: ModuleType) -> None:
    """The template's own backward, run here, is d_activation_on_w2_partials on every probe."""
    namespace = _run_cells(_code_cells(TEMPLATE), iterations=5)
    mutant = next(m for m in assignment.mutants if m.id == "d_activation_on_w2_partials")
    for seed in SEEDS[:2]:
        calls = _calls(assignment, ref, "backward", seed, ref.RELU)
        student = _signature(calls, namespace["backward"])
        assert _differ(student, _signature(calls, _reference(assignment, "backward", ref.RELU)))
        assert any(not _differ(student, _signature(calls, _bound(assignment, "backward", v, ref.RELU)))
                   for v in mutant.variants)


# --------------------------------------------------------------------------- the template and the rubric


def _code_cells(path: Path) -> list[str]:
    notebook = nbformat.read(str(path), as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_template_is_valid_and_defines_the_five_functions() -> None:
    notebook = nbformat.read(str(TEMPLATE), as_version=4)
    nbformat.validate(notebook)
    defined: set[str] = set()
    for source in _code_cells(TEMPLATE):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef):
                defined.add(node.name)
                if node.name in FUNCTIONS:
                    parameters = tuple(a.arg for a in node.args.args)
                    assert parameters == load_assignment("simple_nn_batch").function(node.name).parameters
    assert set(FUNCTIONS) <= defined


def test_template_runs_with_its_data(ref: ModuleType) -> None:
    namespace = _run_cells(_code_cells(TEMPLATE))
    np.testing.assert_array_equal(namespace["x"], ref.X)
    np.testing.assert_array_equal(namespace["y"], ref.Y)
    assert (namespace["eta"], namespace["iterations"]) == (ref.ETA, ref.ITERATIONS)
    # The template's bug stops short of the target: it must not earn training.converges.
    assert np.max(np.abs(namespace["y_hat"] - ref.Y)) > 1e-2


def test_rubric_gives_100_points_to_the_declared_checks(assignment: Assignment) -> None:
    import tomllib

    rubric = tomllib.loads(RUBRIC.read_text(encoding="utf-8"))
    assert rubric["assignment"] == "simple_nn_batch" and rubric["template"] == TEMPLATE.name
    points = {check: table["points"] for check, table in rubric["checks"].items()}
    assert list(points) == list(assignment.check_ids)
    assert sum(points.values()) == rubric["max_score"] == 100


# --------------------------------------------------------------------------- the fixtures


def _run_cells(sources: Sequence[str], iterations: int | None = None) -> dict[str, Any]:
    """Run a notebook's code cells here, as "Run All" would (a failing cell does not stop the rest).

    Only for our own fixtures: magics and shell lines are dropped, plots go to a headless backend.
    ``iterations``, when given, shortens the training loops (the template's bug is then quick to run).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace: dict[str, Any] = {"__name__": "__main__"}
    for source in sources:
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        code = "\n".join(lines)
        if iterations is not None:
            code = code.replace("iterations = 2000", f"iterations = {iterations}")
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(compile(code, "<cell>", "exec"), namespace)
        except Exception:  # noqa: BLE001 - a failing cell does not stop the notebook
            pass
    plt.close("all")
    return namespace


def _manifest() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
    return result


def test_manifest_lists_every_fixture() -> None:
    listed = set(_manifest())
    on_disk = {p.name for p in FIXTURES.glob("*.ipynb")}
    assert listed == on_disk and len(listed) >= 20
    for entry in _manifest().values():
        assert entry["expect"] in ("full", "bug") and (entry["expect"] == "bug" or not entry["ids"])


def _fixture_names() -> list[str]:
    return sorted(_manifest()) if (FIXTURES / "manifest.json").exists() else []


def _student_pair(namespace: Mapping[str, Any]) -> Pair | None:
    """The notebook's own helpers as a pair, when both are defined (forward and backward are also judged with it)."""
    f, df = namespace.get("activation"), namespace.get("d_activation")
    if not (callable(f) and callable(df)):
        return None
    batch = np.array([[1.0, -1.0, 0.5], [-0.5, 2.0, -2.0]])
    try:
        usable = np.shape(f(batch)) == np.shape(df(batch)) == batch.shape
    except Exception:  # noqa: BLE001 - a pair that fails on a batch cannot be tabulated, so it is no context
        usable = False
    return Pair("yours", f, df) if usable else None


def _judged(assignment: Assignment, ref: ModuleType, function: str, student: Callable[..., Any], seed: int,
            contexts: Sequence[Pair]) -> tuple[bool, list[str]]:
    """(right in some context, the ids of the mutants it behaves like in some context).

    As the grader judges: the helpers against the rubric's ReLU; forward and backward in every
    context (the default or recognised family, and the notebook's own pair); step by what it leaves
    in its arguments (``Update(in_place=True)``), whatever it returns.
    """
    ids: list[str] = []
    right = False
    for pair in contexts:
        calls = _calls(assignment, ref, function, seed, pair)
        got = _signature(calls, student)
        expected = _signature(calls, _reference(assignment, function, pair))
        if function == "step":
            right = right or all(x[0] == y[0] == "ok" and _close(x[2][:2], y[2][:2])
                                 for (x, _), (y, _) in zip(got, expected, strict=True))
        else:
            right = right or not _differ(got, expected)
        ids += [m.id for m, v in _variants(assignment) if m.function == function
                and not _differ(got, _signature(calls, _bound(assignment, function, v, pair)))]
        if function == "backward":
            ids += ["+".join(names) for names, impl in assignment.combinations["backward"]()
                    if not _differ(got, _signature(calls, _bound(assignment, function, impl, pair)))]
    return right, ids


@pytest.mark.slow
@pytest.mark.parametrize("name", _fixture_names())
def test_fixture_behaves_as_the_manifest_says(assignment: Assignment, ref: ModuleType, name: str) -> None:
    """Each function of the notebook is right, or wrong in the way the manifest names; a full-marks notebook is
    right everywhere; the template's loop with the notebook's functions converges exactly when the manifest says."""
    entry = _manifest()[name]
    notebook = nbformat.read(str(FIXTURES / name), as_version=4)
    nbformat.validate(notebook)
    namespace = _run_cells([c.source for c in notebook.cells if c.cell_type == "code"])
    family = next((p for p in ref.FIXED_FAMILIES if p.name == entry["activation"]), ref.RELU)
    own = _student_pair(namespace)
    failing: set[str] = set()
    ids: set[str] = set()
    for function in FUNCTIONS:
        student = namespace.get(function)
        assert callable(student), f"{name}: {function} is not defined"
        contexts = [ref.RELU] if function in ("activation", "d_activation", "step") else [family]
        if function in ("forward", "backward") and own is not None:
            contexts.append(own)
        for seed in SEEDS[:2]:
            right, matched = _judged(assignment, ref, function, student, seed, contexts)
            if not right:
                failing.add(function)
                # The first single bug, else the first pair, names it (as grader.diagnose does).
                singles = [i for i in matched if "+" not in i]
                chosen = singles[:1] or matched[:1]
                ids.update(i for joined in chosen for i in joined.split("+"))
    assert sorted(failing) == sorted(entry["functions_failing"]), f"{name}: failing {sorted(failing)}"
    assert sorted(ids) == sorted(entry["ids"]), f"{name}: ids {sorted(ids)}"
    assert entry["expect"] == ("full" if not failing else "bug")
    loop_functions = {f: namespace[f] for f in ("forward", "backward", "step")}
    converged = _student_training_converges(ref, loop_functions)
    assert converged == entry["converges"], f"{name}: training converged={converged}"


def _student_training_converges(ref: ModuleType, functions: Mapping[str, Callable[..., Any]]) -> bool:
    """The template's loop, with the notebook's functions, from the template's start (as Converges runs it)."""
    values = ref.start()
    y_hat = None
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(ref.ITERATIONS):
                y_hat = functions["forward"](values["x"], values["w1"], values["w2"])
                w1_partials, w2_partials = functions["backward"](values["x"], values["y"], y_hat, values["w1"],
                                                                 values["w2"])
                functions["step"](values["w1"], values["w2"], w1_partials, w2_partials, values["eta"])
    except Exception:  # noqa: BLE001 - a loop that fails does not converge
        return False
    return y_hat is not None and bool(np.max(np.abs(np.asarray(y_hat, dtype=float) - ref.Y)) <= 1e-3)
