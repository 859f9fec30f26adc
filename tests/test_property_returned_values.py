"""Never an exception out of grading: whatever a student function returns, grading yields a report.

A hypothesis property drives random returned values through the whole trusted side, for both bundled
assignments: the checks (values, derivative, gradients, the gradient step, training call by call),
diagnosis, scoring, the report as ``grade._grade_loaded`` builds it, ``safe_report``, every renderer
of ``RENDERERS`` (the HTML page with its loss chart, the JSON document read back with
``json_report.from_dict`` and rendered again), and the batch files (summary numbers, ``summary.html``,
the gradebook CSV).

The functions are served by ``ReplySandbox``: ``calibrate.TrustedSandbox`` made as strict as a real
sandbox's reply. The arguments go through the wire codec on the way in; the value and the arguments
after the call are encoded as the worker encodes them (an encoding that raises is the call's failure,
as ``worker._reply`` words it) and decoded as the grader decodes them, so the trusted side sees
exactly what a sandbox could send. Each misbehaving function is a drawn list of *acts* consumed by
successive calls (a value that changes from call to call): a drawn value (floats from NaN to 1e308 and
subnormals, huge ints, bools, None, strings, numpy arrays of every dtype and shape up to 1e5 elements,
nested tuples and lists, objects that cannot be encoded), the reference's own answer transformed (cast
to another dtype, scaled to overflow, one element poked, transposed, flattened, as a list, tuples
reordered or cut), an exception, or a call that timed out or crashed, any of them possibly also
scribbling on its array arguments (the in-place step's result is what it leaves there).

The property: no exception escapes; the score is in [0, max]; every check's fraction is a finite number
in [0, 1] and its score in [0, its points]; every JSON output is strict JSON (no NaN, no inf).

Below the properties are plain regression tests, one per crash the property found, each with the
smallest value that caused it.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from grader.batch.summary import GradebookRow, render_summary_html, summarize, write_gradebook
from grader.checks import run_checks
from grader import diagnose as diagnosis_stage
from grader.diagnose import diagnose, unexplained, wrong_signatures
from grader.model import FunctionInfo, GradedWith, Report
from grader.render import RENDERERS, json_report
from grader.render.loss_chart import _finite, _loss_curve, _visible_curves
from grader.rubric import Rubric, load_rubric
from grader.sandbox import protocol
from grader.sandbox.process import CallOutcome, CallRequest
from grader.score import apply_rubric
from grader.untrusted_text import safe_lines, safe_report

from conftest import PNG_SIGNATURE, parse_html

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


def _failed(status: str, exc: BaseException | str) -> CallOutcome:
    """A failed call as the grader receives it: worded by the worker, made safe by the process reader."""
    error = exc if isinstance(exc, str) else protocol.describe_error(type(exc).__name__, str(exc))
    return CallOutcome(status, error=safe_lines(error, limit=300) if error else None)  # type: ignore[arg-type]


class ReplySandbox:
    """Serves calls from in-process functions exactly as a sandbox would reply to them (see the module docstring)."""

    name = "property"

    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        self.functions = dict(functions)

    def _serve(self, request: CallRequest) -> CallOutcome:
        function = self.functions.get(request.function)
        if function is None:
            return CallOutcome("missing")
        args = [_wire(a) for a in request.args]
        try:
            with np.errstate(all="ignore"):
                value = function(*args)
        except Injected as injected:
            return _failed(injected.status, injected.error or "")
        except Exception as exc:  # noqa: BLE001 - the function's failure is this call's outcome
            return _failed("raised", exc)
        blobs: list[bytes] = []
        try:  # worker._reply: an __array__ or __iter__ that raises is the function's failure
            with np.errstate(all="ignore"):
                desc = protocol.encode_value(value, blobs)
                after = [protocol.encode_value(a, blobs) for a in args] if request.args_after else None
        except Exception as exc:  # noqa: BLE001
            return _failed("raised", exc)
        try:  # process._parse_outcome
            received = protocol.ReceivedBlobs(blobs)
            decoded = protocol.decode_value(desc, received)
            args_after = None if after is None else tuple(protocol.decode_value(a, received) for a in after)
        except protocol.WireError as exc:
            return _failed("protocol", str(exc))
        return CallOutcome("ok", value=decoded, args_after=args_after)

    def call_many(self, requests: Sequence[CallRequest]) -> list[CallOutcome]:
        return [self._serve(request) for request in requests]

    def output_excerpt(self) -> str:
        return ""

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- the whole trusted side

#: ``diagnose.mutations`` where the tree has it (``_grade_loaded`` adds its diagnoses after ``diagnose``'s).
_mutations: Callable[..., list[Any]] = getattr(diagnosis_stage, "mutations", lambda assignment, run: [])


def build_report(rubric: Rubric, functions: Mapping[str, Callable[..., Any]], seed: int = 0,
                 parameters: Mapping[str, tuple[str, ...]] | None = None) -> Report:
    """The report ``grade._grade_loaded`` builds, for ``functions`` served by a ReplySandbox."""
    assignment = rubric.assignment
    sandbox = ReplySandbox(functions)
    found = {name: name in functions for name in assignment.names}
    infos = {f.name: FunctionInfo(f.name, found[f.name], "function" if found[f.name] else None,
                                  parameters=(parameters or {}).get(f.name, f.parameters) if found[f.name] else None)
             for f in assignment.functions}
    run = run_checks(sandbox, found, assignment, rubric.accepted_families, seed, signatures=None)
    diagnoses = (wrong_signatures(assignment, infos, run) + diagnose(assignment, run, found)
                 + _mutations(assignment, run))
    for diagnosis in diagnoses:
        if diagnosis.id == "wrong_signature":
            for result in run.results:
                if result.function == diagnosis.function and not result.passed:
                    result.message = (f"could not call {diagnosis.function}: its parameters are not the "
                                      "template's (wrong_signature)")
    for function in unexplained(assignment, run, diagnoses):
        for result in run.results:
            if result.function == function and result.id == assignment.values_check(function):
                result.message += "; no known bug matches"
    score, max_score = apply_rubric(run.results, rubric)
    helpers = assignment.helpers
    graded_with = None
    if helpers is not None:
        if run.recognised and helpers.function in infos:
            infos[helpers.function].recognised_as = run.recognised
        if run.graded_with is not None:
            graded_with = GradedWith(run.graded_with, helpers.function, helpers.dependents)
    return Report(submission="property.ipynb", rubric=rubric.name, status="graded", score=score,
                  max_score=max_score, functions=infos, checks=run.results, diagnoses=diagnoses,
                  warnings=run.warnings, training=run.training, graded_with=graded_with, seed=seed,
                  backend=sandbox.name, output_excerpt=sandbox.output_excerpt(), assignment=assignment.name)


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
                   parameters: Mapping[str, tuple[str, ...]] | None = None) -> Report:
    """``build_report`` then ``check_everything``, with numpy's RuntimeWarnings as errors: a student's
    value is computed with on the trusted side under ``np.errstate``, never warned about (a grader run
    with ``-W error``, as a course's pytest configuration may be, must not fail on one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = build_report(rubric, functions, seed, parameters)
        check_everything(report)
    return report


# --------------------------------------------------------------------------- what a student function does

@dataclass(frozen=True)
class Act:
    """One call's behaviour. ``kind``: "value" (return ``payload``), "ref" (the reference's answer put through
    the transform ``payload``), "raise" (raise ``payload``), "status" (end as a timeout or a crash);
    ``scribble``: what the call then does to its array arguments."""

    kind: str
    payload: Any
    scribble: tuple[Any, ...] | None = None


class Student:
    """A student function: its acts, one per call, in a cycle; the reference for "ref" acts."""

    def __init__(self, acts: Sequence[Act], reference: Callable[..., Any]) -> None:
        self.acts, self.reference, self.calls = list(acts), reference, 0

    def __call__(self, *args: Any) -> Any:
        act = self.acts[self.calls % len(self.acts)]
        self.calls += 1
        if act.kind == "raise":
            raise act.payload
        if act.kind == "status":
            raise Injected(*act.payload)
        value = self.reference(*args) if act.kind == "ref" else act.payload  # in place, as the reference does
        if act.kind == "ref":
            value = transform(value, act.payload)
        if act.scribble is not None:
            scribble(args, act.scribble)
        return value

    def __repr__(self) -> str:
        return f"Student({self.acts!r})"


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
    st.builds(Act, st.just("raise"), exceptions),
    st.builds(Act, st.just("status"), statuses),
    st.just(Act("ref", ("same",))),
)


@st.composite
def submissions(draw: st.DrawFn, name: str) -> tuple[dict[str, Callable[..., Any]], dict[str, tuple[str, ...]]]:
    """Mostly one function misbehaving and the others the reference; sometimes every function random
    (and then one may be missing, or declared with other parameters)."""
    assignment = RUBRICS[name].assignment
    reference = assignment.as_student()
    functions: dict[str, Callable[..., Any]] = dict(reference)
    parameters: dict[str, tuple[str, ...]] = {}
    names = list(assignment.names)
    every = draw(st.integers(0, 4)) == 0
    chosen = names if every else [draw(st.sampled_from(names))]
    for function in chosen:
        functions[function] = Student(draw(st.lists(acts, min_size=1, max_size=4)), reference[function])
    if every:
        missing = draw(st.sampled_from([None, *names]))
        if missing is not None:
            del functions[missing]
        fewer = draw(st.sampled_from([None, *names]))
        if fewer is not None:
            parameters[fewer] = assignment.function(fewer).parameters[:-1]
    return functions, parameters


#: More examples for a deeper search: GRADER_PROPERTY_EXAMPLES=2000 pytest tests/test_property_returned_values.py
EXAMPLES = int(os.environ.get("GRADER_PROPERTY_EXAMPLES", "0")) or None
PROPERTY = settings(max_examples=EXAMPLES or 80, deadline=None, derandomize=False, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


@pytest.mark.slow
@PROPERTY
@given(data=st.data(), seed=st.sampled_from((0, 1, 7)))
def test_simple_nn_any_returned_value_yields_a_report(data: st.DataObject, seed: int) -> None:
    functions, parameters = data.draw(submissions("simple_nn"))
    grade_strictly(RUBRICS["simple_nn"], functions, seed, parameters)


@pytest.mark.slow
@settings(PROPERTY, max_examples=EXAMPLES or 60)
@given(data=st.data(), seed=st.sampled_from((0, 1, 7)))
def test_simple_nn_batch_any_returned_value_yields_a_report(data: st.DataObject, seed: int) -> None:
    functions, parameters = data.draw(submissions("simple_nn_batch"))
    grade_strictly(RUBRICS["simple_nn_batch"], functions, seed, parameters)


# --------------------------------------------------------------------------- the reference, as a baseline

@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_the_reference_through_reply_sandbox_scores_full_marks(name: str) -> None:
    rubric = RUBRICS[name]
    report = grade_strictly(rubric, rubric.assignment.as_student())
    assert report.score == report.max_score and not report.diagnoses
