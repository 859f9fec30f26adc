"""Service accounts (issue 11): a home that is not writable, a cache another user planted, a pool that dies.

Containers and service users often have ``HOME=/nonexistent``. ``grader check`` and
``grader grade`` must still grade there, as root and as an ordinary user, keeping their
caches in a private per-user temporary directory (or ``GRADER_CACHE_DIR``), and a pool
whose processes cannot live must end with error rows and a gradebook, never hang.

The cache rules are tested in this process (``grader.cache``); the commands run from the
private installation of ``tests/unprivileged.py`` as both accounts, with ``TMPDIR``
pointing into the test's own workspace so that where the cache went can be asserted
exactly (and nothing is left in the machine's ``/tmp``).
"""
from __future__ import annotations

import concurrent.futures as futures
import csv
import json
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from conftest import CORRECT_CELLS, SEED, notebook_json
from grader.batch import run as batch
from grader import cache
from grader.sandbox import confine
from grader.sandbox import environment
from grader.batch.run import BatchOptions, run_batch
from grader.cli import main
from grader.errors import SettingError
from unprivileged import Account, account, private_install, root_account, unprivileged_account  # noqa: F401 (fixtures)

NO_HOME = "/nonexistent"


@pytest.fixture(autouse=True)
def fresh_cache_decision():
    """Each test decides the cache root afresh (the decision is memoised per environment)."""
    cache._resolve.cache_clear()
    yield
    cache._resolve.cache_clear()


@pytest.fixture
def no_home(tmp_path, monkeypatch) -> Path:
    """This process as a service account: a home that does not exist, no XDG_CACHE_HOME, TMPDIR of its own."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "nonexistent"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(cache.CACHE_DIR_ENV, raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    environment.forget()
    return temporary


def _other_uid() -> int:
    """A uid that is not this process's (root's tests plant directories as nobody; others as root)."""
    return 65534 if os.geteuid() != 65534 else 0


# --- where the cache goes (grader.cache, in this process) ------------------------------------


def test_without_a_home_the_cache_is_a_private_per_user_temporary_directory(no_home, tmp_path):
    root = cache.describe()
    assert root.path == no_home / f"grader-cache-{os.geteuid()}" and root.origin == "temporary"
    assert root.reason == f"the home directory {tmp_path / 'nonexistent'} does not exist"
    info = os.lstat(root.path)
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == 0o700
    assert not (tmp_path / "nonexistent").exists()  # not even root creates a missing home
    assert cache.cache_root() == root.path and environment.notices() == ()


def test_xdg_cache_home_and_grader_cache_dir_are_honoured(no_home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.describe() == cache.CacheRoot(tmp_path / "xdg" / "grader", "XDG_CACHE_HOME")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "configured" / "deep"))
    assert cache.describe() == cache.CacheRoot(tmp_path / "configured" / "deep", "GRADER_CACHE_DIR")
    assert (tmp_path / "configured" / "deep").is_dir()


def test_an_unusable_grader_cache_dir_is_one_sentence_naming_the_setting(no_home, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(blocker / "cache"))
    with pytest.raises(SettingError) as caught:
        cache.cache_root()
    assert caught.value.message == (f"Setting GRADER_CACHE_DIR = '{blocker / 'cache'}' from the environment is not "
                                    "valid: expected a directory this user can create and write (not a directory).")


def test_a_directory_of_ours_that_others_could_read_is_made_private(no_home):
    shared = no_home / f"grader-cache-{os.geteuid()}"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    assert cache.describe().path == shared and stat.S_IMODE(os.lstat(shared).st_mode) == 0o700


@pytest.mark.parametrize("planted", ["another user's directory", "a symbolic link", "a group-writable directory"])
def test_a_per_user_directory_planted_by_someone_else_is_never_used(no_home, tmp_path, planted):
    shared = no_home / f"grader-cache-{os.geteuid()}"
    if planted == "a symbolic link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        shared.symlink_to(tmp_path / "elsewhere")
    else:
        shared.mkdir()
        (shared / "site-view").mkdir()
        if planted == "another user's directory":
            if os.geteuid() != 0:
                pytest.skip("giving a directory to another user needs root")
            os.chown(shared, _other_uid(), _other_uid())
            os.chmod(shared, 0o700)
        else:
            os.chmod(shared, 0o775)
    root = cache.describe()
    assert root.origin == "private temporary" and root.path.parent == no_home
    assert root.path.name.startswith(f"grader-cache-{os.geteuid()}-") and root.path != shared
    assert stat.S_IMODE(os.lstat(root.path).st_mode) == 0o700
    assert environment.notices() == (cache.NOTICE_FOREIGN_CACHE.format(path=shared),)
    if planted == "a symbolic link":
        assert shared.is_symlink() and list((tmp_path / "elsewhere").iterdir()) == []
    else:
        assert [p.name for p in shared.iterdir()] == ["site-view"] and not any((shared / "site-view").iterdir())


# --- the commands, as root and as an ordinary user, with HOME=/nonexistent --------------------


def _service_workspace(who: Account) -> tuple[Path, Path, dict[str, str]]:
    """A workspace of ``who`` with a sticky TMPDIR in it, and the environment of a service account."""
    workspace = who.workspace("sbx-service-")
    temporary = workspace / "tmp"
    temporary.mkdir()
    os.chmod(temporary, 0o1777)
    return workspace, temporary, {"HOME": NO_HOME, "TMPDIR": str(temporary)}


def _give_notebook(who: Account, path: Path, text: str) -> Path:
    path.write_text(text)
    who.give(path)
    return path


def _assert_private_cache(who: Account, temporary: Path) -> None:
    """The cache went to TMPDIR/grader-cache-<uid>, 0700 and the account's, and nowhere else."""
    assert sorted(p.name for p in temporary.iterdir() if p.name.startswith("grader-cache")) == \
        [f"grader-cache-{who.uid}"]
    info = os.lstat(temporary / f"grader-cache-{who.uid}")
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == who.uid and stat.S_IMODE(info.st_mode) == 0o700
    assert (temporary / f"grader-cache-{who.uid}" / "site-view").is_dir()
    assert not Path(NO_HOME).exists()


@pytest.mark.slow
def test_check_without_a_writable_home_grades_and_prints_the_report(account):
    workspace, temporary, env = _service_workspace(account)
    notebook = _give_notebook(account, workspace / "seed.ipynb", SEED.read_text())
    result = account.grader("check", str(notebook), "--format", "json", cwd=workspace, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["status"], report["score"], report["max_score"]) == ("graded", 50.0, 100.0)
    assert [d["id"] for d in report["diagnoses"]] == ["d_activation_on_w2_partials"]
    assert "Traceback" not in result.stderr and "PermissionError" not in result.stderr
    assert "Matplotlib created a temporary" not in result.stderr
    _assert_private_cache(account, temporary)


@pytest.mark.slow
def test_grade_without_a_writable_home_writes_the_gradebook(account):
    workspace, temporary, env = _service_workspace(account)
    folder = workspace / "class"
    folder.mkdir()
    account.give(folder)
    _give_notebook(account, folder / "seed.ipynb", SEED.read_text())
    _give_notebook(account, folder / "correct.ipynb", notebook_json(CORRECT_CELLS))
    out = workspace / "out"
    started = time.monotonic()
    result = account.grader("grade", str(folder), "--out", str(out), "--jobs", "2", cwd=workspace, env=env,
                            timeout=240)
    assert time.monotonic() - started < 240
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Exception in initializer" not in result.stderr
    assert "Matplotlib created a temporary" not in result.stderr  # the summary's charts found a config directory
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as handle:
        rows = {row["student"]: (row["status"], row["score"]) for row in csv.DictReader(handle)}
    assert rows == {"seed": ("graded", "50"), "correct": ("graded", "100")}
    assert f"2 submissions in {out}: 2 graded now" in result.stderr
    _assert_private_cache(account, temporary)


@pytest.mark.slow
def test_a_cache_directory_planted_by_another_user_is_refused_and_the_operator_told(account, unprivileged_account):
    workspace, temporary, env = _service_workspace(account)
    planted = temporary / f"grader-cache-{account.uid}"
    (planted / "site-view").mkdir(parents=True)
    other = 0 if account.uid != 0 else unprivileged_account.uid
    for path in (planted, planted / "site-view"):
        os.chown(path, other, other)
        os.chmod(path, 0o777)
    notebook = _give_notebook(account, workspace / "seed.ipynb", SEED.read_text())
    result = account.grader("check", str(notebook), "--format", "json", cwd=workspace, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["status"], report["score"]) == ("graded", 50.0)
    notice = environment.stderr_line(cache.NOTICE_FOREIGN_CACHE.format(path=planted))
    assert result.stderr.splitlines().count(notice) == 1
    assert cache.NOTICE_FOREIGN_CACHE.format(path=planted) not in result.stdout
    assert sorted(p.name for p in planted.iterdir()) == ["site-view"] and not any((planted / "site-view").iterdir())
    # The private directory the process used instead was removed when it ended.
    assert sorted(p.name for p in temporary.iterdir() if p.name.startswith("grader-cache")) == [planted.name]


# --- a cache that cannot be used, a pool that cannot live: error rows, never a hang -------------


def test_check_with_an_unusable_grader_cache_dir_prints_an_error_report(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(blocker))
    confine.confinement.cache_clear()  # decided again, under this environment
    try:
        code = main(["check", str(SEED), "--format", "json"])
    finally:
        confine.confinement.cache_clear()
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 2 and report["status"] == "error" and report["score"] == 0
    assert report["error"] == (f"Setting GRADER_CACHE_DIR = '{blocker}' from the environment is not valid: "
                               "expected a directory this user can create and write (not a directory).")
    assert "Traceback" not in captured.err


def test_grade_with_an_unusable_grader_cache_dir_stops_before_any_work_with_one_sentence(tmp_path, monkeypatch,
                                                                                       capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(blocker))
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "a.ipynb").write_text(notebook_json(CORRECT_CELLS))
    out = tmp_path / "out"
    confine.confinement.cache_clear()  # decided again, under this environment
    try:
        code = main(["grade", str(folder), "--out", str(out), "--jobs", "2"])
    finally:
        confine.confinement.cache_clear()
    sentence = (f"Setting GRADER_CACHE_DIR = '{blocker}' from the environment is not valid: expected a directory "
                "this user can create and write (not a directory).")
    assert code == 2 and capsys.readouterr().err == f"grader: {sentence}\n"
    assert not out.exists()


class _Quiet(batch.Progress):
    """No output; the operator lines are kept in ``lines``."""

    def __init__(self, total: int) -> None:
        super().__init__(total, _Sink())
        self.lines: list[str] = []

    def note(self, line: str) -> None:
        self.lines.append(line)


@pytest.mark.slow
def test_a_grading_process_that_could_not_start_makes_each_of_its_submissions_an_error_row(tmp_path, monkeypatch):
    """What ``_grade_in_worker`` answers after ``_init_worker`` failed: the reason, and its notices."""
    def could_not_start(*args: object) -> dict[str, object]:
        return {"failure": "The rubric could not be read.", "notices": ["A notice for the operator."]}

    monkeypatch.setattr(batch, "_grade_in_worker", could_not_start)
    monkeypatch.setattr(batch, "_pool", lambda options: futures.ThreadPoolExecutor(max_workers=options.jobs))
    folder = tmp_path / "class"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.ipynb").write_text(notebook_json(CORRECT_CELLS + [f"name = {name!r}"]))
    meters: list[_Quiet] = []
    result = run_batch([str(folder)], BatchOptions(out=tmp_path / "out", jobs=2),
                       progress=lambda n: meters.append(_Quiet(n)) or meters[-1])
    sentence = batch.WORKER_FAILED.format(reason="The rubric could not be read")
    assert [row.report.error for row in result.rows] == [sentence] * 3 and result.errors == 3
    assert result.notices == ("A notice for the operator.",)
    assert meters[0].lines == [environment.stderr_line("A notice for the operator.")]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["operator_notices"] == ["A notice for the operator."]
    assert [item["error"] for item in summary["error_submissions"]] == [sentence] * 3


def _pool_whose_initializer_raises(options: BatchOptions) -> futures.ProcessPoolExecutor:
    """What a pool is when its processes cannot start: ``int("boom")`` raises in every initializer."""
    return futures.ProcessPoolExecutor(max_workers=options.jobs, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=int, initargs=("boom",))


@pytest.mark.slow
def test_a_pool_whose_processes_cannot_start_ends_with_error_rows_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "_pool", _pool_whose_initializer_raises)
    folder = tmp_path / "class"
    folder.mkdir()
    count = 6
    for index in range(count):
        (folder / f"s{index}.ipynb").write_text(notebook_json(CORRECT_CELLS + [f"x = {index}"]))
    out = tmp_path / "out"
    meters: list[_Quiet] = []
    started = time.monotonic()
    result = run_batch([str(folder)], BatchOptions(out=out, jobs=1),
                       progress=lambda n: meters.append(_Quiet(n)) or meters[-1])
    assert time.monotonic() - started < 120
    assert len(result.rows) == count and result.errors == count and not result.interrupted
    died_twice = batch.GRADER_FAILED.format(reason="its grading process died twice")
    messages = [row.report.error for row in result.rows]
    assert set(messages) <= {died_twice, batch.POOL_LOST} and batch.POOL_LOST in messages
    assert all("\n" not in message for message in messages)
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["error"] * count
    (lost,) = result.notices
    assert lost.startswith(f"{batch.MAX_FRUITLESS_POOLS} pools of grading processes in a row died before grading")
    assert meters[0].lines == [environment.stderr_line(lost)]
    assert json.loads((out / "summary.json").read_text())["operator_notices"] == [lost]
    for row in result.rows:  # every row has its files, so the next run knows what to regrade
        assert (out / "reports" / f"{row.id}.json").is_file() and (out / "feedback" / f"{row.id}.html").is_file()


class _Sink:
    """A stream that is not a terminal and keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
