"""The rubric a student pack carries: the instructor's, with only the released checks.

Its points add up to the released checks' points (``max_score`` is recomputed), a ``requires`` naming a
check left out is dropped, and ``visibility`` is dropped (everything left is shown). Written with a small
TOML writer of its own: the standard library reads TOML but cannot write it, and a rubric holds only
strings, numbers, booleans and flat lists, which do not justify a dependency every student installs.
"""
from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _key(name: str) -> str:
    return name if name and set(name) <= _BARE_KEY else _string(name)


def _string(text: str) -> str:
    # A JSON string with non-ASCII kept as is is a valid TOML basic string (the same escapes).
    return json.dumps(text, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be written to a rubric")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ValueError(f"a {type(value).__name__} cannot be written to a rubric")


def dumps(data: Mapping[str, Any]) -> str:
    """TOML for a rubric's shape: top-level values, then tables, then tables of tables (``[checks."id"]``)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for name, table in data.items():
        if not isinstance(table, Mapping):
            continue
        plain = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
        if plain or not table:
            lines += ["", f"[{_key(name)}]", *(f"{_key(k)} = {_value(v)}" for k, v in plain.items())]
        for sub, subtable in table.items():
            if isinstance(subtable, Mapping):
                lines += ["", f"[{_key(name)}.{_key(sub)}]",
                          *(f"{_key(k)} = {_value(v)}" for k, v in subtable.items())]
    return "\n".join(lines) + "\n"


def student_rubric(text: str, kept: Sequence[str], note: str) -> str:
    """The rubric ``text`` reduced to the ``kept`` checks, with ``note`` as its opening comment."""
    data = tomllib.loads(text)
    checks = {cid: dict(table) for cid, table in data.get("checks", {}).items() if cid in kept}
    for table in checks.values():
        table.pop("visibility", None)
        if "requires" in table:
            table["requires"] = [r for r in table["requires"] if r in kept]
    data["checks"] = checks
    total = float(sum(float(t.get("points", 0)) for t in checks.values()))
    data["max_score"] = int(total) if total.is_integer() else total
    comment = "".join(f"# {line}\n" for line in note.splitlines())
    return comment + dumps(data)
