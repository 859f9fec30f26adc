"""Resource limits for one submission, each defined once, here, and validated with where its value came from.

Every field of :class:`Limits` carries what is said about it (``limit(...)`` puts
it in the field's metadata): its command-line flag and metavar, its unit, its
help text; whether it must be a whole number follows from its default's type.
:func:`settings` lists them as :class:`Setting` objects, and everything that
accepts a limit is generated from that list: ``grader``'s command-line options
(``grader.cli``), the pytest plugin's options and ini keys
(``grader.integrations.pytest_plugin``) and the rubric's ``[limits]`` table
(``grader.rubric``). A limit added here is an option everywhere, checked by the
one rule of :meth:`Setting.check`.

Like pytest-timeout, a bad value is reported with its origin ("the command line
(--cell-timeout)", "rubric simple_nn.toml [limits]", "default") and what was
expected, so the user knows what to fix.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

from grader.errors import SettingError

_DESCRIBED = "grader.limit"


@dataclass(frozen=True)
class _Described:
    flag: str
    metavar: str
    unit: str
    help: str


def limit(default: float, *, flag: str, metavar: str, unit: str, help: str) -> Any:
    """A field of :class:`Limits`: its default and what the options made from it say (see :class:`Setting`)."""
    return field(default=default, metadata={_DESCRIBED: _Described(flag, metavar, unit, help)})


@dataclass(frozen=True)
class Setting:
    """One limit as every front end sees it: read from its field of :class:`Limits` by :func:`settings`."""

    #: The field's name, also the rubric's ``[limits]`` key: ``cell_timeout_s``.
    name: str
    #: The built-in default; an ``int`` default means the value must be a whole number.
    default: float
    #: The command-line flag: ``--cell-timeout`` (the pytest plugin's is ``--grader-cell-timeout``).
    flag: str
    #: What the help shows for the value: ``S``.
    metavar: str
    #: What the number counts, for messages: ``seconds``.
    unit: str
    #: One line for ``--help``: ``wall seconds per notebook cell``.
    help: str

    @property
    def whole(self) -> bool:
        return isinstance(self.default, int)

    @property
    def expected(self) -> str:
        """What a valid value is, for the "expected ..." part of a message."""
        return f"a positive {'whole ' if self.whole else ''}number of {self.unit}"

    def check(self, value: Any, origin: str) -> int | float:
        """``value`` as this limit's type; SettingError naming the setting, the value, ``origin`` and what
        was expected when it is not a positive (whole, for an int limit) finite number."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingError.from_bad_value(self.name, value, origin, self.expected)
        if not math.isfinite(value) or value <= 0:
            raise SettingError.from_bad_value(self.name, value, origin, self.expected)
        if self.whole and not float(value).is_integer():
            raise SettingError.from_bad_value(self.name, value, origin, self.expected)
        return int(value) if self.whole else float(value)

    def parse(self, text: str, origin: str) -> float:
        """A value typed as text (a command-line argument, an ini line), checked as :meth:`check` does.

        Returned as a float, as command-line overrides always were (a batch's fingerprint records
        them); ``Limits.merged`` turns it into the limit's type."""
        value: Any = text
        for number in (int, float):  # "-1" is shown as -1, not -1.0
            try:
                value = number(text)
                break
            except ValueError:
                continue
        self.check(value, origin)
        return float(value)

    def help_text(self) -> str:
        """``--help``'s line: what it limits, its rubric key and its built-in default."""
        return f"{self.help} (rubric [limits] {self.name}, default {self.default:g})"


@dataclass(frozen=True)
class Limits:
    #: Wall time for one notebook cell; the cell is stopped and the next one runs.
    cell_timeout_s: float = limit(10.0, flag="--cell-timeout", metavar="S", unit="seconds",
                                  help="wall seconds per notebook cell")
    #: Wall time for one call of a student function from a probe.
    call_timeout_s: float = limit(5.0, flag="--call-timeout", metavar="S", unit="seconds",
                                  help="wall seconds per function call")
    #: Wall time for the whole submission (execution and every probe).
    total_timeout_s: float = limit(120.0, flag="--total-timeout", metavar="S", unit="seconds",
                                   help="wall seconds per submission")
    #: CPU seconds for the sandbox process.
    cpu_time_s: float = limit(120.0, flag="--cpu-time", metavar="S", unit="CPU seconds",
                              help="CPU seconds of the sandbox")
    #: Address-space limit of the sandbox, in MiB.
    memory_mb: int = limit(2048, flag="--memory-mb", metavar="MB", unit="MiB", help="memory limit of the sandbox")
    #: KiB of student output kept for the report; the rest is counted and dropped.
    output_kb: int = limit(64, flag="--output-kb", metavar="KB", unit="KiB", help="printed output kept for the report")
    #: Largest file the sandbox may write, in MiB.
    file_size_mb: int = limit(64, flag="--file-size-mb", metavar="MB", unit="MiB",
                              help="largest file the sandbox may write")
    #: Most processes the sandbox may have at once (children included).
    max_processes: int = limit(64, flag="--max-processes", metavar="N", unit="processes",
                               help="processes the sandbox may run at once")

    def merged(self, values: Mapping[str, Any], origin: str) -> Limits:
        """Return a copy with ``values`` applied; reject unknown names and bad values, naming ``origin``."""
        known = settings_by_name()
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                continue
            if name not in known:
                raise SettingError.from_unknown(name, origin, sorted(known))
            changes[name] = known[name].check(value, origin)
        return replace(self, **changes)


@lru_cache(maxsize=1)
def settings() -> tuple[Setting, ...]:
    """Every limit, in the order of :class:`Limits`' fields."""
    defaults = Limits()
    return tuple(Setting(name=f.name, default=getattr(defaults, f.name), **asdict(f.metadata[_DESCRIBED]))
                 for f in fields(Limits))


@lru_cache(maxsize=1)
def settings_by_name() -> dict[str, Setting]:
    """:func:`settings` by name (the rubric's ``[limits]`` keys)."""
    return {setting.name: setting for setting in settings()}
