"""What an assignment is: declared data plus the instructor's reference code.

The core of the grader knows no assignment. It knows *check kinds* (values against a
reference on seeded probes, a derivative against central differences, gradients
against central differences of a declared loss, a gradient step, convergence of a
training loop, inputs left alone, the signature) and an assignment picks and wires
them here. One assignment is one package under ``reference/`` (its ``__init__`` defines
``ASSIGNMENT``; the reference implementation and the bug catalogue as mutants sit
beside it) and one rubric under ``rubrics/`` (points, partial credit, limits and the
template notebook handed to students).

Everything here is trusted: it is the instructor's code, imported on the grader's side
only, and never shipped to the sandbox.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from grader.errors import AssignmentError

DEFAULT_ASSIGNMENT = "simple_nn"

#: A reference implementation or a mutant: plain Python on numpy values.
Impl = Callable[..., Any]


@dataclass(frozen=True)
class Function:
    """One function students write, with the parameters the template calls it with, in order."""

    name: str
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class Pair:
    """A helper function and its derivative as the trusted side evaluates them (ReLU and its slope).

    ``pure`` marks the reference's own pairs: pure functions of their input, so values computed
    with them may be cached under the pair's identity. A pair built from a student's answers
    (tabulated where the sandbox was asked) is never pure.
    """

    name: str
    f: Impl
    df: Impl
    pure: bool = field(default=False, compare=False)
    #: How messages spell it ("ReLU"); the name when None.
    display: str | None = field(default=None, compare=False)

    @property
    def shown(self) -> str:
        return self.display or self.name


@dataclass(frozen=True)
class Helpers:
    """A function and its derivative that the other graded functions call (an activation and its slope).

    They are graded first, on their own probes. Then the functions that use them (``dependents``)
    are judged in *contexts*: under the default pair (or a recognised family the student uses
    consistently and the rubric accepts), and under the student's own pair tabulated from the
    sandbox. A dependent that is right given the student's own helpers passes, so a mistake in a
    helper costs points once, where it is.
    """

    function: str
    derivative: str
    #: The pair the exercise asks for (ReLU).
    default: Pair
    #: Families without a free parameter, tried in order when recognising the student's helper.
    families: tuple[Pair, ...]
    #: The functions judged in contexts; their references take the pair as a last argument.
    dependents: tuple[str, ...]
    #: Where a dependent evaluates the helper on one of its probes (the hidden pre-activation
    #: ``x @ w1``): the points at which the student's own pair is tabulated.
    evaluated_at: Callable[[Mapping[str, Any]], np.ndarray]
    #: Families with a free parameter: (name, fit) where fit(grid, values) gives the pair or None.
    fitted: tuple[tuple[str, Callable[[np.ndarray, np.ndarray], Pair | None]], ...] = ()
    #: Families whose derivative at an exact zero is a matter of convention (not graded there).
    kinked: tuple[str, ...] = ()
    #: The helper's single parameter, for messages ("z").
    parameter: str = "z"

    @property
    def names(self) -> tuple[str, ...]:
        """Every family a rubric may accept."""
        return tuple(dict.fromkeys([p.name for p in self.families] + [name for name, _ in self.fitted]))


@dataclass(frozen=True)
class Probe:
    """One point at which functions are evaluated: named values, from which each function's
    arguments are taken by parameter name."""

    name: str
    values: Mapping[str, Any]
    #: False for tie-breakers that help diagnosis only (a scalar for a vector function).
    scored: bool = True


@dataclass(frozen=True)
class Probes:
    """Every probe of one seed: named sets of probes, and the grid a helper's derivative is checked on."""

    sets: Mapping[str, Sequence[Probe]]
    grid: np.ndarray | None = None


# --------------------------------------------------------------------------- check kinds


@dataclass(frozen=True)
class HelperValues:
    """The helper (or its derivative) against the accepted family on the helper's probes."""

    id: str
    function: str
    probes: str
    derivative: bool = False


@dataclass(frozen=True)
class HelperDerivative:
    """The helper's derivative against central differences of the student's own helper on the grid."""

    id: str
    function: str


@dataclass(frozen=True)
class Values:
    """A function's values against its reference on seeded probes.

    ``derived`` names arguments that are another graded function's value on the same probe
    (``y_hat`` is forward's): the student's own when that function passed its values check,
    else the reference's, so one mistake is not charged twice.
    """

    id: str
    function: str
    probes: str
    derived: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Objective:
    """The loss a gradient is of: ``loss(function(*its parameters), values[target])``."""

    function: str
    loss: Callable[[Any, Any], float]
    target: str


@dataclass(frozen=True)
class Gradient:
    """Gradients a function gives against central differences of ``objective`` over ``parameters``.

    The function either returns the gradients (in the order of ``parameters``), or, with ``rate``
    set, returns the parameters after one gradient step, from which the gradients it used are
    implied: (before - after) / rate.
    """

    id: str
    function: str
    probes: str
    objective: Objective
    parameters: tuple[str, ...]
    rate: str | None = None


@dataclass(frozen=True)
class Update:
    """Parameters after a gradient step against ``parameter - rate * gradient``: returned, or
    written in place into the arguments (``in_place``)."""

    id: str
    function: str
    probes: str
    parameters: tuple[str, ...]
    gradients: tuple[str, ...]
    rate: str
    in_place: bool = False


@dataclass(frozen=True)
class Step:
    """One call of a training loop's iteration: ``result`` names what it returns (one name, or one per
    element of a returned tuple); ``in_place`` names arguments it updates in place."""

    function: str
    result: tuple[str, ...] = ()
    in_place: tuple[str, ...] = ()


@dataclass(frozen=True)
class Loop:
    """The template's training loop, as data: from ``start``, ``iterations`` times the ``steps``.

    Each result must have the shape of the start value named in ``like`` (a scalar start value
    takes any single number). The loss of ``prediction`` against ``target`` is recorded before each
    update; the loop converges when the last prediction is within ``tolerance`` of the target.
    """

    start: Callable[[], Mapping[str, Any]]
    iterations: int
    steps: tuple[Step, ...]
    prediction: str
    target: str
    loss: Callable[[Any, Any], float]
    like: Mapping[str, str]
    tolerance: float = 1e-3


@dataclass(frozen=True)
class Converges:
    """The template's training loop, run with the student's functions, reaches the target.

    ``requires`` names checks that must pass for it to earn points (a rubric may say otherwise):
    reaching the target by steps that are not gradient steps (a ``backward`` that rescales ``w2``
    until the prediction equals ``y``) is credit for the wrong reason.
    """

    id: str
    loop: Loop
    function: str = "training"
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotMutated:
    """A function leaves its arguments as it found them."""

    id: str
    function: str
    probes: str


@dataclass(frozen=True)
class Signature:
    """The function takes the template's parameters, in order."""

    id: str
    function: str


CheckKind = HelperValues | HelperDerivative | Values | Gradient | Update | Converges | NotMutated | Signature


@dataclass(frozen=True)
class Mutant:
    """A catalogued bug: a function with the bug, in each way students spell it.

    Mutants of a helper's dependents take the pair as a last argument, as their references do.
    """

    id: str
    function: str
    hint: str
    variants: tuple[Impl, ...]


@dataclass(frozen=True)
class Structure:
    """How the shape of a wrong gradient maps to the catalogue, for diagnosis by structure.

    When no mutant explains a function whose gradient check failed, its gradients are compared with the
    true ones parameter by parameter: a flipped sign (``"sign"``), a step not scaled by the rate
    (``"rate"``), a parameter not updated (``"zero"``), a transposed gradient (``"transposed"``), a factor
    left out or put in (``"missing:<factor>"``, ``"extra:<factor>"``, for the ``factors`` declared
    here), right only for one sign of a factor (``"sign_of:<factor>"``), a constant scale (``"scale"``).
    ``ids`` names the catalogue id for a kind; a kind without one is described in a sentence.
    """

    ids: Mapping[str, str] = field(default_factory=dict)
    #: Named per-call quantities, computed from the call's arguments by parameter name.
    factors: Mapping[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Reference:
    """The reference implementation of one graded function; ``uses_helpers`` when it takes the pair last."""

    function: Impl
    uses_helpers: bool = False


@dataclass(frozen=True)
class Assignment:
    """One assignment, as its instructor declares it in ``reference/<name>/__init__.py``."""

    name: str
    title: str
    functions: tuple[Function, ...]
    references: Mapping[str, Reference]
    #: Draws every probe from a seeded generator (the core draws once per seed and freezes them).
    probes: Callable[[np.random.Generator], Probes]
    checks: tuple[CheckKind, ...]
    mutants: tuple[Mutant, ...] = ()
    helpers: Helpers | None = None
    #: Two-bug combinations tried for a function no single mutant explains: (ids, implementation).
    combinations: Mapping[str, Callable[[], Sequence[tuple[tuple[str, ...], Impl]]]] = field(default_factory=dict)
    #: Functions whose in-place changes to their arguments earn a warning (not points).
    warn_if_mutates: tuple[str, ...] = ()
    #: How a wrong gradient's shape maps to the catalogue (diagnosis by structure).
    structure: Structure = field(default_factory=Structure)
    #: Where it was loaded from (filled by the loader).
    path: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.functions)

    def function(self, name: str) -> Function:
        return next(f for f in self.functions if f.name == name)

    @property
    def check_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.checks)

    def requires(self, check_id: str) -> tuple[str, ...]:
        """The checks ``check_id`` needs passed to earn its points, as the assignment declares them."""
        return next((c.requires for c in self.checks if c.id == check_id and isinstance(c, Converges)), ())

    def values_check(self, function: str) -> str | None:
        """The id of the check that compares ``function``'s values with the reference, if any."""
        return next((c.id for c in self.checks if isinstance(c, (Values, HelperValues, Update))
                     and c.function == function), None)

    def as_student(self, pair: Pair | None = None) -> dict[str, Impl]:
        """Every graded function as the reference implements it, called the way the template calls it."""
        functions: dict[str, Impl] = {}
        helpers = self.helpers
        chosen = pair or (helpers.default if helpers else None)
        for function in self.functions:
            if helpers is not None and chosen is not None and function.name == helpers.function:
                functions[function.name] = chosen.f
            elif helpers is not None and chosen is not None and function.name == helpers.derivative:
                functions[function.name] = chosen.df
            elif function.name in self.references:
                reference = self.references[function.name]
                functions[function.name] = _bound(reference, chosen)
        return functions


def _bound(reference: Reference, pair: Pair | None) -> Impl:
    if reference.uses_helpers:
        implementation = reference.function
        return lambda *args: implementation(*args, pair)
    return reference.function


# --------------------------------------------------------------------------- finding assignments

#: The message for a name that is not a bundled assignment.
UNKNOWN_ASSIGNMENT = "There is no assignment named {name!r}: the bundled ones are {bundled}; or give the path of an assignment's folder."


def _bundled_package() -> Traversable | None:
    """The bundled assignments as the package ``grader.reference`` (installed, also from a zip, or an
    editable install), or None in a plain checkout, where they are the folder ``reference/``."""
    try:
        return resources.files("grader.reference")
    except ModuleNotFoundError:
        return None


def bundled_root() -> Path:
    """The folder of bundled assignments in a checkout (``reference/`` beside ``grader/``)."""
    return Path(__file__).resolve().parent.parent / "reference"


#: The entry-point group through which an installed distribution offers assignments that are not code under
#: ``reference/`` (a student pack offers its tabled one: ``grader.pack.installed:load_packed``).
ENTRY_POINTS = "grader.assignments"


@functools.cache
def _offered() -> dict[str, Any]:
    """Assignments offered by installed distributions, by name (read once per process)."""
    from importlib.metadata import entry_points
    return {point.name: point for point in entry_points(group=ENTRY_POINTS)}


def _code_assignments() -> tuple[str, ...]:
    package = _bundled_package()
    root: Traversable = package if package is not None else bundled_root()
    if not root.is_dir():
        return ()
    return tuple(sorted(entry.name for entry in root.iterdir()
                        if entry.is_dir() and (entry / "__init__.py").is_file()))


def bundled() -> tuple[str, ...]:
    """The names of the assignments known by name, sorted: those bundled as code (``reference/``) and those
    offered through the ``grader.assignments`` entry points (a student pack's)."""
    return tuple(sorted({*_code_assignments(), *_offered()}))


def default_assignment() -> str:
    """The assignment used when none is named: simple_nn, or the one a student pack carries."""
    names = bundled()
    return DEFAULT_ASSIGNMENT if DEFAULT_ASSIGNMENT in names or len(names) != 1 else names[0]


_LOADED: dict[str, Assignment] = {}


def load_assignment(name_or_path: str | Path | None = None) -> Assignment:
    """The assignment named (bundled) or found at a folder (an instructor's own package).

    A bundled one is imported as ``grader.reference.<name>`` when installed, else from the
    checkout's ``reference/``; a folder is imported under a private module name, so it can hold
    modules of any name and import them relatively. Each is imported once per process.
    """
    text = str(name_or_path) if name_or_path is not None else default_assignment()
    if isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.startswith("."):
        folder = Path(text).resolve()
        checkout = bundled_root()
        if folder.parent == checkout and folder.name in bundled():
            return load_assignment(folder.name)
        return _load_folder(folder)
    if text not in bundled():
        raise AssignmentError(UNKNOWN_ASSIGNMENT.format(name=text, bundled=", ".join(bundled()) or "none"))
    if text not in _code_assignments():
        return _load_offered(text)
    if _bundled_package() is None:
        return _load_folder(bundled_root() / text)
    key = f"bundled:{text}"
    if key not in _LOADED:
        try:
            module = importlib.import_module(f"grader.reference.{text}")
        except Exception as exc:
            raise AssignmentError(f"The bundled assignment {text} failed to import: {type(exc).__name__}: {exc}; "
                                  "reinstall the grader.") from exc
        _LOADED[key] = _declared(module, str(Path(module.__file__ or text).parent))
    return _LOADED[key]


def _load_offered(name: str) -> Assignment:
    """The assignment an installed distribution offers under ``name`` (its entry point gives it by name)."""
    key = f"offered:{name}"
    if key not in _LOADED:
        point = _offered()[name]
        try:
            made = point.load()(name)
        except AssignmentError:
            raise
        except Exception as exc:
            raise AssignmentError(f"The assignment {name} offered by {point.value} failed to load: "
                                  f"{type(exc).__name__}: {exc}; reinstall what offers it.") from exc
        if not isinstance(made, Assignment):
            raise AssignmentError(f"{point.value} gave no Assignment for {name}; reinstall what offers it.")
        _LOADED[key] = made
    return _LOADED[key]


def _load_folder(folder: Path) -> Assignment:
    key = str(folder)
    if key in _LOADED:
        return _LOADED[key]
    if not (folder / "__init__.py").is_file():
        raise AssignmentError(f"{folder} is not an assignment: it has no __init__.py defining ASSIGNMENT; "
                              "see README, \"Writing an assignment\".")
    _LOADED[key] = _declared(_import_package(folder), key)
    return _LOADED[key]


def _declared(module: ModuleType, path: str) -> Assignment:
    declared = getattr(module, "ASSIGNMENT", None)
    if not isinstance(declared, Assignment):
        raise AssignmentError(f"{path}/__init__.py defines no ASSIGNMENT = Assignment(...); "
                              "see README, \"Writing an assignment\".")
    return _validated(declared, path)


def _import_package(folder: Path) -> ModuleType:
    name = f"grader_assignment_{abs(hash(str(folder)))}_{folder.name}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:  # pragma: no cover - a folder with __init__.py always has a spec
        raise AssignmentError(f"{folder} cannot be imported as a Python package.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise AssignmentError(f"{folder / '__init__.py'} failed to import: {type(exc).__name__}: {exc}; "
                              "fix the assignment's code.") from exc
    return module


def _validated(assignment: Assignment, path: str) -> Assignment:
    """The declaration, checked for what would otherwise fail in the middle of grading a class."""
    names = assignment.names
    where = f"assignment {assignment.name!r} ({path})"
    if len(set(names)) != len(names) or not names:
        raise AssignmentError(f"{where}: functions must be a non-empty list of distinct names, got {list(names)}.")
    ids = assignment.check_ids
    if len(set(ids)) != len(ids):
        raise AssignmentError(f"{where}: check ids must be distinct, got {list(ids)}.")
    for check in assignment.checks:
        functions = [check.function] if not isinstance(check, Converges) else [s.function for s in check.loop.steps]
        for function in functions:
            if function not in names:
                raise AssignmentError(f"{where}: check {check.id!r} names {function!r}, which is not one of its "
                                      f"functions ({', '.join(names)}).")
    for check in assignment.checks:
        if isinstance(check, Converges):
            for required in check.requires:
                if required not in ids or required == check.id:
                    raise AssignmentError(f"{where}: check {check.id!r} requires {required!r}, which is not another "
                                          f"of its checks ({', '.join(ids)}).")
    for mutant in assignment.mutants:
        if mutant.function not in names:
            raise AssignmentError(f"{where}: mutant {mutant.id!r} is of {mutant.function!r}, which is not one of its "
                                  f"functions ({', '.join(names)}).")
    helpers = assignment.helpers
    if helpers is not None:
        for name in (helpers.function, helpers.derivative, *helpers.dependents):
            if name not in names:
                raise AssignmentError(f"{where}: helpers name {name!r}, which is not one of its functions.")
    for name in names:
        if name not in assignment.references and not (helpers and name in (helpers.function, helpers.derivative)):
            raise AssignmentError(f"{where}: {name!r} has no reference implementation; add it to references.")
    return _with_path(assignment, path)


def _with_path(assignment: Assignment, path: str) -> Assignment:
    from dataclasses import replace
    return replace(assignment, path=path)
