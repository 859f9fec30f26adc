"""Tests of the collect stage: every notebook in folders and LMS zips, named and given a stable id.

All inputs are built in ``tmp_path`` with :mod:`zipfile`; damaged archives are
made by patching header fields of a good one (see :func:`patch_member`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import zipfile
from pathlib import Path

import pytest

import grader.batch.collect as collect_module
from grader.batch.collect import (
    Collection,
    CollectError,
    NotebookRef,
    Problem,
    Skipped,
    Submission,
    collect,
    parse_gradescope_metadata,
)
from grader.errors import EXIT_CANNOT_GRADE, GraderError
from grader.integrations.lms import Identity, Person

SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")


def nb(tag: str, defines: tuple[str, ...] = ()) -> bytes:
    """A small v4 notebook whose first code cell names ``tag``, so each file's bytes differ, and
    which defines the graded functions named in ``defines`` (as Jupyter saves them: a list of lines)."""
    cells = [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
              "outputs": [], "source": f"print({tag!r})"}]
    for i, name in enumerate(defines):
        cells.append({"cell_type": "code", "execution_count": None, "id": f"d{i}", "metadata": {}, "outputs": [],
                      "source": [f"def {name}(z):\n", "    return z\n"]})
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


ALL_FOUR = ("activation", "d_activation", "forward", "backward")


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def patch_member(data: bytes, member: str, *, set_flags: int = 0, clear_flags: int = 0,
                 size: int | None = None) -> bytes:
    """Change a member's general-purpose flags or declared uncompressed size in both of its headers."""
    buf = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        local = archive.getinfo(member).header_offset
    assert buf[local:local + 4] == b"PK\x03\x04"
    flags_at, size_at = local + 6, local + 22
    struct.pack_into("<H", buf, flags_at, (struct.unpack_from("<H", buf, flags_at)[0] | set_flags) & ~clear_flags)
    if size is not None:
        struct.pack_into("<I", buf, size_at, size)
    patched = 0
    pos = buf.find(b"PK\x01\x02")
    while pos != -1:
        if struct.unpack_from("<I", buf, pos + 42)[0] == local:
            flags = struct.unpack_from("<H", buf, pos + 8)[0]
            struct.pack_into("<H", buf, pos + 8, (flags | set_flags) & ~clear_flags)
            if size is not None:
                struct.pack_into("<I", buf, pos + 24, size)
            patched += 1
        pos = buf.find(b"PK\x01\x02", pos + 4)
    assert patched == 1
    return bytes(buf)


def by_source(collection: Collection) -> dict[str, Submission]:
    return {s.source: s for s in collection.submissions}


def assert_well_formed(collection: Collection) -> None:
    """Properties every collection has: safe unique ids, true hashes, sorted sources."""
    ids = [s.id for s in collection.submissions]
    for sid in ids:
        assert SAFE_ID.fullmatch(sid), sid
        assert not sid.startswith((".", "-"))
    assert len({i.lower() for i in ids}) == len(ids), ids
    for s in collection.submissions:
        assert s.sha256 == hashlib.sha256(s.data).hexdigest()
        assert s.lms in ("canvas", "moodle", "gradescope", "blackboard", "plain")
    sources = [s.source for s in collection.submissions]
    assert sources == sorted(sources)
    assert [p.source for p in collection.problems] == sorted(p.source for p in collection.problems)
    for problem in collection.problems:
        assert isinstance(problem, Problem)
        assert "\n" not in problem.message and problem.message.endswith(".")


# --- plain folders ---------------------------------------------------------------------------


def test_plain_folder_is_walked_recursively_and_litter_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "subs"
    write(root / "alice" / "simple_nn.ipynb", nb("alice"))
    write(root / "bob.ipynb", nb("bob"))
    write(root / "carol" / "deep" / "er" / "HW1.IPYNB", nb("carol"))
    write(root / "dan" / "Untitled1.ipynb", nb("dan"))
    write(root / "smithjohn_12345_67890_x" / "simple_nn.ipynb", nb("folder"))  # Canvas never names folders
    # litter that must not be collected
    write(root / "alice" / ".ipynb_checkpoints" / "simple_nn-checkpoint.ipynb", nb("ckpt"))
    write(root / ".hidden" / "h.ipynb", nb("hidden"))
    write(root / ".dotfile.ipynb", nb("dot"))
    write(root / "__MACOSX" / "alice" / "._simple_nn.ipynb", b"\x00\x05\x16\x07")
    write(root / "._bob.ipynb", b"\x00\x05\x16\x07")
    write(root / "notes.txt", b"not a notebook")
    write(root / "carol" / "data.json", b"{}")

    result = collect([root], names=ALL_FOUR)

    assert_well_formed(result)
    assert result.problems == []
    got = {(s.source, s.student, s.id, s.lms) for s in result.submissions}
    assert got == {
        (str(root / "alice" / "simple_nn.ipynb"), "alice", "alice-simple_nn", "plain"),
        (str(root / "bob.ipynb"), "bob", "bob", "plain"),
        (str(root / "carol" / "deep" / "er" / "HW1.IPYNB"), "HW1", "carol-deep-er-HW1", "plain"),
        (str(root / "dan" / "Untitled1.ipynb"), "dan", "dan-Untitled1", "plain"),
        (str(root / "smithjohn_12345_67890_x" / "simple_nn.ipynb"), "smithjohn_12345_67890_x",
         "smithjohn_12345_67890_x-simple_nn", "plain"),
    }
    assert by_source(result)[str(root / "bob.ipynb")].data == nb("bob")


def test_a_notebook_path_is_collected_on_its_own_and_only_once(tmp_path: Path) -> None:
    path = write(tmp_path / "work" / "simple_nn.ipynb", nb("x"))
    result = collect([path, str(path), tmp_path / "work"], names=ALL_FOUR)
    assert [(s.source, s.id, s.student) for s in result.submissions] == [(str(path), "simple_nn", "simple_nn")]


def test_nothing_found_is_an_empty_collection(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = collect([tmp_path / "empty"], names=ALL_FOUR)
    assert result == Collection(submissions=[], problems=[])
    assert collect([], names=ALL_FOUR) == Collection(submissions=[], problems=[])


# --- Canvas ---------------------------------------------------------------------------------


def test_canvas_export_normal_late_and_two_notebooks(tmp_path: Path) -> None:
    members = {
        "smithjohn_12345_67890_simple_nn.ipynb": nb("smith"),
        "doejane_LATE_23456_78901_my nn (1).ipynb": nb("doe"),
        "leeann_34567_11111_part1.ipynb": nb("lee1", ALL_FOUR),  # two files, one submission: the one
        "leeann_34567_11112_part2.ipynb": nb("lee2"),             # that defines the functions is graded
        "kimbo_45678_hw.ipynb": nb("kim"),       # the one-number form some exports use
        "lab_2_simple_nn.ipynb": nb("lab"),        # numbers too short: not Canvas naming
        "project_2024_final.ipynb": nb("proj"),    # a year is not a student id
        "hw_10_20_nn.ipynb": nb("hw"),
        "__MACOSX/._smithjohn_12345_67890_simple_nn.ipynb": b"\x00\x05",
        "smithjohn_12345_67891_readme.txt": b"hello",
    }
    archive = write(tmp_path / "class.zip", zip_bytes(members))

    result = collect([archive], names=ALL_FOUR)

    assert_well_formed(result)
    assert result.problems == []
    got = {s.source.split("!", 1)[1]: (s.id, s.student, s.lms) for s in result.submissions}
    assert got == {
        "smithjohn_12345_67890_simple_nn.ipynb": ("canvas-12345", "smithjohn", "canvas"),
        "doejane_LATE_23456_78901_my nn (1).ipynb": ("canvas-23456", "doejane", "canvas"),
        "leeann_34567_11111_part1.ipynb": ("canvas-34567", "leeann", "canvas"),
        "kimbo_45678_hw.ipynb": ("canvas-45678", "kimbo", "canvas"),
        "lab_2_simple_nn.ipynb": ("lab_2_simple_nn", "lab_2_simple_nn", "plain"),
        "project_2024_final.ipynb": ("project_2024_final", "project_2024_final", "plain"),
        "hw_10_20_nn.ipynb": ("hw_10_20_nn", "hw_10_20_nn", "plain"),
    }
    for s in result.submissions:
        assert s.source.startswith(f"{archive}!")
    smith = by_source(result)[f"{archive}!smithjohn_12345_67890_simple_nn.ipynb"]
    assert smith.data == nb("smith") and smith.note == ""
    # Who each one is in Canvas: the user id the gradebook import matches on, the submission id, lateness.
    assert {s.id: s.identity for s in result.submissions if s.lms == "canvas"} == {
        "canvas-12345": Identity("12345", "67890", (Person("smithjohn"),), late=False),
        "canvas-23456": Identity("23456", "78901", (Person("doejane"),), late=True),
        "canvas-34567": Identity("34567", "11111", (Person("leeann"),), late=False),
        "canvas-45678": Identity("45678", "", (Person("kimbo"),), late=False),
    }
    assert all(s.identity == Identity() for s in result.submissions if s.lms == "plain")
    # The readme is not graded, and said so; the second notebook of leeann is not graded, and said so.
    assert result.skipped == [
        Skipped(f"{archive}!leeann_34567_11112_part2.ipynb",
                "another notebook of the same submission, leeann_34567_11111_part1.ipynb, was graded"),
        Skipped(f"{archive}!smithjohn_12345_67891_readme.txt", "not a notebook (.txt): only .ipynb files are graded"),
    ]
    lee = by_source(result)[f"{archive}!leeann_34567_11111_part1.ipynb"]
    assert lee.note == ("This submission holds 2 notebooks: leeann_34567_11111_part1.ipynb was graded because it "
                        "defines the most of activation, d_activation, forward and backward "
                        "(not graded: leeann_34567_11112_part2.ipynb).")


def test_canvas_same_original_name_twice_gets_numbered(tmp_path: Path) -> None:
    """The same student in three exports given together: three submissions, three ids."""
    archives = [write(tmp_path / f"c{i}.zip", zip_bytes({f"leeann_34567_1111{i}_nn.ipynb": nb(str(i))}))
                for i in range(3)]
    ids = [s.id for s in collect(archives, names=ALL_FOUR).submissions]
    assert ids == ["canvas-34567-nn", "canvas-34567-nn-2", "canvas-34567-nn-3"]


# --- Moodle ---------------------------------------------------------------------------------


def test_moodle_export_folders_and_flat_names(tmp_path: Path) -> None:
    archive = write(tmp_path / "moodle.zip", zip_bytes({
        "Ann Lee_123456_assignsubmission_file_/simple_nn.ipynb": nb("ann"),
        "José Núñez_234567_assignsubmission_file_/work/nn.ipynb": nb("jose"),
        "Bo Chan_345678_assignsubmission_onlinetext_/onlinetext.html": b"<p>hi</p>",
        "Bo Chan_345678_assignsubmission_onlinetext_/nn.ipynb": nb("bo"),
        "Cy Dee_456789_assignsubmission_file_hw.ipynb": nb("cy"),
    }))

    result = collect([archive], names=ALL_FOUR)

    assert_well_formed(result)
    got = {s.source.split("!", 1)[1]: (s.id, s.student, s.lms) for s in result.submissions}
    assert got == {
        "Ann Lee_123456_assignsubmission_file_/simple_nn.ipynb": ("moodle-123456", "Ann Lee", "moodle"),
        "José Núñez_234567_assignsubmission_file_/work/nn.ipynb": ("moodle-234567", "José Núñez", "moodle"),
        "Bo Chan_345678_assignsubmission_onlinetext_/nn.ipynb": ("moodle-345678", "Bo Chan", "moodle"),
        "Cy Dee_456789_assignsubmission_file_hw.ipynb": ("moodle-456789", "Cy Dee", "moodle"),
    }
    # The participant number is what Moodle's grading worksheet calls "Participant 234567".
    jose = next(s for s in result.submissions if s.id == "moodle-234567")
    assert jose.identity == Identity(user_id="234567", people=(Person("José Núñez"),))
    assert result.skipped == [Skipped(f"{archive}!Bo Chan_345678_assignsubmission_onlinetext_/onlinetext.html",
                                      "not a notebook (.html): only .ipynb files are graded")]


def test_moodle_unpacked_folder_with_two_notebooks(tmp_path: Path) -> None:
    root = tmp_path / "export"
    write(root / "Ann Lee_123456_assignsubmission_file_" / "a.ipynb", nb("a", ("activation",)))
    write(root / "Ann Lee_123456_assignsubmission_file_" / "b.ipynb", nb("b", ALL_FOUR))
    result = collect([root], names=ALL_FOUR)
    assert [(s.id, s.student, Path(s.source).name) for s in result.submissions] == [
        ("moodle-123456", "Ann Lee", "b.ipynb"),
    ]
    assert result.problems == []


# --- Gradescope -----------------------------------------------------------------------------

METADATA = """\
---
submission_987:
  :submitters:
  - :name: Ann Lee
    :sid: '100'
    :email: ann@example.edu
  :created_at: 2024-03-01 12:00:00.000000000 -08:00
  :score: 10.0
submission_988:
  :submitters:
  - :name: 'Pat O''Brien'
    :email: pat@example.edu
  - :name: "Zoë \\"Z\\" Day"
    :email: zoe@example.edu
  :created_at: 2024-03-01 12:05:00.000000000 -08:00
submission_989:
  :submitters:
  - :email: noname@example.edu
"""


def gradescope_members(with_metadata: bool) -> dict[str, bytes]:
    members = {
        "assignment_1_export/submission_987/simple_nn.ipynb": nb("987"),
        "assignment_1_export/submission_988/work/nn.ipynb": nb("988"),
        "assignment_1_export/submission_989/nn.ipynb": nb("989"),
        "assignment_1_export/submission_990/nn.ipynb": nb("990"),  # not in the metadata
    }
    if with_metadata:
        members["assignment_1_export/submission_metadata.yml"] = METADATA.encode()
    return members


def test_gradescope_export_with_metadata_as_zip_and_as_folder(tmp_path: Path) -> None:
    members = gradescope_members(with_metadata=True)
    archive = write(tmp_path / "gs.zip", zip_bytes(members))
    folder = tmp_path / "unpacked"
    for name, data in members.items():
        write(folder / name, data)
    expected = {
        "gs-987": "Ann Lee",
        "gs-988": 'Pat O\'Brien, Zoë "Z" Day',
        "gs-989": "noname@example.edu",
        "gs-990": "",
    }
    for path in (archive, folder):
        result = collect([path], names=ALL_FOUR)
        assert_well_formed(result)
        assert result.problems == []
        assert {s.id: s.student for s in result.submissions} == expected
        assert {s.lms for s in result.submissions} == {"gradescope"}
        # :sid: and :email: are kept, each submitter of a group on their own.
        identities = {s.id: s.identity for s in result.submissions}
        assert identities["gs-987"] == Identity(submission_id="987",
                                                people=(Person("Ann Lee", "ann@example.edu", "100"),))
        assert identities["gs-988"].people == (Person("Pat O'Brien", "pat@example.edu"),
                                               Person('Zoë "Z" Day', "zoe@example.edu"))
        assert identities["gs-990"] == Identity(submission_id="990")


def test_gradescope_export_without_metadata(tmp_path: Path) -> None:
    archive = write(tmp_path / "gs.zip", zip_bytes(gradescope_members(with_metadata=False)))
    result = collect([archive], names=ALL_FOUR)
    assert {s.id: s.student for s in result.submissions} == {"gs-987": "", "gs-988": "", "gs-989": "", "gs-990": ""}


def test_gradescope_metadata_parser_ignores_what_it_does_not_know() -> None:
    text = METADATA + "other_key:\n  :name: Not A Student\nsubmission_991: {}\n"
    assert parse_gradescope_metadata(text) == {
        "987": "Ann Lee",
        "988": 'Pat O\'Brien, Zoë "Z" Day',
        "989": "noname@example.edu",
        "991": "",
    }
    assert parse_gradescope_metadata("") == {}
    assert parse_gradescope_metadata("::: not yaml [\n\t- x") == {}


# --- Blackboard -----------------------------------------------------------------------------


def receipt(name: str, username: str, assignment: str = "Lab_2 Neural net") -> bytes:
    """The receipt Blackboard writes beside every attempt, as its "Assignment File Download" does."""
    return (f"Name: {name} ({username})\nAssignment: {assignment}\nDate Submitted: Friday, 1 March 2024 "
            "12:00:00 o'clock GMT\nCurrent Grade: Needs Grading\n\nSubmission Field:\nThere is no student "
            "submission text data for this assignment.\n\nComments:\nThere are no student comments for this "
            "assignment.\n").encode()


def blackboard_export() -> dict[str, bytes]:
    """A gradebook download: two attempts by José (a username with "_"), Bob's pdf and .py but no notebook,
    Cy's empty attempt, Dee's own zip, and Eve without a receipt."""
    a = "Lab_2 Neural net"
    first, second = "2024-03-01-12-00-00", "2024-03-02-09-30-15"
    return {
        f"{a}_j_nunez_attempt_{first}.txt": receipt("José Núñez García", "j_nunez"),
        f"{a}_j_nunez_attempt_{first}_simple_nn.ipynb": nb("jose-1", ALL_FOUR),
        f"{a}_j_nunez_attempt_{first}_notes.md": b"# first try",
        f"{a}_j_nunez_attempt_{second}.txt": receipt("José Núñez García", "j_nunez"),
        f"{a}_j_nunez_attempt_{second}_simple_nn (2).ipynb": nb("jose-2", ALL_FOUR),
        f"{a}_bob_attempt_{first}.txt": receipt("Bob Roe", "bob"),
        f"{a}_bob_attempt_{first}_report.pdf": b"%PDF-1.4",
        f"{a}_bob_attempt_{first}_nn.py": b"def forward(): pass\n",
        f"{a}_cy_attempt_{first}.txt": receipt("Cy Dee", "cy"),
        f"{a}_dee_attempt_{first}.txt": receipt("Dee Lo", "dee"),
        f"{a}_dee_attempt_{first}_work.zip": zip_bytes({"work/nn.ipynb": nb("dee", ALL_FOUR),
                                                        "work/data.csv": b"1,2"}),
        f"{a}_eve_attempt_{first}_nn.ipynb": nb("eve", ALL_FOUR),
    }


def test_blackboard_export_latest_attempt_receipts_and_students_without_a_notebook(tmp_path: Path) -> None:
    archive = write(tmp_path / "gradebook_CS101_Lab_2 Neural net_2024-03-03-08-00-00.zip",
                    zip_bytes(blackboard_export()))
    result = collect([archive], names=ALL_FOUR)
    assert_well_formed(result)
    a = f"{archive}!Lab_2 Neural net"
    got = {s.id: (s.student, s.source, s.lms) for s in result.submissions}
    assert got == {
        "bb-j_nunez": ("José Núñez García", f"{a}_j_nunez_attempt_2024-03-02-09-30-15_simple_nn (2).ipynb",
                       "blackboard"),
        "bb-dee": ("Dee Lo", f"{a}_dee_attempt_2024-03-01-12-00-00_work.zip!work/nn.ipynb", "blackboard"),
        "bb-eve": ("eve", f"{a}_eve_attempt_2024-03-01-12-00-00_nn.ipynb", "blackboard"),
    }
    jose = next(s for s in result.submissions if s.id == "bb-j_nunez")
    # The receipt settles where the assignment's name ends and the username ("j_nunez") begins.
    assert jose.identity == Identity(user_id="j_nunez", submission_id="2024-03-02-09-30-15",
                                     people=(Person("José Núñez García"),), assignment="Lab_2 Neural net")
    assert jose.data == nb("jose-2", ALL_FOUR)  # the latest attempt, as Blackboard grades it
    assert next(s for s in result.submissions if s.id == "bb-eve").identity.user_id == "eve"
    problems = {p.id: (p.student, p.lms, p.message) for p in result.problems}
    assert problems == {
        "bb-bob": ("Bob Roe", "blackboard",
                   "Bob Roe submitted nn.py and report.pdf, no .ipynb notebook; ask the student to upload the notebook."),
        "bb-cy": ("Cy Dee", "blackboard",
                  "Cy Dee submitted no file (Blackboard's receipt Lab_2 Neural net_cy_attempt_2024-03-01-12-00-00.txt "
                  "lists none); ask the student to upload the notebook."),
    }
    assert next(p for p in result.problems if p.id == "bb-bob").identity.user_id == "bob"
    assert [(k.source.split("!", 1)[1], k.reason) for k in result.skipped] == [
        ("Lab_2 Neural net_bob_attempt_2024-03-01-12-00-00_nn.py", "not a notebook (.py): only .ipynb files are graded"),
        ("Lab_2 Neural net_bob_attempt_2024-03-01-12-00-00_report.pdf",
         "not a notebook (.pdf): only .ipynb files are graded"),
        ("Lab_2 Neural net_dee_attempt_2024-03-01-12-00-00_work.zip!work/data.csv",
         "not a notebook (.csv): only .ipynb files are graded"),
        ("Lab_2 Neural net_j_nunez_attempt_2024-03-01-12-00-00_notes.md",
         "an earlier Blackboard attempt (2024-03-01 12:00:00); the latest attempt (2024-03-02 09:30:15) was graded"),
        ("Lab_2 Neural net_j_nunez_attempt_2024-03-01-12-00-00_simple_nn.ipynb",
         "an earlier Blackboard attempt (2024-03-01 12:00:00); the latest attempt (2024-03-02 09:30:15) was graded"),
    ]


def test_blackboard_export_unpacked_in_a_folder_reads_the_same(tmp_path: Path) -> None:
    folder = tmp_path / "Lab 2"
    for name, data in blackboard_export().items():
        write(folder / name, data)
    result = collect([folder], names=ALL_FOUR)
    assert {s.id: s.student for s in result.submissions} == {"bb-j_nunez": "José Núñez García", "bb-dee": "Dee Lo",
                                                             "bb-eve": "eve"}
    assert sorted(p.id for p in result.problems) == ["bb-bob", "bb-cy"]


# --- what is not graded ---------------------------------------------------------------------


def test_an_lms_student_without_a_notebook_is_one_error_row(tmp_path: Path) -> None:
    archive = write(tmp_path / "canvas.zip", zip_bytes({
        "doejane_LATE_12345_67890_report.pdf": b"%PDF",
        "doejane_LATE_12345_67891_nn.py": b"x = 1\n",
        "smithjohn_23456_78901_simple_nn.ipynb": nb("smith", ALL_FOUR),
    }))
    moodle = write(tmp_path / "moodle.zip", zip_bytes({
        "Ann Lee_123456_assignsubmission_file_/Lab report.docx": b"PK..",
        "Ann Lee_123456_assignsubmission_onlinetext_/onlinetext.html": b"<p>see attached</p>",
    }))
    gradescope = write(tmp_path / "gs.zip", zip_bytes({
        "assignment_1_export/submission_987/nn.py": b"x = 1\n",
        "assignment_1_export/submission_metadata.yml": (
            "submission_987:\n  :submitters:\n  - :name: Zoë Day\n    :sid: '7'\n    :email: zoe@example.edu\n"
        ).encode(),
    }))
    result = collect([archive, moodle, gradescope], names=ALL_FOUR)
    assert [s.id for s in result.submissions] == ["canvas-23456"]
    rows = {p.id: p for p in result.problems}
    assert set(rows) == {"canvas-12345", "moodle-123456", "gs-987"}
    assert rows["canvas-12345"].message == ("doejane submitted report.pdf and nn.py, no .ipynb notebook; "
                                           "ask the student to upload the notebook.")
    assert rows["canvas-12345"].identity.late is True and rows["canvas-12345"].lms == "canvas"
    assert rows["moodle-123456"].message == ("Ann Lee submitted Lab report.docx and onlinetext.html, no .ipynb "
                                            "notebook; ask the student to upload the notebook.")
    assert rows["gs-987"].message.startswith("Zoë Day submitted nn.py, no .ipynb notebook")
    assert rows["gs-987"].identity.people == (Person("Zoë Day", "zoe@example.edu", "7"),)
    assert len(result.skipped) == 5  # each of those files, listed with its reason too


def test_files_that_are_not_graded_are_listed_with_their_reason(tmp_path: Path) -> None:
    root = tmp_path / "subs"
    write(root / "alice" / "simple_nn.ipynb", nb("alice", ALL_FOUR))
    write(root / "alice" / "draft.ipynb", nb("draft", ("activation",)))
    write(root / "alice" / "notes.txt", b"notes")
    write(root / "bob.ipynb", nb("bob"))
    write(root / "README", b"class notes")
    write(root / "carol.zip", zip_bytes({"hw/nn.ipynb": nb("carol", ALL_FOUR), "hw/broken.ipynb": b"x",
                                         "hw/plot.png": b"\x89PNG"}))
    write(root / "dan.zip", patch_member(zip_bytes({"nn.ipynb": nb("dan", ALL_FOUR), "old.ipynb": nb("old")}),
                                         "old.ipynb", set_flags=0x1))
    # litter: skipped on purpose, never listed
    write(root / "alice" / ".ipynb_checkpoints" / "simple_nn-checkpoint.ipynb", nb("ckpt"))
    write(root / "__MACOSX" / "._bob.ipynb", b"\x00\x05")
    write(root / ".DS_Store", b"\x00")
    result = collect([root], names=ALL_FOUR)
    assert_well_formed(result)
    assert result.problems == []
    assert [(k.source[len(str(root)) + 1:], k.reason) for k in result.skipped] == [
        ("README", "not a notebook (no suffix): only .ipynb files are graded"),
        ("alice/notes.txt", "not a notebook (.txt): only .ipynb files are graded"),
        ("carol.zip!hw/broken.ipynb", "another notebook of the same submission, nn.ipynb, was graded"),
        ("carol.zip!hw/plot.png", "not a notebook (.png): only .ipynb files are graded"),
        ("dan.zip!old.ipynb", "it is password-protected; another notebook of the same submission was graded"),
    ]
    # Alice's two notebooks are two submissions (a folder of notebooks is a class), Carol's zip is one:
    # its broken.ipynb is not chosen.
    assert sorted(s.source[len(str(root)) + 1:] for s in result.submissions) == [
        "alice/draft.ipynb", "alice/simple_nn.ipynb", "bob.ipynb", "carol.zip!hw/nn.ipynb", "dan.zip!nn.ipynb"]
    carol = next(s for s in result.submissions if s.source.endswith("carol.zip!hw/nn.ipynb"))
    assert "not graded: broken.ipynb" in carol.note


# --- nested archives ------------------------------------------------------------------------


def test_zip_inside_a_canvas_zip(tmp_path: Path) -> None:
    inner = zip_bytes({
        "hw/simple_nn.ipynb": nb("alice"),
        "__MACOSX/hw/._simple_nn.ipynb": b"\x00\x05",
        "hw/.ipynb_checkpoints/simple_nn-checkpoint.ipynb": nb("ckpt"),
    })
    plain_inner = zip_bytes({"simple_nn.ipynb": nb("bob")})
    archive = write(tmp_path / "class.zip", zip_bytes({
        "alicesmith_12345_67890_hw.zip": inner,
        "bob.zip": plain_inner,
    }))

    result = collect([archive], names=ALL_FOUR)

    assert_well_formed(result)
    assert result.problems == []
    assert [(s.source, s.id, s.student, s.lms) for s in result.submissions] == [
        (f"{archive}!alicesmith_12345_67890_hw.zip!hw/simple_nn.ipynb", "canvas-12345", "alicesmith", "canvas"),
        (f"{archive}!bob.zip!simple_nn.ipynb", "bob-simple_nn", "bob", "plain"),
    ]
    assert result.submissions[0].data == nb("alice")


def test_nesting_deeper_than_the_limit_is_a_problem(tmp_path: Path) -> None:
    level4 = zip_bytes({"d4.ipynb": nb("d4")})
    level3 = zip_bytes({"d3.ipynb": nb("d3", ALL_FOUR), "l4.zip": level4})
    level2 = zip_bytes({"d2.ipynb": nb("d2"), "l3.zip": level3})
    archive = write(tmp_path / "l1.zip", zip_bytes({"d1.ipynb": nb("d1"), "l2.zip": level2}))

    result = collect([archive], names=ALL_FOUR)

    assert_well_formed(result)
    # l2.zip is a student's own archive: one submission, graded from the notebook that defines the functions
    assert [s.source for s in result.submissions] == [
        f"{archive}!d1.ipynb", f"{archive}!l2.zip!l3.zip!d3.ipynb",
    ]
    # l4.zip was not opened: it is part of that submission, and its report says so
    assert result.submissions[1].note == (
        "This submission holds 3 notebooks: d3.ipynb was graded because it defines the most of activation, "
        "d_activation, forward and backward (not graded: d2.ipynb, l4.zip (unreadable)).")
    assert result.problems == []
    # A submission that is nothing but a zip nested too deep is one row saying so.
    alone = write(tmp_path / "m1.zip", zip_bytes({"m2.zip": zip_bytes({"m3.zip": zip_bytes({"m4.zip": level4})})}))
    result = collect([alone], names=ALL_FOUR)
    assert result.submissions == []
    assert [(p.source, p.id) for p in result.problems] == [(f"{alone}!m2.zip!m3.zip!m4.zip", "m2")]
    assert "nested more than 3" in result.problems[0].message


# --- damaged and hostile archives -------------------------------------------------------------


def test_corrupt_zips_are_problems_and_the_rest_is_collected(tmp_path: Path) -> None:
    good = write(tmp_path / "in" / "good.ipynb", nb("good"))
    garbage = write(tmp_path / "in" / "garbage.zip", b"PK\x03\x04 this is not really a zip")
    whole = zip_bytes({"a.ipynb": nb("a") * 20})
    truncated = write(tmp_path / "in" / "truncated.zip", whole[: len(whole) // 2])
    # a readable archive with one damaged member (its compressed bytes overwritten)
    members = {"ok.ipynb": nb("ok"), "broken.ipynb": nb("broken") * 50}
    data = bytearray(zip_bytes(members))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("broken.ipynb")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start:start + 40] = b"\xff" * 40
    damaged = write(tmp_path / "damaged.zip", bytes(data))  # a class export: each notebook on its own
    outside = write(tmp_path / "other.zip", zip_bytes({"x.ipynb": nb("x")}))
    own = write(tmp_path / "in" / "own.zip", bytes(data))  # a student's own zip: one submission

    result = collect([tmp_path / "in", outside, damaged], names=ALL_FOUR)

    assert_well_formed(result)
    assert [s.source for s in result.submissions] == [
        f"{damaged}!ok.ipynb", str(good), f"{own}!ok.ipynb", f"{outside}!x.ipynb",
    ]
    assert result.submissions[2].note == ("This submission holds 2 notebooks: ok.ipynb was graded because it is "
                                          "the only one that could be read (not graded: broken.ipynb (unreadable)).")
    problems = {p.source: p.message for p in result.problems}
    assert set(problems) == {str(garbage), str(truncated), f"{damaged}!broken.ipynb"}
    assert "not a readable zip archive" in problems[str(garbage)]
    assert "not a readable zip archive" in problems[str(truncated)]
    assert "cannot be read from its archive" in problems[f"{damaged}!broken.ipynb"]


def test_corrupt_zip_given_directly_is_a_problem_not_an_error(tmp_path: Path) -> None:
    bad = write(tmp_path / "class.zip", b"\x00" * 100)
    result = collect([bad], names=ALL_FOUR)
    assert result.submissions == []
    assert [p.source for p in result.problems] == [str(bad)]


def test_oversized_member_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collect_module, "MAX_NOTEBOOK_BYTES", 1000)
    small = nb("small")
    assert len(small) < 1000
    archive = write(tmp_path / "c.zip", zip_bytes({"big.ipynb": b" " * 5000 + small, "small.ipynb": small}))
    on_disk = write(tmp_path / "big_on_disk.ipynb", b" " * 5000 + small)

    result = collect([archive, on_disk], names=ALL_FOUR)

    assert [s.source for s in result.submissions] == [f"{archive}!small.ipynb"]
    problems = {p.source: p.message for p in result.problems}
    assert set(problems) == {f"{archive}!big.ipynb", str(on_disk)}
    assert all("over the 1000 bytes limit" in m for m in problems.values()), problems


def test_member_whose_header_understates_its_size_is_a_problem(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A header claiming 100 bytes for 5000 stops at 100 and fails the CRC: never a cut-short notebook."""
    monkeypatch.setattr(collect_module, "MAX_NOTEBOOK_BYTES", 1000)
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        data = patch_member(zip_bytes({"liar.ipynb": b" " * 5000 + nb("x")}, compression), "liar.ipynb", size=100)
        archive = write(tmp_path / f"liar{compression}.zip", data)
        result = collect([archive], names=ALL_FOUR)
        assert result.submissions == []
        assert [p.source for p in result.problems] == [f"{archive}!liar.ipynb"]


def test_reading_stops_once_the_limit_is_passed() -> None:
    """The chunked reader never reads much past the limit, whatever the stream would give."""

    class Endless(io.RawIOBase):
        def __init__(self) -> None:
            self.given = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            n = 1 << 20 if n is None or n < 0 else n
            self.given += n
            return b"x" * n

    stream = Endless()
    with pytest.raises(collect_module._MemberError, match="over the 1 KB limit"):
        collect_module._read_capped(stream, "s", 1024, None, "s")
    assert stream.given <= 1025


def test_archive_budget_stops_one_archive_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collect_module, "MAX_ARCHIVE_BYTES", 2500)
    one = nb("a").ljust(1000)
    first = write(tmp_path / "a.zip", zip_bytes({"1.ipynb": one, "2.ipynb": one, "3.ipynb": one}))
    second = write(tmp_path / "b.zip", zip_bytes({"1.ipynb": one, "2.ipynb": one}))

    result = collect([first, second], names=ALL_FOUR)

    assert [s.source for s in result.submissions] == [
        f"{first}!1.ipynb", f"{first}!2.ipynb", f"{second}!1.ipynb", f"{second}!2.ipynb",
    ]
    # a row for the notebook that was not collected, naming the limit
    assert [p.source for p in result.problems] == [f"{first}!3.ipynb"]
    assert result.problems[0].message == (
        f"{first}!3.ipynb was not collected because {first} reached the limit of 2.4 KB decompressed from one "
        "archive; extract the archive and pass the folder instead.")


def test_a_submission_cut_by_a_budget_is_one_row_not_a_guess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget runs out inside one student's submission: grading the notebooks read so far could grade
    the wrong one, so the whole submission is one row that says why."""
    monkeypatch.setattr(collect_module, "MAX_ARCHIVE_BYTES", 2500)
    folder = "Ann Lee_123456_assignsubmission_file_/"
    archive = write(tmp_path / "moodle.zip", zip_bytes(
        {f"{folder}{name}.ipynb": nb(name).ljust(1000) for name in ("a", "b", "c", "d")}))
    result = collect([archive], names=ALL_FOUR)
    assert result.submissions == []
    assert [(p.source, p.id, p.student, p.message) for p in result.problems] == [(
        f"{archive}!{folder}", "moodle-123456", "Ann Lee",
        f"{archive}!{folder} was not collected because {archive} reached the limit of 2.4 KB decompressed from one "
        "archive; extract the archive and pass the folder instead.")]


def test_encrypted_member_is_a_problem(tmp_path: Path) -> None:
    data = patch_member(zip_bytes({"locked.ipynb": nb("l"), "open.ipynb": nb("o")}), "locked.ipynb", set_flags=0x1)
    archive = write(tmp_path / "c.zip", data)
    result = collect([archive], names=ALL_FOUR)
    assert [s.source for s in result.submissions] == [f"{archive}!open.ipynb"]
    assert [p.source for p in result.problems] == [f"{archive}!locked.ipynb"]
    assert "password-protected" in result.problems[0].message


def test_traversal_and_absolute_member_names_stay_out_of_ids(tmp_path: Path) -> None:
    archive = write(tmp_path / "c.zip", zip_bytes({
        "../../etc/evil.ipynb": nb("evil"),
        "/abs/path.ipynb": nb("abs"),
        "C:\\Users\\x\\win.ipynb": nb("win"),
    }))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = collect([archive], names=ALL_FOUR)
    assert {s.source.split("!", 1)[1]: s.id for s in result.submissions} == {
        "../../etc/evil.ipynb": "etc-evil",
        "/abs/path.ipynb": "abs-path",
        "C:\\Users\\x\\win.ipynb": "Users-x-win",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing extracted
    assert_well_formed(result)


def test_utf8_member_names_without_the_utf8_flag_are_repaired(tmp_path: Path) -> None:
    name = "José Núñez_234567_assignsubmission_file_/nn.ipynb"
    data = patch_member(zip_bytes({name: nb("j")}), name, clear_flags=0x800)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() != [name]  # zipfile alone reads it as cp437
    result = collect([write(tmp_path / "m.zip", data)], names=ALL_FOUR)
    assert [(s.student, s.id) for s in result.submissions] == [("José Núñez", "moodle-234567")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_special_files_in_a_folder_are_problems_not_hangs(tmp_path: Path) -> None:
    root = tmp_path / "subs"
    write(root / "ok.ipynb", nb("ok"))
    os.mkfifo(root / "pipe.ipynb")
    os.mkfifo(root / "pipe.zip")
    os.symlink(root / "gone.ipynb", root / "dangling.ipynb")
    result = collect([root], names=ALL_FOUR)
    assert [s.source for s in result.submissions] == [str(root / "ok.ipynb")]
    assert [p.source for p in result.problems] == [
        str(root / "dangling.ipynb"), str(root / "pipe.ipynb"), str(root / "pipe.zip"),
    ]


# --- bad paths ------------------------------------------------------------------------------


def test_nonexistent_path_raises_collect_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no such folder"
    with pytest.raises(CollectError) as info:
        collect([write(tmp_path / "ok.ipynb", nb("ok")), missing], names=ALL_FOUR)
    error = info.value
    assert isinstance(error, GraderError)
    assert error.exit_code == EXIT_CANNOT_GRADE == 2
    assert str(missing) in error.message and "does not exist" in error.message
    assert error.message.count(". ") == 0 and error.message.endswith(".") and "\n" not in error.message


def test_path_that_is_not_notebook_folder_or_zip_raises(tmp_path: Path) -> None:
    text = write(tmp_path / "grades.csv", b"a,b\n")
    with pytest.raises(CollectError, match=re.escape(str(text)) + ".*not a notebook"):
        collect([text], names=ALL_FOUR)


def test_zip_without_zip_suffix_is_read_by_content(tmp_path: Path) -> None:
    path = write(tmp_path / "export-download", zip_bytes({"a.ipynb": nb("a")}))
    assert [s.source for s in collect([path], names=ALL_FOUR).submissions] == [f"{path}!a.ipynb"]


# --- ids --------------------------------------------------------------------------------------


def build_mixed_inputs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "mixed"
    write(root / "Alice.ipynb", nb("A"))
    write(root / "alice.ipynb", nb("a"))              # same id ignoring case
    write(root / "alice" / "x.ipynb", nb("ax"))       # "alice-x" ...
    write(root / "alice-x.ipynb", nb("a-x"))          # ... and "alice-x" again
    write(root / "con.ipynb", nb("con"))              # a reserved name on Windows
    write(root / "日本語.ipynb", nb("jp"))              # nothing ASCII survives
    write(root / "Zoë Ünal (final) v2!.ipynb", nb("zoe"))
    write(root / ("long folder " * 10) / ("long name " * 12 + ".ipynb"), nb("long1"))  # id would be > 200
    write(root / ("long folder " * 10) / ("long name " * 12 + "2.ipynb"), nb("long2"))
    canvas = write(tmp_path / "canvas.zip", zip_bytes({
        "leeann_34567_11111_" + "n" * 150 + ".ipynb": nb("l1"),
        "smithjohn_12345_67890_nn.ipynb": nb("s"),
    }))
    # The same student in a second export: a submission of its own, with the same base id.
    again = write(tmp_path / "canvas2.zip", zip_bytes({"leeann_34567_11112_" + "n" * 150 + ".ipynb": nb("l2")}))
    return [root, canvas, again]


def test_ids_are_safe_unique_and_identical_across_runs(tmp_path: Path) -> None:
    inputs = build_mixed_inputs(tmp_path)
    first = collect(inputs, names=ALL_FOUR)
    second = collect(list(reversed(inputs)), names=ALL_FOUR)  # argument order does not matter either
    assert_well_formed(first)
    assert [(s.source, s.id, s.sha256) for s in first.submissions] == [
        (s.source, s.id, s.sha256) for s in second.submissions
    ]
    ids = {Path(s.ref.members[-1][1] if s.ref.members else s.ref.path).name: s.id for s in first.submissions}
    assert ids["Alice.ipynb"] == "Alice"
    assert ids["alice.ipynb"] == "alice-2"
    assert {ids["alice-x.ipynb"], ids["x.ipynb"]} == {"alice-x", "alice-x-2"}
    assert ids["con.ipynb"] == "nb-con"
    assert ids["Zoë Ünal (final) v2!.ipynb"] == "Zoe_Unal_final_v2"
    assert re.fullmatch(r"nb-[0-9a-f]{10}", ids["日本語.ipynb"])
    assert ids["smithjohn_12345_67890_nn.ipynb"] == "canvas-12345"
    assert all(len(i) <= 100 for i in ids.values())
    long_ids = [i for name, i in ids.items() if name.startswith(("long", "leeann"))]
    assert len(long_ids) == 4 and len(set(long_ids)) == 4
    # a cut id keeps both ends (the file name is at the end) and a hash of the full key
    assert re.fullmatch(r"long_folder_long_folder.*-.*long_name_2-[0-9a-f]{10}", ids["long name " * 12 + "2.ipynb"])


def test_sha256_and_data_match_the_files(tmp_path: Path) -> None:
    inputs = build_mixed_inputs(tmp_path)
    for s in collect(inputs, names=ALL_FOUR).submissions:
        if s.ref.members:
            with zipfile.ZipFile(s.ref.path) as zf:
                expected = zf.read(s.ref.members[-1][1])
        else:
            expected = Path(s.source).read_bytes()
        assert s.data == expected
        assert s.sha256 == hashlib.sha256(expected).hexdigest()


def test_a_submission_holds_a_reference_not_the_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "x.ipynb", nb("y" * 10_000))
    (s,) = collect([path], names=ALL_FOUR).submissions
    assert isinstance(s.ref, NotebookRef) and not any(isinstance(v, bytes) for v in vars(s).values())
    assert "yyyy" not in repr(s)
    assert s.data == path.read_bytes()


def test_a_module_beside_its_notebook_is_listed_as_importable_not_as_a_wrong_upload(tmp_path: Path) -> None:
    root = tmp_path / "subs"
    write(root / "erin" / "nn.ipynb", nb("erin", ALL_FOUR))
    write(root / "erin" / "helpers.py", b"def relu(z):\n    return z * (z > 0)\n")
    write(root / "class" / "a.ipynb", nb("a", ALL_FOUR))  # a folder of several notebooks: a class, not one's modules
    write(root / "class" / "b.ipynb", nb("b", ALL_FOUR))
    write(root / "class" / "stray.py", b"x = 1\n")
    result = collect([root], names=ALL_FOUR)
    assert [(k.source[len(str(root)) + 1:], k.reason) for k in result.skipped] == [
        ("class/stray.py", "not a notebook (.py): only .ipynb files are graded"),
        ("erin/helpers.py", "a Python module beside a notebook: that notebook's cells may import it; not graded "
                            "on its own"),
    ]
