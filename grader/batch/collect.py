"""Collect stage: find every submission in the paths given to ``grader grade PATH... --out DIR``.

A PATH is a notebook, a folder (walked recursively) or a zip archive as an LMS
exports it, possibly holding further zips (a student who zipped their notebook
inside the Canvas export). Only ``*.ipynb`` files are submissions; editor and
OS litter (``.ipynb_checkpoints/``, ``__MACOSX/``, hidden files, AppleDouble
``._*``) is skipped silently. Every other file found is listed, with why it was
not graded, in ``Collection.skipped`` (a ``.pdf`` or ``.py`` upload, the notebooks
of a submission other than the one graded, an earlier Blackboard attempt), so
nothing a student uploaded vanishes without a word.

Nothing is kept in memory: each notebook is read once, in chunks, to hash it
(the hash is what a re-run compares) and to see which graded functions it
defines; a :class:`Submission` keeps only a :class:`NotebookRef` (the file, or
the archive and the members leading to it), and its bytes are read again when
it is graded. A class of any size costs the collect stage a few hundred bytes
per notebook.

Archives are read with :mod:`zipfile` and never extracted, so a member called
``../x.ipynb`` or ``/etc/x.ipynb`` is harmless; its name is still kept out of the
submission's ``id``. An archive inside an archive is copied, as it is
decompressed, to an anonymous temporary file (in memory only while small), never
held whole in memory. Zip bombs are bounded: a notebook may not be larger than
:data:`MAX_NOTEBOOK_BYTES` (declared in its header *and* counted while reading),
archives nest at most :data:`MAX_ZIP_DEPTH` deep, an archive may hold at most
:data:`MAX_ARCHIVE_MEMBERS` members (read from its end record before its
directory is parsed), and at most :data:`MAX_ARCHIVE_BYTES` are decompressed per
top-level archive, nested archives included. The whole run is bounded the same
way: :data:`MAX_RUN_ARCHIVE_BYTES` decompressed and :data:`MAX_RUN_MEMBERS`
members, over every archive given.

Nothing one student did stops the batch: a corrupt archive, an encrypted or
oversized member, an unreadable file each become a :class:`Problem` (a row
with status "error" in the report), one per submission (see below). When a
budget runs out, every submission it cuts is a Problem naming the limit; an
archive given as a PATH that the run's budget no longer reaches is one.
Only a PATH that does not exist, or is neither a notebook, a folder nor a zip,
raises :class:`CollectError`: that is the instructor's typo, and grading the
rest would hide it.

Who submitted what comes from the LMS's naming (the outermost path part that
matches a pattern decides), and so does who they are in that LMS
(``Submission.identity``, ``grader.integrations.lms.Identity``: the ids its grade
import matches on):

* Moodle: ``Firstname Lastname_123456_assignsubmission_file_`` (a folder, or a
  prefix of the file name in flat exports) -> ``moodle-123456``; 123456 is the
  participant number of the grading worksheet's "Participant 123456";
* Gradescope: ``submission_<id>/`` folders, named through the
  ``submission_metadata.yml`` next to them when there is one (each submitter's
  ``:name:``, ``:sid:`` and ``:email:``) -> ``gs-<id>``;
* Blackboard: ``<Assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>_<file>`` on a
  file or a zip, with the attempt's receipt ``…_attempt_<time>.txt`` beside it
  naming the student (``Name: Jane Doe (jdoe)``) and settling where a username
  with "_" begins -> ``bb-<username>``. Only a student's latest attempt is graded,
  as Blackboard grades the last attempt;
* Canvas: ``lastfirst_[LATE_]12345_67890_name.ipynb`` or
  ``lastfirst_12345_name.ipynb`` on a notebook or a zip, never a folder.
  To keep names like ``lab_2_nn.ipynb`` or ``project_2024_final.ipynb``
  plain, both numbers need 3 digits or more, and a student id without a
  submission id after it needs 5 -> ``canvas-12345`` (12345 is the Canvas user
  id, 67890 the submission id, ``LATE_`` sets ``identity.late``);
* otherwise "plain": the path relative to the PATH given.

An LMS submission that holds files but no notebook at all is one error row whose
sentence says what it holds ("Jane Doe submitted report.pdf and nn.py, no .ipynb
notebook; ask the student to upload the notebook").

One submission, one row. All the notebooks of one LMS submission (the same
Canvas student id, Moodle submission or Gradescope submission in one PATH) and
all those of one archive found inside a PATH (a student's own zip) are one
submission, graded from one notebook, chosen by :func:`_choose`:

1. the one that defines the most of the assignment's graded functions (the
   ``names`` given to :func:`collect`, e.g. ``activation``, ``d_activation``,
   ``forward`` and ``backward``: ``def name(`` in its cells);
2. among those, the one named like the assignment's template (the rubric's
   ``template``, e.g. ``simple_nn_seed.ipynb``), when exactly one is;
3. otherwise no notebook is guessed: the submission is one error row that
   names how many notebooks it holds and which, so the student can be asked to
   resubmit one.

The chosen notebook's report says which notebooks were not graded, those that
could not be read (damaged, encrypted, too large) included. A submission that a
budget cut short, or none of whose notebooks could be read, is one error row
too: grading what was read could grade the wrong notebook. Notebooks given
directly, found in folders or in an archive given as a PATH (a class export) are
each a submission of their own (a folder of notebooks is how an instructor lays
out a class).

``id`` is used as a file name in the output folder and by ``--resume``, so it is
a pure function of the inputs: safe characters only, at most
:data:`MAX_ID_LENGTH` long, and unique ignoring case (macOS and Windows file
systems do not tell ``Alice`` from ``alice``).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import stat
import tempfile
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, BinaryIO, Literal

from grader.errors import EXIT_CANNOT_GRADE, GraderError
from grader.integrations.lms import (
    BlackboardReceipt,
    Identity,
    Person,
    parse_blackboard_receipt,
    parse_gradescope_submitters,
    safe_identity,
)
from grader.untrusted_text import safe_text

#: Largest notebook read, from a zip member or from disk (declared and actual size).
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
#: Largest ``.py`` file carried beside a notebook from an archive (a helper module, not data).
MAX_COMPANION_BYTES = 1 << 20
#: A module a notebook can import: a plain name ending in .py.
_MODULE_FILE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.py")
#: Most archives in one chain: ``class.zip!a.zip!b.zip`` is 3; a zip inside that is not opened.
MAX_ZIP_DEPTH = 3
#: Most bytes decompressed from one top-level archive, nested archives and their members included.
MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024
#: Most members (files and folders) in one top-level archive, nested archives' members included.
#: A Canvas export of 1,000 students with three files each is 3,000.
MAX_ARCHIVE_MEMBERS = 20_000
#: Most bytes decompressed from all the archives of one run: three 1 GB zip bombs are not read
#: whole, one after the other, and no class export comes near it.
MAX_RUN_ARCHIVE_BYTES = 4 * 1024 * 1024 * 1024
#: Most archive members over the whole run.
MAX_RUN_MEMBERS = 100_000
#: Longest ``Submission.id``.
MAX_ID_LENGTH = 100
#: Longest file name appended to tell apart two submissions that would share an id.
MAX_SUFFIX_LENGTH = 40
#: Chunk size when reading a member, so an oversized one is abandoned early.
READ_CHUNK = 1024 * 1024
#: A nested archive is copied to a temporary file; up to this size the copy stays in memory.
SPOOL_IN_MEMORY = 8 * 1024 * 1024
#: Other notebooks named in one error row or one note before "and N more".
MAX_NAMES_SHOWN = 5

GRADESCOPE_METADATA = "submission_metadata.yml"
#: Largest Blackboard attempt receipt read (a few lines of text, and the student's comment).
MAX_RECEIPT_BYTES = 256 * 1024

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
TOO_MANY_MEMBERS = (
    "{source} has {count} members, over the limit of {limit} for one archive, so it was not opened; "
    "extract it and pass the folder instead."
)
NOT_COLLECTED = "{source} was not collected because {why}; {fix}."
WHY_ARCHIVE_BYTES = "{archive} reached the limit of {limit} decompressed from one archive"
WHY_ARCHIVE_MEMBERS = "{archive} reached the limit of {limit} members in one archive"
WHY_RUN_BYTES = "this run reached its limit of {limit} decompressed from archives"
WHY_RUN_MEMBERS = "this run reached its limit of {limit} archive members"
FIX_ARCHIVE = "extract the archive and pass the folder instead"
FIX_RUN = "grade the remaining archives in a separate run"
# One submission, several notebooks (see "One submission, one row" above).
AMBIGUOUS = (
    "{source} holds {count} notebooks ({names}) and none of them is clearly the one to grade ({why}); "
    "ask the student to submit only the notebook to grade."
)
# {functions}: the graded functions, "activation, d_activation, forward and backward" (``_listed``).
WHY_TIED = "{tied} of them define the same {defined} of {functions}"
WHY_NONE = "none defines {functions}"  # joined with "or"
WHY_NONE_UNNAMED = "no graded functions were named to choose by"
CHOSEN = (
    "This submission holds {count} notebooks: {name} was graded because {why} "
    "(not graded: {names})."
)
CHOSEN_MOST = "it defines the most of {functions}"
CHOSEN_NAMED = "it is named like the assignment ({template})"
CHOSEN_ONLY = "it is the only one that could be read"
UNREADABLE_ALL = (
    "{source} holds {count} notebooks ({names}) and none could be read (the first: {first}); "
    "ask the student to submit them again."
)
# An LMS submission with no notebook at all: one error row (status error, blank grade).
NO_NOTEBOOK = "{who} submitted {files}, no .ipynb notebook; ask the student to upload the notebook."
NO_FILES = ("{who} submitted no file (Blackboard's receipt {receipt} lists none); "
            "ask the student to upload the notebook.")
# Why a file found in the inputs was not graded (``Collection.skipped``): a phrase, no final period.
SKIPPED_NOT_NOTEBOOK = "not a notebook ({kind}): only .ipynb files are graded"
SKIPPED_COMPANION = "a Python module beside a notebook: that notebook's cells may import it; not graded on its own"
SKIPPED_NOT_CHOSEN = "another notebook of the same submission, {chosen}, was graded"
SKIPPED_EARLIER_ATTEMPT = "an earlier Blackboard attempt ({when}); the latest attempt ({latest}) was graded"
SKIPPED_UNREADABLE = "{why}; another notebook of the same submission was graded"
# Reading a collected notebook again to grade it.
CHANGED = "{source} changed or disappeared after it was collected ({reason}); run the same grader grade command again."

_SKIPPED_DIRS = frozenset({"__macosx", ".ipynb_checkpoints"})
_MOODLE = re.compile(r"^(?P<student>.+?)_(?P<key>\d+)_assignsubmission_(?:file|onlinetext)_(?P<rest>.*)$", re.S)
_GRADESCOPE = re.compile(r"^submission_(?P<key>\d+)$", re.I)
_CANVAS = re.compile(
    r"^(?P<student>[a-z][a-z0-9]*)_(?P<late>late_)?(?P<key>\d{3,})_(?:(?P<sub>\d{3,})_)?(?P<rest>.+)$", re.I | re.S
)
#: Blackboard Learn's "Assignment File Download": ``<Assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>``,
#: then ``_<original file name>`` for a file, ``.txt`` for the attempt's receipt.
_BLACKBOARD = re.compile(r"^(?P<prefix>.+)_attempt_(?P<when>\d{4}(?:-\d{2}){5})(?:_(?P<rest>.+)|\.txt)?$", re.S)
_BLACKBOARD_RECEIPT = re.compile(r"^(?P<prefix>.+)_attempt_(?P<when>\d{4}(?:-\d{2}){5})\.txt$", re.S)
#: Digits the student id needs when no submission id follows it, so ``project_2024_x`` is not Canvas.
_CANVAS_MIN_LONE_ID = 5
#: Notebook names that say nothing about the student (the assignment's own name, Jupyter's defaults).
_GENERIC_NAME = re.compile(r"^(simple_nn.*|submission.*|untitled.*|notebook\d*|assignment.*|main)$", re.I)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DRIVE = re.compile(r"^[A-Za-z]:$")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)
#: Bytes of one chunk kept to find a definition that spans two chunks (more for a name over 32 bytes).
_DEF_OVERLAP = 64


@dataclass(frozen=True)
class _Definitions:
    """How the graded functions' definitions are found in a notebook file's bytes."""

    #: ``def activation(`` and the others, as they appear in a notebook file's JSON. It starts with a
    #: literal, so ``re`` finds candidates at memory speed; what precedes one is checked by ``_line_start``.
    pattern: re.Pattern[bytes]
    #: Bytes of one chunk kept for the next (``_DEF_OVERLAP``, or more for a long name).
    overlap: int


def _definition_pattern(names: Sequence[str]) -> _Definitions | None:
    """What finds ``def name(`` for each of ``names``; None without names (nothing to find)."""
    if not names:
        return None
    encoded = [name.encode() for name in names]
    pattern = re.compile(rb"def[ \t]+(" + b"|".join(re.escape(name) for name in encoded) + rb")[ \t]*\(")
    return _Definitions(pattern, max(_DEF_OVERLAP, 32 + max(len(name) for name in encoded)))


def _listed(names: Sequence[str], conjunction: str) -> str:
    """``a, b, c and d`` (or ``or``)."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


class CollectError(GraderError):
    """A path given to ``grader grade`` does not exist or is not something that holds notebooks."""

    exit_code = EXIT_CANNOT_GRADE

    @classmethod
    def from_missing(cls, path: str) -> CollectError:
        return cls(PATH_MISSING.format(path=_one_line(path)))

    @classmethod
    def from_unsupported(cls, path: str) -> CollectError:
        return cls(PATH_UNSUPPORTED.format(path=_one_line(path)))


class NotebookChanged(GraderError):
    """A collected notebook could not be read again, or its bytes are not those collected."""


@dataclass(frozen=True)
class NotebookRef:
    """Where one notebook's bytes are, so they can be read when it is graded and not before.

    Small and picklable: this, not the bytes, is what a batch hands its grading processes.
    """

    #: The file on disk: the notebook itself, or the outermost archive holding it.
    path: str
    #: Each archive member on the way, as (position in its archive's directory, name): nested
    #: archives first, the notebook last. The position tells apart two members of the same name.
    members: tuple[tuple[int, str], ...] = ()
    #: Hex SHA-256 of the bytes collected; reading them again checks it.
    sha256: str = ""
    #: Their length.
    size: int = 0
    #: ``.py`` members beside it in its (innermost) archive, as (position, name): what its cells may import
    #: as in Jupyter. Only for a notebook alone in its archive folder (one student's files).
    companions: tuple[tuple[int, str], ...] = ()

    @property
    def source(self) -> str:
        """Where it is, as reports show it: the path, then archive members joined with "!"."""
        return "!".join((self.path, *(name for _, name in self.members)))

    def read(self) -> bytes:
        """The notebook's bytes, read now with the collect stage's limits; NotebookChanged if they
        cannot be read or are not the bytes collected (the file was replaced meanwhile)."""
        try:
            if not self.members:
                data = _read_disk(self.path, MAX_NOTEBOOK_BYTES)
            else:
                with _open_chain(self.path, self.members[:-1]) as archive:
                    position, name = self.members[-1]
                    info = _member_at(archive, position, name)
                    data = _read_member(archive, info, self.source, MAX_NOTEBOOK_BYTES, None)
        except _MemberError as exc:
            raise self._changed(_clause(exc.message)) from None
        except Exception as exc:  # noqa: BLE001 - a file replaced by anything at all: zipfile raises many types
            raise self._changed(_reason(exc)) from None
        if self.sha256 and hashlib.sha256(data).hexdigest() != self.sha256:
            raise self._changed("its bytes are not those collected")
        return data

    def read_companions(self) -> dict[str, bytes]:
        """The companion modules' bytes by file name (bounded like the notebook); {} when they cannot be read
        (an import in the notebook then fails, and its warning says so)."""
        if not self.companions or not self.members:
            return {}
        files: dict[str, bytes] = {}
        try:
            with _open_chain(self.path, self.members[:-1]) as archive:
                for position, name in self.companions:
                    info = _member_at(archive, position, name)
                    files[name.replace("\\", "/").rsplit("/", 1)[-1]] = _read_member(
                        archive, info, self.source, MAX_COMPANION_BYTES, None)
        except Exception:  # noqa: BLE001 - a companion is a convenience: a missing one fails only its import
            return {}
        return files

    def _changed(self, reason: str) -> NotebookChanged:
        # The source and the reason name files a student named: shown as safe text, like every source.
        return NotebookChanged(safe_text(CHANGED.format(source=_one_line(self.source), reason=reason)))


@dataclass(frozen=True)
class Submission:
    """One notebook to grade, with who submitted it and where it came from (not its bytes: see ``data``)."""

    #: Stable, file-name-safe (``[A-Za-z0-9._-]``, at most 100 characters), unique in its collection.
    id: str
    #: Best-effort student name or login from the LMS naming; "" if unknown.
    student: str
    #: Where it was found, for reports: a path, or archive members joined with "!".
    source: str
    #: Hex SHA-256 of the notebook's bytes.
    sha256: str
    #: "canvas", "moodle", "gradescope" or "plain".
    lms: str
    #: Where to read the bytes when the notebook is graded.
    ref: NotebookRef
    #: When the submission held several notebooks: one sentence saying which was graded and why.
    note: str = ""
    #: Who it is in the LMS (user id, submission id, email, SID, lateness), as the export's naming says.
    identity: Identity = field(default_factory=Identity)

    @property
    def data(self) -> bytes:
        """The notebook file's bytes, read now (they are not kept: see ``NotebookRef.read``)."""
        return self.ref.read()


@dataclass(frozen=True)
class Problem:
    """Something that could not be read or graded; it becomes a row with status "error"."""

    source: str
    message: str
    #: The submission's id, when the problem is one whole submission (several notebooks, none chosen);
    #: "" for an input that could not be read (the batch names its row after ``source``).
    id: str = ""
    #: Whose it is, when known.
    student: str = ""
    #: "canvas", "moodle", "blackboard", "gradescope", or "" when no LMS named it.
    lms: str = ""
    #: Who it is in the LMS, when the problem is one whole LMS submission.
    identity: Identity = field(default_factory=Identity)


@dataclass(frozen=True)
class Skipped:
    """A file found in the inputs that is not graded, and why: a non-notebook upload, a notebook of a
    submission whose other notebook was graded, an earlier attempt. (Litter such as checkpoints and
    ``__MACOSX`` is skipped silently; a submission that cannot be graded at all is a Problem.)"""

    source: str
    #: A phrase, e.g. "not a notebook (.pdf): only .ipynb files are graded".
    reason: str


@dataclass
class Collection:
    """Every submission found (sorted by source), every input that could not be read, and every other
    file that is not graded (sorted by source)."""

    submissions: list[Submission]
    problems: list[Problem]
    skipped: list[Skipped] = field(default_factory=list)


def collect(paths: Sequence[str | os.PathLike[str]], template: str | None = None,
            names: Sequence[str] = ()) -> Collection:
    """Find every notebook in ``paths``; raise CollectError only for a path that cannot hold any.

    ``template``: the file name of the notebook handed to students (the rubric's ``template``), and
    ``names``: the assignment's graded functions, in its order; both are used to choose between
    the notebooks of one submission (see the module docstring). Without names, only the template's
    name can choose.
    """
    collector = _Collector(os.path.basename(template) if template else None, tuple(names))
    for index, path in enumerate(paths):
        collector.add_path(index, os.fspath(path))
    return collector.result()


# --- walking inputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scan:
    """What reading a notebook once, without keeping it, tells: its size, hash and graded definitions."""

    size: int
    sha256: str
    defines: frozenset[str]


@dataclass
class _Found:
    """A notebook (or a nested archive that could not be opened) seen but not named yet."""

    source: str
    #: Path parts relative to the PATH given; archives appear as parts (``alice.zip``).
    parts: tuple[str, ...]
    #: Where to read it; None when it could not be read (``message`` says why).
    ref: NotebookRef | None
    defines: frozenset[str]
    #: Which PATH it came from, to find a Gradescope metadata file in the same input.
    input_index: int
    #: How many of ``parts`` lead to the outermost archive found *inside* a PATH (a student's own
    #: zip), or 0: that archive's notebooks are one submission.
    upload: int = 0
    #: Why it could not be read: a Problem's sentence.
    message: str = ""
    #: When a budget left it out: (why, fix) for NOT_COLLECTED.
    budget: tuple[str, str] | None = None


@dataclass(frozen=True)
class _Other:
    """A file that is not a notebook (nor an archive, nor LMS metadata), seen while walking: it is listed
    as not graded, and it is what an LMS submission without a notebook is reported to hold."""

    source: str
    #: As ``_Found.parts``.
    parts: tuple[str, ...]
    input_index: int
    upload: int = 0
    #: A Blackboard attempt receipt: it belongs to a submission but is not something the student uploaded.
    receipt: bool = False


@dataclass(frozen=True)
class _Name:
    """Who a file belongs to, from the LMS's naming of its path (``_Collector._name``)."""

    #: "canvas", "moodle", "blackboard", "gradescope" or "plain".
    lms: str
    student: str
    #: What groups one LMS submission's files: a student or submission id, or the path for "plain".
    key: str
    #: The file's own name without the LMS's prefix (and without .ipynb), e.g. "simple_nn".
    original: str
    identity: Identity = field(default_factory=Identity)
    #: Blackboard's attempt time (``2024-03-01-12-00-00``): only a submission's latest attempt is graded.
    attempt: str = ""


class _BudgetExceeded(Exception):
    """A budget ran out at ``member``; ``why`` and ``fix`` fill NOT_COLLECTED."""

    def __init__(self, member: str, why: str, fix: str) -> None:
        super().__init__(member)
        self.member = member
        self.why = why
        self.fix = fix
        #: Set once the archive where it ran out has made its rows: outer archives then make rows
        #: only for their members after the one that holds it.
        self.recorded = False


class _RunBudget:
    """What all the archives of one run may still cost: decompressed bytes and members."""

    def __init__(self) -> None:
        self.bytes_left = MAX_RUN_ARCHIVE_BYTES
        self.members_left = MAX_RUN_MEMBERS
        #: Why the run stopped opening archives, once it has: (why, fix).
        self.spent: tuple[str, str] | None = None


class _Budget:
    """What one top-level archive, nested archives included, may still cost (and the run with it)."""

    def __init__(self, run: _RunBudget, archive: str) -> None:
        self.run = run
        self.archive = archive
        self.bytes_left = MAX_ARCHIVE_BYTES
        self.members_left = MAX_ARCHIVE_MEMBERS

    def take(self, n: int, member: str) -> None:
        """Count ``n`` decompressed bytes; _BudgetExceeded (naming ``member``) if either budget is spent."""
        if n > self.bytes_left:
            raise _BudgetExceeded(member, WHY_ARCHIVE_BYTES.format(archive=_one_line(self.archive),
                                                                    limit=_size(MAX_ARCHIVE_BYTES)), FIX_ARCHIVE)
        if n > self.run.bytes_left:
            self.run.spent = (WHY_RUN_BYTES.format(limit=_size(MAX_RUN_ARCHIVE_BYTES)), FIX_RUN)
            raise _BudgetExceeded(member, *self.run.spent)
        self.bytes_left -= n
        self.run.bytes_left -= n

    def take_members(self, n: int, member: str) -> None:
        """Count an archive's ``n`` members before its directory is walked."""
        if n > self.members_left:
            raise _BudgetExceeded(member, WHY_ARCHIVE_MEMBERS.format(archive=_one_line(self.archive),
                                                                      limit=MAX_ARCHIVE_MEMBERS), FIX_ARCHIVE)
        if n > self.run.members_left:
            self.run.spent = (WHY_RUN_MEMBERS.format(limit=MAX_RUN_MEMBERS), FIX_RUN)
            raise _BudgetExceeded(member, *self.run.spent)
        self.members_left -= n
        self.run.members_left -= n


class _MemberError(Exception):
    """One archive member or file could not be read; ``message`` is the Problem's sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Collector:
    def __init__(self, template: str | None = None, names: tuple[str, ...] = ()) -> None:
        self.template = template
        self.names = names
        self._definitions = _definition_pattern(names)
        self.found: list[_Found] = []
        self.problems: list[Problem] = []
        #: (input index, folder parts) -> {submission id: its submitters}
        self.metadata: dict[tuple[int, tuple[str, ...]], dict[str, tuple[Person, ...]]] = {}
        #: (input index, folder parts, "<assignment>_<username>", attempt time) -> that attempt's receipt
        self.receipts: dict[tuple[int, tuple[str, ...], str, str], BlackboardReceipt] = {}
        #: Files that are neither notebooks nor archives, for the listing of what was not graded.
        self.others: list[_Other] = []
        self._seen_files: set[str] = set()
        self.run = _RunBudget()
        #: ``.py`` members by (archive path, archive members, folder inside it): companions of a notebook there.
        self.modules: dict[tuple[str, tuple[tuple[int, str], ...], tuple[str, ...]], list[tuple[int, str]]] = {}

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
        """Group, choose, name, id and sort what was found. Names and sources are a student's choice (a
        file name, an archive member, Gradescope metadata): they leave here as ``safe_text``, so a bidi
        override, an escape or an undecodable byte in a file name is shown as text in every report and
        never breaks one. (A NotebookRef keeps the real path: it is read, never shown.)"""
        self.found.sort(key=lambda f: f.source)  # stable: equal sources keep walk order
        self.others.sort(key=lambda o: o.source)
        named = [self._name(f.parts, f.input_index) for f in self.found]
        other_named = [self._name(o.parts, o.input_index) for o in self.others]
        units = _units([(f.input_index, f.parts, f.upload) for f in self.found], named, "notebook")
        other_units = _units([(o.input_index, o.parts, o.upload) for o in self.others], other_named, "other")
        skipped = self._latest_attempts_only(units, other_units, named, other_named)
        rows: list[_Row] = []
        for members in units.values():
            rows.append(self._unit_row(members, named, skipped))
        folders = Counter(f.source.rpartition("/")[0] for f in self.found)
        notebook_folders = {folder for folder, count in folders.items() if count == 1}  # as grade.companion_files
        for key, indexes in other_units.items():
            files = [j for j in indexes if not self.others[j].receipt]
            skipped += [Skipped(self.others[j].source, _not_notebook(self.others[j].parts[-1], self.others[j].source,
                                                                    notebook_folders)) for j in files]
            if key not in units and key[0] == "lms":  # an LMS submission without a single notebook
                rows.append(self._no_notebook_row(indexes, files, other_named))
        ids = iter(_assign_ids([row.item for row in rows if row.item is not None]))
        submissions = []
        problems = [Problem(safe_text(p.source), safe_text(p.message)) for p in self.problems]
        for row in rows:
            sid = next(ids) if row.item is not None else ""
            student = safe_text(row.name.student)
            lms = "" if row.name.lms == "plain" else row.name.lms
            if row.index is None:
                problems.append(Problem(safe_text(row.source), safe_text(row.sentence), sid, student if sid else "",
                                        lms if sid else "", safe_identity(row.name.identity) if sid else Identity()))
                continue
            found = self.found[row.index]
            assert found.ref is not None and row.item is not None  # a row with a notebook to grade has an id
            submissions.append(Submission(
                id=sid, student=student, source=safe_text(found.source), sha256=found.ref.sha256,
                lms=row.item[0], ref=self._with_companions(found.ref), note=safe_text(row.sentence),
                identity=safe_identity(row.name.identity),
            ))
        submissions.sort(key=lambda s: s.source)
        problems.sort(key=lambda p: p.source)
        skipped = sorted((Skipped(safe_text(k.source), safe_text(k.reason)) for k in skipped), key=lambda k: k.source)
        return Collection(submissions=submissions, problems=problems, skipped=skipped)

    def _unit_row(self, members: list[int], named: list[_Name], skipped: list[Skipped]) -> _Row:
        """The row of one submission that holds notebooks: the one to grade, or an error row saying why
        none is; the notebooks not graded are added to ``skipped``."""
        entries = [self.found[i] for i in members]
        readable = [i for i in members if self.found[i].ref is not None]
        unreadable = [_leaf(f) for f in entries if f.ref is None]
        name = named[members[0]]
        lms, key = name.lms, name.key
        first = entries[0]
        label = _unit_label([f.source for f in entries])
        if lms == "plain" and first.upload:  # a student's own archive: named after it
            key = "/".join(first.parts[:first.upload])
        standalone = lms == "plain" and not first.upload  # one notebook given or found on its own
        cut = next((f.budget for f in entries if f.budget is not None), None)
        if cut is not None or not readable:
            if len(entries) == 1:
                sentence = first.message
            elif cut is not None:  # part of it is missing: grading the rest could grade the wrong notebook
                sentence = NOT_COLLECTED.format(source=label, why=cut[0], fix=cut[1])
            else:
                sentence = UNREADABLE_ALL.format(source=label, count=len(entries), names=_names(unreadable),
                                                 first=_clause(first.message))
            item = None if standalone else (lms, key, "", label)
            return _Row(item, None, _one_line(sentence), name, label if item is not None else first.source)
        chosen, sentence = _choose([self.found[i] for i in readable], [named[i].original for i in readable],
                                   self.template, unreadable, label, self.names)
        if chosen is None:
            return _Row((lms, key, "", label), None, sentence, name, label)
        graded = readable[chosen]
        for i in members:
            if i != graded:
                other = self.found[i]
                why = (SKIPPED_NOT_CHOSEN.format(chosen=_leaf(self.found[graded])) if other.ref is not None
                       else SKIPPED_UNREADABLE.format(why=_about_it(_clause(other.message), other.source)))
                skipped.append(Skipped(other.source, why))
        name = named[graded]
        return _Row((name.lms, name.key, name.original, self.found[graded].source), graded, sentence, name,
                    self.found[graded].source)

    def _no_notebook_row(self, indexes: list[int], files: list[int], other_named: list[_Name]) -> _Row:
        """The error row of an LMS submission that holds files but no notebook: it says what it holds."""
        name = other_named[indexes[0]]
        label = _unit_label([self.others[j].source for j in indexes])
        who = name.identity.name or name.student or label
        if files:
            shown = [other_named[j].original or self.others[j].parts[-1] for j in files]
            if len(shown) > MAX_NAMES_SHOWN:
                listed = f"{', '.join(shown[:MAX_NAMES_SHOWN])} and {len(shown) - MAX_NAMES_SHOWN} more files"
            else:
                listed = _listed(shown, "and")
            sentence = NO_NOTEBOOK.format(who=who, files=listed)
        else:
            sentence = NO_FILES.format(who=who, receipt=self.others[indexes[0]].parts[-1])
        return _Row((name.lms, name.key, "", label), None, _one_line(sentence), name, label)

    def _latest_attempts_only(self, units: dict[tuple[object, ...], list[int]],
                              other_units: dict[tuple[object, ...], list[int]],
                              named: list[_Name], other_named: list[_Name]) -> list[Skipped]:
        """Keep only the latest attempt of each Blackboard student (Blackboard grades the last attempt by
        default); the files of earlier attempts are returned as skipped (their receipts are not: the
        student did not upload them)."""
        skipped: list[Skipped] = []
        for key in dict.fromkeys([*units, *other_units]):
            if key[0] != "lms" or key[2] != "blackboard":
                continue
            attempts = ({named[i].attempt for i in units.get(key, [])}
                        | {other_named[j].attempt for j in other_units.get(key, [])})
            if len(attempts) < 2:
                continue
            latest = max(attempts)
            earlier = [(self.found[i].source, named[i].attempt) for i in units.get(key, [])]
            earlier += [(self.others[j].source, other_named[j].attempt) for j in other_units.get(key, [])
                        if not self.others[j].receipt]
            skipped += [Skipped(source, SKIPPED_EARLIER_ATTEMPT.format(when=_attempt_time(attempt),
                                                                       latest=_attempt_time(latest)))
                        for source, attempt in earlier if attempt != latest]
            for groups, names in ((units, named), (other_units, other_named)):
                if key in groups:
                    kept = [i for i in groups[key] if names[i].attempt == latest]
                    if kept:
                        groups[key] = kept
                    else:
                        del groups[key]
        return skipped

    def _with_companions(self, ref: NotebookRef) -> NotebookRef:
        """``ref`` with the ``.py`` members of its archive folder, when no other notebook shares that folder."""
        if not ref.members:
            return ref
        folder = tuple(_member_parts(ref.members[-1][1])[:-1])
        modules = self.modules.get((ref.path, ref.members[:-1], folder), [])
        sharing = [f for f in self.found if f.ref is not None and f.ref.path == ref.path
                   and f.ref.members[:-1] == ref.members[:-1]
                   and tuple(_member_parts(f.ref.members[-1][1])[:-1]) == folder]
        if not modules or len(sharing) != 1:
            return ref
        return dataclasses.replace(ref, companions=tuple(modules[:32]))

    def _missing(self, source: str, parts: tuple[str, ...], index: int, upload: int, message: str,
                 budget: tuple[str, str] | None = None) -> None:
        """A notebook or nested archive that could not be read: it still belongs to its submission."""
        self.found.append(_Found(source=source, parts=parts, ref=None, defines=frozenset(), input_index=index,
                                 upload=upload, message=_one_line(message), budget=budget))

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
                        self.metadata[(index, rel_parts)] = parse_gradescope_submitters(data.decode("utf-8", "replace"))
                elif (receipt := _BLACKBOARD_RECEIPT.match(name)) is not None:
                    self._receipt(index, rel_parts, receipt, functools.partial(_read_disk, path, MAX_RECEIPT_BYTES),
                                  _Other(path, parts, index, receipt=True))
                else:
                    self.others.append(_Other(path, parts, index))

    def _receipt(self, index: int, folder: tuple[str, ...], name: re.Match[str], read: Callable[[], bytes],
                 other: _Other) -> None:
        """A Blackboard attempt receipt: it names the student (``Name: Jane Doe (jdoe)``). One that cannot
        be read or is not a receipt only costs the name; it still belongs to its attempt."""
        self.others.append(other)
        try:
            receipt = parse_blackboard_receipt(read().decode("utf-8", "replace"))
        except _MemberError:
            return
        if receipt is not None:
            self.receipts[(index, folder, name["prefix"], name["when"])] = receipt

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
            scan = _scan_disk(path, MAX_NOTEBOOK_BYTES, self._definitions)
        except _MemberError as exc:
            self._missing(source, parts, index, 0, exc.message)
            return
        ref = NotebookRef(path=path, sha256=scan.sha256, size=scan.size)
        self.found.append(_Found(source=source, parts=parts, ref=ref, defines=scan.defines, input_index=index))

    def _disk_archive(self, index: int, path: str, source: str, parts: tuple[str, ...]) -> None:
        """A zip on disk: the top of a chain. A zip found in a folder given is a student's own (``parts``
        non-empty: what goes wrong with it is that submission's row); one given as a PATH is a class export."""
        if not self._first_visit(path):
            return

        def problem(template: str, budget: tuple[str, str] | None = None, **values: object) -> None:
            message = template.format(source=source, **values)
            if parts:
                self._missing(source, parts, index, len(parts), message, budget)
            else:
                self.problems.append(Problem(source, _one_line(message)))

        if not os.path.isfile(path):  # a FIFO or a broken link found while walking a folder
            problem(UNREADABLE, reason="it is not a regular file")
            return
        if self.run.spent is not None:
            problem(NOT_COLLECTED, self.run.spent, why=self.run.spent[0], fix=self.run.spent[1])
            return
        try:
            with open(path, "rb") as fh:
                count = _declared_members(fh)
                if count is not None and count > MAX_ARCHIVE_MEMBERS:
                    problem(TOO_MANY_MEMBERS, count=count, limit=MAX_ARCHIVE_MEMBERS)
                    return
            archive = zipfile.ZipFile(path)
        except OSError as exc:
            problem(UNREADABLE, reason=_reason(exc))
            return
        except Exception as exc:  # noqa: BLE001 - zipfile raises many types for a damaged central directory
            problem(ZIP_CORRUPT, reason=_reason(exc))
            return
        chain = _Chain(path=path, members=(), parts=parts, upload=len(parts))
        with archive:
            try:
                budget = _Budget(self.run, source)
                budget.take_members(len(archive.infolist()), source)
                self._walk_archive(index, archive, source, chain, 1, budget)
            except _BudgetExceeded as exc:
                if not exc.recorded:
                    problem(NOT_COLLECTED, (exc.why, exc.fix), why=exc.why, fix=exc.fix)

    # -- archives

    def _walk_archive(self, index: int, archive: zipfile.ZipFile, source: str, chain: _Chain, depth: int,
                      budget: _Budget) -> None:
        """Collect one open archive; ``depth`` is 1 for a top-level archive.

        When a budget runs out, every notebook and nested archive of this archive not collected
        because of it becomes a Problem naming the limit, and the outer archives add theirs."""
        infos = archive.infolist()
        for position, info in enumerate(infos):
            try:
                self._member(index, archive, position, info, source, chain, depth, budget)
            except _BudgetExceeded as exc:
                rest = infos[position + 1:] if exc.recorded else infos[position:]
                for later in rest:
                    name = _member_name(later)
                    parts = _member_parts(name)
                    if not later.is_dir() and parts and not any(_skipped(p) for p in parts) and (
                            _is_notebook_name(parts[-1]) or _is_zip_name(parts[-1])):
                        full = (*chain.parts, *parts)
                        upload = chain.upload or (len(full) if _is_zip_name(parts[-1]) else 0)
                        later_source = f"{source}!{name}"
                        self._missing(later_source, full, index, upload,
                                      NOT_COLLECTED.format(source=later_source, why=exc.why, fix=exc.fix),
                                      (exc.why, exc.fix))
                exc.recorded = True
                raise

    def _member(self, index: int, archive: zipfile.ZipFile, position: int, info: zipfile.ZipInfo, source: str,
                chain: _Chain, depth: int, budget: _Budget) -> None:
        name = _member_name(info)
        parts = _member_parts(name)
        if info.is_dir() or not parts or any(_skipped(p) for p in parts):
            return
        member_source = f"{source}!{name}"
        leaf = parts[-1]
        if _is_notebook_name(leaf):
            try:
                with _opened_member(archive, info, member_source, MAX_NOTEBOOK_BYTES, budget) as fh:
                    scan = _scan(fh, member_source, MAX_NOTEBOOK_BYTES, budget, self._definitions)
            except _MemberError as exc:
                self._missing(member_source, (*chain.parts, *parts), index, chain.upload, exc.message)
                return
            ref = NotebookRef(path=chain.path, members=(*chain.members, (position, info.filename)),
                              sha256=scan.sha256, size=scan.size)
            self.found.append(_Found(source=member_source, parts=(*chain.parts, *parts), ref=ref,
                                     defines=scan.defines, input_index=index, upload=chain.upload))
        elif _is_zip_name(leaf):
            self._nested_archive(index, archive, position, info, member_source, chain, parts, depth + 1, budget)
        elif leaf == GRADESCOPE_METADATA:
            try:
                data = _read_member(archive, info, member_source, MAX_NOTEBOOK_BYTES, budget)
            except _MemberError as exc:
                self.problems.append(Problem(member_source, exc.message))
                return
            key = (index, (*chain.parts, *parts[:-1]))
            self.metadata[key] = parse_gradescope_submitters(data.decode("utf-8", "replace"))
        elif (receipt := _BLACKBOARD_RECEIPT.match(leaf)) is not None:
            self._receipt(index, (*chain.parts, *parts[:-1]), receipt,
                          lambda: _read_member(archive, info, member_source, MAX_RECEIPT_BYTES, budget),
                          _Other(member_source, (*chain.parts, *parts), index, chain.upload, receipt=True))
        else:
            if _MODULE_FILE.fullmatch(leaf) and info.file_size <= MAX_COMPANION_BYTES:
                self.modules.setdefault((chain.path, chain.members, tuple(parts[:-1])), []).append(
                    (position, info.filename))
            self.others.append(_Other(member_source, (*chain.parts, *parts), index, chain.upload))

    def _nested_archive(
        self, index: int, archive: zipfile.ZipFile, position: int, info: zipfile.ZipInfo, source: str,
        chain: _Chain, parts: tuple[str, ...], depth: int, budget: _Budget,
    ) -> None:
        inner_parts = (*chain.parts, *parts)
        upload = chain.upload or len(inner_parts)  # the outermost archive inside a PATH: a student's own

        def problem(message: str) -> None:
            self._missing(source, inner_parts, index, upload, message)

        if depth > MAX_ZIP_DEPTH:
            problem(TOO_DEEP.format(source=source, depth=MAX_ZIP_DEPTH))
            return
        try:
            spool = _spool_member(archive, info, source, budget)
        except _MemberError as exc:
            problem(exc.message)
            return
        with spool:
            count = _declared_members(spool)
            if count is not None and count > MAX_ARCHIVE_MEMBERS:
                problem(TOO_MANY_MEMBERS.format(source=source, count=count, limit=MAX_ARCHIVE_MEMBERS))
                return
            try:
                inner = zipfile.ZipFile(spool)
            except Exception as exc:  # noqa: BLE001 - see _disk_archive
                problem(ZIP_CORRUPT.format(source=source, reason=_reason(exc)))
                return
            inner_chain = _Chain(path=chain.path, members=(*chain.members, (position, info.filename)),
                                 parts=inner_parts, upload=upload)
            with inner:
                budget.take_members(len(inner.infolist()), source)
                self._walk_archive(index, inner, source, inner_chain, depth, budget)

    # -- naming

    def _name(self, parts: tuple[str, ...], input_index: int) -> _Name:
        """Who the file at ``parts`` (relative to PATH number ``input_index``) belongs to, from the LMS's
        naming: the outermost part that matches a pattern decides (see the module docstring)."""
        leaf_stem = _stem(parts[-1])
        for i, part in enumerate(parts):
            bare = _stem(part)
            is_leaf = i == len(parts) - 1
            if m := _MOODLE.match(bare):
                original = _stem(m["rest"]) if is_leaf and m["rest"] else leaf_stem
                student = m["student"].strip()
                return _Name("moodle", student, m["key"], original,
                             Identity(user_id=m["key"], people=(Person(student),)))
            if (m := _GRADESCOPE.match(bare)) and not is_leaf:
                people = self.metadata.get((input_index, parts[:i]), {}).get(m["key"], ())
                student = ", ".join(label for label in (p.name or p.email for p in people) if label)
                return _Name("gradescope", student, m["key"], leaf_stem,
                             Identity(submission_id=m["key"], people=people))
            # Blackboard and Canvas name files, never folders: only the file or an archive can carry it.
            if not (is_leaf or _is_zip_name(part)):
                continue
            if m := _BLACKBOARD.match(bare):
                return self._blackboard_name(m, parts[:i], input_index, _stem(m["rest"]) if is_leaf and m["rest"]
                                             else leaf_stem)
            m = _CANVAS.match(bare)
            if m and (m["sub"] is not None or len(m["key"]) >= _CANVAS_MIN_LONE_ID):
                original = _stem(m["rest"]) if is_leaf else leaf_stem
                identity = Identity(user_id=m["key"], submission_id=m["sub"] or "", people=(Person(m["student"]),),
                                    late=m["late"] is not None)
                return _Name("canvas", m["student"], m["key"], original, identity)
        if _GENERIC_NAME.match(leaf_stem) and len(parts) > 1:
            student = _stem(parts[-2])
        else:
            student = leaf_stem
        return _Name("plain", student, "/".join(parts), leaf_stem)

    def _blackboard_name(self, m: re.Match[str], folder: tuple[str, ...], input_index: int, original: str) -> _Name:
        """``<Assignment>_<username>_attempt_<time>``: the receipt of that attempt names the student and
        settles where the assignment's name ends (both may contain "_"); without it, the username is
        the last "_"-separated word."""
        prefix, when = m["prefix"], m["when"]
        receipt = self.receipts.get((input_index, folder, prefix, when))
        if receipt is not None and receipt.username and prefix.endswith("_" + receipt.username):
            username, assignment, student = receipt.username, prefix[: -len(receipt.username) - 1], receipt.name
        else:
            assignment, _, username = prefix.rpartition("_")
            student = receipt.name if receipt is not None else ""
        identity = Identity(user_id=username, submission_id=when, people=(Person(student or username),),
                            assignment=assignment)
        return _Name("blackboard", student or username, username, original, identity, attempt=when)


@dataclass(frozen=True)
class _Chain:
    """The archives leading to the one being walked: the file on disk and the members on the way."""

    path: str
    members: tuple[tuple[int, str], ...]
    #: Path parts of the archive being walked, relative to the PATH given.
    parts: tuple[str, ...]
    #: See ``_Found.upload``.
    upload: int


# --- one submission, one notebook ------------------------------------------------------------


def _units(items: list[tuple[int, tuple[str, ...], int]], named: list[_Name],
           alone: str) -> dict[tuple[object, ...], list[int]]:
    """The indexes of ``items`` (input index, path parts, upload) grouped into submissions, in order of
    their first file, by a key that is the same for notebooks and other files of one submission.

    One LMS submission (the same lms and key in one PATH) is one unit; so is one archive found
    inside a PATH (a student's own zip); any other file is a unit of its own (``(alone, index)``)."""
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, ((input_index, parts, upload), name) in enumerate(zip(items, named, strict=True)):  # one name per item
        if name.lms != "plain":
            unit: tuple[object, ...] = ("lms", input_index, name.lms, name.key)
        elif upload:
            unit = ("upload", input_index, parts[:upload])
        else:
            unit = (alone, i)
        groups.setdefault(unit, []).append(i)
    return groups


@dataclass(frozen=True)
class _Row:
    """One gradebook row in the making: a notebook to grade (``index``) or an error row (``sentence``)."""

    #: (lms, key, original name, source) for ``_assign_ids``; None for an input of its own that could not be read.
    item: tuple[str, str, str, str] | None
    #: The notebook to grade, in ``_Collector.found``; None for an error row.
    index: int | None
    #: The note for the report, or the error row's message.
    sentence: str
    name: _Name
    source: str


def _attempt_time(attempt: str) -> str:
    """``2024-03-01-12-00-00`` -> ``2024-03-01 12:00:00``."""
    return f"{attempt[:10]} {attempt[11:].replace('-', ':')}" if len(attempt) == 19 else attempt


def _not_notebook(leaf: str, source: str = "", notebook_folders: frozenset[str] | set[str] = frozenset()) -> str:
    """Why an uploaded file that is not a notebook was not graded (a module beside a notebook is one its cells
    may import: said so, not as if it were a wrong upload)."""
    suffix = os.path.splitext(leaf)[1].lower()
    if suffix == ".py" and source.rpartition("/")[0] in notebook_folders:
        return SKIPPED_COMPANION
    return SKIPPED_NOT_NOTEBOOK.format(kind=suffix if suffix else "no suffix")


def _choose(candidates: list[_Found], originals: list[str], template: str | None, unreadable: list[str],
            label: str, names: tuple[str, ...] = ()) -> tuple[int | None, str]:
    """Which of one submission's readable notebooks to grade, and the sentence saying why (see the
    module docstring): (position, note for its report), or (None, the error row's message).

    ``originals``: each notebook's own file name without the LMS's prefix (``_Collector._name``);
    ``unreadable``: the names of the submission's notebooks that could not be read; ``label``: where
    the submission is (``_unit_label``); ``names``: the graded functions, for the sentences."""
    count = len(candidates) + len(unreadable)
    missing = [f"{name} (unreadable)" for name in unreadable]
    if len(candidates) == 1:
        if not unreadable:
            return 0, ""
        return 0, CHOSEN.format(count=count, name=_leaf(candidates[0]), why=CHOSEN_ONLY, names=_names(missing))
    most = max(len(f.defines) for f in candidates)
    top = [i for i, f in enumerate(candidates) if len(f.defines) == most]
    why = CHOSEN_MOST.format(functions=_listed(names, "and"))
    by_template = False
    if len(top) > 1 and template:
        named = [i for i in top if originals[i].lower() == _stem(template).lower()]
        if len(named) == 1:
            top, why, by_template = named, CHOSEN_NAMED.format(template=template), True
    if len(top) == 1 and (most > 0 or by_template):
        chosen = top[0]
        others = [_leaf(f) for i, f in enumerate(candidates) if i != chosen] + missing
        return chosen, CHOSEN.format(count=count, name=_leaf(candidates[chosen]), why=why, names=_names(others))
    if most:
        reason = WHY_TIED.format(tied=len(top), defined=most, functions=_listed(names, "and"))
    else:
        reason = WHY_NONE.format(functions=_listed(names, "or")) if names else WHY_NONE_UNNAMED
    message = AMBIGUOUS.format(source=label, count=count,
                               names=_names([_leaf(f) for f in candidates] + missing), why=reason)
    return None, _one_line(message)


def _leaf(found: _Found) -> str:
    return found.parts[-1]


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    return shown + (f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else "")


def _clause(message: str) -> str:
    """A Problem's sentence cut to what is wrong, without what to do about it."""
    return message.split("; ")[0].rstrip(".")


def _about_it(clause: str, source: str) -> str:
    """A Problem's clause about ``source`` ("x.zip!a.ipynb is password-protected") said of "it", for a
    list that already names the file ("it is password-protected")."""
    shown = _one_line(source)
    return "it" + clause[len(shown):] if clause.startswith(shown + " ") else clause


def _unit_label(sources: list[str]) -> str:
    """Where a submission of several notebooks is: what their sources share, ``*`` where they differ."""
    if len(sources) == 1:
        return sources[0]
    common = os.path.commonprefix(sources)  # noqa: RUF071 - by character on purpose: "*" marks where they differ
    return common if common.endswith(("/", "!", os.sep)) else common + "*"


# --- reading bytes -------------------------------------------------------------------------


def _read_disk(path: str, limit: int) -> bytes:
    """A file's bytes, refusing non-regular files (a FIFO would block) and files over ``limit``."""
    with _opened_disk(path, limit) as fh:
        try:
            return _read_capped(fh, path, limit, None, path)
        except OSError as exc:
            raise _MemberError(UNREADABLE.format(source=_one_line(path), reason=_reason(exc))) from None


def _scan_disk(path: str, limit: int, definitions: _Definitions | None = None) -> _Scan:
    """A file's size, hash and graded definitions, read in chunks and not kept."""
    with _opened_disk(path, limit) as fh:
        try:
            return _scan(fh, path, limit, None, definitions)
        except OSError as exc:
            raise _MemberError(UNREADABLE.format(source=_one_line(path), reason=_reason(exc))) from None


class _opened_disk:
    """``open(path, "rb")`` for a regular file no larger than ``limit``; _MemberError otherwise."""

    def __init__(self, path: str, limit: int) -> None:
        shown = _one_line(path)
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise _MemberError(UNREADABLE.format(source=shown, reason="it is not a regular file"))
            if st.st_size > limit:
                raise _MemberError(TOO_LARGE.format(source=shown, size=_size(st.st_size), limit=_size(limit)))
            self.fh = open(path, "rb")  # noqa: SIM115 - this class is the context manager; __exit__ closes it
        except OSError as exc:
            raise _MemberError(UNREADABLE.format(source=shown, reason=_reason(exc))) from None

    def __enter__(self) -> BinaryIO:
        return self.fh

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


class _opened_member:
    """``archive.open(info)`` after the checks that need no reading: encryption, declared size and
    the budget; a damaged member's errors while reading become _MemberError."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, limit: int | None,
                 budget: _Budget | None) -> None:
        shown = _one_line(source)
        self.source = source
        if info.flag_bits & 0x1:
            raise _MemberError(MEMBER_ENCRYPTED.format(source=shown))
        if limit is not None and info.file_size > limit:
            raise _MemberError(TOO_LARGE.format(source=shown, size=_size(info.file_size), limit=_size(limit)))
        if budget is not None and (info.file_size > budget.bytes_left or info.file_size > budget.run.bytes_left):
            budget.take(info.file_size, source)  # its declared size alone is over: raises, naming the budget
        try:
            self.fh = archive.open(info)
        except Exception as exc:  # noqa: BLE001 - see _damaged
            raise _damaged(exc, shown) from None

    def __enter__(self) -> IO[bytes]:
        return self.fh

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> Literal[False]:
        self.fh.close()
        if exc is not None and not isinstance(exc, (_MemberError, _BudgetExceeded)) and isinstance(exc, Exception):
            raise _damaged(exc, _one_line(self.source)) from None
        return False


def _damaged(exc: BaseException, shown: str) -> _MemberError:
    """zlib, bz2, lzma, CRC and header errors all mean "damaged"; zipfile says "encrypted" in a RuntimeError."""
    if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        return _MemberError(MEMBER_ENCRYPTED.format(source=shown))
    return _MemberError(MEMBER_DAMAGED.format(source=shown, reason=_reason(exc)))


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, limit: int | None, budget: _Budget | None
) -> bytes:
    """A member's bytes, checking encryption, declared size, actual size and the archive budget.

    ``limit`` None means only the budget limits the size (nested archives).
    """
    with _opened_member(archive, info, source, limit, budget) as fh:
        return _read_capped(fh, source, limit, budget, source)


def _chunks(fh: IO[bytes], source: str, limit: int | None, budget: _Budget | None, member: str) -> Iterator[bytes]:
    """Chunks of ``fh``; stop as soon as more than ``limit`` bytes (or the budget) would be needed."""
    total = 0
    while True:
        want = READ_CHUNK if limit is None else min(READ_CHUNK, limit + 1 - total)
        chunk = fh.read(max(want, 1))
        if not chunk:
            return
        total += len(chunk)
        if budget is not None:
            budget.take(len(chunk), _one_line(member))
        if limit is not None and total > limit:
            raise _MemberError(
                TOO_LARGE.format(source=_one_line(source), size=f"more than {_size(limit)}", limit=_size(limit))
            )
        yield chunk


def _read_capped(fh: IO[bytes], source: str, limit: int | None, budget: _Budget | None, member: str) -> bytes:
    """Read in chunks; stop as soon as more than ``limit`` bytes (or the budget) would be needed."""
    return b"".join(_chunks(fh, source, limit, budget, member))


def _scan(fh: IO[bytes], source: str, limit: int, budget: _Budget | None,
          definitions: _Definitions | None = None) -> _Scan:
    """Hash ``fh`` and find its graded definitions (``_definition_pattern``), a chunk at a time: nothing is kept."""
    digest = hashlib.sha256()
    size = 0
    defines: set[str] = set()
    tail = b""
    for chunk in _chunks(fh, source, limit, budget, source):
        digest.update(chunk)
        size += len(chunk)
        if definitions is None:
            continue
        window = tail + chunk
        found = definitions.pattern.finditer(window)
        defines.update(m.group(1).decode() for m in found if _line_start(window, m.start()))
        tail = window[-definitions.overlap:]
    return _Scan(size=size, sha256=digest.hexdigest(), defines=frozenset(defines))


def _line_start(data: bytes, at: int) -> bool:
    """Whether ``def`` at ``at`` starts a statement in a notebook's JSON: a cell's line starts after a
    quote (a list of lines) or an escaped newline (one string), possibly indented."""
    before = data[max(0, at - 2):at]
    return before[-1:] in (b'"', b" ", b"\t", b"\n") or before == b"\\n" or before == b"\\t"


def _spool_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str,
                  budget: _Budget | None) -> IO[bytes]:
    """A nested archive, decompressed into an anonymous temporary file (kept in memory only while
    small), counted against ``budget``: zipfile needs to seek, and a nested archive held whole in
    memory would cost as much as it decompresses to."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - returned open, or closed below
    try:
        with _opened_member(archive, info, source, None, budget) as fh:
            for chunk in _chunks(fh, source, None, budget, source):
                spool.write(chunk)
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


class _open_chain:
    """The archive at the end of ``members`` inside the zip at ``path``, open (for NotebookRef.read).

    The last archive file opened is kept open by the process (a pool process reads one class
    export's notebooks one after another, and parsing its directory each time would cost more
    than reading the notebook)."""

    def __init__(self, path: str, members: tuple[tuple[int, str], ...]) -> None:
        self.path = path
        self.members = members
        self._opened: list[IO[bytes] | zipfile.ZipFile] = []

    def __enter__(self) -> zipfile.ZipFile:
        try:
            archive = _cached_archive(self.path)
            for position, name in self.members:
                info = _member_at(archive, position, name)
                spool = _spool_member(archive, info, f"{self.path}!{name}", None)
                self._opened.append(spool)
                archive = zipfile.ZipFile(spool)
                self._opened.append(archive)
            return archive
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        for handle in reversed(self._opened):
            handle.close()
        self._opened.clear()


_ARCHIVE_CACHE: dict[str, tuple[tuple[int, int, int], zipfile.ZipFile]] = {}


def _cached_archive(path: str) -> zipfile.ZipFile:
    """The zip at ``path``, its directory parsed once per process while the file is unchanged."""
    st = os.stat(path)
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _ARCHIVE_CACHE.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    for _, old in _ARCHIVE_CACHE.values():
        old.close()
    _ARCHIVE_CACHE.clear()
    with open(path, "rb") as fh:
        count = _declared_members(fh)
    if count is not None and count > MAX_ARCHIVE_MEMBERS:
        raise ValueError(f"it has {count} members")
    archive = zipfile.ZipFile(path)
    _ARCHIVE_CACHE[path] = (key, archive)
    return archive


def _member_at(archive: zipfile.ZipFile, position: int, name: str) -> zipfile.ZipInfo:
    """The member at ``position`` in the archive's directory, which must still be called ``name``."""
    infos = archive.infolist()
    if not 0 <= position < len(infos) or infos[position].filename != name:
        raise KeyError(f"{name} is no longer where it was in the archive")
    return infos[position]


def _declared_members(fh: IO[bytes]) -> int | None:
    """How many members a zip's end record declares, read before zipfile parses its directory
    (which costs memory for every member); None when it cannot be read (zipfile then says why)."""
    try:
        record = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # zipfile's own reader, zip64 included
        fh.seek(0)
    except (OSError, ValueError, AttributeError):
        return None
    if not record:
        return None
    return int(record[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]


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
        body = {"canvas": "canvas", "moodle": "moodle", "gradescope": "gs", "blackboard": "bb"}[lms] + "-" + _safe(key)
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
    for base, (_, key, original, source) in zip(bases, items, strict=True):  # bases: one per item
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

    Several submitters (a group) are joined with ", "; a submitter without a name is named by their
    email. The whole of each submitter (name, email, SID) is ``parse_gradescope_submitters``'s.
    """
    return {sub_id: ", ".join(label for label in (p.name or p.email for p in people) if label)
            for sub_id, people in parse_gradescope_submitters(text).items()}
