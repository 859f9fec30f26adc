"""Never an exception out of grading: whatever a student function returns, grading yields a report.

A hypothesis property drives random returned values through the whole trusted side, for both bundled
assignments: ``grade._grade_loaded`` itself (the checks: values, derivative, gradients, the gradient
step, training call by call or as an audited chain; diagnosis; scoring), ``safe_report``, every
renderer of ``RENDERERS`` (the HTML page with its loss chart, whose drawing is also called directly
since ``loss_curve_png`` turns a failure into "no chart"; the JSON document read back with
``json_report.from_dict`` and rendered again), and the batch files (summary numbers, ``summary.html``,
the gradebook CSV). numpy's RuntimeWarnings are errors throughout (``grade_strictly``): an overflow on
a student's value is a value to judge, and a grader run with ``-W error`` must not fail on it.

The functions are served by ``ReplySandbox``: ``calibrate.TrustedSandbox`` made as strict as a real
sandbox's reply. The arguments go through the wire codec on the way in; the value and the arguments
after the call are encoded as the worker encodes them (an encoding that raises is the call's failure,
as ``worker._reply`` words it) and read as ``process.parse_outcome`` reads them, so the trusted side
sees exactly what a sandbox could send. It may also run the training loop in one request and replay a
step, as the worker does (``train``, ``replay``), and then sometimes lie in the chain it sends, as a
worker replaced by the notebook could.

Each misbehaving function is a drawn list of *acts* consumed by successive calls (so a value may change
from call to call): a drawn value (floats from NaN to 1e308, -0.0 and subnormals, huge ints, bools,
None, strings, numpy arrays of every dtype, complex and long double included, in every shape up to 1e5
elements, nested tuples and lists, objects that cannot be encoded or whose encoding raises), the
reference's own answer transformed (cast to another dtype, scaled to overflow, filled or poked with a
special number, transposed, flattened, as a list, tuples reordered or cut), a catalogued bug, another
activation, an exception, or a call that timed out or crashed; any of them may also scribble on its
array arguments (the in-place step's result is what it leaves there). Mostly one function misbehaves
and the others are the reference; sometimes the helpers misbehave and the functions that use them call
them, as a notebook's do; sometimes every function is random, one may be missing, one declared with a
parameter too few.

The property: no exception escapes; the report is "graded"; the score is in [0, max]; every check's
fraction is a finite number in [0, 1] and its score in [0, its points]; every JSON output is strict
JSON (no NaN, no inf) and the JSON report reads back as what was written.

Below the properties are plain regression tests, one per problem the property found, each with the
smallest value that caused it. ``GRADER_PROPERTY_EXAMPLES=2000`` runs a deeper search.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PNG_SIGNATURE, parse_html
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from grader.assignment import Pair
from grader.batch.summary import GradebookRow, render_summary_html, summarize, write_gradebook
from grader.grade import Options, _grade_loaded
from grader.load import Notebook
from grader.model import FunctionInfo, Report
from grader.render import RENDERERS, json_report
from grader.render.loss_chart import _finite, _loss_curve, _visible_curves
from grader.rubric import Rubric, load_rubric
from grader.sandbox import protocol
from grader.sandbox.process import CallOutcome, CallRequest, Chain, Execution, LoopStep
from grader.untrusted_text import safe_lines, safe_report

ASSIGNMENTS = ("simple_nn", "simple_nn_batch")
RUBRICS = {name: load_rubric(None, name) for name in ASSIGNMENTS}


# --------------------------------------------------------------------------- a sandbox's replies, in process

class Injected(Exception):
    """Raised by a test function to make its call end as ``status`` (a timeout, a crash), as a sandbox reports it."""

    def __init__(self, status: str, error: str | None) -> None:
        super().__init__(status)
        self.status, self.error = status, error


def _wire(value: Any) -> Any:
    blobs: list[bytes] = []
    return protocol.decode_value(protocol.encode_value(value, blobs), blobs)


def _fresh(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else value


def _invoke(function: Callable[..., Any] | None, args: tuple[Any, ...], args_after: bool
            ) -> tuple[dict[str, Any], list[bytes], Any]:
    """``worker.invoke`` then ``worker._reply``: the reply header, its blobs, and the value returned."""
    if function is None:
        return {"status": "missing"}, [], None
    try:
        with np.errstate(all="ignore"):
            value = function(*args)
    except Injected:
        raise
    except Exception as exc:  # noqa: BLE001 - the function's failure is this call's outcome
        return {"status": "raised", "error": protocol.describe_error(type(exc).__name__, str(exc))}, [], None
    blobs: list[bytes] = []
    try:  # an __array__ or __iter__ that raises is the function's failure
        with np.errstate(all="ignore"):
            header = {"status": "ok", "value": protocol.encode_value(value, blobs)}
            if args_after:
                header["args_after"] = [protocol.encode_value(a, blobs) for a in args]
    except Exception as exc:  # noqa: BLE001
        return {"status": "raised", "error": protocol.describe_error(type(exc).__name__, str(exc))}, [], None
    return header, blobs, value


def _outcome(header: dict[str, Any], blobs: list[bytes]) -> CallOutcome:
    """``process.parse_outcome``: a reply as the grader reads it (a malformed one is a protocol failure)."""
    try:
        status = header.get("status")
        if status == "ok":
            received = protocol.ReceivedBlobs(blobs)
            value = protocol.decode_value(header["value"], received)
            after = header.get("args_after")
            args_after = None if after is None else tuple(protocol.decode_value(a, received) for a in after)
            return CallOutcome("ok", value=value, args_after=args_after)
        error = header.get("error")
        return CallOutcome(status, error=safe_lines(error, limit=300) if error else None)  # type: ignore[arg-type]
    except protocol.WireError as exc:
        return CallOutcome("protocol", error=str(exc))


def _read(step: LoopStep, outcome: CallOutcome, shapes: Mapping[str, Any]) -> list[Any] | None:
    """``worker._reader``: what one call binds in a training chain (results, then in-place arguments), or None."""
    if not outcome.ok:
        return None
    values: list[Any] = []
    if len(step.result) == 1:
        value = protocol.shaped_value(outcome.value, shapes.get(step.result[0]))
        if value is None:
            return None
        values.append(value)
    elif step.result:
        several = protocol.shaped_values(outcome.value, [shapes.get(n) for n in step.result])
        if several is None:
            return None
        values.extend(several)
    for name in step.in_place:
        after = outcome.args_after
        value = None if after is None else protocol.shaped_value(after[step.parameters.index(name)], shapes.get(name))
        if value is None:
            return None
        values.append(value)
    return values


def _stacked(values: list[Any], shape: Any) -> np.ndarray:
    if shape is not None and len(shape) == 0:
        return np.asarray(values, dtype=float)
    return np.stack(values) if values else np.zeros((0, *(shape or ())))


class ReplySandbox:
    """Serves calls from in-process functions exactly as a sandbox would reply to them (see the module docstring).

    With ``chains``, it also runs a training loop in one request (``train``) and replays a step
    (``replay``), as the worker does, so the grader's audit of a chain runs too; a call that times
    out or crashes during a chain ends the request (the grader then goes call by call)."""

    name = "property"

    def __init__(self, functions: Mapping[str, Callable[..., Any]], chains: bool = False,
                 lie: tuple[float, float, float] | None = None) -> None:
        self.functions = dict(functions)
        #: What "running the notebook" defined: its functions, with the parameters they were declared with.
        self.functions_found: dict[str, FunctionInfo] = {}
        #: (step, iteration, number): the chain's record of that step (a fraction of the steps) at that
        #: iteration (a fraction of those it ran) is replaced by that number, as a replaced worker could send.
        self.lie = lie
        if chains:
            self.train, self.replay = self._train, self._replay

    def _serve(self, request: CallRequest) -> CallOutcome:
        args = tuple(_wire(a) for a in request.args)
        try:
            header, blobs, _ = _invoke(self.functions.get(request.function), args, request.args_after)
        except Injected as injected:
            error = injected.error
            return CallOutcome(injected.status, error=safe_lines(error, limit=300) if error else None)  # type: ignore[arg-type]
        return _outcome(header, blobs)

    def call_many(self, requests: Sequence[CallRequest]) -> list[CallOutcome]:
        return [self._serve(request) for request in requests]

    def _train(self, steps: Sequence[LoopStep], start: Mapping[str, Any], shapes: Mapping[str, Any],
               iterations: int) -> Chain | None:
        steps = tuple(steps)
        state = {name: _wire(value) for name, value in start.items()}
        records: list[dict[str, list[Any]]] = [{name: [] for name in step.bound} for step in steps]
        counts = [0] * len(steps)
        stop, out = None, []
        try:
            for iteration in range(iterations):
                for k, step in enumerate(steps):
                    args = tuple(_fresh(state[p]) for p in step.parameters)
                    header, blobs, _ = _invoke(self.functions.get(step.function), args, bool(step.in_place))
                    bound = _read(step, _outcome(header, list(blobs)), shapes)
                    if bound is None:
                        stop = {"iteration": iteration, "step": k, "function": step.function, "reply": header}
                        out = blobs
                        break
                    for name, value in zip(step.bound, bound, strict=True):
                        records[k][name].append(value)
                        state[name] = np.float64(value) if type(value) is float else value
                    counts[k] += 1
                if stop is not None:
                    break
        except Injected:
            return None  # the request failed: the grader restarts the sandbox and goes call by call
        if self.lie is not None:
            k = int(self.lie[0] * (len(steps) - 1))
            for values in records[k].values():
                if values:
                    i = int(self.lie[1] * (len(values) - 1))
                    values[i] = np.full(np.shape(values[i]), self.lie[2])
        blobs_out = list(out)
        encoded = []
        for k, step in enumerate(steps):
            descs = {}
            for name in step.bound:
                desc = protocol.encode_value(_stacked(records[k][name], shapes.get(name)), blobs_out)
                if desc.get("t") != "array":
                    return None  # "unavailable"
                descs[name] = desc
            encoded.append(descs)
        try:
            return Chain.from_reply({"status": "ok", "counts": counts, "outputs": encoded, "stop": stop},
                                    protocol.ReceivedBlobs(blobs_out), steps)
        except protocol.WireError:
            return None

    def _replay(self, step: LoopStep, fixed: Mapping[str, Any], stacked: Mapping[str, np.ndarray], count: int,
                shapes: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        fixed = {name: _wire(value) for name, value in fixed.items()}
        stacked = {name: _wire(value) for name, value in stacked.items()}
        outputs: dict[str, list[Any]] = {name: [] for name in step.bound}
        try:
            for i in range(count):
                args = tuple(_fresh(fixed[n]) if n in fixed else _fresh(stacked[n][i]) for n in step.parameters)
                header, blobs, _ = _invoke(self.functions.get(step.function), args, bool(step.in_place))
                bound = _read(step, _outcome(header, blobs), shapes)
                if bound is None:
                    return None
                for name, value in zip(step.bound, bound, strict=True):
                    outputs[name].append(value)
        except Injected:
            return None
        result = {}
        for name, values in outputs.items():
            value = _wire(_stacked(values, shapes.get(name)))
            shape = shapes.get(name)
            if not (isinstance(value, np.ndarray) and value.dtype == np.float64 and value.ndim >= 1
                    and len(value) == count and (shape is None or value.shape[1:] == tuple(shape))):
                return None
            result[name] = value
        return result

    # --- what ``grade._grade_loaded`` asks of a sandbox besides calls: the notebook "ran", nothing seen

    graded: tuple[str, ...] = ()
    seen: tuple[str, ...] = ()
    tampering: tuple[str, ...] = ()

    def run_notebook(self, cells: Sequence[Any]) -> Execution:
        return Execution(functions=dict(self.functions_found))

    def output_excerpt(self) -> str:
        return ""

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- the whole trusted side

def build_report(rubric: Rubric, functions: Mapping[str, Callable[..., Any]], seed: int = 0,
                 parameters: Mapping[str, tuple[str, ...]] | None = None, chains: bool = False,
                 lie: tuple[float, float, float] | None = None) -> Report:
    """The report ``grade._grade_loaded`` builds (it is called, so this never drifts from the real pipeline:
    checks, diagnoses, scoring) for ``functions`` served by a ReplySandbox, declared with the template's
    parameters or ``parameters``."""
    assignment = rubric.assignment
    sandbox = ReplySandbox(functions, chains, lie)
    sandbox.functions_found = {
        f.name: FunctionInfo(f.name, f.name in functions, "function" if f.name in functions else None,
                             parameters=(parameters or {}).get(f.name, f.parameters) if f.name in functions else None)
        for f in assignment.functions}
    report = _grade_loaded(Notebook("property.ipynb", [], "4", []), sandbox, rubric, Options(seed=seed),  # type: ignore[arg-type]
                           time.perf_counter(), executed=True)
    assert report.status == "graded", report.error
    return report


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in a JSON output")
    return json.loads(text, parse_constant=refuse)


def _assert_numbers(report: Report) -> None:
    assert math.isfinite(report.score) and math.isfinite(report.max_score)
    assert 0.0 <= report.score <= report.max_score
    for check in report.checks:
        assert isinstance(check.fraction, float) and math.isfinite(check.fraction), (check.id, check.fraction)
        assert 0.0 <= check.fraction <= 1.0, (check.id, check.fraction)
        assert math.isfinite(check.score) and 0.0 <= check.score <= check.max_score, (check.id, check.score)


def render_everything(report: Report) -> dict[str, str]:
    """Every renderer on ``report``, each output checked for what its format promises."""
    outputs = {fmt: renderer(report) for fmt, renderer in RENDERERS.items()}
    for fmt in ("json", "gradescope", "classroom"):
        _strict_json(outputs[fmt])
    ET.fromstring(outputs["junit"])
    parse_html(outputs["html"])
    return outputs


def check_everything(report: Report) -> dict[str, str]:
    """The trusted side after grading: safe_report, every renderer, the JSON read back, the loss chart, the batch files."""
    _assert_numbers(report)
    safe = safe_report(report)
    _assert_numbers(safe)
    outputs = render_everything(safe)
    document = _strict_json(outputs["json"])
    again = json_report.from_dict(document)
    render_everything(again)
    assert json_report.to_dict(again) == document  # a stored report reads back as what was written
    if report.training is not None:  # loss_curve_png turns a failure into "no chart": call what it calls
        curves = _visible_curves(_finite(report.training.loss), _finite(report.training.reference_loss))
        if curves is not None:
            assert _loss_curve(curves).startswith(PNG_SIGNATURE)
    rows = [GradebookRow("property.ipynb", "student", report),
            GradebookRow("again.ipynb", "again", again)]
    summary = summarize(rows)
    json.dumps(summary, allow_nan=False)
    parse_html(render_summary_html(summary, rows))
    with tempfile.TemporaryDirectory() as folder:
        write_gradebook(rows, Path(folder) / "gradebook.csv")
        assert (Path(folder) / "gradebook.csv").read_text(encoding="utf-8").count("\n") == 3
    return outputs


def grade_strictly(rubric: Rubric, functions: Mapping[str, Callable[..., Any]], seed: int = 0,
                   parameters: Mapping[str, tuple[str, ...]] | None = None, chains: bool = False,
                   lie: tuple[float, float, float] | None = None) -> Report:
    """``build_report`` then ``check_everything``, with numpy's RuntimeWarnings as errors: a student's
    value is computed with on the trusted side under ``np.errstate``, never warned about (a grader run
    with ``-W error``, as a course's pytest configuration may be, must not fail on one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = build_report(rubric, functions, seed, parameters, chains, lie)
        check_everything(report)
    return report


# --------------------------------------------------------------------------- what a student function does

@dataclass(frozen=True)
class Act:
    """One call's behaviour. ``kind``: "value" (return ``payload``), "ref" (the reference's answer put through
    the transform ``payload``), "mutant" (a catalogued bug of the function: variant ``payload``, modulo their
    number), "family" (another activation, ``FAMILIES[payload]``, of the first argument), "raise" (raise
    ``payload``), "status" (end as a timeout or a crash); ``scribble``: what the call then does to its
    array arguments."""

    kind: str
    payload: Any
    scribble: tuple[Any, ...] | None = None


FAMILIES: dict[str, Callable[[Any], Any]] = {
    "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-np.asarray(z))),
    "leaky": lambda z: np.where(np.asarray(z) > 0, z, 0.1 * np.asarray(z)), "identity": lambda z: z,
    "abs": np.abs, "step": lambda z: (np.asarray(z) > 0).astype(float), "exp": np.exp,
}


class Student:
    """A student function: its acts, one per call, in a cycle; the reference and the catalogued bugs it may act as."""

    def __init__(self, acts: Sequence[Act], reference: Callable[..., Any],
                 variants: Sequence[Callable[..., Any]] = ()) -> None:
        self.acts, self.reference, self.variants, self.calls = list(acts), reference, list(variants), 0

    def __call__(self, *args: Any) -> Any:
        act = self.acts[self.calls % len(self.acts)]
        self.calls += 1
        if act.kind == "raise":
            raise act.payload
        if act.kind == "status":
            raise Injected(*act.payload)
        if act.kind == "ref":  # in place where the reference updates in place
            value = transform(self.reference(*args), act.payload)
        elif act.kind == "mutant":
            value = (self.variants[act.payload % len(self.variants)] if self.variants else self.reference)(*args)
        elif act.kind == "family":
            value = FAMILIES[act.payload](args[0])
        else:
            value = act.payload
        if act.scribble is not None:
            scribble(args, act.scribble)
        return value

    def __repr__(self) -> str:
        return f"Student({self.acts!r})"


def student(assignment: Any, function: str, acts: Sequence[Act], reference: Callable[..., Any]) -> Student:
    """A Student for ``function``, with the assignment's mutants of it as a notebook would call them."""
    helpers = assignment.helpers
    variants: list[Callable[..., Any]] = []
    for mutant in assignment.mutants:
        if mutant.function == function:
            for variant in mutant.variants:
                if helpers is not None and function in helpers.dependents:
                    variants.append(lambda *args, _v=variant, _p=helpers.default: _v(*args, _p))
                else:
                    variants.append(variant)
    return Student(acts, reference, variants)


def takes(count: int, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` declared with ``count`` parameters: called with another number, it raises TypeError as Python does."""
    def declared(*args: Any) -> Any:
        if len(args) != count:
            raise TypeError(f"declared() takes {count} positional arguments but {len(args)} were given")
        return function(*args)
    return declared


def _each(value: Any, change: Callable[[Any], Any]) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_each(v, change) for v in value)
    return None if value is None else change(value)


def transform(value: Any, how: tuple[Any, ...]) -> Any:
    """The reference's answer changed as ``how`` says."""
    kind, *rest = how
    if kind == "same":
        return value
    if kind == "dtype":
        return _each(value, lambda v: _cast(v, rest[0]))
    if kind == "scale":
        return _each(value, lambda v: np.asarray(v, dtype=float) * rest[0])
    if kind == "fill":
        return _each(value, lambda v: np.full(np.shape(v), rest[0], dtype=rest[1]))
    if kind == "poke":
        def poke(v: Any) -> Any:
            array = np.array(v, dtype=float)
            if array.size:
                array.flat[int(rest[1] * (array.size - 1))] = rest[0]
            return array
        return _each(value, poke)
    if kind == "list":
        return _each(value, lambda v: np.asarray(v).tolist())
    if kind == "T":
        return _each(value, lambda v: np.asarray(v).T)
    if kind == "flat":
        return _each(value, lambda v: np.asarray(v).ravel())
    if kind == "column":
        return _each(value, lambda v: np.asarray(v).reshape(-1, 1))
    if kind == "axis":
        return _each(value, lambda v: np.asarray(v)[None])
    if kind == "resize":
        return _each(value, lambda v: np.resize(np.asarray(v, dtype=float), rest[0]))
    if kind == "first":
        return _each(value, lambda v: np.asarray(v).ravel()[:1].reshape(()) if np.size(v) else np.float64(0))
    if kind == "wrap":
        return (value,)
    if isinstance(value, tuple):
        if kind == "swap":
            return value[::-1]
        if kind == "drop":
            return value[:-1]
        if kind == "extra":
            return (*value, rest[0])
        if kind == "listed":
            return list(value)
    return value


def scribble(args: Sequence[Any], how: tuple[Any, ...]) -> None:
    """Change one array argument in place (the in-place step's result is what it leaves there)."""
    kind, which, number = how
    arrays = [a for a in args if isinstance(a, np.ndarray) and a.ndim > 0]
    if not arrays:
        return
    array = arrays[int(which * (len(arrays) - 1))]
    if kind == "fill":
        array[...] = number
    elif kind == "poke" and array.size:
        array.flat[int(which * (array.size - 1))] = number
    elif kind == "scale":
        array *= number
    elif kind == "resize":
        array.resize(int(number), refcheck=False)


# --------------------------------------------------------------------------- strategies

SPECIAL_FLOATS = (math.inf, -math.inf, math.nan, 1e308, -1e308, 1.7976931348623157e308, -0.0, 0.0, 5e-324,
                  -5e-324, 2.2250738585072014e-308, 1e-300, 1e300, 3.5e38, 65504.0, 65520.0, 1.0, -1.0, 0.5)
HUGE_INTS = (2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**308, 10**309, -(10**400), 2**1024)
DTYPES = (np.float16, np.float32, np.float64, np.longdouble, np.int8, np.int16, np.int32, np.int64, np.uint8,
          np.uint16, np.uint32, np.uint64, np.complex64, np.complex128, np.bool_, np.dtype(">f8"), np.dtype(">i4"))
SMALL_SHAPES = ((), (0,), (0, 3), (3, 0), (1,), (2,), (3,), (4,), (6,), (2, 2), (2, 3), (3, 2), (1, 1), (1, 3),
                (3, 1), (4, 4), (2, 2, 2), (1, 1, 1, 1, 1))
LARGE_SHAPES = ((100_000,), (65_536,), (65_537,), (317, 317), (2, 50_000))

special = st.sampled_from(SPECIAL_FLOATS)
floats = st.one_of(special, st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True))
ints = st.one_of(st.integers(-3, 3), st.sampled_from(HUGE_INTS), st.integers())
dtypes = st.sampled_from(DTYPES)


def _cast(value: Any, dtype: Any) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a complex or an out-of-range cast: whatever numpy makes of it
        return np.asarray(value).astype(dtype)


class ArrayRaises:
    """An object whose ``__array__`` raises: numpy cannot read it."""

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no array here")

    def __repr__(self) -> str:
        return "ArrayRaises()"


class IterRaises(list):  # type: ignore[type-arg]
    """A list that cannot be iterated: the worker's encoder raises on it (the call counts as raised)."""

    def __iter__(self) -> Any:
        raise RuntimeError("no items here")


class FloatRaises:
    def __float__(self) -> float:
        raise ValueError("not a number")

    def __repr__(self) -> str:
        return "FloatRaises()"


def _deep(depth: int) -> Any:
    value: Any = [1.0]
    for _ in range(depth):
        value = [value, None]
    return value


UNENCODABLE = (
    "a string", "", "\x1b[31m100/100\u202e", b"bytes", {"a": 1.0}, {1.0, 2.0}, object(), ArrayRaises(),
    IterRaises([1.0]), FloatRaises(), 1j, complex(math.inf, math.nan), Fraction(1, 3), Decimal("1e400"),
    np.array(["a", "b"]), np.array([object(), 1.0], dtype=object), np.array(["2020-01-01"], dtype="M8[D]"),
    np.zeros(3, dtype=[("a", "f8")]), np.timedelta64(3, "s"), [[1.0, 2.0], [3.0]], [None, 1.0], [[1.0], "x"],
    _deep(6), [[0.0]] * 70, list(range(70)), np.longdouble("1e4000"), np.float16(np.inf), (None, None),
    [], (), [()], ((), ()), range(3), slice(1), Ellipsis, NotImplemented, float, np,
)

small_arrays = hnp.arrays(dtypes, st.sampled_from(SMALL_SHAPES))
large_arrays = hnp.arrays(dtypes, st.sampled_from(LARGE_SHAPES))
scalars = st.one_of(
    floats, ints, st.booleans(), st.none(), st.text(max_size=20),
    st.builds(lambda d, x: _cast(x, d)[()], dtypes, floats),  # numpy scalars (overflowing casts too)
)
leaves = st.one_of(scalars, small_arrays, st.sampled_from(UNENCODABLE))
values = st.one_of(
    leaves,
    large_arrays,
    st.recursive(leaves, lambda children: st.one_of(st.lists(children, max_size=4),
                                                    st.lists(children, max_size=4).map(tuple)), max_leaves=6),
    st.lists(floats, min_size=1, max_size=8),  # a list of numbers: one array on the wire
)

transforms = st.one_of(
    st.just(("same",)),
    st.tuples(st.just("dtype"), dtypes),
    st.tuples(st.just("scale"), st.sampled_from((1e308, -1e308, 1e-308, 0.0, -1.0, 1e10, math.inf, math.nan))),
    st.tuples(st.just("fill"), floats, st.sampled_from((np.float64, np.float32, np.float16))),
    st.tuples(st.just("poke"), special, st.floats(0, 1)),
    st.sampled_from([("list",), ("T",), ("flat",), ("column",), ("axis",), ("first",), ("wrap",), ("swap",),
                     ("drop",), ("listed",)]),
    st.tuples(st.just("resize"), st.sampled_from((0, 1, 5, 100_000))),
    st.tuples(st.just("extra"), leaves),
)
scribbles = st.one_of(
    st.none(), st.none(),
    st.tuples(st.sampled_from(("fill", "poke", "scale")), st.floats(0, 1), special),
    st.tuples(st.just("resize"), st.floats(0, 1), st.sampled_from((0, 1, 7))),
)
exceptions = st.one_of(
    st.builds(lambda kind, text: kind(text), st.sampled_from((ValueError, TypeError, ZeroDivisionError, MemoryError,
                                                             FloatingPointError, NotImplementedError, LookupError,
                                                             OverflowError, AssertionError)), st.text(max_size=30)),
    st.just(RecursionError("maximum recursion depth exceeded")),
)
statuses = st.sampled_from((("timeout", "time limit"), ("crashed", "the sandbox was killed"),
                            ("protocol", "malformed value"), ("raised", None)))

acts = st.one_of(
    st.builds(Act, st.just("ref"), transforms, scribbles),
    st.builds(Act, st.just("ref"), transforms, scribbles),
    st.builds(Act, st.just("value"), values, scribbles),
    st.builds(Act, st.just("value"), values, scribbles),
    st.builds(Act, st.just("mutant"), st.integers(0, 20)),
    st.builds(Act, st.just("family"), st.sampled_from(sorted(FAMILIES)), scribbles),
    st.builds(Act, st.just("raise"), exceptions),
    st.builds(Act, st.just("status"), statuses),
    st.just(Act("ref", ("same",))),
)


@st.composite
def submissions(draw: st.DrawFn, name: str) -> tuple[dict[str, Callable[..., Any]], dict[str, tuple[str, ...]]]:
    """Mostly one function misbehaving and the others the reference; sometimes the helpers misbehaving
    and the functions that use them calling them, as a notebook's do; sometimes every function random
    (and then one may be missing, or declared with other parameters)."""
    assignment = RUBRICS[name].assignment
    reference = assignment.as_student()
    functions: dict[str, Callable[..., Any]] = dict(reference)
    parameters: dict[str, tuple[str, ...]] = {}
    names = list(assignment.names)
    mode = draw(st.sampled_from(("one", "one", "one", "wired", "every")))
    helpers = assignment.helpers
    if mode == "wired" and helpers is not None:
        act = student(assignment, helpers.function, draw(st.lists(acts, min_size=1, max_size=4)),
                      reference[helpers.function])
        dact = student(assignment, helpers.derivative, draw(st.lists(acts, min_size=1, max_size=4)),
                       reference[helpers.derivative])
        functions = dict(assignment.as_student(Pair("yours", act, dact)))
        chosen = [draw(st.sampled_from(names))] if draw(st.booleans()) else []
    else:
        chosen = names if mode == "every" else [draw(st.sampled_from(names))]
    for function in chosen:
        functions[function] = student(assignment, function, draw(st.lists(acts, min_size=1, max_size=4)),
                                      reference[function])
    if mode == "every":
        missing = draw(st.sampled_from([None, *names]))
        if missing is not None:
            del functions[missing]
        fewer = draw(st.sampled_from([None, *names]))
        if fewer is not None and fewer in functions:
            parameters[fewer] = assignment.function(fewer).parameters[:-1]
            functions[fewer] = takes(len(parameters[fewer]), functions[fewer])
    return functions, parameters


#: A training chain's numbers, as a worker replaced by the notebook could send them (mostly none: honest).
lies = st.one_of(st.none(), st.none(), st.tuples(st.floats(0, 1), st.floats(0, 1), special))

#: More examples for a deeper search: GRADER_PROPERTY_EXAMPLES=2000 pytest tests/test_property_returned_values.py
EXAMPLES = int(os.environ.get("GRADER_PROPERTY_EXAMPLES", "0")) or None
PROPERTY = settings(max_examples=EXAMPLES or 80, deadline=None, derandomize=False, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


@pytest.mark.slow
@PROPERTY
@given(data=st.data(), seed=st.sampled_from((0, 1, 7)), chains=st.booleans())
def test_simple_nn_any_returned_value_yields_a_report(data: st.DataObject, seed: int, chains: bool) -> None:
    functions, parameters = data.draw(submissions("simple_nn"))
    grade_strictly(RUBRICS["simple_nn"], functions, seed, parameters, chains, data.draw(lies) if chains else None)


@pytest.mark.slow
@settings(PROPERTY, max_examples=EXAMPLES or 60)
@given(data=st.data(), seed=st.sampled_from((0, 1, 7)), chains=st.booleans())
def test_simple_nn_batch_any_returned_value_yields_a_report(data: st.DataObject, seed: int, chains: bool) -> None:
    functions, parameters = data.draw(submissions("simple_nn_batch"))
    grade_strictly(RUBRICS["simple_nn_batch"], functions, seed, parameters, chains, data.draw(lies) if chains else None)


# --------------------------------------------------------------------------- the reference, as a baseline

@pytest.mark.parametrize(("name", "chains"), [("simple_nn", False), ("simple_nn", True), ("simple_nn_batch", True)])
def test_the_reference_through_reply_sandbox_scores_full_marks(name: str, chains: bool) -> None:
    rubric = RUBRICS[name]
    report = grade_strictly(rubric, rubric.assignment.as_student(), chains=chains)
    assert report.score == report.max_score and not report.diagnoses


# --------------------------------------------------------------------------- regression tests: what the property found

def _with(name: str, **overrides: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
    functions = dict(RUBRICS[name].assignment.as_student())
    functions.update(overrides)
    return functions


def _check(report: Report, check_id: str) -> Any:
    return next(c for c in report.checks if c.id == check_id)


@pytest.mark.parametrize(("name", "number"), [("simple_nn", 0.0), ("simple_nn", 1.0), ("simple_nn", 1e308),
                                             ("simple_nn_batch", 0.0)])
def test_a_slope_returned_as_one_number_for_an_array_is_graded(name: str, number: float) -> None:
    """``def d_activation(z): return 0.0``: diagnosis compared the number with a catalogued bug's (the constant
    slope written as ``return 1.0``) under the don't-care mask of ReLU's kink, which has the input's shape:
    broadcasting it to the scalar raised ValueError out of grading."""
    report = grade_strictly(RUBRICS[name], _with(name, d_activation=lambda z: number))
    assert not _check(report, "d_activation.values").passed
    assert report.score < report.max_score


def test_the_kink_mask_is_not_broadcast_onto_a_value_of_another_shape() -> None:
    """The mask has the input's shape; a catalogued bug that returns one number for an array has no kink."""
    from grader.compare import outcomes_agree
    mask = np.array([True, False, True])
    assert outcomes_agree(CallOutcome("ok", np.float64(0.0)), CallOutcome("ok", 1.0), mask) is False  # was ValueError
    assert outcomes_agree(CallOutcome("ok", np.float64(1.0)), CallOutcome("ok", 1.0), mask) is True
    assert outcomes_agree(CallOutcome("ok", np.float64(0.5)), CallOutcome("ok", np.array([1.0])), np.array([True]))
    assert outcomes_agree(CallOutcome("ok", np.array([0.5, 2.0])), CallOutcome("ok", np.array([1.0, 2.0])),
                          np.array([True, False]))  # as before: any slope in [0, 1] at the kink


def test_an_expected_infinity_is_compared_without_a_numpy_warning() -> None:
    """An activation of 1e308 makes the reference's forward, under the student's own activation, infinite:
    comparing the student's finite forward with it gave np.isclose an infinite atol, which it warns about."""
    report = grade_strictly(RUBRICS["simple_nn"], _with(
        "simple_nn", activation=lambda z: np.where(np.asarray(z) > 0, 1e308, 0.0)))
    assert not _check(report, "activation.values").passed


def test_an_infinite_activation_is_judged_without_a_numpy_warning() -> None:
    """inf - inf in the derivative check's central differences warned ("invalid value encountered in
    subtract"), an exception under ``-W error``."""
    report = grade_strictly(RUBRICS["simple_nn"], _with("simple_nn", activation=lambda z: np.full(np.shape(z), np.inf)))
    assert not _check(report, "activation.values").passed


def test_an_implied_gradient_that_overflows_is_judged_without_a_numpy_warning() -> None:
    """backward returning weights of 1.7e308: the implied gradient (w - new) / eta overflowed with a warning."""
    def backward(x: Any, y: Any, y_hat: Any, w1: Any, w2: Any, eta: Any) -> Any:
        return np.full(np.shape(w1), 1.7e308), np.full(np.shape(w2), 1.7e308)
    report = grade_strictly(RUBRICS["simple_nn"], _with("simple_nn", backward=backward))
    assert not _check(report, "backward.gradient").passed


def test_a_gradient_off_by_1e308_is_diagnosed_without_a_numpy_warning() -> None:
    """Gradients 1e308 times the right ones: diagnosing their shape took the median of ratios of 1e308, whose
    mean of the two middle ones overflowed ("overflow encountered in reduce")."""
    reference = RUBRICS["simple_nn_batch"].assignment.as_student()["backward"]
    report = grade_strictly(RUBRICS["simple_nn_batch"], _with(
        "simple_nn_batch", backward=lambda *args: tuple(np.asarray(g) * 1e308 for g in reference(*args))))
    assert not _check(report, "backward.gradient").passed


def test_a_value_past_1e300_reads_as_itself_not_as_infinity() -> None:
    """numpy rounds by scaling, which overflows past ~1e300: a returned 1e308 was shown as inf in messages
    and as null in a failing probe's evidence."""
    from grader.outcomes import describe
    assert "inf" not in describe(np.array([1e308, -1.7976931348623157e308]))
    assert describe(np.array([np.inf, 0.1234567891])).count("inf") == 1
    report = grade_strictly(RUBRICS["simple_nn"], _with("simple_nn", activation=lambda z: np.full(np.shape(z), 1e308)))
    details = _check(report, "activation.values").details
    assert np.ravel(details["got"]).tolist() == [1e308] * np.size(details["got"])
    document = json.loads(RENDERERS["json"](report))
    got = next(c for c in document["checks"] if c["id"] == "activation.values")["details"]["got"]
    assert None not in np.ravel(got).tolist()
