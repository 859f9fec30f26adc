"""``grader grade`` end to end over a generated class: folders and LMS zips; correct, buggy, broken,
hostile and unreadable notebooks mixed. Every row is asserted, then resume, interruption and a kill."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from grader.batch import run as batch
from grader.batch.run import BatchOptions, run_batch
from grader.batch.summary import GRADEBOOK_COLUMNS_LMS
from grader.cli import main
from grader.integrations.lms import IMPORT_FILES
from grader.rubric import load_rubric

from conftest import CORRECT_CELLS, REPO, embedded_pngs, notebook_json, parse_html

pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures" / "notebooks"
MANIFEST = json.loads((REPO / "tests" / "fixtures" / "manifest.json").read_text())
LIMIT_FLAGS = ["--cell-timeout", "2", "--call-timeout", "1", "--total-timeout", "30"]
HUNG_FORWARD = CORRECT_CELLS + ["def forward(x, w1, w2):\n    while True:\n        pass"]
#: (fixture, where it goes) for the class; expectations come from the fixture manifest.
PLAIN = ["correct/relu_clip_broadcasting.ipynb", "buggy/activation_identity.ipynb",
         "buggy/outer_transposed__np_outer.ipynb", "broken/infinite_loop_between_definitions.ipynb",
         "broken/syntax_error_in_backward_cell.ipynb", "broken/seed_template.ipynb"]


def _fixture(name: str) -> bytes:
    path = FIXTURES / name
    if not path.exists():  # fall back to any fixture of that category so the test names what is missing
        pytest.fail(f"fixture {name} is missing; regenerate with tests/fixtures/build_fixtures.py")
    return path.read_bytes()


def build_class(root: Path) -> dict[str, dict]:
    """Write the class under ``root``; return what each gradebook row must say, keyed by submission."""
    expected: dict[str, dict] = {}
    folder = root / "class"
    folder.mkdir()
    for name in PLAIN:
        target = folder / Path(name).name
        target.write_bytes(_fixture(name))
        entry = MANIFEST[name]
        expected[str(target)] = {"full": entry["expect_full_marks"], "diagnoses": set(entry["diagnoses"]),
                                 "status": "graded", "student": target.stem}
    hung = folder / "hung_forward.ipynb"
    hung.write_text(notebook_json(HUNG_FORWARD))
    expected[str(hung)] = {"full": False, "diagnoses": set(), "status": "graded", "student": "hung_forward",
                           "failed_check": "forward.values", "message": "time limit"}
    garbage = folder / "not_json.ipynb"
    garbage.write_bytes(b"\x89PNG this is not a notebook")
    expected[str(garbage)] = {"full": False, "diagnoses": set(), "status": "error", "student": "not_json"}

    canvas = root / "canvas_export.zip"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as nested:
        nested.writestr("my_work/simple_nn.ipynb", _fixture("buggy/activation_identity.ipynb"))
    with zipfile.ZipFile(canvas, "w") as archive:
        archive.writestr("doejane_12345_67890_simple_nn.ipynb", _fixture("correct/relu_clip_broadcasting.ipynb"))
        archive.writestr("roerichard_LATE_23456_78901_nn.ipynb", _fixture("buggy/outer_transposed__np_outer.ipynb"))
        archive.writestr("smithann_34567_89012_mywork.zip", inner.getvalue())
    expected[f"{canvas}!doejane_12345_67890_simple_nn.ipynb"] = {
        "full": True, "diagnoses": set(), "status": "graded", "student": "doejane",
        "lms": ["no", "canvas", "12345", "67890", "", ""]}
    expected[f"{canvas}!roerichard_LATE_23456_78901_nn.ipynb"] = {
        "full": False, "diagnoses": {"outer_transposed"}, "status": "graded", "student": "roerichard",
        "lms": ["yes", "canvas", "23456", "78901", "", ""]}
    expected[f"{canvas}!smithann_34567_89012_mywork.zip!my_work/simple_nn.ipynb"] = {
        "full": False, "diagnoses": {"activation_identity"}, "status": "graded", "student": "smithann",
        "lms": ["no", "canvas", "34567", "89012", "", ""]}
    return expected


def _opened(png: bytes):
    """The PNG opened (and verified) by an imaging library: a truncated or corrupt file raises."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    image.verify()
    return image


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    expected = build_class(root)
    out = root / "out"
    scratch = root / "tmp"  # the batch's temporary files, in every process, go here: see the leftovers test
    scratch.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(scratch))
        patch.setattr(tempfile, "tempdir", str(scratch))
        code = main(["grade", str(root / "class"), str(root / "canvas_export.zip"), "--out", str(out),
                     "--jobs", "2", *LIMIT_FLAGS])
    return root, out, expected, code


def test_a_batch_leaves_no_temporary_directory_behind(graded_class):
    """Each pool process's fork server (and each sandbox) removes its working directory when done."""
    root, _, _, code = graded_class
    assert code == 0
    assert sorted(p.name for p in (root / "tmp").iterdir()) == []


def _gradebook(out: Path) -> dict[str, dict]:
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as handle:
        return {row["submission"]: row for row in csv.DictReader(handle)}


def _reports(out: Path) -> dict[str, dict]:
    documents = [json.loads(p.read_text()) for p in (out / "reports").glob("*.json")]
    return {d["batch"]["source"]: d for d in documents}


def test_every_submission_gets_the_row_it_deserves(graded_class):
    _, out, expected, code = graded_class
    assert code == 0
    rows = _gradebook(out)
    assert set(rows) == set(expected)
    reports = _reports(out)
    for source, want in expected.items():
        row, report = rows[source], reports[source]
        assert row["status"] == want["status"], source
        assert row["student"] == want["student"], source
        assert [row[c] for c in GRADEBOOK_COLUMNS_LMS] == want.get("lms", ["", "", "", "", "", ""]), source
        if want["status"] == "error":  # blank, not a 0 to average in or import
            assert row["score"] == "" and report["score"] == 0
            continue
        assert float(row["score"]) == report["score"]
        full = float(row["score"]) == float(row["max_score"])
        assert full == want["full"], (source, row["score"])
        ids = {d["id"] for d in report["diagnoses"] if not d["id"].startswith("integrity_")}
        assert want["diagnoses"] <= ids, (source, ids)
        if "failed_check" in want:
            check = next(c for c in report["checks"] if c["id"] == want["failed_check"])
            assert not check["passed"] and want["message"] in check["message"]
        for check in report["checks"]:  # one column per check, equal to the report's points
            assert float(row[check["id"]]) == check["score"]


def test_every_output_file_is_there_and_well_formed(graded_class):
    _, out, expected, _ = graded_class
    reports = _reports(out)
    for source, document in reports.items():
        sid = document["batch"]["id"]
        page = parse_html((out / "feedback" / f"{sid}.html").read_text())
        assert page.named("html") and page.named("body")
        assert (out / "feedback" / f"{sid}.md").read_text().strip()
        results = json.loads((out / "results" / sid / "results.json").read_text())
        assert results["score"] == document["score"]
        if document["status"] == "graded":
            assert sum(t["max_score"] for t in results["tests"]) == document["max_score"]
            if document.get("training") and document["training"].get("loss"):
                pngs = embedded_pngs(page)
                assert pngs, f"{sid}: the loss curve is missing"
                assert _opened(pngs[0]).size[0] > 0
    summary_page = parse_html((out / "summary.html").read_text())
    pngs = [_opened(png) for png in embedded_pngs(summary_page)]
    assert len(pngs) >= 2 and all(p.size[0] > 100 and p.size[1] > 100 for p in pngs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == len(expected)
    tree = ElementTree.parse(out / "junit.xml").getroot()
    suites = tree.findall("testsuite")
    assert len(suites) == len(expected)
    failures = sum(int(s.get("failures", 0)) for s in suites)
    assert failures == sum(not c["passed"] for d in reports.values() for c in d["checks"])


def test_a_rerun_reuses_everything_and_a_changed_notebook_is_regraded(graded_class):
    root, out, expected, _ = graded_class
    class_files = [out / name for name in batch.CLASS_FILES]
    stamps = {p: p.stat().st_mtime_ns for p in [*(out / "reports").glob("*.json"), *class_files]}
    options = BatchOptions(out=out, jobs=2, limit_overrides=(("cell_timeout_s", 2.0), ("call_timeout_s", 1.0),
                                                               ("total_timeout_s", 30.0)))
    paths = [str(root / "class"), str(root / "canvas_export.zip")]
    again = run_batch(paths, options)
    assert (again.graded, again.reused) == (0, len(expected))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten, class files included
    (out / "summary.html").unlink()  # a class file gone: made again, the reports still reused
    again = run_batch(paths, options)
    assert (again.graded, again.reused) == (0, len(expected)) and (out / "summary.html").is_file()
    umask = os.umask(0)
    os.umask(umask)
    # Modes like any file the user makes (a temporary file's 0600 would hide the pages from a web server).
    assert {os.stat(p).st_mode & 0o777 for p in [*class_files, *stamps]} == {0o666 & ~umask}
    changed = root / "class" / "activation_identity.ipynb"
    changed.write_text(notebook_json(CORRECT_CELLS))
    third = run_batch(paths, options)
    assert third.graded == 1
    assert float(_gradebook(out)[str(changed)]["score"]) == 100.0  # the class files follow the change


def test_an_interrupted_batch_keeps_what_was_done_and_the_next_run_finishes(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    for i in range(6):
        (folder / f"student{i}.ipynb").write_text(notebook_json(CORRECT_CELLS + [f"x = {i}"]))
    out = tmp_path / "out"

    class Stop(batch.Progress):
        def advance(self, what: str) -> None:
            super().advance(what)
            if self.done == 2:
                raise KeyboardInterrupt

    stderr = io.StringIO()
    first = run_batch([str(folder)], BatchOptions(out=out, jobs=1), progress=lambda n: Stop(n, stderr))
    assert first.interrupted and 2 <= len(first.rows) < 6
    # The class files say what is still ungraded, and which: nobody takes this gradebook for a whole one.
    left = 6 - len(first.rows)
    summary = json.loads((out / "summary.json").read_text())
    done = {row.submission for row in first.rows}
    assert sorted(item["submission"] for item in summary["ungraded"]) == sorted(
        str(folder / f"student{i}.ipynb") for i in range(6) if str(folder / f"student{i}.ipynb") not in done)
    assert first.ungraded == tuple(item["submission"] for item in summary["ungraded"])
    noun, verb = ("submission", "is") if left == 1 else ("submissions", "are")
    assert f"Still ungraded: {left} {noun}" in "".join(parse_html((out / "summary.html").read_text()).text)
    assert f"grader: {left} {noun} {verb} still ungraded" in stderr.getvalue()
    second = run_batch([str(folder)], BatchOptions(out=out, jobs=1))
    assert not second.interrupted and second.reused == len(first.rows) and len(second.rows) == 6
    assert all(row.report.score == 100.0 for row in second.rows)
    assert json.loads((out / "summary.json").read_text())["ungraded"] == [] and second.ungraded == ()


def test_killing_the_grader_mid_batch_and_rerunning_finishes_the_rest(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    for i in range(8):
        slow = CORRECT_CELLS + [f"import time\ntime.sleep(0.4)\nstudent = {i}"]
        (folder / f"s{i}.ipynb").write_text(notebook_json(slow))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "grader", "grade", str(folder), "--out", str(out), "--jobs", "1"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((out / "reports").glob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(list((out / "reports").glob("*.json")))
    assert 2 <= done_before < 8
    assert not list((out / "reports").glob(".*.tmp"))  # no half-written report was left visible
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0
    assert f"{done_before} unchanged and reused" in finished.stderr
    assert len(_gradebook(out)) == 8


def test_a_grader_failure_is_an_error_row_not_a_crash(monkeypatch):
    from grader.rubric import load_rubric

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    from grader.batch import grading  # the grading step itself, shared by the local pool and Dask workers

    monkeypatch.setattr(grading, "grade_notebook", broken)
    monkeypatch.setitem(grading._worker_state, "rubric", load_rubric(None))
    monkeypatch.setitem(grading._worker_state, "options", grading.Options())
    monkeypatch.setitem(grading._worker_state, "server", None)
    document = grading._grade_in_worker("x.ipynb", b"{}")["report"]
    assert document["status"] == "error" and document["score"] == 0
    assert "grader itself failed" in document["error"] and "ZeroDivisionError: boom" in document["error"]


def test_bad_arguments_are_one_sentence_and_exit_2(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["grade", str(tmp_path), "--out", str(tmp_path / "out"), "--jobs", "0"]) == 2


# --- grades an LMS imports: one export of each LMS, named as the LMS names its files ----------------------

BB_ASSIGNMENT = "Lab 4_ neural net"
#: Without an assignment named by the export, the rubric's title names the one assignment column.
CANVAS_TITLE = load_rubric(None).title  # Blackboard keeps the assignment's own "_" in file names
GS_METADATA = """\
---
submission_987:
  :submitters:
  - :name: Ann Lee
    :sid: '1001'
    :email: ann@example.edu
  :created_at: 2024-03-01 12:00:00.000000000 -08:00
  :score:
submission_988:
  :submitters:
  - :name: Pat O'Brien
    :sid: '1002'
    :email: pat@example.edu
  - :name: Zoë Day
    :sid: '1003'
    :email: zoe@example.edu
  :created_at: 2024-03-01 12:05:00.000000000 -08:00
"""


def _bb_receipt(name: str, username: str) -> bytes:
    return (f"Name: {name} ({username})\nAssignment: {BB_ASSIGNMENT}\nDate Submitted: Friday, 1 March 2024 "
            "12:00:00 o'clock GMT\nCurrent Grade: Needs Grading\n\nSubmission Field:\nThere is no student "
            "submission text data for this assignment.\n\nComments:\nThere are no student comments for this "
            "assignment.\n\nFiles:\n").encode()


def build_lms_exports(root: Path) -> list[Path]:
    """One export per LMS, each with a graded student, a student whose work is wrong and one who cannot be
    graded (no notebook, or a broken one)."""
    correct = notebook_json(CORRECT_CELLS).encode()
    buggy = _fixture("buggy/outer_transposed__np_outer.ipynb")
    exports = {
        "canvas_submissions.zip": {
            "doejane_12345_67890_simple_nn.ipynb": correct,
            "nunezjose_LATE_23456_78901_simple_nn-1.ipynb": buggy,
            "roerichard_34567_89012_report.pdf": b"%PDF-1.4",
            "roerichard_34567_89013_nn.py": b"def forward(x, w1, w2):\n    return x\n",
        },
        "moodle_submissions.zip": {
            "Ann Lee_1234567_assignsubmission_file_/simple_nn.ipynb": correct,
            "José Núñez_2345678_assignsubmission_file_/Lab report (final).pdf": b"%PDF-1.4",
            "__MACOSX/Ann Lee_1234567_assignsubmission_file_/._simple_nn.ipynb": b"\x00\x05\x16\x07",
        },
        f"gradebook_CS101_{BB_ASSIGNMENT}_2024-03-03-08-00-00.zip": {
            f"{BB_ASSIGNMENT}_j_doe_attempt_2024-03-01-12-00-00.txt": _bb_receipt("Jane Q Doe", "j_doe"),
            f"{BB_ASSIGNMENT}_j_doe_attempt_2024-03-01-12-00-00_simple_nn.ipynb": buggy,
            f"{BB_ASSIGNMENT}_j_doe_attempt_2024-03-02-18-45-10.txt": _bb_receipt("Jane Q Doe", "j_doe"),
            f"{BB_ASSIGNMENT}_j_doe_attempt_2024-03-02-18-45-10_simple_nn.ipynb": correct,
            f"{BB_ASSIGNMENT}_cyd_attempt_2024-03-01-09-00-00.txt": _bb_receipt("Cy Dee", "cyd"),
        },
        "gradescope_export.zip": {
            "assignment_4471_export/submission_metadata.yml": GS_METADATA.encode(),
            "assignment_4471_export/submission_987/simple_nn.ipynb": buggy,
            "assignment_4471_export/submission_988/simple_nn.ipynb": b"{ not json",
        },
    }
    paths = []
    for name, members in exports.items():
        path = root / name
        with zipfile.ZipFile(path, "w") as archive:
            for member, data in members.items():
                archive.writestr(member, data)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def lms_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    paths = build_lms_exports(root)
    out = root / "out"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["grade", *map(str, paths), "--out", str(out), "--jobs", "2", *LIMIT_FLAGS,
                     "--lms", "canvas", "--lms", "moodle", "--lms", "blackboard", "--lms", "gradescope",
                     "--lms", "canvas"])
    return out, code, stderr.getvalue(), paths


def _import_file(out: Path, lms: str) -> list[list[str]]:
    with open(out / IMPORT_FILES[lms], newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_lms_exports_are_graded_with_their_ids(lms_class):
    out, code, _, _ = lms_class
    assert code == 0
    rows = {row["lms_user_id"] or row["lms_submission_id"]: row for row in _gradebook(out).values()}
    assert {key: (row["lms"], row["status"], row["score"]) for key, row in rows.items()} == {
        "12345": ("canvas", "graded", "100"),
        "23456": ("canvas", "graded", rows["23456"]["score"]),
        "34567": ("canvas", "error", ""),
        "1234567": ("moodle", "graded", "100"),
        "2345678": ("moodle", "error", ""),
        "j_doe": ("blackboard", "graded", "100"),  # the latest attempt, the correct one
        "cyd": ("blackboard", "error", ""),
        "987": ("gradescope", "graded", rows["987"]["score"]),
        "988": ("gradescope", "error", ""),
    }
    assert float(rows["23456"]["score"]) < 100 and float(rows["987"]["score"]) < 100
    assert (rows["23456"]["late"], rows["12345"]["late"], rows["j_doe"]["late"]) == ("yes", "no", "")
    assert (rows["988"]["email"], rows["988"]["sid"]) == ("pat@example.edu; zoe@example.edu", "1002; 1003")
    assert rows["j_doe"]["student"] == "Jane Q Doe" and rows["j_doe"]["lms_submission_id"] == "2024-03-02-18-45-10"
    reports = _reports(out)
    nobook = next(d for d in reports.values() if d["batch"]["id"] == "canvas-34567")
    assert nobook["error"] == ("roerichard submitted report.pdf and nn.py, no .ipynb notebook; "
                               "ask the student to upload the notebook.")


def test_canvas_import_file(lms_class):
    out, _, _, _ = lms_class
    header, points, *students = _import_file(out, "canvas")
    assert header == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", CANVAS_TITLE]
    assert "Points Possible" in points[0] and points[5] == "100"
    assert {s[1]: s[5] for s in students} == {"12345": "100", "23456": _gradebook_score(out, "23456"),
                                              "34567": ""}  # Canvas students only; the error row blank
    assert {s[0] for s in students} == {"doejane", "nunezjose", "roerichard"}


def test_moodle_import_file(lms_class):
    out, _, _, _ = lms_class
    header, *students = _import_file(out, "moodle")
    table = {s[0]: dict(zip(header, s, strict=True)) for s in students}
    assert set(table) == {"Participant 1234567", "Participant 2345678"}
    assert table["Participant 1234567"]["Grade"] == "100" and table["Participant 1234567"]["Full name"] == "Ann Lee"
    assert table["Participant 2345678"]["Grade"] == "" and table["Participant 2345678"]["Full name"] == "José Núñez"
    assert {t["Maximum Grade"] for t in table.values()} == {"100"}
    assert all(t["Last modified (grade)"].count(",") == 2 for t in table.values())  # "Friday, 1 March 2024, 2:05 PM"


def test_blackboard_import_file(lms_class):
    out, _, _, _ = lms_class
    raw = (out / IMPORT_FILES["blackboard"]).read_text(encoding="utf-8")
    assert all(line.startswith('"') and line.endswith('"') for line in raw.splitlines())  # every value quoted
    header, *students = _import_file(out, "blackboard")
    # The assignment's name as Blackboard's own file names give it.
    assert header == ["Last Name", "First Name", "Username", "Student ID", BB_ASSIGNMENT]
    assert sorted(students) == [["Dee", "Cy", "cyd", "", ""], ["Doe", "Jane Q", "j_doe", "", "100"]]


def test_gradescope_import_file(lms_class):
    out, _, _, _ = lms_class
    header, *students = _import_file(out, "gradescope")
    assert header == ["Name", "SID", "Email", "Total Score"]
    assert {s[2]: (s[0], s[1], s[3]) for s in students} == {
        "ann@example.edu": ("Ann Lee", "1001", _gradebook_score(out, "987")),
        "pat@example.edu": ("Pat O'Brien", "1002", ""),  # the group's notebook cannot be read: blank for both
        "zoe@example.edu": ("Zoë Day", "1003", ""),
    }


def test_files_not_graded_are_told_and_listed(lms_class):
    out, _, stderr, _ = lms_class
    summary = json.loads((out / "summary.json").read_text())
    listed = {item["path"].rsplit("!", 1)[1]: item["reason"] for item in summary["not_graded"]}
    assert listed == {
        "roerichard_34567_89012_report.pdf": "not a notebook (.pdf): only .ipynb files are graded",
        "roerichard_34567_89013_nn.py": "not a notebook (.py): only .ipynb files are graded",
        "José Núñez_2345678_assignsubmission_file_/Lab report (final).pdf":
            "not a notebook (.pdf): only .ipynb files are graded",
        f"{BB_ASSIGNMENT}_j_doe_attempt_2024-03-01-12-00-00_simple_nn.ipynb":
            "an earlier Blackboard attempt (2024-03-01 12:00:00); the latest attempt (2024-03-02 18:45:10) was graded",
    }
    assert "grader: 4 files found were not graded: " in stderr and "and 1 more; summary.json and" in stderr
    page = parse_html((out / "summary.html").read_text())
    text = "".join(page.text)
    assert "Files not graded" in text and "Lab report (final).pdf" in text
    # Who made each mistake links to their feedback page, which exists.
    mistakes = summary["diagnoses"]["outer_transposed"]["students"]
    assert sorted(who["id"] for who in mistakes) == ["canvas-23456", "gs-987"]
    links = {attrs["href"] for attrs in page.named("a")}
    assert all(f"feedback/{who['id']}.html" in links and (out / "feedback" / f"{who['id']}.html").is_file()
               for who in mistakes)


def test_a_rerun_without_lms_removes_the_stale_import_files(lms_class, tmp_path):
    out, _, _, _ = lms_class
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    again = run_batch([str(p) for p in lms_class[3]], BatchOptions(
        out=copy, jobs=1, limit_overrides=(("cell_timeout_s", 2.0), ("call_timeout_s", 1.0),
                                           ("total_timeout_s", 30.0)), lms=("gradescope",)),
        progress=lambda n: batch.Progress(n, io.StringIO()))
    assert again.graded == 0  # every report reused; only the class files follow the new --lms
    assert sorted(p.name for p in copy.glob("*.csv")) == ["gradebook.csv", IMPORT_FILES["gradescope"]]


def _gradebook_score(out: Path, key: str) -> str:
    return next(row["score"] for row in _gradebook(out).values()
                if key in (row["lms_user_id"], row["lms_submission_id"]))
