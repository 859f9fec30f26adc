"""The ``score`` stage's input: a declarative rubric loaded from TOML and validated.

A rubric is what a course edits, so every mistake in it must be reported the way
hypothesis reports a bad setting: one sentence naming the file, the line, the key,
the value found and what was expected. ``tomllib`` gives no positions for values,
so :class:`_KeyLines` scans the text to find the line of each key.

Built-in rubrics live in the repository's ``rubrics/`` folder, which installs as
the package ``grader.rubrics``; from a plain checkout (``PYTHONPATH=.``) that
package does not exist, so the folder next to ``grader/`` is used instead.
"""
from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from grader.errors import UNREADABLE, RubricError, SettingError
from grader.sandbox.limits import Limits

SCHEMA = "grader.rubric/1"
DEFAULT_RUBRIC = "simple_nn"

#: Check ids the grader emits; a rubric may give points to any subset of them.
KNOWN_CHECKS: tuple[str, ...] = (
    "activation.values",
    "d_activation.values",
    "d_activation.gradient",
    "forward.values",
    "backward.values",
    "backward.gradient",
    "training.converges",
)
#: Activation families the checks can recognise.
KNOWN_ACTIVATIONS: tuple[str, ...] = (
    "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "elu", "silu", "identity",
)

_TOP_LEVEL_KEYS = ("schema", "name", "title", "max_score", "accepted_activations", "template", "limits", "checks")
_CHECK_KEYS = ("points", "partial_credit")
#: Used when a rubric has no ``accepted_activations``: the exercise is about ReLU.
_DEFAULT_ACTIVATIONS: tuple[str, ...] = ("relu",)
_SUM_TOLERANCE = 1e-9


@dataclass(frozen=True)
class CheckWeight:
    """Points of one check and whether a partly passing check earns a share of them."""

    points: float
    partial_credit: bool


@dataclass(frozen=True)
class Rubric:
    """A validated rubric: points per check, accepted activations and resource limits."""

    name: str
    title: str
    #: Where it was loaded from, so messages and reports can name the file.
    path: str
    max_score: float
    accepted_activations: tuple[str, ...]
    #: In file order, so reports list checks the way the author wrote them.
    checks: dict[str, CheckWeight]
    #: ``Limits()`` defaults merged with the rubric's ``[limits]`` table.
    limits: Limits
    #: The notebook handed to students (where it is, for messages), if the rubric names one, and
    #: its bytes: batch grading runs its opening cells once per process (``grader.template``).
    template: str | None = None
    template_bytes: bytes | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- finding rubrics


def _bundled_dir() -> Traversable:
    """The folder of built-in rubrics, installed (``grader.rubrics``) or in a checkout."""
    try:
        return resources.files("grader.rubrics")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "rubrics"


def _bundled() -> dict[str, Traversable]:
    directory = _bundled_dir()
    if not directory.is_dir():
        return {}
    return {
        entry.name[: -len(".toml")]: entry
        for entry in directory.iterdir()
        if entry.name.endswith(".toml") and entry.is_file()
    }


def builtin_rubrics() -> list[str]:
    """Names of the rubrics shipped with the grader, sorted, for ``--rubric`` and error messages."""
    return sorted(_bundled())


def _looks_like_path(name: str) -> bool:
    return name.endswith(".toml") or "/" in name or "\\" in name


def load_rubric(name_or_path: str | Path | None = None) -> Rubric:
    """Load and validate a rubric given by bundled name or by path (``None`` means the default).

    A bare name that is bundled wins over a file of the same name in the working
    directory, so ``--rubric simple_nn`` means the same thing everywhere.
    """
    name = DEFAULT_RUBRIC if name_or_path is None else str(name_or_path)
    bundled = _bundled()
    if not _looks_like_path(name) and name in bundled:
        entry = bundled[name]
        return parse_rubric(_read_bundled(entry), str(entry), _bundled_dir())
    path = Path(name)
    if not path.exists():
        raise RubricError.not_found(name, sorted(bundled))
    return parse_rubric(_read_path(path), str(path))


def _read_bundled(entry: Traversable) -> str:
    try:
        return entry.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(str(entry), exc) from exc


def _read_path(path: Path) -> str:
    if path.is_dir():
        raise RubricError("Rubric " + UNREADABLE.format(path=path, reason="it is a directory, not a .toml file"))
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(str(path), exc) from exc


def _unreadable(path: str, exc: Exception) -> RubricError:
    if isinstance(exc, UnicodeDecodeError):
        reason = f"it is not UTF-8 text: byte {exc.start} cannot be decoded"
    else:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
    return RubricError("Rubric " + UNREADABLE.format(path=path, reason=reason))


# --------------------------------------------------------------------------- locating keys


_BARE = r"[A-Za-z0-9_-]+"
_BASIC = r'"(?:[^"\\]|\\.)*"'
_LITERAL = r"'[^']*'"
_SIMPLE_KEY = rf"(?:{_BARE}|{_BASIC}|{_LITERAL})"
_KEY_PATH = rf"{_SIMPLE_KEY}(?:\s*\.\s*{_SIMPLE_KEY})*"
_HEADER_RE = re.compile(rf"^\s*\[\[?\s*({_KEY_PATH})\s*\]\]?")
_ASSIGN_RE = re.compile(rf"^\s*({_KEY_PATH})\s*=")
_PART_RE = re.compile(_SIMPLE_KEY)


def _split_key_path(text: str) -> tuple[str, ...]:
    """``checks."a.b"`` → ``("checks", "a.b")``; quoted parts are unquoted."""
    parts = []
    for token in _PART_RE.findall(text):
        if token.startswith('"'):
            try:
                token = json.loads(token)
            except ValueError:
                token = token[1:-1]
        elif token.startswith("'"):
            token = token[1:-1]
        parts.append(token)
    return tuple(parts)


class _KeyLines:
    """Line numbers of the keys and table headers of a TOML text, found by scanning it.

    A heuristic (no full TOML grammar), good for what a rubric contains. A key that
    has no line of its own (missing, or inside an inline table) is placed on the
    line of its nearest ancestor that has one, or line 1 for the top level.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_multiline: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            header = _HEADER_RE.match(line)
            if header:
                table = _split_key_path(header.group(1))
                self._record(table, number)
                continue
            assign = _ASSIGN_RE.match(line)
            if assign:
                self._record(table + _split_key_path(assign.group(1)), number)
            in_multiline = _opens_multiline(line)

    def _record(self, path: tuple[str, ...], number: int) -> None:
        """Remember the first line of ``path`` and of each of its parents (``[checks.x]`` defines ``checks``)."""
        for end in range(1, len(path) + 1):
            self._lines.setdefault(path[:end], number)

    def line(self, *path: str) -> int:
        for end in range(len(path), 0, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return 1


def _opens_multiline(line: str) -> str | None:
    """The multi-line string delimiter left open at the end of ``line``, if any."""
    for quote in ('"""', "'''"):
        if line.count(quote) % 2 == 1:
            return quote
    return None


# --------------------------------------------------------------------------- validation


class _Validator:
    """Turns the parsed TOML into a :class:`Rubric`, raising one precise error at the first problem."""

    def __init__(self, data: dict[str, Any], text: str, path: str, folder: Traversable | None = None) -> None:
        self.data = data
        self.path = path
        #: Where files the rubric names (its template) are looked up: beside it.
        self.folder = folder if folder is not None else Path(path).parent
        self.lines = _KeyLines(text)

    def fail(self, key_path: tuple[str, ...], what: str, expected: str) -> RubricError:
        return RubricError.from_value(self.path, self.lines.line(*key_path), what, expected)

    def rubric(self) -> Rubric:
        self.check_top_level_keys()
        self.check_schema()
        name = self.name()
        max_score = self.max_score()
        checks = self.checks()
        self.check_sum(checks, max_score)
        return Rubric(
            name=name,
            title=self.title(name),
            path=self.path,
            max_score=max_score,
            accepted_activations=self.accepted_activations(),
            checks=checks,
            limits=self.limits(),
            **self.template(),
        )

    def check_top_level_keys(self) -> None:
        for key in self.data:
            if key not in _TOP_LEVEL_KEYS:
                raise self.fail((key,), f"unknown key {key!r}", _expected_one_of(key, _TOP_LEVEL_KEYS))

    def check_schema(self) -> None:
        schema = self.data.get("schema")
        if schema != SCHEMA:
            found = "is missing" if schema is None else f"= {schema!r} is not supported"
            raise self.fail(("schema",), f"schema {found}", f'expected schema = "{SCHEMA}"')

    def name(self) -> str:
        name = self.data.get("name")
        if not isinstance(name, str) or not name.strip():
            found = "is missing" if name is None else f"= {name!r} is not a usable name"
            raise self.fail(("name",), f"name {found}", "expected a non-empty string such as \"my_course\"")
        return name

    def title(self, name: str) -> str:
        title = self.data.get("title", name)
        if not isinstance(title, str):
            raise self.fail(("title",), f"title = {title!r} is not text", "expected a string")
        return title

    def max_score(self) -> float:
        value = self.data.get("max_score")
        if not _is_number(value) or value <= 0:
            found = "is missing" if value is None else f"= {value!r} is not valid"
            raise self.fail(("max_score",), f"max_score {found}", "expected a positive number such as 100")
        return float(value)

    def checks(self) -> dict[str, CheckWeight]:
        table = self.data.get("checks", {})
        if not isinstance(table, dict):
            raise self.fail(("checks",), f"checks = {table!r} is not a table",
                            'expected tables such as [checks."forward.values"]')
        return {check_id: self.check(check_id, body) for check_id, body in table.items()}

    def check(self, check_id: str, body: Any) -> CheckWeight:
        key = ("checks", check_id)
        if check_id not in KNOWN_CHECKS:
            raise self.fail(key, f"unknown check {check_id!r}", _expected_one_of(check_id, KNOWN_CHECKS))
        if not isinstance(body, dict):
            raise self.fail(key, f'checks."{check_id}" = {body!r} is not a table',
                            "expected a table with points and partial_credit")
        for name in body:
            if name not in _CHECK_KEYS:
                raise self.fail(key + (name,), f'unknown key {name!r} in [checks."{check_id}"]',
                                _expected_one_of(name, _CHECK_KEYS))
        return CheckWeight(points=self.points(check_id, body), partial_credit=self.partial_credit(check_id, body))

    def points(self, check_id: str, body: dict[str, Any]) -> float:
        points = body.get("points")
        if not _is_number(points) or points < 0:
            found = "is missing" if points is None else f"= {points!r} is not valid"
            raise self.fail(("checks", check_id, "points"), f'[checks."{check_id}"] points {found}',
                            "expected a number >= 0")
        return float(points)

    def partial_credit(self, check_id: str, body: dict[str, Any]) -> bool:
        # Absent means all-or-nothing: the stricter reading of a silent rubric.
        value = body.get("partial_credit", False)
        if not isinstance(value, bool):
            raise self.fail(("checks", check_id, "partial_credit"),
                            f'[checks."{check_id}"] partial_credit = {value!r} is not a boolean',
                            "expected true or false")
        return value

    def check_sum(self, checks: dict[str, CheckWeight], max_score: float) -> None:
        total = sum(weight.points for weight in checks.values())
        if abs(total - max_score) > _SUM_TOLERANCE:
            what = f"max_score = {_number(max_score)} but the checks' points add up to {_number(total)}"
            raise self.fail(("max_score",), what, "expected the points of the [checks] tables to add up to max_score")

    def accepted_activations(self) -> tuple[str, ...]:
        value = self.data.get("accepted_activations", list(_DEFAULT_ACTIVATIONS))
        key = ("accepted_activations",)
        expected = f"expected a non-empty list of: {', '.join(KNOWN_ACTIVATIONS)}"
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"accepted_activations = {value!r} is not a non-empty list", expected)
        for item in value:
            if item not in KNOWN_ACTIVATIONS:
                hint = _closest(item, KNOWN_ACTIVATIONS) if isinstance(item, str) else ""
                raise self.fail(key, f"accepted_activations contains unknown activation {item!r}{hint}", expected)
        return tuple(dict.fromkeys(value))

    def template(self) -> dict[str, Any]:
        value = self.data.get("template")
        if value is None:
            return {}
        expected = 'expected the file name of the notebook handed to students, next to the rubric, such as "seed.ipynb"'
        if not isinstance(value, str) or not value.strip():
            raise self.fail(("template",), f"template = {value!r} is not a file name", expected)
        entry = self.folder / value
        try:
            data = entry.read_bytes()
        except OSError:
            # Most often a rubric copied without its template: say how to fix it either way.
            raise self.fail(("template",), f"template = {value!r} names no readable file (looked for {entry})",
                            expected + " (copy the notebook there, or delete the template line)") from None
        return {"template": str(entry), "template_bytes": data}

    def limits(self) -> Limits:
        table = self.data.get("limits", {})
        if not isinstance(table, dict):
            raise self.fail(("limits",), f"limits = {table!r} is not a table", "expected a [limits] table")
        origin = f"rubric {self.path} [limits]"
        known = tuple(f.name for f in fields(Limits))
        limits = Limits()
        for name, value in table.items():
            if name not in known:
                raise self.fail(("limits", name), f"unknown key {name!r} in [limits]", _expected_one_of(name, known))
            try:
                limits = limits.merged({name: value}, origin)
            except SettingError as exc:
                raise self.fail(("limits", name), f"[limits] {name} = {value!r} is not valid",
                                _expected_from_setting(exc)) from exc
        return limits


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _closest(word: str, choices: tuple[str, ...]) -> str:
    match = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _expected_one_of(word: str, choices: tuple[str, ...]) -> str:
    return f"expected one of: {', '.join(choices)}{_closest(word, choices)}"


def _expected_from_setting(exc: SettingError) -> str:
    """The 'expected ...' part of a SettingError, so the rubric message stays one sentence."""
    match = re.search(r".*(expected .*?)\.?$", exc.message)
    return match.group(1) if match else exc.message.rstrip(".")


def parse_rubric(text: str, path: str, folder: Traversable | None = None) -> Rubric:
    """Parse and validate rubric ``text``; ``path`` names the file in messages, and files the rubric
    names are looked up in ``folder`` (by default the folder of ``path``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RubricError.from_toml_error(path, exc) from exc
    return _Validator(data, text, path, folder).rubric()
