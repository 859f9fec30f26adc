"""Resource limits for one submission, validated with where each value came from.

Like pytest-timeout, a bad value is reported with its origin ("--cell-timeout",
"rubric simple_nn.toml [limits]", "default") so the user knows what to fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from grader.errors import SettingError


@dataclass(frozen=True)
class Limits:
    #: Wall time for one notebook cell; the cell is stopped and the next one runs.
    cell_timeout_s: float = 10.0
    #: Wall time for one call of a student function from a probe.
    call_timeout_s: float = 5.0
    #: Wall time for the whole submission (execution and every probe).
    total_timeout_s: float = 120.0
    #: CPU seconds for the sandbox process.
    cpu_time_s: float = 120.0
    #: Address-space limit of the sandbox, in MiB.
    memory_mb: int = 2048
    #: Bytes of student output kept for the report; the rest is counted and dropped.
    output_kb: int = 64
    #: Largest file the sandbox may write, in MiB.
    file_size_mb: int = 64
    #: Most processes the sandbox may have at once (children included).
    max_processes: int = 64

    def merged(self, values: dict[str, Any], origin: str) -> "Limits":
        """Return a copy with ``values`` applied; reject unknown names and bad values, naming ``origin``."""
        known = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                continue
            if name not in known:
                raise SettingError.from_unknown(name, origin, sorted(known))
            default = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SettingError.from_bad_value(name, value, origin, "a positive number")
            if not math.isfinite(value) or value <= 0:
                raise SettingError.from_bad_value(name, value, origin, "a positive number")
            if isinstance(default, int) and not float(value).is_integer():
                raise SettingError.from_bad_value(name, value, origin, "a positive whole number")
            changes[name] = type(default)(value)
        return replace(self, **changes)
