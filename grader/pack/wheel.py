"""Wheels and zips the grader writes: a student pack, the full grader inside a Gradescope autograder.

Hand-written with :mod:`zipfile` rather than built by setuptools or ``pip wheel``: a pack must hold
exactly the files chosen for it (the test that greps an installed pack for reference code relies on
it), and both must build offline in well under a second, without a build backend run over a copy of
the source tree (``pip wheel`` needs the index for its build isolation; this machine's setuptools has
no ``wheel``). The format needed is small (the binary distribution format, PEP 427): the files,
``*.dist-info/METADATA``, ``WHEEL``, ``entry_points.txt`` and ``RECORD`` (each file's urlsafe-base64
SHA-256 and size). Zips are reproducible: sorted members, one fixed timestamp, Unix modes kept.
"""
from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: One fixed timestamp for every member: the same inputs give the same bytes.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
EXECUTABLE, REGULAR = 0o100755, 0o100644
TAG = "py3-none-any"

DISTRIBUTION = "numpy-nn-grader-pack"


def normalized(name: str) -> str:
    """A distribution name as a wheel's file name spells it (PEP 427: runs of -_. become _, lower case)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def record_hash(data: bytes) -> str:
    """A RECORD line's hash field: ``sha256=`` and the urlsafe base64 digest without padding."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def reproducible_zip(files: Mapping[str, bytes], executable: Iterable[str] = ()) -> bytes:
    """A zip of ``files`` (sorted, fixed time, deflated); members named in ``executable`` get mode 0755."""
    runnable = set(executable)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.create_system = 3  # Unix: external_attr carries the mode
            info.external_attr = (EXECUTABLE if name in runnable else REGULAR) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()


def wheel_bytes(stem: str, contents: Mapping[str, bytes], generator: str) -> tuple[str, bytes]:
    """The wheel ``<stem>-py3-none-any.whl`` of ``contents`` (package files and ``<stem>.dist-info/`` metadata
    but for ``WHEEL`` and ``RECORD``, which are written here): its file name and bytes."""
    info = f"{stem}.dist-info"
    members = dict(contents)
    members[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: {generator}\nRoot-Is-Purelib: true\n"
                                f"Tag: {TAG}\n").encode("ascii")
    record = [f"{name},{record_hash(data)},{len(data)}" for name, data in sorted(members.items())]
    members[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode("utf-8")
    return f"{stem}-{TAG}.whl", reproducible_zip(members)


def wheel_prefix() -> str:
    """How every pack's file name starts (an older pack in the same folder is replaced)."""
    return normalized(DISTRIBUTION)


def metadata(version: str, summary: str, requires: Sequence[str], description: str) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {DISTRIBUTION}", f"Version: {version}", f"Summary: {summary}",
             "Requires-Python: >=3.11", *(f"Requires-Dist: {r}" for r in requires),
             "Description-Content-Type: text/markdown", "", description]
    return "\n".join(lines) + "\n"


def entry_points(assignment: str) -> str:
    """The pack's command, its pytest plugin, and the assignment it offers (``grader.assignment.ENTRY_POINTS``)."""
    return ("[console_scripts]\ngrader = grader.cli:run\n\n[pytest11]\ngrader = grader.integrations.pytest_plugin\n\n"
            f"[grader.assignments]\n{assignment} = grader.pack.installed:load_packed\n")


def write_wheel(out: Path, version: str, files: Iterable[tuple[str, bytes]], metadata_text: str,
                entry_points_text: str) -> Path:
    """Write a pack's wheel into ``out`` (atomically: a half-written wheel never has the ``.whl`` name)."""
    stem = f"{wheel_prefix()}-{version}"
    contents = dict(files)
    contents[f"{stem}.dist-info/METADATA"] = metadata_text.encode("utf-8")
    contents[f"{stem}.dist-info/entry_points.txt"] = entry_points_text.encode("utf-8")
    name, data = wheel_bytes(stem, contents, "grader pack")
    target = out / name
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target
