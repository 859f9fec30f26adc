"""``grader grade --scheduler``: a class graded on a Dask cluster (one ``LocalCluster`` of two worker processes
for the module) gets the same reports as the local pool, resumes across the two modes, survives a worker killed
mid-batch, and turns a submission that kills two workers into an error row."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import CORRECT_CELLS, REPO, notebook_json

from grader.batch import cluster as dask_cluster
from grader.batch import run as batch
from grader.batch.run import BatchOptions, run_batch
from grader.cli import main

distributed = pytest.importorskip("distributed")

FIXTURES = REPO / "tests" / "fixtures" / "notebooks"
LIMITS = (("cell_timeout_s", 2.0), ("call_timeout_s", 1.0), ("total_timeout_s", 30.0))
CLASS = ["correct/relu_clip_broadcasting.ipynb", "buggy/activation_identity.ipynb",
         "buggy/outer_transposed__np_outer.ipynb", "broken/syntax_error_in_backward_cell.ipynb",
         "broken/error_before_definitions.ipynb"]
#: A notebook whose activation comes from a module beside it in the student's zip (a companion .py).
COMPANION_CELLS = ["import numpy as np\nimport matplotlib.pyplot as plt\nfrom mynn import activation, d_activation",
                   *CORRECT_CELLS[2:]]
COMPANION_MODULE = "import numpy as np\n\n" + CORRECT_CELLS[1] + "\n"
#: A cell that never ends: the cell timeout stops it, after long enough for the test to kill its worker.
SLOW_CELLS = [*CORRECT_CELLS, "while True:\n    pass"]


def _quiet(total: int) -> batch.Progress:
    return batch.Progress(total, io.StringIO())


@pytest.fixture(scope="module")
def worker_scratch(tmp_path_factory):
    """The workers' temporary folder (their fork servers' and sandboxes' working directories go there)."""
    return tmp_path_factory.mktemp("workers-tmp")


@pytest.fixture(scope="module")
def scheduler(worker_scratch):
    """One cluster for the module: two worker processes of one thread each, as ``dask worker --nworkers 2
    --nthreads 1`` starts them; a submission may kill one worker and be retried (allowed-failures 1)."""
    import dask

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(worker_scratch))  # for the worker processes, restarted ones included
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                               dashboard_address=None, silence_logs=50)
        yield cluster.scheduler_address
        cluster.close()


def build_class(root: Path) -> list[str]:
    """A mixed class: fixtures from correct/buggy/broken, a zip holding a notebook with its companion
    module, and a notebook that is not JSON; the paths to give ``grade``."""
    folder = root / "class"
    folder.mkdir()
    for name in CLASS:
        shutil.copyfile(FIXTURES / name, folder / Path(name).name)
    (folder / "not_json.ipynb").write_bytes(b"{ this is not a notebook")
    with zipfile.ZipFile(root / "student.zip", "w") as archive:
        archive.writestr("work/nn.ipynb", notebook_json(COMPANION_CELLS))
        archive.writestr("work/mynn.py", COMPANION_MODULE)
    solo = root / "solo"  # one student's folder on disk: the module beside the notebook is its companion
    solo.mkdir()
    (solo / "nn.ipynb").write_text(notebook_json(COMPANION_CELLS))
    (solo / "mynn.py").write_text(COMPANION_MODULE)
    return [str(folder), str(root / "student.zip"), str(solo)]


def _essence(out: Path) -> dict[str, tuple]:
    """What must not depend on where a report was made: status, score, every check, every diagnosis."""
    found = {}
    for path in (out / "reports").glob("*.json"):
        document = json.loads(path.read_text())
        found[document["batch"]["source"]] = (
            document["status"], document["score"], document["max_score"],
            [(c["id"], c["passed"], c["score"]) for c in document["checks"]],
            sorted(d["id"] for d in document["diagnoses"]))
    return found


@pytest.fixture(scope="module")
def both_ways(scheduler, tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    paths = build_class(root)
    local = run_batch(paths, BatchOptions(out=root / "local", jobs=2, limit_overrides=LIMITS), progress=_quiet)
    remote = run_batch(paths, BatchOptions(out=root / "dask", limit_overrides=LIMITS, scheduler=scheduler),
                       progress=_quiet)
    return root, paths, local, remote


@pytest.mark.slow
def test_a_class_graded_on_dask_gets_the_reports_of_the_local_pool(both_ways):
    root, _, local, remote = both_ways
    assert (remote.graded, remote.reused, remote.interrupted) == (local.graded, 0, False) == (len(CLASS) + 3, 0, False)
    here, there = _essence(root / "local"), _essence(root / "dask")
    assert here == there and len(there) == len(CLASS) + 3
    for companion in (f"{root / 'student.zip'}!work/nn.ipynb", str(root / "solo" / "nn.ipynb")):
        assert there[companion][:2] == ("graded", 100.0)  # activation came from mynn.py, sent as bytes
    assert there[str(root / "class" / "not_json.ipynb")][0] == "error"
    assert {status for status, *_ in there.values()} == {"graded", "error"}
    assert any(score < 100 for status, score, *_ in there.values() if status == "graded")
    for sid in (json.loads(p.read_text())["batch"]["id"] for p in (root / "dask" / "reports").glob("*.json")):
        for folder in ("local", "dask"):  # the feedback files are written either way
            assert (root / folder / "feedback" / f"{sid}.html").stat().st_size > 0
            assert (root / folder / "results" / sid / "results.json").is_file()
    assert (root / "dask" / "gradebook.csv").read_text() == (root / "local" / "gradebook.csv").read_text()


@pytest.mark.slow
def test_the_workers_close_their_fork_servers_when_the_run_ends(scheduler, worker_scratch, tmp_path):
    """The plugin's teardown runs when the run unregisters it: no working directory is left behind."""
    before = set(worker_scratch.iterdir())
    (tmp_path / "a.ipynb").write_text(notebook_json(CORRECT_CELLS))
    result = run_batch([str(tmp_path / "a.ipynb")], BatchOptions(out=tmp_path / "out", limit_overrides=LIMITS,
                                                                 scheduler=scheduler), progress=_quiet)
    assert result.graded == 1 and result.rows[0].report.score == 100.0
    deadline = time.monotonic() + 10
    while set(worker_scratch.iterdir()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(worker_scratch.iterdir()) - before == set()


@pytest.mark.slow
def test_resume_works_across_the_two_modes(both_ways, scheduler, tmp_path):
    root, paths, _, _ = both_ways
    for made_by, resumed_with in (("local", scheduler), ("dask", None)):
        out = tmp_path / made_by
        shutil.copytree(root / made_by, out)
        (out / "reports" / next(p.name for p in (out / "reports").glob("*.json"))).unlink()  # one left to grade
        again = run_batch(paths, BatchOptions(out=out, jobs=2, limit_overrides=LIMITS, scheduler=resumed_with),
                          progress=_quiet)
        assert (again.graded, again.reused) == (1, len(CLASS) + 2), made_by
        assert _essence(out) == _essence(root / made_by)


def _running(dask_worker) -> tuple[int, list[str]]:
    """On a worker: its process id and the keys of the tasks it is running (not those waiting there)."""
    return os.getpid(), [str(ts.key) for ts in dask_worker.state.tasks.values() if ts.state == "executing"]


def _kill_workers_running(client, victims: dict[str, int], killed: dict[str, int], stop: threading.Event) -> None:
    """Kill (SIGKILL) the worker process running a task whose key holds a name in ``victims``, each time
    the task is seen running again, up to as many times as that name says."""
    while not stop.is_set():
        try:
            running = client.run(_running, on_error="ignore")
        except Exception:  # noqa: BLE001 - the scheduler is busy replacing a worker: look again
            running = {}
        for pid, keys in running.values():
            name = next((n for n in victims for key in keys if n in key and killed[n] < victims[n]), None)
            if name is None:
                continue
            time.sleep(0.3)  # let it run its cells: the worker dies mid-submission
            os.kill(pid, signal.SIGKILL)
            killed[name] += 1
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_worker_costs_a_retry_and_a_submission_that_kills_two_is_an_error_row(scheduler, tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    for name in ("retried", "killer"):
        (folder / f"{name}.ipynb").write_text(notebook_json(SLOW_CELLS))
    for i in range(3):
        (folder / f"fine{i}.ipynb").write_text(notebook_json([*CORRECT_CELLS, f"x = {i}"]))
    # "killer" kills every worker that runs it, as a submission that brings its worker down would; "retried"
    # is running when its worker is killed once. A dead worker's waiting submissions are sent again.
    victims, killed = {"retried": 1, "killer": 5}, {"retried": 0, "killer": 0}
    stop = threading.Event()
    with distributed.Client(scheduler, set_as_default=False) as client:
        watcher = threading.Thread(target=_kill_workers_running, args=(client, victims, killed, stop), daemon=True)
        watcher.start()
        try:
            result = run_batch([str(folder)], BatchOptions(out=tmp_path / "out", limit_overrides=LIMITS,
                                                           scheduler=scheduler), progress=_quiet)
        finally:
            stop.set()
            watcher.join()
        client.wait_for_workers(2, timeout=60)  # the nannies restart them for the next test
    rows = {Path(row.submission).stem: row.report for row in result.rows}
    assert sorted(rows) == ["fine0", "fine1", "fine2", "killer", "retried"]  # every row present
    assert killed["retried"] == 1 and rows["retried"].status == "graded"  # graded elsewhere
    assert rows["retried"].score > 0 and rows["retried"].checks
    # Two deaths while it ran make it an error row; three when the second one hit it waiting on a worker.
    assert rows["killer"].status == "error" and killed["killer"] in (2, 3)
    assert f"its grading process died on {killed['killer']} Dask workers" in rows["killer"].error
    assert all(rows[f"fine{i}"].status == "graded" and rows[f"fine{i}"].score == 100.0 for i in range(3))


@pytest.mark.slow
def test_ctrl_c_cancels_what_is_in_flight_keeps_what_is_done_and_the_next_run_finishes(scheduler, tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    for i in range(8):
        (folder / f"student{i}.ipynb").write_text(notebook_json([*CORRECT_CELLS, f"x = {i}"]))

    class Stop(batch.Progress):
        def advance(self, what: str) -> None:
            super().advance(what)
            if self.done == 2:
                raise KeyboardInterrupt

    options = BatchOptions(out=tmp_path / "out", limit_overrides=LIMITS, scheduler=scheduler)
    started = time.monotonic()
    first = run_batch([str(folder)], options, progress=lambda n: Stop(n, io.StringIO()))
    assert first.interrupted and len(first.rows) == 2 and len(first.ungraded) == 6
    assert time.monotonic() - started < 30  # the rest was cancelled, not waited for
    with distributed.Client(scheduler, set_as_default=False) as client:  # nothing left running there
        deadline = time.monotonic() + 10
        while any(client.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(client.processing().values())
    second = run_batch([str(folder)], options, progress=_quiet)
    assert (second.reused, second.graded, second.interrupted) == (2, 6, False)
    assert all(row.report.score == 100.0 for row in second.rows)


@pytest.mark.slow
def test_kernel_backend_through_dask(scheduler, tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copyfile(FIXTURES / "correct/relu_clip_broadcasting.ipynb", folder / "right.ipynb")
    shutil.copyfile(FIXTURES / "buggy/activation_identity.ipynb", folder / "wrong.ipynb")
    result = run_batch([str(folder)], BatchOptions(out=tmp_path / "out", backend="kernel", limit_overrides=LIMITS,
                                                   scheduler=scheduler), progress=_quiet)
    scores = {Path(row.submission).stem: (row.report.status, row.report.score) for row in result.rows}
    assert scores["right"] == ("graded", 100.0)
    assert scores["wrong"][0] == "graded" and scores["wrong"][1] < 100.0
    assert json.loads(next((tmp_path / "out" / "reports").glob("*.json")).read_text())["graded_with"]


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_sentence_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT_S", 1.0)
    (tmp_path / "a.ipynb").write_text(notebook_json(CORRECT_CELLS))
    code = main(["grade", str(tmp_path / "a.ipynb"), "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("grader: The Dask scheduler at tcp://127.0.0.1:9 could not be reached within 1 s")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "reports").exists()  # nothing graded


def test_without_dask_the_scheduler_option_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # "import distributed" raises ImportError
    (tmp_path / "a.ipynb").write_text(notebook_json(CORRECT_CELLS))
    code = main(["grade", str(tmp_path / "a.ipynb"), "--out", str(tmp_path / "out"), "--scheduler", "tcp://x:8786"])
    assert code == 2
    assert capsys.readouterr().err == f"grader: {dask_cluster.NEEDS_DASK}\n"


def test_a_worker_result_is_json_bytes_and_a_worker_without_the_plugin_says_so(monkeypatch):
    """What crosses back from a worker is JSON bytes (Dask's "dask" serializer for bytes: no pickle)."""
    class NoPlugins:
        plugins: ClassVar[dict[str, object]] = {}

    monkeypatch.setattr(distributed, "get_worker", lambda: NoPlugins())
    raw = dask_cluster.grade_task("grader-x", "a.ipynb", b"{}", "", None)
    assert isinstance(raw, bytes) and json.loads(raw) == {"failure": dask_cluster.NOT_SET_UP, "notices": []}
    from distributed.protocol import serialize

    header, frames = serialize(raw)
    assert header["serializer"] == "dask" and frames == [raw]


def test_a_worker_is_sent_the_companion_modules_of_a_notebook_on_disk_too(tmp_path):
    """No shared file system: the client reads the modules beside a notebook, in a folder or a zip, and
    sends them; a worker never looks at its own disk at the client's path."""
    from grader.batch.collect import collect

    build_class(tmp_path)
    collection = collect([str(tmp_path / "solo"), str(tmp_path / "student.zip"), str(tmp_path / "class")])
    sent = {s.source: dask_cluster.payload(s) for s in collection.submissions}
    for source in (str(tmp_path / "solo" / "nn.ipynb"), f"{tmp_path / 'student.zip'}!work/nn.ipynb"):
        data, files = sent[source]
        assert json.loads(data)["cells"] and files == {"mynn.py": COMPANION_MODULE.encode()}
    assert sent[str(tmp_path / "class" / "not_json.ipynb")] == (b"{ this is not a notebook", {})
