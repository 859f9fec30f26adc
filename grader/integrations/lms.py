"""Grades an LMS imports as they are, and who a submission belongs to in that LMS.

``grader grade --lms NAME`` writes, beside ``gradebook.csv``, the file that LMS's own grade import
reads. Each writer below is a pure function of plain rows (:class:`GradeRow`) and the assignment
(:class:`LmsAssignment`) to CSV text, and each is checked against the LMS's documentation or source,
cited beside it. What they share, and why:

* **one assignment column.** A column per rubric check would become one new assignment per check in
  the LMS (Canvas creates an assignment for every column it does not recognise, Blackboard a text
  column); the LMS gets the total, the gradebook and the reports keep the detail.
* **a blank grade, never 0, for a submission that could not be graded** (``score`` None): every one
  of these importers leaves a blank cell alone (Moodle skips it, Canvas sees no change), so an
  unreadable upload costs the student nothing until someone looks at it.
* **the LMS's own ids**, parsed from the names its export gives the files (``grader.batch.collect``):
  the LMS matches on them, not on names, which a student may share or spell differently.
* **text is untrusted**: names and ids come from file names and ``submission_metadata.yml`` a student
  could influence. They arrive as ``safe_text`` (see :func:`safe_identity`), and every text cell is
  neutralised against spreadsheet formulas (:func:`safe_cell`); numbers are written by us.

Who a submission is, :class:`Identity`, is defined here because both the collect stage (which reads it
from the export) and the class files (which write it) need it, and neither should import the other.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from grader.untrusted_text import safe_text

#: The LMSs ``--lms`` accepts, in the order their files are written.
LMS_NAMES: tuple[str, ...] = ("canvas", "moodle", "blackboard", "gradescope")
#: The file each LMS's import is written to, in ``--out``.
IMPORT_FILES: dict[str, str] = {
    "canvas": "canvas_grades.csv",
    "moodle": "moodle_grading_worksheet.csv",
    "blackboard": "blackboard_grade_center.csv",
    "gradescope": "gradescope_scores.csv",
}
#: Leading characters that make a spreadsheet treat a cell as a formula (OWASP list).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# ----------------------------------------------------------------------------- who submitted


@dataclass(frozen=True)
class Person:
    """One student as an export names them; any field may be empty."""

    name: str = ""
    email: str = ""
    #: The student id the LMS was given by the institution (Gradescope's ``:sid:``).
    sid: str = ""


@dataclass(frozen=True)
class Identity:
    """Who submitted, in the LMS's own terms, as far as its export tells (every field may be empty).

    ``user_id`` is what the LMS's grade import matches a row on: Canvas's user id (the gradebook's
    ``ID``), Moodle's participant number (``Participant NNN``), Blackboard's username.
    """

    user_id: str = ""
    #: Canvas's submission id, Gradescope's ``submission_NNN``, Blackboard's attempt time.
    submission_id: str = ""
    #: Everyone the submission is for: one student, or a Gradescope group.
    people: tuple[Person, ...] = ()
    #: Canvas's ``_LATE_`` flag: True or False for a Canvas file, None where the export does not say.
    late: bool | None = None
    #: The assignment's name when the export names it (Blackboard's file names start with it).
    assignment: str = ""

    @property
    def name(self) -> str:
        """Everyone's name, joined (a Gradescope group is one submission)."""
        return ", ".join(p.name for p in self.people if p.name)

    @property
    def emails(self) -> str:
        return "; ".join(p.email for p in self.people if p.email)

    @property
    def sids(self) -> str:
        return "; ".join(p.sid for p in self.people if p.sid)


def safe_identity(identity: Identity) -> Identity:
    """``identity`` with every string ``safe_text``: each one came from a file name or a yml a student touched."""
    people = tuple(Person(safe_text(p.name), safe_text(p.email), safe_text(p.sid)) for p in identity.people)
    return dataclasses.replace(identity, user_id=safe_text(identity.user_id),
                               submission_id=safe_text(identity.submission_id), people=people,
                               assignment=safe_text(identity.assignment))


def safe_cell(text: str) -> str:
    """Text a spreadsheet shows as text: a leading ``'`` before a formula trigger."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


# ----------------------------------------------------------------------------- export metadata

_YML_SUBMISSION = re.compile(r"""^:?["']?submission_(\d+)["']?\s*:\s*(?:\{\s*\})?$""")
_YML_SUBMITTERS = re.compile(r"^:?submitters\s*:")
_YML_FIELD = re.compile(r"^:?(name|email|sid)\s*:\s*(.*)$")


def parse_gradescope_submitters(text: str) -> dict[str, tuple[Person, ...]]:
    """``submission_metadata.yml`` -> {submission id: its submitters}, best effort, no YAML library.

    Reads the shape Gradescope's "Export Submissions" writes (Ruby symbols as keys)::

        submission_987:
          :submitters:
          - :name: Ann Lee
            :sid: '100'
            :email: ann@example.edu
          :created_at: ...

    Lines it does not understand are ignored: a file that is not what it expects gives fewer names,
    never an error (the notebooks are still graded, named by their folders).
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
            m = _YML_SUBMISSION.match(body)
            current = m.group(1) if m else None
            block_indent = None
            if current is not None:
                people.setdefault(current, [])
            continue
        if current is None:
            continue
        if _YML_SUBMITTERS.match(body):
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
        m = _YML_FIELD.match(body)
        if m and people[current]:
            people[current][-1][m.group(1)] = _yaml_scalar(m.group(2))
    return {sub_id: tuple(Person(p.get("name", ""), p.get("email", ""), p.get("sid", "")) for p in submitters)
            for sub_id, submitters in people.items()}


def _yaml_scalar(value: str) -> str:
    """A YAML scalar's text: quoted forms unquoted, a trailing comment and null dropped."""
    import json

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


@dataclass(frozen=True)
class BlackboardReceipt:
    """What the ``.txt`` Blackboard writes beside each attempt says about it."""

    name: str
    username: str
    assignment: str


_RECEIPT_NAME = re.compile(r"^Name:\s*(?P<name>.*?)\s*\((?P<username>[^()]*)\)\s*$", re.M)
_RECEIPT_ASSIGNMENT = re.compile(r"^Assignment:\s*(?P<assignment>.*?)\s*$", re.M)


def parse_blackboard_receipt(text: str) -> BlackboardReceipt | None:
    """The student and assignment of a Blackboard attempt receipt, or None when it is not one.

    Blackboard Learn's "Assignment File Download" writes, per attempt,
    ``<Assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>.txt`` beginning::

        Name: Jane Doe (jdoe)
        Assignment: Homework 1
        Date Submitted: Friday, 1 March 2024 12:00:00 o'clock GMT

    (the layout vangef/BBGradebookOrganiser and blackboard-analysis-tools parse, ``utils/organiser.py``).
    """
    name = _RECEIPT_NAME.search(text)
    if name is None:
        return None
    assignment = _RECEIPT_ASSIGNMENT.search(text)
    return BlackboardReceipt(name["name"], name["username"].strip(), assignment["assignment"] if assignment else "")


# ----------------------------------------------------------------------------- import files


@dataclass(frozen=True)
class GradeRow:
    """One submission's grade, as every LMS file needs it."""

    #: The name the gradebook shows (a file or folder name when the LMS gave none).
    student: str
    identity: Identity
    #: None when the submission could not be graded: the cell stays blank, never 0.
    score: float | None
    max_score: float


@dataclass(frozen=True)
class LmsAssignment:
    """The LMS assignment the grades go to."""

    name: str
    #: Points possible (the rubric's maximum).
    points: float
    #: The LMS's id of the assignment or grade column, when known: Canvas and Blackboard match on it.
    lms_id: str = ""


def _number(value: float | None) -> str:
    """A grade cell: ``7.5``, ``20``; blank for no grade (or a non-finite one, a scoring bug upstream)."""
    if value is None or not math.isfinite(value):
        return ""
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _safe(rows: Iterable[GradeRow], assignment: LmsAssignment) -> tuple[list[GradeRow], LmsAssignment]:
    """Every string ``safe_text``, however the rows were built (the writers are public)."""
    safe_rows = [dataclasses.replace(row, student=safe_text(row.student), identity=safe_identity(row.identity))
                 for row in rows]
    return safe_rows, dataclasses.replace(assignment, name=safe_text(assignment.name),
                                          lms_id=safe_text(assignment.lms_id))


def _csv(rows: Iterable[list[str]], quote_all: bool = False) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerows(rows)
    return buffer.getvalue()


def _name_of(row: GradeRow) -> str:
    return safe_cell(row.identity.name or row.student)


# Canvas: its importer, instructure/canvas-lms app/models/gradebook_importer.rb, and the import guides built
# on Canvas's (Ohio State TLRC "Import CSV File for Carmen Grades": Student Name or ID or SIS User ID, SIS
# Login ID, Section, then assignment columns; a new column makes a new assignment; VCU "Gradebook Action
# Menu"). In the importer, the header must start with a column containing
# "Student" and one containing "ID", and the student-information columns end with "Section"
# (``header?``/``update_column_count``: Student, ID, SIS User ID, SIS Login ID, Section). A student is
# matched by ``ID`` (the Canvas user id, the number after the name in a submissions download), then SIS
# User ID, SIS Login ID, then name (``process_student``). An assignment column is matched by the id in
# "Title (id)" (``Assignment.title_and_id``), else by its exact title, else a new assignment is created
# (``parse_assignments``). A first cell containing "Points Possible" marks the points row (``process_pp``).
CANVAS_HEADER = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_POINTS_POSSIBLE = "    Points Possible"


def canvas_column(assignment: LmsAssignment) -> str:
    """``Title (id)``, how Canvas's export names an assignment column and its import matches one."""
    return f"{assignment.name} ({assignment.lms_id})" if assignment.lms_id else assignment.name


def canvas_csv(rows: Iterable[GradeRow], assignment: LmsAssignment) -> str:
    """Canvas's gradebook import: identity columns, then one assignment column."""
    rows, assignment = _safe(rows, assignment)
    lines = [[*CANVAS_HEADER, safe_cell(canvas_column(assignment))],
             [CANVAS_POINTS_POSSIBLE, "", "", "", "", _number(assignment.points)]]
    for row in rows:
        lines.append([_name_of(row), safe_cell(row.identity.user_id), "", "", "", _number(row.score)])
    return _csv(lines)


# Moodle: the assignment's "Offline grading worksheet" (Grading action: "Upload grading worksheet").
# moodle/moodle mod/assign/gradingtable.php writes it (columns, in order, when downloading: "Identifier"
# = get_string('hiddenuser') . uniqueid, i.e. "Participant 123456"; "Full name"; the identity fields,
# e.g. "Email address"; "Status"; "Grade"; "Maximum Grade"; "Grade can be changed"; "Last modified
# (submission)"; "Last modified (grade)"; then one column per feedback plugin, e.g. "Feedback comments").
# mod/assign/feedback/offline/importgradeslib.php reads it: it needs "Identifier", "Grade" and
# "Last modified (grade)" (``init``), strips "Participant " to get the participant number, the same
# number the submissions download puts in "Full Name_123456_assignsubmission_file_"
# (``get_uniqueid_for_user``). locallib.php ``process_import_grades`` skips a blank grade, a grade over the
# maximum, and a grade changed in Moodle more than 60 s after "Last modified (grade)" (parsed with PHP's
# strtotime), unless "Allow updating records that have been modified more recently" is ticked.
# "Feedback comments" is left out on purpose: the importer writes that column into every row's
# feedback whenever it is present, so a column we cannot fill would erase comments a teacher wrote.
MOODLE_HEADER = ("Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade",
                 "Grade can be changed", "Last modified (submission)", "Last modified (grade)")
MOODLE_PARTICIPANT = "Participant "
MOODLE_SUBMITTED = "Submitted for grading"
MOODLE_NOT_GRADED = "Submitted for grading - not graded: see the grader's summary"
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


def moodle_date(when: datetime.datetime) -> str:
    """``Friday, 1 March 2024, 12:00 PM``: Moodle's own ``userdate`` (``strftimedaydatetime``), in English
    whatever the locale, so Moodle's ``strtotime`` reads it back."""
    hour = when.hour % 12 or 12
    meridiem = "AM" if when.hour < 12 else "PM"
    return (f"{_WEEKDAYS[when.weekday()]}, {when.day} {_MONTHS[when.month - 1]} {when.year}, "
            f"{hour}:{when.minute:02d} {meridiem}")


def moodle_csv(rows: Iterable[GradeRow], assignment: LmsAssignment, graded_at: datetime.datetime) -> str:
    """Moodle's offline grading worksheet, ready for "Upload grading worksheet"."""
    rows, assignment = _safe(rows, assignment)
    stamp = moodle_date(graded_at)
    lines = [list(MOODLE_HEADER)]
    for row in rows:
        identifier = MOODLE_PARTICIPANT + row.identity.user_id if row.identity.user_id else ""
        status = MOODLE_SUBMITTED if row.score is not None else MOODLE_NOT_GRADED
        lines.append([safe_cell(identifier), _name_of(row), safe_cell(row.identity.emails), status,
                      _number(row.score), _number(assignment.points), "Yes", "-", stamp])
    return _csv(lines)


# Blackboard Learn (Original): Grade Center > Work Offline > Upload. Blackboard Help, "Uploading or
# Downloading Grade Center Items for Working Offline" (library.blackboard.com ... grade_center_upload_download):
# the student is identified by Username; a column by the Column ID after "|" in its header, as the Grade
# Center download writes it ("Quiz 3 [Total Pts: 10] |664617", nbeaver/offline-grades-upload 01.tsv);
# a column without an id is created as a new text column worth 0 points; in comma-delimited files every
# value is enclosed in quotes. First and last names are shown on the confirmation page and never changed.
BLACKBOARD_HEADER = ("Last Name", "First Name", "Username", "Student ID")


def blackboard_column(assignment: LmsAssignment) -> str:
    """``Name [Total Pts: 100 Score] |id``, as the Grade Center download names a column; the bare name when
    the column id is unknown (Blackboard then offers to create the column)."""
    if not assignment.lms_id:
        return assignment.name
    return f"{assignment.name} [Total Pts: {_number(assignment.points)} Score] |{assignment.lms_id}"


def _split_name(name: str) -> tuple[str, str]:
    """(last, first) from "First Middle Last": Blackboard only shows them, it matches on the username."""
    words = name.split()
    if len(words) < 2:
        return name, ""
    return words[-1], " ".join(words[:-1])


def blackboard_csv(rows: Iterable[GradeRow], assignment: LmsAssignment) -> str:
    """Blackboard's Grade Center upload: names, username, student id, one grade column (all quoted)."""
    rows, assignment = _safe(rows, assignment)
    lines = [[*BLACKBOARD_HEADER, safe_cell(blackboard_column(assignment))]]
    for row in rows:
        last, first = _split_name(row.identity.name or row.student)
        lines.append([safe_cell(last), safe_cell(first), safe_cell(row.identity.user_id),
                      safe_cell(row.identity.sids), _number(row.score)])
    return _csv(lines, quote_all=True)


# Gradescope: scores for a Gradescope assignment are matched to the roster by Email (or SID), the columns
# Gradescope's own grade export writes ("Name", "SID", "Email", "Total Score", cs161-staff/grades-py README,
# nemogb's "Detailed Canvas Export Info"), and the roster guide (help.gradescope.com "Adding Students and
# Staff") says emails are the unique key. Gradescope's "Upload scores" page itself was not among the stored
# documents; the columns are the ones its export uses, so a file it wrote can be read back. A group
# submission is one row per member: Gradescope scores students.
GRADESCOPE_HEADER = ("Name", "SID", "Email", "Total Score")


def gradescope_csv(rows: Iterable[GradeRow], assignment: LmsAssignment) -> str:
    """Gradescope's score upload: one row per student (each member of a group), one score column."""
    rows, _ = _safe(rows, assignment)  # one score column whatever the assignment: Gradescope asks on upload
    lines = [list(GRADESCOPE_HEADER)]
    for row in rows:
        people = row.identity.people or (Person(row.student),)
        for person in people:
            lines.append([safe_cell(person.name or row.student), safe_cell(person.sid), safe_cell(person.email),
                          _number(row.score)])
    return _csv(lines)


def render_import(lms: str, rows: Iterable[GradeRow], assignment: LmsAssignment,
                  graded_at: datetime.datetime) -> str:
    """The import file of ``lms`` (one of :data:`LMS_NAMES`)."""
    writers: dict[str, Callable[[Iterable[GradeRow], LmsAssignment], str]] = {
        "canvas": canvas_csv,
        "moodle": lambda r, a: moodle_csv(r, a, graded_at),
        "blackboard": blackboard_csv,
        "gradescope": gradescope_csv,
    }
    return writers[lms](rows, assignment)
