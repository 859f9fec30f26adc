"""Hostile and broken submissions: each is contained, costs only what it should, and is reported.

Every test grades a real notebook end to end with small limits, and asserts the
precise outcome: which checks lose credit, the reason in the report, a bounded
wall time, no process left behind, nothing written outside the sandbox. Nothing
here can harm the machine if a limit failed: loops are bounded by the test's own
limits, allocations stay at or under 6 GB of *address space* request, and
children sleep for a bounded time and are killed by the test if still found.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from grader.sandbox import jail
from grader.sandbox.confine import confinement
from grader.sandbox.forkserver import ForkServer
from grader.grade import Options, grade_notebook
from grader.sandbox.limits import Limits
from grader.rubric import load_rubric

from conftest import CORRECT_CELLS, notebook_json

pytestmark = pytest.mark.slow

LIMITS = Limits(cell_timeout_s=2, call_timeout_s=1, total_timeout_s=40, memory_mb=1024,
                file_size_mb=8, max_processes=32, output_kb=16)
#: Wall time allowed beyond the relevant limit before a "hung" report counts as late (the issue's bound).
SLACK_S = 2.0
NAMESPACES = confinement().namespaces

ACTIVATION, DERIVATIVE_AND_LOSS = CORRECT_CELLS[1], CORRECT_CELLS[2]
IMPORTS, FORWARD, BACKWARD = CORRECT_CELLS[0], CORRECT_CELLS[3], CORRECT_CELLS[4]


@pytest.fixture(scope="module", params=["fresh process", "fork server"])
def server(request):
    """Both ways a sandbox starts must contain the same things."""
    if request.param == "fresh process":
        yield None
        return
    with ForkServer() as forks:
        yield forks


@pytest.fixture
def grade(server):
    def run(tmp_path: Path, cells: list[str], limits: Limits = LIMITS):
        path = tmp_path / "hostile.ipynb"
        path.write_text(notebook_json(cells))
        started = time.monotonic()
        report = grade_notebook(path, load_rubric(None), Options(limits=limits, server=server))
        return report, time.monotonic() - started
    return run


@pytest.fixture
def baseline_s(grade, tmp_path_factory) -> float:
    """Wall time to grade the correct notebook here, now: what a hung submission may add its limit to."""
    _, wall = grade(tmp_path_factory.mktemp("baseline"), CORRECT_CELLS)
    return wall


def by_id(report) -> dict:
    return {check.id: check for check in report.checks}


def passed_functions(report) -> set[str]:
    return {c.function for c in report.checks if c.passed} - {c.function for c in report.checks if not c.passed}


def diagnosis_ids(report) -> set[str]:
    return {d.id for d in report.diagnoses}


def with_function(replaced: str, source: str) -> list[str]:
    """The correct notebook with one function's definition replaced by ``source`` (appended last)."""
    return CORRECT_CELLS + [source]


# --- runaway time -------------------------------------------------------------------


def test_infinite_loop_at_top_level_costs_one_cell_limit_and_nothing_else(tmp_path, grade, baseline_s):
    report, wall = grade(tmp_path, CORRECT_CELLS[:2] + ["while True:\n    pass"] + CORRECT_CELLS[2:])
    assert report.status == "graded" and report.score == report.max_score
    assert report.cells[2].status == "timeout"
    assert any("Cell 4" in w and "time limit" in w for w in report.warnings)  # a markdown cell comes first
    assert wall < LIMITS.cell_timeout_s + SLACK_S + baseline_s


def test_hung_function_fails_with_time_limit_and_the_others_are_graded(tmp_path, grade, baseline_s):
    report, wall = grade(tmp_path, with_function("forward", "def forward(x, w1, w2):\n    while True:\n        pass"))
    checks = by_id(report)
    assert not checks["forward.values"].passed and checks["forward.values"].score == 0
    assert "time limit" in checks["forward.values"].message
    assert {"activation", "d_activation", "backward"} <= passed_functions(report)
    # One call limit, not one per probe: later calls of a hung function fail at once.
    assert wall < LIMITS.call_timeout_s + SLACK_S + baseline_s


def test_code_that_swallows_the_alarm_and_ignores_sigterm_is_killed(tmp_path, grade, baseline_s):
    stubborn = ("import signal, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "def backward(x, y, y_hat, w1, w2, eta):\n"
                "    for _ in range(10**9):\n"
                "        try:\n"
                "            time.sleep(0.05)\n"
                "        except BaseException:\n"
                "            pass\n")
    report, wall = grade(tmp_path, with_function("backward", stubborn))
    checks = by_id(report)
    assert not checks["backward.values"].passed and checks["backward.values"].score == 0
    assert "time limit" in checks["backward.values"].message
    assert {"activation", "d_activation", "forward"} <= passed_functions(report)
    assert "integrity_signal_tamper" in diagnosis_ids(report)
    # The worker is killed and restarted (a second start-up) before grading goes on.
    assert wall < LIMITS.call_timeout_s + SLACK_S + 2 * baseline_s


def test_ignoring_the_alarm_signal_in_a_cell_is_caught_by_the_watchdog(tmp_path, grade, baseline_s):
    cells = CORRECT_CELLS + ["import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass"]
    report, wall = grade(tmp_path, cells)
    assert report.cells[-1].status == "timeout"
    assert report.score == report.max_score  # the definitions before it were replayed after the restart
    assert wall < LIMITS.cell_timeout_s + SLACK_S + 2 * baseline_s


# --- memory, output, files ------------------------------------------------------------


def test_six_gigabytes_in_a_function_is_a_memory_limit_with_no_credit(tmp_path, grade):
    hog = ("def forward(x, w1, w2):\n"
           "    big = np.ones(6 * 10**9 // 8)\n"
           "    return activation(x @ w1) @ w2 + 0 * big[0]")
    report, _ = grade(tmp_path, with_function("forward", hog))
    check = by_id(report)["forward.values"]
    assert not check.passed and check.score == 0
    assert "memory limit" in check.message
    assert {"activation", "d_activation", "backward"} <= passed_functions(report)


def test_memory_touched_in_chunks_in_a_cell_stops_that_cell_only(tmp_path, grade):
    chunks = "import numpy as np\nkeep = []\nfor _ in range(60):\n    keep.append(np.ones(100 * 2**20 // 8))\n"
    # A generous cell limit: this test is about memory, and touching pages is slow on a loaded machine.
    report, _ = grade(tmp_path, CORRECT_CELLS + [chunks], dataclasses.replace(LIMITS, cell_timeout_s=20))
    assert report.score == report.max_score
    assert report.cells[-1].status in ("error", "crashed")
    assert any("memory limit" in w or "MemoryError" in w or "crashed" in w for w in report.warnings)


def test_two_hundred_megabytes_of_output_keeps_only_a_bounded_excerpt(tmp_path, grade):
    flood = "import sys\nline = 'x' * (1 << 20)\nfor _ in range(200):\n    sys.stdout.write(line)\n"
    report, _ = grade(tmp_path, CORRECT_CELLS + [flood])
    assert report.score == report.max_score
    assert len(report.output_excerpt) < LIMITS.output_kb * 1024 + 200
    dropped = int(report.output_excerpt.rsplit("... ", 1)[1].split(" ")[0])
    assert dropped >= 200 * (1 << 20) - LIMITS.output_kb * 1024


def test_writing_a_file_past_the_size_limit_fails_in_the_cell(tmp_path, grade):
    big = "with open('big.bin', 'wb') as f:\n    for _ in range(32):\n        f.write(b'0' * (1 << 20))"
    report, _ = grade(tmp_path, CORRECT_CELLS + [big])
    assert report.score == report.max_score
    assert report.cells[-1].status == "error"
    assert any(("too large" in w or "No space" in w) for w in report.warnings)


# --- crashes ----------------------------------------------------------------------------


def test_sys_exit_after_the_definitions_does_not_stop_grading(tmp_path, grade):
    report, _ = grade(tmp_path, CORRECT_CELLS + ["import sys\nsys.exit(0)", "exit()"])
    assert report.status == "graded" and report.score == report.max_score


def test_os_exit_in_a_cell_is_survived(tmp_path, grade):
    report, _ = grade(tmp_path, CORRECT_CELLS[:3] + ["import os\nos._exit(1)"] + CORRECT_CELLS[3:])
    assert report.score == report.max_score
    assert report.cells[3].status == "crashed" and "exited with status 1" in report.cells[3].error


def test_segfault_in_a_function_fails_that_function_only(tmp_path, grade):
    crash = ("import ctypes\n"
             "def d_activation(z):\n"
             "    ctypes.string_at(0)\n")
    report, _ = grade(tmp_path, with_function("d_activation", crash))
    check = by_id(report)["d_activation.values"]
    assert not check.passed and check.score == 0
    assert "segmentation fault" in check.message
    assert {"activation", "forward"} <= passed_functions(report)


def test_segfault_at_top_level_is_a_crashed_cell(tmp_path, grade):
    report, _ = grade(tmp_path, CORRECT_CELLS + ["import ctypes\nctypes.string_at(0)"])
    assert report.score == report.max_score
    assert report.cells[-1].status == "crashed" and "segmentation fault" in report.cells[-1].error


def test_infinite_recursion_is_a_recursion_error_for_that_function(tmp_path, grade):
    recursive = "def forward(x, w1, w2):\n    return forward(x, w1, w2)"
    report, _ = grade(tmp_path, with_function("forward", recursive))
    check = by_id(report)["forward.values"]
    assert not check.passed and "RecursionError" in check.message
    assert {"activation", "d_activation", "backward"} <= passed_functions(report)


def test_unbounded_recursion_with_the_limit_lifted_fails_only_that_function(tmp_path, grade):
    # Python 3.11 keeps Python frames off the C stack, so this ends at the time or memory limit, or a crash.
    deep = ("import sys\nsys.setrecursionlimit(10**8)\n"
            "def backward(x, y, y_hat, w1, w2, eta, depth=0):\n    return backward(x, y, y_hat, w1, w2, eta, depth + 1)")
    report, _ = grade(tmp_path, with_function("backward", deep))
    check = by_id(report)["backward.values"]
    assert not check.passed and check.score == 0
    assert any(reason in check.message for reason in ("crashed", "time limit", "memory limit"))
    assert {"activation", "d_activation", "forward"} <= passed_functions(report)


# --- processes ------------------------------------------------------------------------------


def _sleepers(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for leftover processes")
def test_a_hundred_children_leave_no_process_behind(tmp_path, grade):
    marker = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10**6}"
    escape = "os.setsid()\n        " if NAMESPACES else ""  # setsid escapes a process group, not a PID namespace
    fork = ("import os\nstarted = 0\n"
            "for _ in range(100):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n"
            f"        {escape}os.execv('/bin/sleep', ['sleep', '{marker}'])\n"
            "    started += 1\n"
            "print('started', started)")
    try:
        report, _ = grade(tmp_path, CORRECT_CELLS + [fork])
        assert report.score == report.max_score
        assert "started" in report.output_excerpt
        if NAMESPACES and os.geteuid() != 0:  # the kernel exempts root from the process limit
            started = int(report.output_excerpt.split("started ")[1].split()[0])
            assert started < LIMITS.max_processes
        time.sleep(0.2)
        assert _sleepers(marker) == []
    finally:
        for pid in _sleepers(marker):
            os.kill(pid, signal.SIGKILL)


# --- cheating ---------------------------------------------------------------------------------


def test_the_grader_and_reference_are_out_of_reach(tmp_path, grade):
    probe = (
        "import sys, gc, os\n"
        "found = []\n"
        "for name in ('grader', 'reference', 'grader.reference', 'rubrics'):\n"
        "    try:\n        __import__(name)\n        found.append('import ' + name)\n"
        "    except ImportError:\n        pass\n"
        "found += ['module ' + m for m in sys.modules if m.split('.')[0] in ('grader', 'reference', 'rubrics')]\n"
        "found += ['object' for o in gc.get_objects() if isinstance(o, str) and 'd_activation_on_w2_partials' in o]\n"
        "for entry in sys.path:\n"
        "    for root, dirs, files in os.walk(entry, followlinks=True):\n"
        "        found += [os.path.join(root, f) for f in files if f in ('simple_nn.py', 'mutants.py', 'checks.py')]\n"
        "        if root.count(os.sep) - entry.count(os.sep) > 3:\n            dirs[:] = []\n"
        "print('FOUND', found)"
    )
    report, _ = grade(tmp_path, CORRECT_CELLS + [probe])
    assert "FOUND []" in report.output_excerpt
    assert report.score == report.max_score
    assert {"integrity_grader_import", "integrity_introspection"} <= diagnosis_ids(report)


@pytest.mark.skipif(not NAMESPACES, reason="the checkout is covered only inside a mount namespace")
def test_the_checkout_is_unreadable_by_its_path_even_with_the_interpreter_inside_it(tmp_path, grade):
    """Run from source, the checkout's folders are covered one by one (its .venv may hold the interpreter)."""
    import grader
    checkout = Path(grader.__file__).resolve().parents[1]
    if not (checkout / "pyproject.toml").is_file():
        pytest.skip("the grader is installed, not run from a checkout")
    targets = [checkout / "reference" / "simple_nn" / "mutants.py", checkout / "grader" / "checks.py",
               checkout / "rubrics" / "simple_nn.toml", checkout / ".git" / "HEAD"]
    probe = (
        "readable = []\n"
        f"for path in {[str(t) for t in targets if t.exists()]!r}:\n"
        "    try:\n        open(path).read(1)\n        readable.append(path)\n"
        "    except OSError:\n        pass\n"
        "print('READABLE', readable)"
    )
    report, _ = grade(tmp_path, CORRECT_CELLS + [probe])
    assert "READABLE []" in report.output_excerpt
    assert report.score == report.max_score


def test_monkeypatching_numpy_and_builtins_cannot_change_a_verdict(tmp_path, grade):
    cheat = ("import numpy as np, builtins\n"
             "np.allclose = lambda *a, **k: True\n"
             "np.array_equal = lambda *a, **k: True\n"
             "np.testing.assert_allclose = lambda *a, **k: None\n"
             "builtins.abs = lambda x: 0\n"
             "def activation(z):\n    return z  # wrong: identity\n")
    report, _ = grade(tmp_path, with_function("activation", cheat))
    check = by_id(report)["activation.values"]
    assert not check.passed and check.score < check.max_score
    assert "activation_identity" in diagnosis_ids(report)
    assert "integrity_monkeypatch" in diagnosis_ids(report)


def test_forged_protocol_messages_and_printed_passes_earn_nothing(tmp_path, grade):
    forge = (
        "import os, json, struct\n"
        "def frame(header):\n"
        "    head = json.dumps(header).encode()\n"
        "    return b'GRDR' + struct.pack('<II', len(head), 0) + head\n"
        "fake = frame({'op': 'exec_done', 'functions': {n: 'function' for n in\n"
        "              ('activation', 'd_activation', 'forward', 'backward')}})\n"
        "print('activation.values PASSED 100/100')\n"
        "for fd in range(3, 64):\n"
        "    try:\n        os.write(fd, fake)\n    except OSError:\n        pass\n"
    )
    wrong = "def activation(z):\n    return z"
    report, _ = grade(tmp_path, CORRECT_CELLS + [wrong, forge])
    assert not by_id(report)["activation.values"].passed
    assert report.score < report.max_score
    assert report.cells[-1].status == "crashed" and "protocol" in report.cells[-1].error
    assert "integrity_protocol_tamper" in diagnosis_ids(report)


def test_nothing_is_written_outside_the_working_directory(tmp_path, grade):
    outside = tmp_path / "outside.txt"
    home = Path.home() / f".grader-hostile-{os.getpid()}"
    write = (f"for target in ({str(outside)!r}, {str(home)!r}):\n"
             "    try:\n        open(target, 'w').write('pwned')\n    except OSError as e:\n        print('denied', e)\n"
             "open('inside.txt', 'w').write('fine')\nimport os\nprint('cwd', os.getcwd())")
    try:
        report, _ = grade(tmp_path, CORRECT_CELLS + [write])
        workdir = report.output_excerpt.split("cwd ")[1].split()[0]
        if NAMESPACES:  # a tmpfs of its own, at the same place in every sandbox; the host never sees it
            assert workdir == jail.SANDBOX_WORKDIR
        else:
            assert not Path(workdir).exists()  # the throwaway working directory was removed
        assert "integrity_file_access" in diagnosis_ids(report)
        if NAMESPACES:
            assert not outside.exists() and not home.exists()
            assert report.output_excerpt.count("denied") == 2
        else:  # the operator is told (never the student's report)
            assert any("namespaces were unavailable" in n for n in confinement().notices)
    finally:
        home.unlink(missing_ok=True)


def test_network_is_denied_or_the_report_says_it_was_not(tmp_path, grade):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    connect = ("import socket\ntry:\n"
               f"    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    print('NET open')\n"
               "except OSError as e:\n    print('NET closed', e)")
    try:
        report, _ = grade(tmp_path, CORRECT_CELLS + [connect])
    finally:
        listener.close()
    if NAMESPACES:
        assert "NET closed" in report.output_excerpt
        assert not any("namespaces were unavailable" in w for w in report.warnings)
    else:  # the operator is told (never the student's report)
        assert any("namespaces were unavailable" in n for n in confinement().notices)


@pytest.mark.parametrize("use_server", [False, True], ids=["fresh process", "fork server"])
def test_without_namespaces_the_operator_is_told_what_is_not_enforced(tmp_path, monkeypatch, use_server):
    """Without namespaces the sandbox still never runs as root: a root grader drops to the sandbox uid,
    or, where that uid cannot reach the interpreter, refuses to run student code in one sentence."""
    from grader.sandbox import confine
    from grader.errors import SandboxError
    monkeypatch.setenv(confine.NO_NAMESPACES_ENV, "1")
    confine.confinement.cache_clear()
    path = tmp_path / "plain.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + ["import os\nprint('cwd', os.getcwd(), 'uid', os.getuid())"]))
    try:
        confined = confine.confinement()
        if confined.refusal:
            assert os.geteuid() == 0 and "cannot switch the sandbox to the unprivileged uid" in confined.refusal
            with pytest.raises(SandboxError, match="will not run student code"):
                ForkServer() if use_server else grade_notebook(path, load_rubric(None), Options(limits=LIMITS))  # noqa: B018
            return
        forks = ForkServer() if use_server else None
        try:
            report = grade_notebook(path, load_rubric(None), Options(limits=LIMITS, server=forks))
        finally:
            if forks is not None:
                forks.close()
    finally:
        monkeypatch.delenv(confine.NO_NAMESPACES_ENV)
        confine.confinement.cache_clear()
    assert report.score == report.max_score
    assert any("namespaces were unavailable" in n and "network" in n for n in confined.notices)
    workdir, uid = report.output_excerpt.split("cwd ")[1].split()[0], int(report.output_excerpt.split("uid ")[1].split()[0])
    assert uid != 0
    assert not Path(workdir).exists()


# --- the kernel backend has the same containment --------------------------------------------


@pytest.fixture
def kernel_grade():
    def run(tmp_path: Path, cells: list[str], limits: Limits = LIMITS):
        path = tmp_path / "hostile.ipynb"
        path.write_text(notebook_json(cells))
        started = time.monotonic()
        report = grade_notebook(path, load_rubric(None), Options(limits=limits, backend="kernel"))
        return report, time.monotonic() - started
    return run


def test_kernel_a_cell_that_ignores_the_interrupt_is_killed_and_the_rest_replayed(tmp_path, kernel_grade):
    stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    report, wall = kernel_grade(tmp_path, CORRECT_CELLS[:2] + [stubborn] + CORRECT_CELLS[2:])
    assert report.backend == "kernel" and report.score == report.max_score
    assert report.cells[2].status == "timeout"
    assert wall < LIMITS.cell_timeout_s + 2 + 15  # interrupt grace, a kernel restart, the rest of grading


def test_kernel_hung_function_and_memory_hog_fail_alone(tmp_path, kernel_grade):
    hog = ("def forward(x, w1, w2):\n    big = np.ones(6 * 10**9 // 8)\n    return activation(x @ w1) @ w2\n"
           "def backward(x, y, y_hat, w1, w2, eta):\n    while True:\n        pass")
    report, _ = kernel_grade(tmp_path, CORRECT_CELLS + [hog])
    checks = by_id(report)
    assert "memory limit" in checks["forward.values"].message and not checks["forward.values"].passed
    assert "time limit" in checks["backward.values"].message and not checks["backward.values"].passed
    assert {"activation", "d_activation"} <= passed_functions(report)


def test_kernel_cannot_reach_the_grader_the_network_or_the_disk(tmp_path, kernel_grade):
    outside = tmp_path / "outside.txt"
    probe = (
        "import sys, os, socket\nfound = []\n"
        "try:\n    import grader\n    found.append('grader')\nexcept ImportError:\n    pass\n"
        "found += [m for m in sys.modules if m.split('.')[0] in ('grader', 'reference', 'rubrics')]\n"
        f"try:\n    open({str(outside)!r}, 'w').write('x')\n    found.append('wrote')\nexcept OSError:\n    pass\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    found.append('net')\n"
        "except OSError:\n    pass\nprint('FOUND', found)"
    )
    report, _ = kernel_grade(tmp_path, CORRECT_CELLS + [probe])
    assert report.score == report.max_score
    if NAMESPACES:
        assert "FOUND []" in report.output_excerpt and not outside.exists()
    else:
        assert "FOUND ['wrote'" in report.output_excerpt or "FOUND []" in report.output_excerpt
        assert any("namespaces were unavailable" in n for n in confinement().notices)  # the operator's


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for leftover processes")
def test_kernel_children_do_not_outlive_grading(tmp_path, kernel_grade):
    marker = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10**6 + 7}"
    escape = "os.setsid()\n        " if NAMESPACES else ""
    fork = ("import os\nfor _ in range(20):\n    pid = os.fork()\n    if pid == 0:\n"
            f"        {escape}os.execv('/bin/sleep', ['sleep', '{marker}'])\n")
    try:
        report, _ = kernel_grade(tmp_path, CORRECT_CELLS + [fork])
        assert report.score == report.max_score
        time.sleep(0.3)
        assert _sleepers(marker) == []
    finally:
        for pid in _sleepers(marker):
            os.kill(pid, signal.SIGKILL)


# --- what a red-team review found (each once fixed, kept as a regression test) ----------------

#: Reaches the worker's globals, and leaves its ``replay`` honest but reporting each step the grader's
#: audit asks it to replay (``AUDITED <function> <count>``): the line shows that a forged chain got past
#: the message parser to the audit, which alone can refuse a well-formed lie.
_REACH_THE_WORKER = (
    "import numpy as np, signal\n"
    "_g = getattr(signal, '_sandbox_serve', print).__globals__\n"
    "_honest_replay = _g['replay']\n"
    "def _reporting_replay(header, blobs):\n"
    "    print('AUDITED', header['step']['function'], header['count'])\n"
    "    return _honest_replay(header, blobs)\n"
    "_g['replay'] = _reporting_replay\n"
    "W = np.array([[0.1, 0.0], [0.1, 0.0]]); V = np.array([2.0, 0.0])  # forward(x, W, V) is y exactly\n")
#: Replaces the worker's training chain with a well-formed one (the worker's own reply: ``counts``, one
#: ``outputs`` row per iteration of each step, ``stop``) that claims the notebook converged: from a fixed
#: point of its own, or honestly for one step and then jumping to that fixed point. Each prints
#: ``FORGED`` as it sends its chain. Per forgery, the steps the audit then replays to refute it.
FORGED_CHAINS = {
    "fixed point": (_REACH_THE_WORKER + (
        "def _fake_train(header, blobs):\n"
        "    n = header['iterations']; out = []; enc = _g['encode_value']\n"
        "    print('FORGED')\n"
        "    return {'status': 'ok', 'counts': [n, n], 'stop': None,\n"
        "            'outputs': [{'y_hat': enc(np.ones(n), out)},\n"
        "                        {'w1': enc(np.stack([W] * n), out), 'w2': enc(np.stack([V] * n), out)}]}, out\n"
        "_g['train'] = _fake_train\n"),
        # Its very first prediction is not what forward gives from the grader's start state.
        ["AUDITED forward 200"]),
    "one honest step": (_REACH_THE_WORKER + (
        "def _fake_train(header, blobs):\n"
        "    dec, enc = _g['decode_value'], _g['encode_value']\n"
        "    s = {k: dec(v, blobs) for k, v in header['start'].items()}\n"
        "    n = header['iterations']; out = []\n"
        "    y0 = forward(s['x'], s['w1'].copy(), s['w2'].copy())\n"
        "    a, b = backward(s['x'], s['y'], y0, s['w1'].copy(), s['w2'].copy(), s['eta'])\n"
        "    ys = [y0, forward(s['x'], a.copy(), b.copy())] + [1.0] * (n - 2)\n"
        "    print('FORGED')\n"
        "    return {'status': 'ok', 'counts': [n, n], 'stop': None,\n"
        "            'outputs': [{'y_hat': enc(np.array(ys, float), out)},\n"
        "                        {'w1': enc(np.stack([a] + [W] * (n - 1)), out),\n"
        "                         'w2': enc(np.stack([b] + [V] * (n - 1)), out)}]}, out\n"
        "_g['train'] = _fake_train\n"),
        # Every prediction is what forward gives from the chain's weights, and iterations 0, 100 and 199
        # (all an audit of samples replays) are true; backward at iteration 1 is not.
        ["AUDITED forward 200", "AUDITED backward 200"]),
}
#: A backward that never moves the weights: the notebook cannot converge.
FROZEN_BACKWARD = "def backward(x, y, y_hat, w1, w2, eta):\n    return w1, w2"


@pytest.mark.parametrize("forgery", sorted(FORGED_CHAINS))
def test_a_forged_training_chain_earns_no_training_points(tmp_path, grade, forgery):
    """The notebook swaps the sandbox's training shortcut for a well-formed chain that converges. The
    grader's audit must refuse it, and the notebook be graded as the same notebook without the forgery."""
    source, audited = FORGED_CHAINS[forgery]
    report, _ = grade(tmp_path, CORRECT_CELLS + [FROZEN_BACKWARD, source])
    training = by_id(report)["training.converges"]
    assert not training.passed and training.score == 0
    assert "does not reach" in training.message
    assert "integrity_introspection" in diagnosis_ids(report)  # reaching the worker's globals is flagged
    # Refused by the audit, not as a malformed message: the chain was sent once and parsed (a reply the
    # parser refuses is a broken protocol, which restarts the sandbox and is flagged as tampering), and
    # the audit replayed the steps that refute it.
    assert report.output_excerpt.count("FORGED") == 1
    assert "integrity_protocol_tamper" not in diagnosis_ids(report)
    assert [line for line in report.output_excerpt.splitlines() if line.startswith("AUDITED")] == audited
    # Otherwise graded as the honest notebook is: its checks, and its (flat) training curve, not the chain's.
    (tmp_path / "honest").mkdir()
    honest, _ = grade(tmp_path / "honest", CORRECT_CELLS + [FROZEN_BACKWARD])
    assert [(c.id, c.passed, c.score, c.message) for c in report.checks] == \
        [(c.id, c.passed, c.score, c.message) for c in honest.checks]
    assert (report.training.loss, report.training.final_prediction) == \
        (honest.training.loss, honest.training.final_prediction)


#: The init of the sandbox tries to outlive the grader: it leaves the process group the grader kills,
#: tries to clear the signal it gets when its parent dies, and keeps a thread alive.
OUTLIVE = ("import ctypes, os, threading, time\n"
           "libc = ctypes.CDLL(None, use_errno=True)\n"
           "libc.prctl(15, b'outlive-{marker}', 0, 0, 0)\n"
           "try:\n    os.setsid()\nexcept OSError as e:\n    print('setsid', e)\n"
           "print('pdeathsig cleared', libc.prctl(1, 0, 0, 0, 0) == 0)\n"
           "threading.Thread(target=time.sleep, args=(60,)).start()\n")


def _processes_named(prefix: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().startswith(prefix):
                status = Path(f"/proc/{entry}/status").read_text()
                if "State:\tZ" not in status:
                    found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("backend", ["subprocess", "kernel"])
def test_no_sandbox_process_outlives_the_grading(tmp_path, backend):
    marker = f"{os.getpid() % 10000}"
    path = tmp_path / "outlive.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + [OUTLIVE.replace("{marker}", marker)]))
    report = grade_notebook(path, load_rubric(None), Options(limits=LIMITS, backend=backend))
    assert report.score == report.max_score
    assert "pdeathsig cleared False" in report.output_excerpt
    deadline = time.monotonic() + 3
    while _processes_named(f"outlive-{marker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_named(f"outlive-{marker}") == []


@pytest.mark.skipif(not NAMESPACES, reason="the kernel's sockets are only private inside namespaces")
def test_kernel_restart_never_writes_through_a_link_the_notebook_planted(tmp_path, kernel_grade):
    """The kernel's socket directory is the sandbox's to write: a link planted there as the next
    connection file must not make the grader (root, perhaps) write or chown the file it points to."""
    canary = tmp_path / "canary"
    canary.write_text("untouched")
    canary.chmod(0o600)
    before = canary.stat()
    plant = ("import os, glob\n"
             "sockets = [l.split()[4] for l in open('/proc/self/mountinfo') if 'nbkernel' in l]\n"
             "print('sockets', sockets)\n"
             "for d in sockets:\n"
             "    for name in ('connection.json', 'connection-2.json', 'kernel-1', 'kernel-2'):\n"
             "        try:\n"
             f"            os.symlink({str(canary)!r}, os.path.join(d, name))\n"
             "        except OSError as e:\n"
             "            print('plant', name, e)\n")
    stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    report, _ = kernel_grade(tmp_path, CORRECT_CELLS + [plant, stubborn])
    assert report.score == report.max_score  # the kernel was restarted and the rest graded
    assert "sockets ['/" in report.output_excerpt
    after = canary.stat()
    assert canary.read_text() == "untouched"
    assert (after.st_uid, after.st_gid, after.st_mode, after.st_mtime_ns) == \
        (before.st_uid, before.st_gid, before.st_mode, before.st_mtime_ns)


def test_kernel_output_flood_is_not_held_by_the_grader(tmp_path):
    """nbclient keeps every output; a cell printing 4 MB at a time for seconds must not take the grader with it."""
    import subprocess
    import sys

    flood = ("import sys, time\nstarted = time.time()\n"
             "while time.time() - started < 3:\n    sys.stdout.write('x' * (4 << 20)); sys.stdout.flush()")
    path = tmp_path / "flood.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + [flood]))
    # A wrapper of its own measures the largest process among the grader and everything it reaped
    # (this test process has reaped other tests' memory hogs).
    wrapper = ("import resource, subprocess, sys\n"
               "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)\n"
               "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
               "sys.stdout.write(done.stdout)\n")
    done = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "grader", "check", str(path),
                           "--backend", "kernel", "--format", "json", "--cell-timeout", "5"],
                          capture_output=True, text=True, timeout=180)
    import json

    report = json.loads(done.stdout)
    assert report["score"] == report["max_score"]
    assert "more characters of output not kept" in report["output_excerpt"]
    assert int(done.stderr.strip()) < 500 * 1024  # kilobytes


def _unconfinable(monkeypatch, module):
    """This machine's confinement with one bind that cannot be made: every sandbox start fails in the jail."""
    import dataclasses as dc

    real = confinement()
    if not real.namespaces:
        pytest.skip("the jail's binds are only made with namespaces")
    plan = {**real.plan, "binds": real.plan["binds"] + [["/nonexistent-grader-test", "/nonexistent-grader-test", "dir"]]}
    monkeypatch.setattr(module, "confinement", lambda: dc.replace(real, plan=plan))


def test_a_fork_server_that_cannot_be_confined_says_why(monkeypatch):
    """The real cause (read from the server's stderr before it is closed), not a guess about numpy."""
    from grader.sandbox import forkserver
    from grader.errors import SandboxError

    from grader.sandbox import environment

    _unconfinable(monkeypatch, forkserver)
    environment.forget()
    with pytest.raises(SandboxError, match="could not start a sandbox"):
        ForkServer()
    assert any("could not be confined" in n and "bind /nonexistent-grader-test" in n for n in environment.notices())


def test_a_sandbox_that_cannot_be_confined_tells_the_student_that_and_the_operator_why(tmp_path, monkeypatch):
    from grader.sandbox import process as execute

    from grader.sandbox import environment

    _unconfinable(monkeypatch, execute)
    environment.forget()
    path = tmp_path / "plain.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS))
    report = grade_notebook(path, load_rubric(None), Options(limits=LIMITS))
    assert report.status == "error" and report.score == 0
    assert "could not start a sandbox" in report.error and "nonexistent" not in report.error  # the student's
    assert any("bind /nonexistent-grader-test" in n for n in environment.notices())  # the operator's
