"""``grader grade`` end to end over a generated class: folders and LMS zips; correct, buggy, broken,
hostile and unreadable notebooks mixed. Every row is asserted, then resume, interruption and a kill."""
from __future__ import annotations

import csv
import io
import json
import os
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
from grader.cli import main

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
        "full": True, "diagnoses": set(), "status": "graded", "student": "doejane"}
    expected[f"{canvas}!roerichard_LATE_23456_78901_nn.ipynb"] = {
        "full": False, "diagnoses": {"outer_transposed"}, "status": "graded", "student": "roerichard"}
    expected[f"{canvas}!smithann_34567_89012_mywork.zip!my_work/simple_nn.ipynb"] = {
        "full": False, "diagnoses": {"activation_identity"}, "status": "graded", "student": "smithann"}
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
        assert float(row["score"]) == report["score"]
        full = float(row["score"]) == float(row["max_score"])
        assert full == want["full"], (source, row["score"])
        ids = {d["id"] for d in report["diagnoses"] if not d["id"].startswith("integrity_")}
        assert want["diagnoses"] <= ids, (source, ids)
        if "failed_check" in want:
            check = next(c for c in report["checks"] if c["id"] == want["failed_check"])
            assert not check["passed"] and want["message"] in check["message"]
        if want["status"] == "error":
            assert report["error"] and report["score"] == 0
        else:  # one column per check, equal to the report's points
            for check in report["checks"]:
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

    first = run_batch([str(folder)], BatchOptions(out=out, jobs=1), progress=lambda n: Stop(n, io.StringIO()))
    assert first.interrupted and 2 <= len(first.rows) < 6
    second = run_batch([str(folder)], BatchOptions(out=out, jobs=1))
    assert not second.interrupted and second.reused == len(first.rows) and len(second.rows) == 6
    assert all(row.report.score == 100.0 for row in second.rows)


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

    monkeypatch.setattr(batch, "grade_notebook", broken)
    monkeypatch.setitem(batch._worker_state, "rubric", load_rubric(None))
    monkeypatch.setitem(batch._worker_state, "options", batch.Options())
    monkeypatch.setitem(batch._worker_state, "server", None)
    document = batch._grade_in_worker("x.ipynb", b"{}")["report"]
    assert document["status"] == "error" and document["score"] == 0
    assert "grader itself failed" in document["error"] and "ZeroDivisionError: boom" in document["error"]


def test_bad_arguments_are_one_sentence_and_exit_2(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["grade", str(tmp_path), "--out", str(tmp_path / "out"), "--jobs", "0"]) == 2
