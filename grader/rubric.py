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
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeGuard

from grader.assignment import DEFAULT_ASSIGNMENT, Assignment, bundled, default_assignment, load_assignment
from grader.errors import UNREADABLE, AssignmentError, RubricError, SettingError
from grader.model import DEFAULT_VISIBILITY, VISIBILITIES, Visibility
from grader.sandbox.limits import Limits, settings_by_name

SCHEMA = "grader.rubric/1"
DEFAULT_RUBRIC = DEFAULT_ASSIGNMENT

_TOP_LEVEL_KEYS = ("schema", "name", "title", "assignment", "max_score", "accepted_families", "template", "limits",
                   "checks")
_CHECK_KEYS = ("points", "partial_credit", "requires", "visibility")
_SUM_TOLERANCE = 1e-9


@dataclass(frozen=True)
class CheckWeight:
    """Points of one check and whether a partly passing check earns a share of them."""

    points: float
    partial_credit: bool
    #: Checks that must pass for this one to earn its points; None: what the assignment declares.
    requires: tuple[str, ...] | None = None
    #: Who may see its result (Gradescope's words); it scores whatever it says.
    visibility: Visibility = DEFAULT_VISIBILITY


@dataclass(frozen=True)
class Rubric:
    """A validated rubric: points per check of its assignment, accepted helper families and resource limits."""

    name: str
    title: str
    #: Where it was loaded from, so messages and reports can name the file.
    path: str
    max_score: float
    #: The helper families whose values earn the helper's points (the default pair when not said).
    accepted_families: tuple[str, ...]
    #: In file order, so reports list checks the way the author wrote them.
    checks: dict[str, CheckWeight]
    #: ``Limits()`` defaults merged with the rubric's ``[limits]`` table.
    limits: Limits
    #: The notebook handed to students (where it is, for messages), if the rubric names one, and
    #: its bytes: batch grading runs its opening cells once per process (``grader.template``).
    template: str | None = None
    template_bytes: bytes | None = field(default=None, repr=False, compare=False)
    #: The assignment whose checks the rubric weighs.
    assignment: Assignment = field(default_factory=lambda: load_assignment(None), repr=False,
                                   compare=False)


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


def load_rubric(name_or_path: str | Path | None = None, assignment: str | Path | Assignment | None = None) -> Rubric:
    """Load and validate a rubric given by bundled name or by path (``None``: the assignment's own rubric).

    A bare name that is bundled wins over a file of the same name in the working
    directory, so ``--rubric simple_nn`` means the same thing everywhere. ``assignment``
    (``--assignment``) chooses the assignment when the rubric does not name one; a rubric
    that names another one is an error.
    """
    chosen = assignment if isinstance(assignment, Assignment) else (
        load_assignment(assignment) if assignment is not None else None)
    if name_or_path is None:
        if chosen is not None and chosen.name not in _bundled():
            own = Path(chosen.path) / "rubric.toml"
            if not own.is_file():
                raise RubricError(f"The assignment at {chosen.path} has no rubric.toml: give one with --rubric PATH.")
            return parse_rubric(_read_path(own), str(own), None, chosen)
        name = chosen.name if chosen is not None else default_assignment()
    else:
        name = str(name_or_path)
    bundled = _bundled()
    if not _looks_like_path(name) and name in bundled:
        entry = bundled[name]
        return parse_rubric(_read_bundled(entry), str(entry), _bundled_dir(), chosen)
    path = Path(name)
    if not path.exists():
        raise RubricError.not_found(name, sorted(bundled))
    return parse_rubric(_read_path(path), str(path), None, chosen)


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

    def __init__(self, data: dict[str, Any], text: str, path: str, folder: Traversable | None = None,
                 assignment: Assignment | None = None) -> None:
        self.data = data
        self.path = path
        self.chosen = assignment
        #: Where files the rubric names (its template) are looked up: beside it.
        self.folder = folder if folder is not None else Path(path).parent
        self.lines = _KeyLines(text)

    def fail(self, key_path: tuple[str, ...], what: str, expected: str) -> RubricError:
        return RubricError.from_value(self.path, self.lines.line(*key_path), what, expected)

    def rubric(self) -> Rubric:
        self.check_schema()
        name = self.name()
        self.assignment = self.the_assignment(name)
        self.check_top_level_keys()
        max_score = self.max_score()
        checks = self.checks()
        self.check_sum(checks, max_score)
        return Rubric(
            name=name,
            title=self.title(name),
            path=self.path,
            max_score=max_score,
            accepted_families=self.accepted_families(),
            checks=checks,
            limits=self.limits(),
            assignment=self.assignment,
            **self.template(),
        )

    def the_assignment(self, name: str) -> Assignment:
        """The assignment the rubric names, else the one chosen (``--assignment``), else the bundled one of
        the rubric's own name, else the default."""
        value = self.data.get("assignment")
        if value is None:
            if self.chosen is not None:
                return self.chosen
            return load_assignment(name if name in bundled() else None)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(("assignment",), f"assignment = {value!r} is not a name",
                            f"expected one of: {', '.join(bundled())}, or the path of an assignment's folder")
        if not ("/" in value or value.startswith(".")) and value not in bundled():
            raise self.fail(("assignment",), f"assignment = {value!r} is not a bundled assignment",
                            _expected_one_of(value, bundled()) + ", or the path of an assignment's folder")
        try:
            folder = value if value in bundled() else str(Path(self.path).parent / value)
            named = load_assignment(folder)
        except AssignmentError as exc:
            raise self.fail(("assignment",), f"assignment = {value!r} cannot be loaded ({exc.message.rstrip('.')})",
                            "expected an assignment folder with an __init__.py defining ASSIGNMENT") from exc
        if self.chosen is not None and self.chosen.path != named.path:
            raise self.fail(("assignment",), f"assignment = {value!r} is not the assignment asked for "
                            f"({self.chosen.name})", "expected the two to agree: drop --assignment or use this "
                            "rubric's own assignment")
        return named

    def _helper_key(self) -> str | None:
        helpers = self.assignment.helpers
        return None if helpers is None else f"accepted_{helpers.function}s"

    def check_top_level_keys(self) -> None:
        known = _TOP_LEVEL_KEYS + tuple(k for k in (self._helper_key(),) if k)
        for key in self.data:
            if key not in known:
                raise self.fail((key,), f"unknown key {key!r}", _expected_one_of(key, known))

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
                            'expected one table per check, such as [checks."<check id>"]')
        return {check_id: self.check(check_id, body) for check_id, body in table.items()}

    def check(self, check_id: str, body: Any) -> CheckWeight:
        key = ("checks", check_id)
        known = self.assignment.check_ids
        if check_id not in known:
            raise self.fail(key, f"unknown check {check_id!r} of assignment {self.assignment.name}",
                            _expected_one_of(check_id, known))
        if not isinstance(body, dict):
            raise self.fail(key, f'checks."{check_id}" = {body!r} is not a table',
                            "expected a table with points and partial_credit")
        for name in body:
            if name not in _CHECK_KEYS:
                raise self.fail(key + (name,), f'unknown key {name!r} in [checks."{check_id}"]',
                                _expected_one_of(name, _CHECK_KEYS))
        return CheckWeight(points=self.points(check_id, body), partial_credit=self.partial_credit(check_id, body),
                           requires=self.requires(check_id, body), visibility=self.visibility(check_id, body))

    def points(self, check_id: str, body: dict[str, Any]) -> float:
        points = body.get("points")
        if not _is_number(points) or points < 0:
            found = "is missing" if points is None else f"= {points!r} is not valid"
            raise self.fail(("checks", check_id, "points"), f'[checks."{check_id}"] points {found}',
                            "expected a number >= 0")
        return float(points)

    def requires(self, check_id: str, body: dict[str, Any]) -> tuple[str, ...] | None:
        """``requires = ["backward.gradient"]``: checks that must pass for this one to earn points
        (``[]`` for none; absent: the assignment's own rule)."""
        if "requires" not in body:
            return None
        value = body["requires"]
        known = tuple(c for c in self.assignment.check_ids if c != check_id)
        key = ("checks", check_id, "requires")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f'[checks."{check_id}"] requires = {value!r} is not a list of check ids',
                            f"expected a list of: {', '.join(known)}")
        for item in value:
            if item not in known:
                raise self.fail(key, f'[checks."{check_id}"] requires unknown check {item!r}',
                                _expected_one_of(item, known))
        return tuple(dict.fromkeys(value))

    def visibility(self, check_id: str, body: dict[str, Any]) -> Visibility:
        """``visibility = "after_due_date"``: who may see the check's result, in Gradescope's words (absent:
        visible; hiding a check is a decision the rubric must state)."""
        value = body.get("visibility", DEFAULT_VISIBILITY)
        for known in VISIBILITIES:
            if value == known:
                return known
        key = ("checks", check_id, "visibility")
        what = f'[checks."{check_id}"] visibility = {value!r} is not a visibility'
        if isinstance(value, str):
            raise self.fail(key, what, _expected_one_of(value, VISIBILITIES))
        raise self.fail(key, what, f"expected one of: {', '.join(VISIBILITIES)}, as a quoted string")

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

    def accepted_families(self) -> tuple[str, ...]:
        """``accepted_families`` (or, spelled after the helper, e.g. ``accepted_activations``): the helper
        families whose values earn the helper's points; the assignment's default pair when not given."""
        helpers = self.assignment.helpers
        spelled = self._helper_key()
        name = spelled if spelled and spelled in self.data else "accepted_families"
        if helpers is None:
            if name in self.data:
                raise self.fail((name,), f"{name} is set but assignment {self.assignment.name} has no helper "
                                "functions", "expected no accepted_families in this rubric")
            return ()
        known = helpers.names
        value = self.data.get(name, [helpers.default.name])
        key = (name,)
        expected = f"expected a non-empty list of: {', '.join(known)}"
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"{name} = {value!r} is not a non-empty list", expected)
        for item in value:
            if item not in known:
                hint = _closest(item, known) if isinstance(item, str) else ""
                raise self.fail(key, f"{name} contains unknown {helpers.function} {item!r}{hint}", expected)
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
        known = settings_by_name()  # each limit's one definition (grader.sandbox.limits)
        values: dict[str, int | float] = {}
        for name, value in table.items():
            setting = known.get(name)
            if setting is None:
                raise self.fail(("limits", name), f"unknown key {name!r} in [limits]",
                                _expected_one_of(name, tuple(known)))
            try:
                values[name] = setting.check(value, origin)
            except SettingError as exc:
                raise self.fail(("limits", name), f"[limits] {name} = {value!r} is not valid",
                                f"expected {setting.expected}") from exc
        return Limits().merged(values, origin)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _closest(word: str, choices: tuple[str, ...]) -> str:
    match = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _expected_one_of(word: str, choices: tuple[str, ...]) -> str:
    return f"expected one of: {', '.join(choices)}{_closest(word, choices)}"


def parse_rubric(text: str, path: str, folder: Traversable | None = None,
                 assignment: Assignment | None = None) -> Rubric:
    """Parse and validate rubric ``text``; ``path`` names the file in messages, and files the rubric
    names are looked up in ``folder`` (by default the folder of ``path``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RubricError.from_toml_error(path, exc) from exc
    return _Validator(data, text, path, folder, assignment).rubric()
