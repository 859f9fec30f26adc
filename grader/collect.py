"""Collect stage: find every submission in the paths given to ``grader grade PATH... --out DIR``.

A PATH is a notebook, a folder (walked recursively) or a zip archive as an LMS
exports it, possibly holding further zips (a student who zipped their notebook
inside the Canvas export). Only ``*.ipynb`` files are submissions; editor and
OS litter (``.ipynb_checkpoints/``, ``__MACOSX/``, hidden files, AppleDouble
``._*``) is skipped.

Archives are read in memory with :mod:`zipfile` and never extracted, so a
member called ``../x.ipynb`` or ``/etc/x.ipynb`` is harmless; its name is still
kept out of the submission's ``id``. Zip bombs are bounded three ways: a
notebook may not be larger than :data:`MAX_NOTEBOOK_BYTES` (declared in its
header *and* counted while reading, in chunks), archives nest at most
:data:`MAX_ZIP_DEPTH` deep, and at most :data:`MAX_ARCHIVE_BYTES` are
decompressed per top-level archive.

Nothing one student did stops the batch: a corrupt archive, an encrypted or
oversized member, an unreadable file each become a :class:`Problem` (a row
with status "error" in the report). Only a PATH that does not exist, or is
neither a notebook, a folder nor a zip, raises :class:`CollectError`: that is
the instructor's typo, and grading the rest would hide it.

Who submitted what comes from the LMS's naming (the outermost path part that
matches a pattern decides):

* Moodle: ``Firstname Lastname_123456_assignsubmission_file_`` (a folder, or a
  prefix of the file name in flat exports) -> ``moodle-123456``;
* Gradescope: ``submission_<id>/`` folders, named through the
  ``submission_metadata.yml`` next to them when there is one -> ``gs-<id>``;
* Canvas: ``lastfirst_[LATE_]12345_67890_name.ipynb`` or
  ``lastfirst_12345_name.ipynb`` on a notebook or a zip, never a folder.
  To keep names like ``lab_2_nn.ipynb`` or ``project_2024_final.ipynb``
  plain, both numbers need 3 digits or more, and a student id without a
  submission id after it needs 5 -> ``canvas-12345``;
* otherwise "plain": the path relative to the PATH given.

``id`` is used as a file name in the output folder and by ``--resume``, so it is
a pure function of the inputs: safe characters only, at most
:data:`MAX_ID_LENGTH` long, and unique ignoring case (macOS and Windows file
systems do not tell ``Alice`` from ``alice``).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from grader.errors import EXIT_CANNOT_GRADE, GraderError

#: Largest notebook read, from a zip member or from disk (declared and actual size).
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
#: Most archives in one chain: ``class.zip!a.zip!b.zip`` is 3; a zip inside that is not opened.
MAX_ZIP_DEPTH = 3
#: Most bytes decompressed from one top-level archive, nested archives and their members included.
MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024
#: Longest ``Submission.id``.
MAX_ID_LENGTH = 100
#: Longest file name appended to tell apart two submissions that would share an id.
MAX_SUFFIX_LENGTH = 40
#: Chunk size when reading a member, so an oversized one is abandoned early.
READ_CHUNK = 1024 * 1024

GRADESCOPE_METADATA = "submission_metadata.yml"

# CollectError: the PATH itself is wrong (exit code 2).
PATH_MISSING = "{path} does not exist; check the path given to grader grade."
PATH_UNSUPPORTED = (
    "{path} is not a notebook (.ipynb), a folder or a zip archive; "
    "pass notebooks, folders of them, or the LMS's export zip."
)

# Problem messages: one input could not be read; the rest of the batch is still collected.
UNREADABLE = "{source} cannot be read ({reason}); check that it exists and that you may read it."
ZIP_CORRUPT = "{source} is not a readable zip archive ({reason}); download or export it again."
MEMBER_DAMAGED = "{source} cannot be read from its archive ({reason}); download the export again or ask the student for the file."
MEMBER_ENCRYPTED = "{source} is password-protected; ask the student to submit it again without a password."
TOO_LARGE = (
    "{source} is {size}, over the {limit} limit for one notebook; "
    "ask the student to clear the outputs and submit again."
)
TOO_DEEP = (
    "{source} is a zip nested more than {depth} archives deep, so it was not opened; "
    "extract it by hand and pass the folder if it holds a submission."
)
ARCHIVE_BUDGET = (
    "{source}: reading stopped after {limit} of decompressed data, so {member} and the members after it were not collected; "
    "extract the archive and pass the folder instead."
)

_SKIPPED_DIRS = frozenset({"__macosx", ".ipynb_checkpoints"})
_MOODLE = re.compile(r"^(?P<student>.+?)_(?P<key>\d+)_assignsubmission_(?:file|onlinetext)_(?P<rest>.*)$", re.S)
_GRADESCOPE = re.compile(r"^submission_(?P<key>\d+)$", re.I)
_CANVAS = re.compile(
    r"^(?P<student>[a-z][a-z0-9]*)_(?:late_)?(?P<key>\d{3,})_(?:(?P<sub>\d{3,})_)?(?P<rest>.+)$", re.I | re.S
)
#: Digits the student id needs when no submission id follows it, so ``project_2024_x`` is not Canvas.
_CANVAS_MIN_LONE_ID = 5
#: Notebook names that say nothing about the student (the assignment's own name, Jupyter's defaults).
_GENERIC_NAME = re.compile(r"^(simple_nn.*|submission.*|untitled.*|notebook\d*|assignment.*|main)$", re.I)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DRIVE = re.compile(r"^[A-Za-z]:$")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)


class CollectError(GraderError):
    """A path given to ``grader grade`` does not exist or is not something that holds notebooks."""

    exit_code = EXIT_CANNOT_GRADE

    @classmethod
    def from_missing(cls, path: str) -> "CollectError":
        return cls(PATH_MISSING.format(path=_one_line(path)))

    @classmethod
    def from_unsupported(cls, path: str) -> "CollectError":
        return cls(PATH_UNSUPPORTED.format(path=_one_line(path)))


@dataclass(frozen=True)
class Submission:
    """One notebook to grade, with who submitted it and where it came from."""

    #: Stable, file-name-safe (``[A-Za-z0-9._-]``, at most 100 characters), unique in its collection.
    id: str
    #: Best-effort student name or login from the LMS naming; "" if unknown.
    student: str
    #: Where it was found, for reports: a path, or archive members joined with "!".
    source: str
    #: The notebook file's bytes.
    data: bytes = field(repr=False)
    #: Hex SHA-256 of ``data``.
    sha256: str
    #: "canvas", "moodle", "gradescope" or "plain".
    lms: str


@dataclass(frozen=True)
class Problem:
    """Something that could not be read; it becomes a row with status "error"."""

    source: str
    message: str


@dataclass
class Collection:
    """Every submission found (sorted by source), and every input that could not be read."""

    submissions: list[Submission]
    problems: list[Problem]


def collect(paths: Sequence[str | os.PathLike[str]]) -> Collection:
    """Find every notebook in ``paths``; raise CollectError only for a path that cannot hold any."""
    collector = _Collector()
    for index, path in enumerate(paths):
        collector.add_path(index, os.fspath(path))
    return collector.result()


# --- walking inputs ------------------------------------------------------------------------


@dataclass
class _Found:
    """A notebook read but not named yet."""

    source: str
    #: Path parts relative to the PATH given; archives appear as parts (``alice.zip``).
    parts: tuple[str, ...]
    data: bytes
    #: Which PATH it came from, to find a Gradescope metadata file in the same input.
    input_index: int


class _BudgetExceeded(Exception):
    def __init__(self, member: str) -> None:
        super().__init__(member)
        self.member = member


class _Budget:
    """Bytes that may still be decompressed from one top-level archive."""

    def __init__(self) -> None:
        self.remaining = MAX_ARCHIVE_BYTES

    def take(self, n: int, member: str) -> None:
        if n > self.remaining:
            raise _BudgetExceeded(member)
        self.remaining -= n


class _MemberError(Exception):
    """One archive member or file could not be read; ``message`` is the Problem's sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Collector:
    def __init__(self) -> None:
        self.found: list[_Found] = []
        self.problems: list[Problem] = []
        #: (input index, folder parts) -> {submission id: student}
        self.metadata: dict[tuple[int, tuple[str, ...]], dict[str, str]] = {}
        self._seen_files: set[str] = set()

    # -- top level

    def add_path(self, index: int, path: str) -> None:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in the path
            raise CollectError.from_missing(path) from None
        except OSError as exc:  # e.g. a folder on the way that may not be searched
            self._problem(path, UNREADABLE, reason=_reason(exc))
            return
        if stat.S_ISDIR(st.st_mode):
            self._walk_folder(index, path)
        elif not stat.S_ISREG(st.st_mode):
            raise CollectError.from_unsupported(path)
        elif _is_notebook_name(path):
            self._disk_notebook(index, path, path, (os.path.basename(path),))
        elif _is_zip_name(path):
            self._disk_archive(index, path, path, ())
        else:
            try:
                with open(path, "rb") as fh:
                    magic = fh.read(4)
            except OSError as exc:
                self._problem(path, UNREADABLE, reason=_reason(exc))
                return
            if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip saved without its .zip suffix
                raise CollectError.from_unsupported(path)
            self._disk_archive(index, path, path, ())

    def result(self) -> Collection:
        self.found.sort(key=lambda f: f.source)  # stable: equal sources keep walk order
        named = [self._name(f) for f in self.found]
        ids = _assign_ids([(lms, key, original, f.source) for f, (lms, _, key, original) in zip(self.found, named)])
        submissions = [
            Submission(
                id=sid, student=student, source=f.source, data=f.data,
                sha256=hashlib.sha256(f.data).hexdigest(), lms=lms,
            )
            for f, (lms, student, _, _), sid in zip(self.found, named, ids)
        ]
        problems = sorted(self.problems, key=lambda p: p.source)
        return Collection(submissions=submissions, problems=problems)

    def _problem(self, source: str, template: str, **values: object) -> None:
        self.problems.append(Problem(source=source, message=_one_line(template.format(source=source, **values))))

    # -- folders and files on disk

    def _walk_folder(self, index: int, root: str) -> None:
        def unreadable(exc: OSError) -> None:
            self._problem(exc.filename or root, UNREADABLE, reason=_reason(exc))

        for folder, dirnames, filenames in os.walk(root, onerror=unreadable):
            dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
            rel = os.path.relpath(folder, root)
            rel_parts = () if rel == os.curdir else tuple(rel.split(os.sep))
            for name in sorted(filenames):
                if _skipped(name):
                    continue
                path = os.path.join(folder, name)
                parts = (*rel_parts, name)
                if _is_notebook_name(name):
                    self._disk_notebook(index, path, path, parts)
                elif _is_zip_name(name):
                    self._disk_archive(index, path, path, parts)
                elif name == GRADESCOPE_METADATA:
                    try:
                        data = _read_disk(path, MAX_NOTEBOOK_BYTES)
                    except _MemberError as exc:
                        self.problems.append(Problem(path, exc.message))
                    else:
                        self.metadata[(index, rel_parts)] = parse_gradescope_metadata(data.decode("utf-8", "replace"))

    def _first_visit(self, path: str) -> bool:
        """The same file passed twice (or a folder and a file inside it) is collected once."""
        real = os.path.realpath(path)
        if real in self._seen_files:
            return False
        self._seen_files.add(real)
        return True

    def _disk_notebook(self, index: int, path: str, source: str, parts: tuple[str, ...]) -> None:
        if not self._first_visit(path):
            return
        try:
            data = _read_disk(path, MAX_NOTEBOOK_BYTES)
        except _MemberError as exc:
            self.problems.append(Problem(source, exc.message))
            return
        self.found.append(_Found(source=source, parts=parts, data=data, input_index=index))

    def _disk_archive(self, index: int, path: str, source: str, parts: tuple[str, ...]) -> None:
        if not self._first_visit(path):
            return
        if not os.path.isfile(path):  # a FIFO or a broken link found while walking a folder
            self._problem(source, UNREADABLE, reason="it is not a regular file")
            return
        try:
            archive = zipfile.ZipFile(path)
        except OSError as exc:
            self._problem(source, UNREADABLE, reason=_reason(exc))
            return
        except Exception as exc:  # noqa: BLE001 - zipfile raises many types for a damaged central directory
            self._problem(source, ZIP_CORRUPT, reason=_reason(exc))
            return
        with archive:
            try:
                self._walk_archive(index, archive, source, parts, 1, _Budget())
            except _BudgetExceeded as exc:
                self._problem(source, ARCHIVE_BUDGET, limit=_size(MAX_ARCHIVE_BYTES), member=exc.member)

    # -- archives

    def _walk_archive(
        self, index: int, archive: zipfile.ZipFile, source: str, prefix: tuple[str, ...], depth: int, budget: _Budget
    ) -> None:
        """Collect one open archive; ``depth`` is 1 for a top-level archive."""
        for info in archive.infolist():
            name = _member_name(info)
            parts = _member_parts(name)
            if info.is_dir() or not parts or any(_skipped(p) for p in parts):
                continue
            member_source = f"{source}!{name}"
            leaf = parts[-1]
            if _is_notebook_name(leaf):
                try:
                    data = _read_member(archive, info, member_source, MAX_NOTEBOOK_BYTES, budget)
                except _MemberError as exc:
                    self.problems.append(Problem(member_source, exc.message))
                    continue
                self.found.append(_Found(source=member_source, parts=(*prefix, *parts), data=data, input_index=index))
            elif _is_zip_name(leaf):
                self._nested_archive(index, archive, info, member_source, (*prefix, *parts), depth + 1, budget)
            elif leaf == GRADESCOPE_METADATA:
                try:
                    data = _read_member(archive, info, member_source, MAX_NOTEBOOK_BYTES, budget)
                except _MemberError as exc:
                    self.problems.append(Problem(member_source, exc.message))
                    continue
                key = (index, (*prefix, *parts[:-1]))
                self.metadata[key] = parse_gradescope_metadata(data.decode("utf-8", "replace"))

    def _nested_archive(
        self, index: int, archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str,
        parts: tuple[str, ...], depth: int, budget: _Budget,
    ) -> None:
        if depth > MAX_ZIP_DEPTH:
            self._problem(source, TOO_DEEP, depth=MAX_ZIP_DEPTH)
            return
        try:
            data = _read_member(archive, info, source, None, budget)
        except _MemberError as exc:
            self.problems.append(Problem(source, exc.message))
            return
        try:
            inner = zipfile.ZipFile(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - see _disk_archive
            self._problem(source, ZIP_CORRUPT, reason=_reason(exc))
            return
        with inner:
            self._walk_archive(index, inner, source, parts, depth, budget)

    # -- naming

    def _name(self, found: _Found) -> tuple[str, str, str, str]:
        """(lms, student, key, original file name) from the LMS's naming of the path."""
        parts = found.parts
        leaf_stem = _stem(parts[-1])
        for i, part in enumerate(parts):
            bare = _stem(part)
            is_leaf = i == len(parts) - 1
            if m := _MOODLE.match(bare):
                original = _stem(m["rest"]) if is_leaf and m["rest"] else leaf_stem
                return "moodle", m["student"].strip(), m["key"], original
            if (m := _GRADESCOPE.match(bare)) and not is_leaf:
                people = self.metadata.get((found.input_index, parts[:i]), {})
                return "gradescope", people.get(m["key"], ""), m["key"], leaf_stem
            # Canvas names files, never folders: only the notebook or an archive can carry it.
            m = _CANVAS.match(bare) if is_leaf or _is_zip_name(part) else None
            if m and (m["sub"] is not None or len(m["key"]) >= _CANVAS_MIN_LONE_ID):
                original = _stem(m["rest"]) if is_leaf else leaf_stem
                return "canvas", m["student"], m["key"], original
        if _GENERIC_NAME.match(leaf_stem) and len(parts) > 1:
            student = _stem(parts[-2])
        else:
            student = leaf_stem
        return "plain", student, "/".join(parts), leaf_stem


# --- reading bytes -------------------------------------------------------------------------


def _read_disk(path: str, limit: int) -> bytes:
    """A file's bytes, refusing non-regular files (a FIFO would block) and files over ``limit``."""
    shown = _one_line(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _MemberError(UNREADABLE.format(source=shown, reason="it is not a regular file"))
        if st.st_size > limit:
            raise _MemberError(TOO_LARGE.format(source=shown, size=_size(st.st_size), limit=_size(limit)))
        with open(path, "rb") as fh:
            return _read_capped(fh, path, limit, None, path)
    except OSError as exc:
        raise _MemberError(UNREADABLE.format(source=shown, reason=_reason(exc))) from None


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, limit: int | None, budget: _Budget
) -> bytes:
    """A member's bytes, checking encryption, declared size, actual size and the archive budget.

    ``limit`` None means only the budget limits the size (nested archives).
    """
    shown = _one_line(source)
    if info.flag_bits & 0x1:
        raise _MemberError(MEMBER_ENCRYPTED.format(source=shown))
    if limit is not None and info.file_size > limit:
        raise _MemberError(TOO_LARGE.format(source=shown, size=_size(info.file_size), limit=_size(limit)))
    if info.file_size > budget.remaining:
        raise _BudgetExceeded(_one_line(source))
    try:
        with archive.open(info) as fh:
            return _read_capped(fh, source, limit, budget, source)
    except (_MemberError, _BudgetExceeded):
        raise
    except Exception as exc:  # noqa: BLE001 - zlib, bz2, lzma, CRC and header errors all mean "damaged"
        if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
            raise _MemberError(MEMBER_ENCRYPTED.format(source=shown)) from None
        raise _MemberError(MEMBER_DAMAGED.format(source=shown, reason=_reason(exc))) from None


def _read_capped(fh: BinaryIO, source: str, limit: int | None, budget: _Budget | None, member: str) -> bytes:
    """Read in chunks; stop as soon as more than ``limit`` bytes (or the budget) would be needed."""
    chunks: list[bytes] = []
    total = 0
    while True:
        want = READ_CHUNK if limit is None else min(READ_CHUNK, limit + 1 - total)
        chunk = fh.read(max(want, 1))
        if not chunk:
            break
        total += len(chunk)
        if budget is not None:
            budget.take(len(chunk), _one_line(member))
        if limit is not None and total > limit:
            raise _MemberError(
                TOO_LARGE.format(source=_one_line(source), size=f"more than {_size(limit)}", limit=_size(limit))
            )
        chunks.append(chunk)
    return b"".join(chunks)


# --- names and paths -----------------------------------------------------------------------


def _is_notebook_name(name: str) -> bool:
    return name.lower().endswith(".ipynb")


def _is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip")


def _skipped(name: str) -> bool:
    """Hidden files and folders (AppleDouble ``._x`` included), checkpoints, macOS resource forks."""
    return name.startswith(".") or name.lower() in _SKIPPED_DIRS


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's name, repairing UTF-8 names stored without the UTF-8 flag (zipfile decodes them as cp437)."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name


def _member_parts(name: str) -> tuple[str, ...]:
    """Path parts of a member, with '.', '..', drive letters and empty parts dropped (never extracted anyway)."""
    parts = re.split(r"[/\\]+", name)
    return tuple(p for p in parts if p not in ("", ".", "..") and not _DRIVE.match(p))


def _stem(name: str) -> str:
    """A part without its .ipynb or .zip suffix."""
    lower = name.lower()
    for suffix in (".ipynb", ".zip"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return _one_line(text[0]) if text else type(exc).__name__


def _size(n: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


# --- ids -----------------------------------------------------------------------------------


def _safe(text: str) -> str:
    """ASCII letters, digits, '.', '_', '-' only; no leading or trailing '.', '_', '-'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _UNSAFE.sub("_", ascii_text).strip("._-")


def _base_id(lms: str, key: str) -> str:
    if lms == "plain":
        body = "-".join(s for s in (_safe(_stem(p)) for p in key.split("/")) if s)
    else:
        body = {"canvas": "canvas", "moodle": "moodle", "gradescope": "gs"}[lms] + "-" + _safe(key)
    if not body:
        body = "nb-" + _digest(key)
    if body.split(".")[0].upper() in _WINDOWS_RESERVED:
        body = "nb-" + body
    return _fit(body, key)


def _fit(text: str, key: str, reserve: int = 0) -> str:
    """At most MAX_ID_LENGTH - reserve characters.

    A cut id keeps its start and its end (usually the file name) and ends with
    a hash of ``key``, so two long ids that share their ends stay apart.
    """
    room = MAX_ID_LENGTH - reserve
    if len(text) <= room:
        return text
    keep = room - 11  # 11 = "-" + 10 hex digits
    tail = keep // 2
    head = keep - tail - 1  # 1 = the "-" between head and tail
    return text[:head].rstrip("._-") + "-" + text[-tail:].strip("._-") + "-" + _digest(key)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def _assign_ids(items: list[tuple[str, str, str, str]]) -> list[str]:
    """Unique ids (ignoring case) for (lms, key, original name, source), in the given (sorted) order.

    An id two submissions would share gets the original file name appended
    for both; if that is still taken, ``-2``, ``-3``... in order.
    """
    bases = [_base_id(lms, key) for lms, key, _, _ in items]
    counts = Counter(b.lower() for b in bases)
    taken: set[str] = set()
    ids = []
    for base, (_, key, original, source) in zip(bases, items):
        candidate = base
        if counts[base.lower()] > 1:
            name = _safe(original)[:MAX_SUFFIX_LENGTH].rstrip("._-")
            if name and not base.lower().endswith("-" + name.lower()) and base.lower() != name.lower():
                candidate = _fit(base, key + "/" + source, reserve=len(name) + 1) + "-" + name
        unique, n = candidate, 1
        while unique.lower() in taken:
            n += 1
            unique = _fit(candidate, key + "/" + source, reserve=len(str(n)) + 1) + f"-{n}"
        taken.add(unique.lower())
        ids.append(unique)
    return ids


# --- Gradescope metadata -------------------------------------------------------------------


def parse_gradescope_metadata(text: str) -> dict[str, str]:
    """``submission_metadata.yml`` -> {submission id: submitters' names}, best effort, no YAML library.

    Reads the shape Gradescope writes (Ruby symbols as keys)::

        submission_987:
          :submitters:
          - :name: Ann Lee
            :email: ann@example.edu
          :created_at: ...

    Several submitters (a group) are joined with ", "; a submitter without a
    name is named by their email. Lines it does not understand are ignored.
    """
    people: dict[str, list[dict[str, str]]] = {}
    current: str | None = None
    block_indent: int | None = None  # indent of ':submitters:' while inside that block
    for raw in text.splitlines():
        line = raw.rstrip().replace("\t", "  ")
        body = line.strip()
        if not body or body.startswith("#") or body in ("---", "..."):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            m = re.match(r"""^:?["']?submission_(\d+)["']?\s*:\s*(?:\{\s*\})?$""", body)
            current = m.group(1) if m else None
            block_indent = None
            if current is not None:
                people.setdefault(current, [])
            continue
        if current is None:
            continue
        if re.match(r"^:?submitters\s*:", body):
            block_indent = indent
            continue
        if block_indent is None:
            continue
        is_item = body.startswith("-")
        if indent < block_indent or (indent == block_indent and not is_item):
            block_indent = None
            continue
        if is_item:
            people[current].append({})
            body = body[1:].strip()
        m = re.match(r"^:?(name|email)\s*:\s*(.*)$", body)
        if m and people[current]:
            people[current][-1][m.group(1)] = _yaml_scalar(m.group(2))
    names = {}
    for sub_id, submitters in people.items():
        labels = [p.get("name") or p.get("email", "") for p in submitters]
        names[sub_id] = ", ".join(label for label in labels if label)
    return names


def _yaml_scalar(value: str) -> str:
    """A YAML scalar's text: quoted forms unquoted, a trailing comment and null dropped."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except ValueError:
            return value[1:-1]
        return decoded if isinstance(decoded, str) else value[1:-1]
    value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
    return "" if value in ("~", "null", "Null", "NULL") else value
