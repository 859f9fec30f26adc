"""The LMS import files (``grader.integrations.lms``): each read back with :mod:`csv` the way the LMS's
importer reads it, and the export metadata parsers (Gradescope's yml, Blackboard's receipts).

The rules asserted are the importers' own (cited in ``lms.py``): Canvas finds the student-information
columns by name and ends them at "Section", matches students on ``ID`` and an assignment on "(id)";
Moodle needs "Identifier", "Grade" and "Last modified (grade)" and strips "Participant "; Blackboard
matches the username and the column id after "|"; Gradescope matches the email or SID.
"""
from __future__ import annotations

import csv
import datetime
import io

import pytest

from grader.integrations.lms import (
    BLACKBOARD_HEADER,
    CANVAS_HEADER,
    GRADESCOPE_HEADER,
    IMPORT_FILES,
    LMS_NAMES,
    MOODLE_HEADER,
    GradeRow,
    Identity,
    LmsAssignment,
    Person,
    blackboard_csv,
    canvas_csv,
    gradescope_csv,
    moodle_csv,
    moodle_date,
    parse_blackboard_receipt,
    parse_gradescope_submitters,
    render_import,
    safe_identity,
)

NN = LmsAssignment("Lab 4: a neural network", 100.0, "4711")
UNNAMED = LmsAssignment("Lab 4: a neural network", 100.0)
GRADED_AT = datetime.datetime(2024, 3, 1, 14, 5)


def rows() -> list[GradeRow]:
    """A Canvas student, a Moodle student, a Gradescope group, an error row and a hostile name."""
    return [
        GradeRow("doejane", Identity(user_id="12345", submission_id="67890", people=(Person("doejane"),),
                                     late=True), 87.5, 100.0),
        GradeRow("José Núñez", Identity(user_id="234567", people=(Person("José Núñez", "jose@example.edu"),)),
                 100.0, 100.0),
        GradeRow("Pat O'Brien, Zoë Day", Identity(submission_id="988", people=(
            Person("Pat O'Brien", "pat@example.edu", "100"), Person("Zoë Day", "zoe@example.edu", "200"))),
            42.0, 100.0),
        GradeRow("broken", Identity(user_id="345678", people=(Person("Bo Chan"),)), None, 100.0),
        GradeRow("=HYPERLINK(\"http://evil\")", Identity(user_id="-1+1", people=()), 0.0, 100.0),
    ]


def read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


# ----------------------------------------------------------------------------- Canvas


def test_canvas_has_its_identity_columns_and_one_assignment_column() -> None:
    header, points, *students = read(canvas_csv(rows(), NN))
    assert header == [*CANVAS_HEADER, "Lab 4: a neural network (4711)"]
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    # The importer's own test of a header: "Student" first, "ID" second, "Section" closing the student columns.
    assert "Student" in header[0] and "ID" in header[1] and "Section" in header[4] and len(header) == 6
    assert "Points Possible" in points[0] and points[5] == "100"
    assert [(s[0], s[1], s[5]) for s in students] == [
        ("doejane", "12345", "87.5"), ("José Núñez", "234567", "100"), ("Pat O'Brien, Zoë Day", "", "42"),
        ("Bo Chan", "345678", ""), ("'=HYPERLINK(\"http://evil\")", "'-1+1", "0")]
    assert all(len(s) == 6 for s in students)


def test_canvas_column_is_the_title_alone_without_an_id() -> None:
    header = read(canvas_csv(rows(), UNNAMED))[0]
    assert header[5] == "Lab 4: a neural network"  # Canvas matches an existing assignment by its exact title


# ----------------------------------------------------------------------------- Moodle


def test_moodle_worksheet_is_what_its_importer_reads() -> None:
    header, *students = read(moodle_csv(rows(), NN, GRADED_AT))
    assert header == list(MOODLE_HEADER)
    assert {"Identifier", "Grade", "Last modified (grade)"} <= set(header)  # the importer's required columns
    assert "Feedback comments" not in header  # a blank one would erase a teacher's comments
    table = [dict(zip(header, s, strict=True)) for s in students]
    assert [t["Identifier"] for t in table] == ["Participant 12345", "Participant 234567", "", "Participant 345678",
                                                "Participant -1+1"]
    # What the importer does with the identifier: strip "Participant " and read the number.
    assert [t["Identifier"][len("Participant "):] for t in table[:2]] == ["12345", "234567"]
    assert [t["Grade"] for t in table] == ["87.5", "100", "42", "", "0"]
    assert {t["Maximum Grade"] for t in table} == {"100"}
    assert table[1]["Email address"] == "jose@example.edu" and table[1]["Full name"] == "José Núñez"
    assert {t["Last modified (grade)"] for t in table} == {"Friday, 1 March 2024, 2:05 PM"}
    assert {t["Grade can be changed"] for t in table} == {"Yes"}
    assert "not graded" in table[3]["Status"] and "not graded" not in table[0]["Status"]


@pytest.mark.parametrize(("when", "text"), [
    (datetime.datetime(2024, 3, 1, 0, 0), "Friday, 1 March 2024, 12:00 AM"),
    (datetime.datetime(2024, 3, 1, 12, 0), "Friday, 1 March 2024, 12:00 PM"),
    (datetime.datetime(2023, 12, 31, 23, 59), "Sunday, 31 December 2023, 11:59 PM"),
])
def test_moodle_dates_are_moodles_own_format_in_english(when: datetime.datetime, text: str) -> None:
    assert moodle_date(when) == text


# ----------------------------------------------------------------------------- Blackboard


def test_blackboard_upload_quotes_everything_and_names_the_column_by_id() -> None:
    text = blackboard_csv([GradeRow("Jane Q Doe", Identity(user_id="jdoe", people=(Person("Jane Q Doe"),)),
                                    87.5, 100.0),
                           GradeRow("bo", Identity(user_id="bchan", people=(Person("Bo Chan"),)), None, 100.0)], NN)
    lines = text.splitlines()
    assert lines[0] == ('"Last Name","First Name","Username","Student ID",'
                        '"Lab 4: a neural network [Total Pts: 100 Score] |4711"')
    assert lines[1] == '"Doe","Jane Q","jdoe","","87.5"'
    assert lines[2] == '"Chan","Bo","bchan","",""'  # not graded: blank, Blackboard leaves the grade alone
    header = read(text)[0]
    assert header[:4] == list(BLACKBOARD_HEADER)
    assert header[4].rsplit("|", 1)[1] == "4711"  # what Blackboard matches the column on


def test_blackboard_column_without_an_id_is_the_bare_name() -> None:
    assert read(blackboard_csv(rows(), UNNAMED))[0][4] == "Lab 4: a neural network"


# ----------------------------------------------------------------------------- Gradescope


def test_gradescope_scores_one_row_per_student_of_a_group() -> None:
    header, *students = read(gradescope_csv(rows(), NN))
    assert header == list(GRADESCOPE_HEADER) == ["Name", "SID", "Email", "Total Score"]
    assert students == [
        ["doejane", "", "", "87.5"],
        ["José Núñez", "", "jose@example.edu", "100"],
        ["Pat O'Brien", "100", "pat@example.edu", "42"],
        ["Zoë Day", "200", "zoe@example.edu", "42"],
        ["Bo Chan", "", "", ""],
        ["'=HYPERLINK(\"http://evil\")", "", "", "0"],
    ]


def test_every_lms_has_a_file_and_a_writer() -> None:
    assert set(IMPORT_FILES) == set(LMS_NAMES) == {"canvas", "moodle", "blackboard", "gradescope"}
    grade_column = {"canvas": 5, "moodle": MOODLE_HEADER.index("Grade"), "blackboard": 4, "gradescope": 3}
    for name in LMS_NAMES:
        table = read(render_import(name, rows(), NN, GRADED_AT))
        scores = [line[grade_column[name]] for line in table[1:] if "Points Possible" not in line[0]]
        assert scores[:2] == ["87.5", "100"] and scores[-2:] == ["", "0"]  # the error row is blank, never 0


# ----------------------------------------------------------------------------- export metadata


def test_gradescope_metadata_gives_each_submitter_name_sid_and_email() -> None:
    text = """\
---
submission_987:
  :submitters:
  - :name: Ann Lee
    :sid: '100'
    :email: ann@example.edu
  :created_at: 2024-03-01 12:00:00.000000000 -08:00
submission_988:
  :submitters:
  - :name: "Zoë \\"Z\\" Day"
    :sid: 200   # a comment
    :email: zoe@example.edu
  - :email: noname@example.edu
"""
    assert parse_gradescope_submitters(text) == {
        "987": (Person("Ann Lee", "ann@example.edu", "100"),),
        "988": (Person('Zoë "Z" Day', "zoe@example.edu", "200"), Person("", "noname@example.edu", "")),
    }
    assert parse_gradescope_submitters("::: not yaml [\n\t- x") == {}


def test_blackboard_receipt_names_the_student() -> None:
    receipt = parse_blackboard_receipt(
        "Name: José Núñez García (j_nunez)\nAssignment: Lab_2 NN\nDate Submitted: Friday, 1 March 2024 "
        "12:00:00 o'clock GMT\nCurrent Grade: Needs Grading\n\nSubmission Field:\nThere is no student "
        "submission text data for this assignment.\n")
    assert receipt is not None
    assert (receipt.name, receipt.username, receipt.assignment) == ("José Núñez García", "j_nunez", "Lab_2 NN")
    assert parse_blackboard_receipt("just some notes a student uploaded") is None


def test_identity_text_is_made_safe() -> None:
    identity = safe_identity(Identity(user_id="a\u202eb", people=(Person("\x1b[2Jx", "e\nmail", "s\x00"),),
                                      assignment="\u2066A"))
    assert identity.user_id == "a\\u202eb" and identity.assignment == "\\u2066A"
    assert identity.people == (Person("\\x1b[2Jx", "e\\nmail", "s\\x00"),)
    hostile = GradeRow("\x1b]8;;http://evil\x07x", Identity(user_id="1\u202e2", people=(Person("doe\u202ejane"),)),
                       1.0, 100.0)
    for name in LMS_NAMES:
        text = render_import(name, [hostile], LmsAssignment("Lab\u2066", 100.0, "9"), GRADED_AT)
        assert "\u202e" not in text and "\x1b" not in text and "\u2066" not in text, name
        assert "doe\\u202ejane" in text, name  # shown, not obeyed
