"""Operator and student are told different things (issue 11).

What the grading machine does not enforce (no namespaces, no seccomp, a cache that
had to move) is the operator's to know: stderr once per run, ``summary.json``,
``summary.html`` and ``grader doctor``. It never reaches what a student reads: any
``grader check`` format, the feedback files and Gradescope results of ``grader grade``,
the JSON reports, or the in-Jupyter self-check.

A notice is forced two ways: in this process, by adding one to the real confinement
(every format, fast, as root with the sandbox fully working); and for real, with
``GRADER_NO_NAMESPACES=1`` as the unprivileged user and with a cache directory another
user planted as both accounts, through the private installation of ``tests/unprivileged.py``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import pytest

from conftest import CORRECT_CELLS, SEED, notebook_json, parse_html
from grader import cache
from grader.sandbox import confine
from grader.sandbox import environment
from grader.sandbox import process as execute
from grader.cli import main
from grader.model import Report
from grader.batch.summary import GradebookRow, render_summary_html, summarize
from unprivileged import Account, account, private_install, root_account, unprivileged_account  # noqa: F401 (fixtures)

#: A notice no renderer could produce by accident; its token is what the tests look for.
TOKEN = "FORCED-NOTICE-7f3a"
FORCED = f"{TOKEN}: this machine enforces nothing it should, and only the operator may read so."
#: A fragment of confine.WARN_NO_NAMESPACES that no renderer's wrapping can split.
NAMESPACE_FRAGMENT = "namespaces were unavailable"
STUDENT_FORMATS = ("text", "json", "md", "html", "junit", "gradescope", "classroom")


@pytest.fixture
def forced_notice(monkeypatch) -> str:
    """This process's confinement, as decided for real, plus one notice for the operator."""
    forced = dataclasses.replace(confine.confinement(), notices=confine.confinement().notices + (FORCED,))
    monkeypatch.setattr(execute, "confinement", lambda: forced)
    monkeypatch.setattr(confine, "confinement", lambda: forced)
    environment.forget()
    yield FORCED
    environment.forget()


def _stderr_count(stderr: str, notice: str) -> int:
    return stderr.splitlines().count(environment.stderr_line(notice))


# --- grader check, every format, in this process ----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", STUDENT_FORMATS)
def test_check_prints_the_notice_on_stderr_once_and_never_in_the_report(forced_notice, capsys, fmt):
    code = main(["check", str(SEED), "--format", fmt])
    captured = capsys.readouterr()
    assert code == 0
    assert TOKEN not in captured.out
    assert _stderr_count(captured.err, forced_notice) == 1 and captured.err.count(TOKEN) == 1
    if fmt == "json":
        report = json.loads(captured.out)
        assert (report["status"], report["score"]) == ("graded", 50.0)
        assert not any(TOKEN in warning for warning in report["warnings"])


@pytest.mark.slow
def test_doctor_prints_the_notice_and_exits_1(forced_notice, capsys):
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert f"  - {forced_notice}" in out.splitlines()
    assert "notices for the operator (" in out
    assert main(["doctor", "--format", "json", "--no-sandbox"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["schema"] == "grader.doctor/1" and document["exit_code"] == 1
    assert forced_notice in document["notices"]


@pytest.mark.slow
def test_doctor_looks_inside_a_real_sandbox(capsys):
    """What it prints is what the sandbox itself read from /proc/self/status, and its uid on the host."""
    code = main(["doctor", "--format", "json"])
    document = json.loads(capsys.readouterr().out)
    facts = {fact["name"]: fact for fact in document["facts"]}
    assert code == document["exit_code"] in (0, 1) and document["fatal"] is None
    assert {"grader user", "namespaces", "caches", "sandbox capabilities", "sandbox no_new_privs",
            "sandbox seccomp filter", "sandbox uid on the host"} <= set(facts)
    assert facts["sandbox no_new_privs"]["detail"] in ("NoNewPrivs 1", "NoNewPrivs 0")
    assert facts["caches"]["detail"].startswith(str(cache.cache_root()))
    assert code == (1 if document["notices"] or any(f["ok"] is False for f in document["facts"]) else 0)


# --- the class files are the operator's ---------------------------------------------------------


def test_summary_lists_the_notices_and_summary_html_shows_them_escaped():
    notice = "The <b>grader</b> & its sandbox were not confined."
    rows = [GradebookRow("a.ipynb", "a", Report("a.ipynb", "simple_nn", "graded", 10, 100), "a")]
    summary = summarize(rows, [notice, notice])
    assert summary["operator_notices"] == [notice]
    page = render_summary_html(summary, rows)
    assert "The &lt;b&gt;grader&lt;/b&gt; &amp; its sandbox were not confined." in page
    assert notice in "".join(parse_html(page).text)
    assert "For the operator" in page
    quiet = summarize(rows)
    assert quiet["operator_notices"] == [] and "For the operator" not in render_summary_html(quiet, rows)


# --- for real: GRADER_NO_NAMESPACES=1, as the unprivileged user -------------------------------


def _workspace_with(who: Account, names: dict[str, str]) -> tuple[Path, Path]:
    workspace = who.workspace("sbx-notice-")
    folder = workspace / "class"
    folder.mkdir()
    who.give(folder)
    for name, text in names.items():
        (folder / name).write_text(text)
        who.give(folder / name)
    return workspace, folder


def _student_files(out: Path) -> list[Path]:
    """Everything of ``--out`` a student may be given: feedback pages, Gradescope results, JSON reports."""
    found = [*out.glob("feedback/*"), *out.glob("results/*/results.json"), *out.glob("reports/*.json")]
    assert found
    return found


def _assert_operator_only(out: Path, fragment: str, notice: str) -> None:
    for path in _student_files(out):
        assert fragment not in path.read_text(encoding="utf-8"), path
    assert fragment not in (out / "junit.xml").read_text(encoding="utf-8")
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as handle:
        assert fragment not in handle.read()
    assert json.loads((out / "summary.json").read_text())["operator_notices"].count(notice) == 1
    assert notice in "".join(parse_html((out / "summary.html").read_text()).text)


@pytest.mark.slow
def test_without_namespaces_check_grade_and_doctor_tell_only_the_operator(unprivileged_account):
    who = unprivileged_account
    env = {confine.NO_NAMESPACES_ENV: "1"}
    notice = confine.WARN_NO_NAMESPACES
    workspace, folder = _workspace_with(who, {"seed.ipynb": SEED.read_text(),
                                              "correct.ipynb": notebook_json(CORRECT_CELLS)})
    for fmt in ("json", "md", "html", "gradescope", "classroom"):
        result = who.grader("check", str(folder / "seed.ipynb"), "--format", fmt, cwd=workspace, env=env)
        assert result.returncode == 0, result.stderr
        assert NAMESPACE_FRAGMENT not in result.stdout and "GRADER_NO_NAMESPACES" not in result.stdout, fmt
        assert _stderr_count(result.stderr, notice) == 1 and result.stderr.count(NAMESPACE_FRAGMENT) == 1
        if fmt == "json":
            assert (json.loads(result.stdout)["status"], json.loads(result.stdout)["score"]) == ("graded", 50.0)

    out = workspace / "out"
    result = who.grader("grade", str(folder), "--out", str(out), "--jobs", "2", cwd=workspace, env=env)
    assert result.returncode == 0, result.stderr
    assert _stderr_count(result.stderr, notice) == 1 and result.stderr.count(NAMESPACE_FRAGMENT) == 1
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as handle:
        assert {row["student"]: row["score"] for row in csv.DictReader(handle)} == {"seed": "50", "correct": "100"}
    _assert_operator_only(out, NAMESPACE_FRAGMENT, notice)

    # Once per run, not per submission: a second run that grades one more notebook says it once again,
    # and the summary still lists it once (it also describes the two reports reused from the first run).
    (folder / "late.ipynb").write_text(notebook_json(CORRECT_CELLS))
    who.give(folder / "late.ipynb")
    again = who.grader("grade", str(folder), "--out", str(out), "--jobs", "2", cwd=workspace, env=env)
    assert again.returncode == 0, again.stderr
    assert "1 graded now" in again.stderr and "2 unchanged and reused" in again.stderr
    assert _stderr_count(again.stderr, notice) == 1
    _assert_operator_only(out, NAMESPACE_FRAGMENT, notice)

    doctor = who.grader("doctor", cwd=workspace, env=env)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert f"  - {notice}" in doctor.stdout.splitlines()
    assert any(line.startswith("  NO  namespaces") and "turned off by GRADER_NO_NAMESPACES=1" in line
               for line in doctor.stdout.splitlines())


# --- for real, as both accounts: a cache directory another user planted -----------------------


@pytest.mark.slow
def test_grade_tells_the_operator_about_a_planted_cache_once_and_no_student(account, unprivileged_account):
    workspace, folder = _workspace_with(account, {"seed.ipynb": SEED.read_text(),
                                                  "correct.ipynb": notebook_json(CORRECT_CELLS),
                                                  "again.ipynb": notebook_json(CORRECT_CELLS + ["y = 2"])})
    temporary = workspace / "tmp"
    temporary.mkdir()
    os.chmod(temporary, 0o1777)
    planted = temporary / f"grader-cache-{account.uid}"
    planted.mkdir()
    other = 0 if account.uid != 0 else unprivileged_account.uid
    os.chown(planted, other, other)
    os.chmod(planted, 0o777)
    notice = cache.NOTICE_FOREIGN_CACHE.format(path=planted)
    out = workspace / "out"
    result = account.grader("grade", str(folder), "--out", str(out), "--jobs", "2", cwd=workspace,
                            env={"HOME": "/nonexistent", "TMPDIR": str(temporary)})
    assert result.returncode == 0, result.stderr
    assert _stderr_count(result.stderr, notice) == 1 and result.stderr.count("is not a directory of this user") == 1
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as handle:
        assert {row["student"]: row["status"] for row in csv.DictReader(handle)} == {
            "seed": "graded", "correct": "graded", "again": "graded"}
    _assert_operator_only(out, str(planted), notice)
    assert not any(planted.iterdir())
    # Each process's private directory went with it.
    assert sorted(p.name for p in temporary.iterdir() if p.name.startswith("grader-cache")) == [planted.name]


# --- the in-Jupyter self-check ------------------------------------------------------------------


#: Run by the unprivileged user with its own interpreter: the seed notebook, then grader.check() both ways,
#: executed by nbclient in a real kernel; prints what the student would see, as JSON.
SELF_CHECK_SCRIPT = """
import json, sys
import nbformat
from nbclient import NotebookClient
seed = nbformat.read(sys.argv[1], as_version=4)
notebook = nbformat.v4.new_notebook()
notebook.cells = [nbformat.v4.new_code_cell(c.source) for c in seed.cells if c.cell_type == "code"]
notebook.cells += [nbformat.v4.new_code_cell("import grader\\ngrader.check()"),
                   nbformat.v4.new_code_cell("import json\\nprint(json.dumps(grader.check(display=False)))")]
NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True).execute()
shown, printed = notebook.cells[-2:]
print(json.dumps({"shown": [dict(o) for o in shown.outputs], "printed": [dict(o) for o in printed.outputs]}))
"""


@pytest.mark.slow
def test_self_check_never_shows_the_notice(unprivileged_account):
    """The student's side: ``grader.check()`` in a real kernel, as an ordinary user, without namespaces."""
    who = unprivileged_account
    workspace, folder = _workspace_with(who, {"seed.ipynb": SEED.read_text()})
    result = who.run([str(who.install.python), "-c", SELF_CHECK_SCRIPT, str(folder / "seed.ipynb")], cwd=workspace,
                     env={confine.NO_NAMESPACES_ENV: "1"})
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    (html,) = [o["data"]["text/html"] for o in outputs["shown"] if o["output_type"] == "display_data"]
    report = json.loads("".join(o["text"] for o in outputs["printed"] if o["output_type"] == "stream"))
    assert report["score"] == 50 and "backward.gradient" in html
    assert NAMESPACE_FRAGMENT not in html and NAMESPACE_FRAGMENT not in json.dumps(report)
    assert "GRADER_NO_NAMESPACES" not in html + json.dumps(report)
