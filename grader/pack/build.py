"""Building a student pack's data: the assignment tabled on public probes, proven equal to the original.

The order of the steps is the guarantee:

1. **Record.** Every callable of the assignment is wrapped in a :class:`~grader.pack.tables.Recorder`,
   and the whole grading pipeline runs, in-process, on the public probes (``public_seed``, never the
   grading seed) for every case a student can present: the reference under each helper family, each
   mutant under the default and the accepted families, and an objective answering in float32 (which moves
   the finite-difference step); then every mutant and combination on the arguments each case's functions
   were called with. Whatever the pipeline asks of the instructor's code there is recorded.
2. **Filter.** Checks the rubric does not release to students (``visibility`` other than the released
   ones) are dropped from the declaration, and with them every table only they used: a hidden check
   leaves nothing in the pack.
3. **Write** the declaration and tables (``grader.pack.codec``; JSON and raw array bytes, no pickle).
4. **Prove.** The written pack is read back and every case is graded with it and with the original on the
   same probes; any difference in a check's score or a diagnosis fails the build, so a pack never tells a
   student something the instructor's grader would not (on these cases; tests/test_pack.py compares the
   two on every fixture notebook, through real sandboxes).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from grader.assignment import Assignment, Converges, Gradient, Helpers, Pair
from grader.calibrate import TrustedSandbox, grade_functions
from grader.checks import CheckRun
from grader.compare import trusted_call
from grader.errors import GraderError
from grader.model import DEFAULT_VISIBILITY
from grader.pack import codec
from grader.pack.tables import Recorder, calls_key
from grader.render.visibility import RELEASED_WHILE_OPEN
from grader.rubric import Rubric

#: Visibilities (Gradescope's vocabulary) a pack releases unless told otherwise: what students see while the
#: assignment is open.
RELEASED_BY_DEFAULT: frozenset[str] = frozenset(RELEASED_WHILE_OPEN)

SAME_SEED = ("--public-seed {seed} is the grading seed: a pack built from it would hold the expected values of "
             "the probes students are graded on; choose another public seed.")
NOT_PROVEN = ("The pack does not grade like the grader ({differences}); this is a bug in grader's pack "
              "builder: report it with the assignment.")
NOTHING_RELEASED = ("No check of rubric {rubric} is released to students ({released}): mark some checks "
                    "visibility = \"visible\", or release more with --release.")


class PackError(GraderError):
    """A pack cannot be built as asked (exit 2)."""


class _Wrapper:
    """Rebuilds an assignment's declaration with each callable replaced by one recorder (shared when shared)."""

    def __init__(self) -> None:
        self.recorders: dict[int, Recorder] = {}
        self._done: dict[int, Any] = {}
        self._kept: list[Any] = []

    def recorder(self, function: Callable[..., Any], name: str) -> Recorder:
        if isinstance(function, Recorder):
            return function
        found = self.recorders.get(id(function))
        if found is None:
            found = self.recorders[id(function)] = Recorder(name, function)
            self._kept.append(function)
        return found

    def wrap(self, value: Any, name: str) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            if id(value) in self._done:
                return self._done[id(value)]
            label = getattr(value, "name", None) or getattr(value, "id", None) or type(value).__name__
            changes = {f.name: self.wrap(getattr(value, f.name), f"{label}.{f.name}")
                       for f in dataclasses.fields(value)
                       if not (isinstance(value, Assignment) and f.name == "probes")}  # drawn, then stored
            made = dataclasses.replace(value, **changes)
            self._done[id(value)] = made
            self._kept.append(value)
            return made
        if isinstance(value, tuple):
            return tuple(self.wrap(v, f"{name}[{i}]") for i, v in enumerate(value))
        if isinstance(value, list):
            return [self.wrap(v, f"{name}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            return {k: self.wrap(v, f"{name}.{k}") for k, v in value.items()}
        if isinstance(value, np.ndarray) or not callable(value):
            return value
        return self.recorder(value, name)


def _combinations(assignment: Assignment, wrapper: _Wrapper) -> dict[str, Callable[[], Sequence[Any]]]:
    """Each function's two-bug combinations, listed once now, their implementations recorded."""
    listed: dict[str, Callable[[], Sequence[Any]]] = {}
    for function, combinations in assignment.combinations.items():
        pairs = [(tuple(ids), wrapper.recorder(impl, f"combination.{function}.{'+'.join(ids)}"))
                 for ids, impl in combinations()]
        listed[function] = wrapper.recorder(lambda pairs=pairs: list(pairs), f"combinations.{function}")
    return listed


def recording(assignment: Assignment) -> Assignment:
    """``assignment`` with every callable recording its calls (fitted families dropped: they build a pair
    from the student's own values, which no table can answer)."""
    wrapper = _Wrapper()
    helpers = assignment.helpers
    base = dataclasses.replace(assignment, helpers=dataclasses.replace(helpers, fitted=()) if helpers else None,
                               combinations={})
    wrapped: Assignment = wrapper.wrap(base, assignment.name)
    wrapped = dataclasses.replace(wrapped, combinations=_combinations(assignment, wrapper))
    if wrapped.helpers is not None:  # helpers are elementwise: their tables may answer element by element
        for pair in (wrapped.helpers.default, *wrapped.helpers.families):
            for function in (pair.f, pair.df):
                if isinstance(function, Recorder):
                    function.elementwise = True
    return wrapped


class _LocalSandbox(TrustedSandbox):
    """Calibrate's in-process sandbox with copies for the wire: a pack's build runs a few hundred trainings
    call by call, and the wire codec's round trip was two thirds of that time (measured on simple_nn_batch).
    The proof step grades both sides with it, and the fixture comparison test with real sandboxes."""

    @staticmethod
    def _through_wire(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.copy()
        if isinstance(value, (tuple, list)):
            return type(value)(_LocalSandbox._through_wire(v) for v in value)
        return value


def _pairs(helpers: Helpers | None, accepted: Sequence[str] | None = None) -> list[Pair | None]:
    """The helper pairs cases are graded under: every family, or only the default and ``accepted`` ones."""
    if helpers is None:
        return [None]
    families = [p for p in helpers.families if accepted is None or p.name in accepted]
    return list(dict.fromkeys([helpers.default, *families]))


def _as_float32(function: Callable[..., Any]) -> Callable[..., Any]:
    def cast(*args: Any) -> Any:
        value = function(*args)
        return np.asarray(value, dtype=np.float32) if isinstance(value, (float, np.ndarray)) else value
    return cast


Case = tuple[str, dict[str, Callable[..., Any]]]
#: How the name of a case whose student is the reference starts.
REFERENCE_CASE = "reference"


def _cases(original: Assignment, accepted: Sequence[str]) -> list[Case]:
    """Every student a pack must answer like the grader, named: the reference under each helper family, each
    mutant under the default and the accepted families, and each gradient check's objective answering in
    float32. The students' side is always the original code: what a student's functions do is never a
    table's business. (A bug in a function that uses a family the rubric does not accept is still graded,
    but the pack may not name it: each family multiplies the build's time.)"""
    helpers = original.helpers
    cases: list[Case] = []
    objectives = {c.objective.function for c in original.checks if isinstance(c, Gradient)}
    mutant_pairs = _pairs(helpers, accepted)
    for pair in _pairs(helpers):
        under = f" under {pair.name}" if pair is not None else ""
        reference = original.as_student(pair)
        cases.append((f"{REFERENCE_CASE}{under}", reference))
        for name in objectives:
            cases.append((f"{REFERENCE_CASE}{under}, {name} in float32", {**reference, name: _as_float32(reference[name])}))
        for mutant in original.mutants if pair in mutant_pairs else ():
            in_context = helpers is not None and mutant.function in helpers.dependents
            if pair is not (helpers.default if helpers else None) and not in_context:
                continue  # a helper's own mutants do not depend on the pair
            for number, variant in enumerate(mutant.variants, start=1):
                bound = (lambda *args, v=variant, p=pair: v(*args, p)) if in_context else variant
                cases.append((f"{mutant.function}:{mutant.id} #{number}{under}", {**reference, mutant.function: bound}))
    return cases


def _progress(cases: list[Case], what: str) -> Any:
    """``cases`` with a progress bar on a terminal (a pack of a large assignment takes a minute)."""
    from tqdm import tqdm
    return tqdm(cases, desc=f"grader pack: {what}", unit="case", disable=None, leave=False)


def _touch_constants(assignment: Assignment) -> None:
    """Call what takes no arguments (the loop's start, the combinations lists) so they are recorded even
    when no case needed them."""
    for check in assignment.checks:
        if isinstance(check, Converges):
            check.loop.start()
    for combinations in assignment.combinations.values():
        combinations()


def record(assignment: Assignment, rubric: Rubric, seed: int) -> None:
    """Run the pipeline over every case on the public probes, filling ``assignment``'s recorders."""
    exercised = dataclasses.replace(rubric, assignment=assignment)
    _touch_constants(assignment)
    factors = assignment.structure.factors.values()
    seen: set[Any] = set()
    # A training loss is kept for the reference's trainings only (a student on the reference's path gets the
    # curve, and its audit passes on the first try); a mutant's 200 losses would triple the pack for a chart.
    # The verdict is never the loss's (grader.training), and a loss not kept is NaN.
    losses = [c.loop.loss for c in assignment.checks if isinstance(c, Converges) and isinstance(c.loop.loss, Recorder)]
    for name, functions in _progress(_cases(rubric.assignment, rubric.accepted_families), "recording"):
        for loss in losses:
            loss.enabled = name.startswith(REFERENCE_CASE)
        run, _, _, _ = grade_functions(functions, exercised, seed, _LocalSandbox)
        _exercise_catalogue(assignment, run, seen)
        for evidence in (e for given in run.gradients.values() for e in given):
            for compute in factors:  # structural diagnosis asks them of any wrong gradient on these arguments
                try:
                    compute(evidence.arguments)
                except (ValueError, TypeError, LookupError, ArithmeticError):
                    pass  # undefined there, as it will be in the pack
    helpers = assignment.helpers
    if helpers is not None:  # the stand-ins a substitution installs: the default pair where dependents use it
        probes = assignment.probes(np.random.default_rng(seed))
        for probe_set in probes.sets.values():
            for probe in probe_set:
                try:
                    point = np.asarray(helpers.evaluated_at(probe.values), dtype=float)
                except (KeyError, TypeError, ValueError):
                    continue  # a probe of another function's parameters
                helpers.default.f(point)
                helpers.default.df(point)


def _exercise_catalogue(assignment: Assignment, run: CheckRun, seen: set[Any]) -> None:
    """Every mutant and two-bug combination of each function, on the arguments that function was called with
    (under each helper pair of the run): diagnosis asks them of any student whose calls are these, and a case
    only asks the few it needed before naming its own bug."""
    helpers = assignment.helpers
    for function, evidence in run.evidence.items():
        models = [v for m in assignment.mutants if m.function == function for v in m.variants]
        combinations = assignment.combinations.get(function)
        models += [impl for _, impl in combinations()] if combinations else []
        pairs = ([c.pair for c in run.contexts if c.pair is not None and c.pair.pure]
                 if helpers is not None and function in helpers.dependents else [None])
        for args in evidence.args:
            key = (function, calls_key(args), tuple(p.name for p in pairs if p is not None))
            if key[1] is None or key in seen:
                continue
            seen.add(key)
            for model in models:
                for pair in pairs:
                    trusted_call(partial(_with_pair, model, pair), args)


def _with_pair(model: Callable[..., Any], pair: Pair | None, *args: Any) -> Any:
    return model(*args, pair) if pair is not None else model(*args)


def released_checks(rubric: Rubric, released: frozenset[str]) -> list[str]:
    return [cid for cid in rubric.checks if visibility(rubric, cid) in released]


def visibility(rubric: Rubric, check_id: str) -> str:
    """A check's visibility as the rubric says it (Gradescope's vocabulary; "visible" when not said)."""
    weight = rubric.checks.get(check_id)
    return weight.visibility if weight is not None else DEFAULT_VISIBILITY


def filtered(assignment: Assignment, kept: Sequence[str]) -> Assignment:
    """The declaration with only the ``kept`` checks (and what they require among them), and the catalogue of
    the functions those checks grade."""
    checks = []
    for check in assignment.checks:
        if check.id not in kept:
            continue
        if isinstance(check, Converges):
            check = dataclasses.replace(check, requires=tuple(r for r in check.requires if r in kept))
        checks.append(check)
    graded = {c.function for c in checks}
    return dataclasses.replace(
        assignment, checks=tuple(checks), mutants=tuple(m for m in assignment.mutants if m.function in graded),
        combinations={f: c for f, c in assignment.combinations.items() if f in graded})


def _outcome(functions: dict[str, Callable[..., Any]], rubric: Rubric, seed: int) -> tuple[dict[str, float], list[str]]:
    run, diagnoses, _score, _max = grade_functions(functions, rubric, seed, _LocalSandbox)
    return {r.id: r.score for r in run.results}, [d.id for d in diagnoses]


def build_data(rubric: Rubric, folder: Path, public_seed: int, grading_seed: int,
               released: frozenset[str] = RELEASED_BY_DEFAULT) -> tuple[Assignment, list[str]]:
    """Write the pack's tabled assignment into ``folder``; the tabled assignment and the released check ids."""
    if public_seed == grading_seed:
        raise PackError(SAME_SEED.format(seed=public_seed))
    kept = released_checks(rubric, released)
    if not kept:
        raise PackError(NOTHING_RELEASED.format(rubric=rubric.path, released=", ".join(sorted(released))))
    original = rubric.assignment
    recorded = recording(original)
    record(recorded, rubric, public_seed)
    probes = original.probes(np.random.default_rng(public_seed))
    declaration = dataclasses.replace(filtered(recorded, kept), probes=None, path="")  # type: ignore[arg-type]
    numbered: list[Recorder] = []
    index: dict[int, int] = {}

    def table_of(function: Any) -> int:
        if not isinstance(function, Recorder):
            raise TypeError(f"{function!r} is not recorded")
        if id(function) not in index:
            index[id(function)] = len(numbered)
            numbered.append(function)
        return index[id(function)]

    codec.write(folder, declaration, numbered, table_of,
                {"public_seed": public_seed, "probes": probes, "checks": kept})
    tabled = read_data(folder)
    _prove(rubric, tabled, kept, public_seed)
    return tabled, kept


def read_data(folder: Path) -> Assignment:
    from grader.pack.installed import from_files
    return from_files((folder / codec.DECLARATION).read_bytes(), (folder / codec.ARRAYS).read_bytes(), str(folder))


def _prove(rubric: Rubric, tabled: Assignment, kept: Sequence[str], seed: int) -> None:
    """Grade every case with the original and with the pack on the public probes: any difference in a
    check's score or in the bugs named fails the build."""
    checks = {c: w for c, w in rubric.checks.items() if c in kept}
    original = dataclasses.replace(rubric, assignment=filtered(rubric.assignment, kept), checks=checks,
                                   max_score=sum(w.points for w in checks.values()))
    packed = dataclasses.replace(original, assignment=tabled)
    differences = []
    for name, functions in _progress(_cases(rubric.assignment, rubric.accepted_families), "proving"):
        want, have = _outcome(functions, original, seed), _outcome(functions, packed, seed)
        for cid in kept:
            if abs(want[0].get(cid, 0.0) - have[0].get(cid, 0.0)) > 1e-9:
                differences.append(f"{name}: {cid} {have[0].get(cid)} instead of {want[0].get(cid)}")
        if want[1] != have[1]:
            differences.append(f"{name}: diagnoses {have[1]} instead of {want[1]}")
    if differences:
        raise PackError(NOT_PROVEN.format(differences="; ".join(differences[:5])))


# --------------------------------------------------------------------------- the wheel

#: What the pack's rubric says about itself.
RUBRIC_NOTE = ("Student pack of {name}: the checks released to students ({released}), on public probes "
               "(seed {seed}).\nThe grade of record comes from the instructor's grader, with probes this pack "
               "does not hold{hidden}.")
PACK_README = """# Student pack: {title}

Check your notebook before you submit it:

    grader check NOTEBOOK.ipynb

or, in the notebook itself, a last cell `import grader; grader.check()`.

This pack runs the same checks as your instructor's grader ({checks}) on *public* probes, and names the
mistakes it recognises. It holds no reference solution: only the expected values on its public probes.
Your grade comes from your instructor's grader, which uses probes this pack does not contain{hidden}.
"""


@dataclass(frozen=True)
class Pack:
    """A built pack: the wheel, and what it holds."""

    wheel: Path
    assignment: str
    checks: tuple[str, ...]
    left_out: tuple[str, ...]
    public_seed: int


def _package_files(root: Path) -> list[tuple[str, bytes]]:
    """The grader's own modules, as installed or checked out, without any assignment (code or rubric)."""
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        parts = relative.parts
        if (not path.is_file() or parts[0] in ("reference", "rubrics", "packed") or "__pycache__" in parts
                or path.suffix in (".pyc", ".pyo")):
            continue
        files.append((f"grader/{relative.as_posix()}", path.read_bytes()))
    return files


def _requirements() -> list[str]:
    """The grader's own runtime requirements (a pack runs the same code)."""
    from importlib import metadata
    try:
        listed = metadata.requires("numpy-nn-grader") or []
    except metadata.PackageNotFoundError:  # a plain checkout: read them where they are declared
        import tomllib
        project = Path(__file__).resolve().parents[2] / "pyproject.toml"
        listed = list(tomllib.loads(project.read_text("utf-8"))["project"]["dependencies"])
    return [r for r in listed if "extra ==" not in r]


def build_pack(rubric: Rubric, out: Path, public_seed: int, grading_seed: int,
               released: frozenset[str] = RELEASED_BY_DEFAULT) -> Pack:
    """Build the student pack of ``rubric``'s assignment into ``out`` (steps 1-4 above, then the wheel)."""
    import tempfile
    from datetime import UTC, datetime

    import grader
    from grader.pack.student_rubric import student_rubric
    from grader.pack.wheel import entry_points, metadata, wheel_prefix, write_wheel

    name = rubric.assignment.name
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / name
        _, kept = build_data(rubric, folder, public_seed, grading_seed, released)
        data = [(f"grader/packed/{name}/{f.name}", f.read_bytes()) for f in sorted(folder.iterdir())]
    left_out = tuple(c for c in rubric.checks if c not in kept)
    hidden = f" and checks it leaves out ({', '.join(left_out)})" if left_out else ""
    note = RUBRIC_NOTE.format(name=name, released=", ".join(sorted(released)), seed=public_seed, hidden=hidden)
    files = _package_files(Path(grader.__file__).resolve().parent) + data + [
        ("grader/packed/__init__.py", b'"""The assignment this student pack carries, as tables (grader.pack)."""\n'),
        ("grader/rubrics/__init__.py", b'"""The rubric this student pack carries."""\n'),
        (f"grader/rubrics/{name}.toml",
         student_rubric(Path(rubric.path).read_text("utf-8"), kept, note).encode("utf-8")),
    ]
    if rubric.template and rubric.template_bytes is not None:
        files.append((f"grader/rubrics/{Path(rubric.template).name}", rubric.template_bytes))
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    version = f"{grader.__version__}.post{stamp}"
    readme = PACK_README.format(title=rubric.title, checks=", ".join(kept), hidden=hidden)
    out.mkdir(parents=True, exist_ok=True)
    for older in out.glob(f"{wheel_prefix()}-*.whl"):  # students run pip install DIR/*.whl: one pack per folder
        older.unlink()
    wheel = write_wheel(out, version, files, metadata(
        version, f"Student pack of {rubric.title}: grader check without the answer key", _requirements(), readme),
        entry_points(name))
    return Pack(wheel, name, tuple(kept), left_out, public_seed)
