"""Hostile and broken submissions: each is contained, costs only what it should, and is reported.

Every test grades a real notebook end to end with small limits, and asserts the
precise outcome: which checks lose credit, the reason in the report, a bounded
wall time, no process left behind, nothing written outside the sandbox. Nothing
here can harm the machine if a limit failed: loops are bounded by the test's own
limits, allocations stay at or under 6 GB of *address space* request, and
children sleep for a bounded time and are killed by the test if still found.

Each property is proven for both kinds of operator (``tests/unprivileged.py``): in this
process, which CI runs as root (the sandbox drops to its own uid), with a freshly started
sandbox and with a fork server; and as an unprivileged user (the sandbox lives in a user
namespace of that user's), through ``grader check`` (a freshly started sandbox, or a kernel)
and ``grader grade --jobs 1`` (forks of the batch's fork server) of a private installed copy.
The few tests that stay in this process only say why.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from grader.batch.grading import NOTICE_NO_FORK_SERVER
from grader.render import json_report
from grader.sandbox import jail
from grader.sandbox.confine import confinement
from grader.sandbox.forkserver import ForkServer
from grader.grade import Options, grade_notebook
from grader.sandbox.limits import Limits, settings
from grader.rubric import load_rubric

from conftest import CORRECT_CELLS, notebook_json
from unprivileged import (Account, grade_as, private_install,  # noqa: F401 (fixtures)
                          unprivileged_account)

pytestmark = pytest.mark.slow

LIMITS = Limits(cell_timeout_s=2, call_timeout_s=1, total_timeout_s=40, memory_mb=1024,
                file_size_mb=8, max_processes=32, output_kb=16)
#: Wall time allowed beyond the relevant limit before a "hung" report counts as late (the issue's bound).
SLACK_S = 2.0
NAMESPACES = confinement().namespaces

ACTIVATION, DERIVATIVE_AND_LOSS = CORRECT_CELLS[1], CORRECT_CELLS[2]
IMPORTS, FORWARD, BACKWARD = CORRECT_CELLS[0], CORRECT_CELLS[3], CORRECT_CELLS[4]


# --- who grades, and how ------------------------------------------------------------------------


def limit_arguments(limits: Limits) -> list[str]:
    """``limits`` as ``grader``'s command-line options (every one, so the rubric's own never apply)."""
    return [part for setting in settings() for part in (setting.flag, str(getattr(limits, setting.name)))]


_NAMESPACES_OF: dict[int, bool] = {}


def namespaces_of(account: Account) -> bool:
    """Whether the grader confines its sandboxes with namespaces when ``account`` runs it (asked once)."""
    if account.uid not in _NAMESPACES_OF:
        asked = account.run([str(account.install.python), "-c",
                             "from grader.sandbox.confine import confinement; print(confinement().namespaces)"])
        assert asked.stdout.strip() in ("True", "False"), asked.stderr[-1500:]
        _NAMESPACES_OF[account.uid] = asked.stdout.strip() == "True"
    return _NAMESPACES_OF[account.uid]


@dataclasses.dataclass
class Grading:
    """One way these tests grade a notebook (what the ``grade`` and ``kernel_grade`` fixtures give).

    Without ``account``: in this process (as whoever runs pytest: root in CI), with a freshly started
    sandbox, a fork of ``server``, or a kernel. With it: ``grader`` of the private installation run as that
    account (``tests/unprivileged.py``): ``grader check`` (a freshly started sandbox or a kernel), or with
    ``batch`` ``grader grade DIR --jobs 1`` (a fork of the batch's fork server); the JSON report is read back
    into a Report, so a test reads the same fields either way. The wall time of a command-line run includes
    the interpreter's start-up: compare it with a baseline measured the same way (``baseline_s``).
    """

    backend: str = "subprocess"
    server: ForkServer | None = None
    account: Account | None = None
    batch: bool = False
    #: Extra environment of a command-line run.
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The last command-line run's stderr (where the operator's notes go).
    stderr: str = ""

    @property
    def privileged(self) -> bool:
        return os.geteuid() == 0 if self.account is None else self.account.privileged

    @property
    def namespaces(self) -> bool:
        """Whether this grader's sandboxes have namespaces (an ordinary user may lack them where root has them)."""
        return NAMESPACES if self.account is None else namespaces_of(self.account)

    @property
    def home(self) -> Path:
        """The grading account's home: a place of its own a notebook would like to write to."""
        return Path.home() if self.account is None else self.account.home

    def place(self, tmp_path: Path) -> Path:
        """A directory the grading account owns (for host files a notebook targets): else a write there
        fails for want of permission, not because of the sandbox."""
        return tmp_path if self.account is None else self.account.workspace("sbx-hostile-")

    def operator_notices(self) -> list[str]:
        """What the operator was told: this process's confinement notices, or the last run's stderr lines."""
        return list(confinement().notices) if self.account is None else self.stderr.splitlines()

    def __call__(self, tmp_path: Path, cells: list[str], limits: Limits = LIMITS):
        """Grade ``cells`` (written into ``tmp_path`` in this process; into a workspace of the account's
        otherwise): (report, wall seconds)."""
        if self.account is None:
            path = tmp_path / "hostile.ipynb"
            path.write_text(notebook_json(cells))
            started = time.monotonic()
            report = grade_notebook(path, load_rubric(None), Options(limits=limits, server=self.server,
                                                                     backend=self.backend))
            return report, time.monotonic() - started
        started = time.monotonic()
        result, reports = grade_as(self.account, {"hostile": notebook_json(cells)}, *limit_arguments(limits),
                                   "--backend", self.backend, batch=self.batch, env=self.env,
                                   timeout=limits.total_timeout_s + 120)
        wall = time.monotonic() - started
        self.stderr = result.stderr
        document = reports["hostile"]
        assert document is not None, f"no report (exit {result.returncode}): {result.stderr[-1500:]}"
        if self.batch:  # else the submission ran in a freshly started sandbox, not in a fork of the server
            assert NOTICE_NO_FORK_SERVER.split("(")[0] not in result.stderr, result.stderr[-1500:]
        return json_report.from_dict(document), wall


def unprivileged_grading(request: pytest.FixtureRequest, **how) -> Grading:
    """The unprivileged account's ``grader`` (skips where the account cannot be made; fails so in CI)."""
    return Grading(account=request.getfixturevalue("unprivileged_account"), **how)


#: In this process, with a freshly started sandbox or a fork server; as the unprivileged user through
#: ``grader check`` (a freshly started sandbox) or ``grader grade`` (a fork of the batch's fork server).
GRADINGS = ["fresh process", "fork server", "unprivileged check", "unprivileged grade"]


@pytest.fixture(scope="module", params=GRADINGS)
def grading(request):
    """Every way a sandbox starts must contain the same things, when root and when an ordinary user grades."""
    if request.param == "fork server":
        with ForkServer() as forks:
            yield Grading(server=forks)
    elif request.param.startswith("unprivileged"):
        yield unprivileged_grading(request, batch=request.param == "unprivileged grade")
    else:
        yield Grading()


@pytest.fixture
def grade(grading) -> Grading:
    """``grade(tmp_path, cells, limits=LIMITS)`` -> (report, wall seconds), one of the ``GRADINGS`` ways."""
    return dataclasses.replace(grading)  # a copy: ``stderr`` is this test's own


@pytest.fixture
def baseline_s(grade, tmp_path_factory) -> float:
    """Wall time to grade the correct notebook here, now, the same way: what a hung submission may add its limit to."""
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


#: Memory files hold pages that neither the address-space limit nor /work's size counts (red team, issue 15:
#: 1.5 GB held under a 256 MB limit); pipes and sockets pin buffers per descriptor.
MEMORY_FILES = ("import os\nheld = 0\ntry:\n    for _ in range(192):\n        fd = os.memfd_create('m')\n"
                "        os.write(fd, b'x' * (8 << 20))\n        held += 8\n    print('memory files held', held, 'MB')\n"
                "except OSError as error:\n    print('memory file refused:', error.errno, 'after', held, 'MB')")
MANY_DESCRIPTORS = ("import os\nopened = []\ntry:\n    for _ in range(5000):\n        opened += list(os.pipe())\n"
                    "except OSError as error:\n    print('descriptors refused:', error.errno, 'after', len(opened))")


def test_memory_outside_the_address_space_is_bounded_too(tmp_path, grade):
    import errno

    report, _ = grade(tmp_path, CORRECT_CELLS + [MEMORY_FILES, MANY_DESCRIPTORS])
    assert report.score == report.max_score
    assert f"memory file refused: {errno.EPERM} after 0 MB" in report.output_excerpt, report.output_excerpt
    refused = [line for line in report.output_excerpt.splitlines() if line.startswith("descriptors refused:")]
    assert refused and refused[0].startswith(f"descriptors refused: {errno.EMFILE} after "), report.output_excerpt
    assert int(refused[0].rsplit(" ", 1)[1]) <= 256


# --- crashes ----------------------------------------------------------------------------


def test_sys_exit_after_the_definitions_does_not_stop_grading(tmp_path, grade):
    report, _ = grade(tmp_path, CORRECT_CELLS + ["import sys\nsys.exit(0)", "exit()", "%time quit()", "print('ran on')"])
    assert report.status == "graded" and report.score == report.max_score
    assert [cell.status for cell in report.cells[-4:]] == ["error", "error", "error", "ok"]
    assert not any("AttributeError" in warning for warning in report.warnings), report.warnings
    assert "ran on" in report.output_excerpt


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
    """Processes whose command line holds ``marker``, whoever runs them: this test runs as root when the
    unprivileged variants run, so it sees (and may kill) the unprivileged user's leftovers as well as its own."""
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
    escape = "os.setsid()\n        " if grade.namespaces else ""  # setsid escapes a process group, not a PID namespace
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
        if grade.namespaces and not grade.privileged:  # the kernel exempts root from the process limit
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


def test_the_checkout_is_unreadable_by_its_path_even_with_the_interpreter_inside_it(tmp_path, grade):
    """Run from source, the checkout's folders are covered one by one (its .venv may hold the interpreter).

    As the unprivileged user the grader runs from its private installation (its interpreter in a venv next
    to the source copy it was built from): that installation, that copy and this checkout, all of which the
    user can read on the host, are out of reach too."""
    if not grade.namespaces:
        pytest.skip("the checkout is covered only inside a mount namespace")
    import grader
    checkout = Path(grader.__file__).resolve().parents[1]
    targets = []
    if (checkout / "pyproject.toml").is_file():
        targets += [checkout / "reference" / "simple_nn" / "mutants.py", checkout / "grader" / "checks.py",
                    checkout / "rubrics" / "simple_nn.toml", checkout / ".git" / "HEAD"]
    elif grade.account is None:
        pytest.skip("the grader is installed, not run from a checkout")
    installed = []
    if grade.account is not None:
        install = grade.account.install
        installed = [str(t) for t in (install.package_dir / "checks.py", install.reference_dir / "simple_nn" / "mutants.py",
                                      install.source / "grader" / "checks.py", install.source / "pyproject.toml",
                                      install.source / "reference" / "simple_nn" / "mutants.py")]
    targets = [str(t) for t in targets if t.exists()] + installed
    if grade.account is not None:
        # Only what the user can read on the host proves anything of the sandbox (a checkout in a private
        # home is kept out by its permissions already); the installation is world-readable by construction.
        host = grade.account.run([str(grade.account.install.python), "-c",
                                  "import os, sys\nprint('\\n'.join(p for p in sys.argv[1:] if os.access(p, os.R_OK)))",
                                  *targets])
        targets = host.stdout.splitlines()
        assert set(installed) <= set(targets), (host.stdout, host.stderr[-800:])
    probe = (
        "readable = []\n"
        f"for path in {targets!r}:\n"
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
    # Places the grading account may write to on the host: only the sandbox stands in the way. (Inside the
    # sandbox /tmp leads to its own working directory, so only /var/tmp, and /root when root grades, are
    # paths that the sandbox's audit flags for review.)
    outside = grade.place(tmp_path) / "outside.txt"
    home = grade.home / f".grader-hostile-{os.getpid()}"
    shared = Path("/var/tmp") / f".grader-hostile-{os.getpid()}-{time.monotonic_ns()}"
    write = (f"for target in ({str(outside)!r}, {str(home)!r}, {str(shared)!r}):\n"
             "    try:\n        open(target, 'w').write('pwned')\n    except OSError as e:\n        print('denied', e)\n"
             "open('inside.txt', 'w').write('fine')\nimport os\nprint('cwd', os.getcwd())")
    try:
        report, _ = grade(tmp_path, CORRECT_CELLS + [write])
        workdir = report.output_excerpt.split("cwd ")[1].split()[0]
        if grade.namespaces:  # a tmpfs of its own, at the same place in every sandbox; the host never sees it
            assert workdir == jail.SANDBOX_WORKDIR
        else:
            assert not Path(workdir).exists()  # the throwaway working directory was removed
        assert "integrity_file_access" in diagnosis_ids(report)
        if grade.namespaces:
            assert not outside.exists() and not home.exists() and not shared.exists()
            assert report.output_excerpt.count("denied") == 3
        else:  # the operator is told (never the student's report)
            assert any("namespaces were unavailable" in n for n in grade.operator_notices())
    finally:
        home.unlink(missing_ok=True)
        shared.unlink(missing_ok=True)


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
    if grade.namespaces:
        assert "NET closed" in report.output_excerpt
        assert not any("namespaces were unavailable" in w for w in report.warnings)
    else:  # the operator is told (never the student's report)
        assert any("namespaces were unavailable" in n for n in grade.operator_notices())


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


@pytest.mark.parametrize("batch", [False, True], ids=["unprivileged check", "unprivileged grade"])
def test_without_namespaces_an_unprivileged_grader_tells_the_operator_and_leaves_nothing(tmp_path, request, batch):
    """The same as the unprivileged user, with ``GRADER_NO_NAMESPACES=1`` (the monkeypatch above cannot reach
    another process): the notebook runs as that user (there is no root to drop from), the operator is told on
    stderr what is not enforced, and the throwaway working directory is removed. That the note reaches no
    student's file is ``test_operator_notices.py``'s concern."""
    grade = unprivileged_grading(request, batch=batch, env={"GRADER_NO_NAMESPACES": "1"})
    report, _ = grade(tmp_path, CORRECT_CELLS + ["import os\nprint('cwd', os.getcwd(), 'uid', os.getuid())"])
    assert report.score == report.max_score
    assert any("namespaces were unavailable" in n and "network" in n for n in grade.operator_notices())
    workdir, uid = report.output_excerpt.split("cwd ")[1].split()[0], int(report.output_excerpt.split("uid ")[1].split()[0])
    assert uid == grade.account.uid
    assert not Path(workdir).exists()


# --- the kernel backend has the same containment --------------------------------------------


@pytest.fixture(params=["this process", "unprivileged check"])
def kernel_grade(request) -> Grading:
    """A kernel per submission, in this process or through ``grader check --backend kernel`` as the unprivileged user."""
    if request.param == "this process":
        return Grading(backend="kernel")
    return unprivileged_grading(request, backend="kernel")


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
    outside = kernel_grade.place(tmp_path) / "outside.txt"
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
    if kernel_grade.namespaces:
        assert "FOUND []" in report.output_excerpt and not outside.exists()
    else:
        assert "FOUND ['wrote'" in report.output_excerpt or "FOUND []" in report.output_excerpt
        assert any("namespaces were unavailable" in n for n in kernel_grade.operator_notices())  # the operator's


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for leftover processes")
def test_kernel_children_do_not_outlive_grading(tmp_path, kernel_grade):
    marker = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10**6 + 7}"
    escape = "os.setsid()\n        " if kernel_grade.namespaces else ""
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


@pytest.mark.parametrize("who", ["this process", "unprivileged check"])
@pytest.mark.parametrize("backend", ["subprocess", "kernel"])
def test_no_sandbox_process_outlives_the_grading(tmp_path, request, backend, who):
    """(``_processes_named`` reads every process of the machine: the unprivileged user's as well.)"""
    grade = Grading(backend=backend) if who == "this process" else unprivileged_grading(request, backend=backend)
    marker = f"{os.getpid() % 10000}{'u' if grade.account else ''}"
    report, _ = grade(tmp_path, CORRECT_CELLS + [OUTLIVE.replace("{marker}", marker)])
    assert report.score == report.max_score
    assert "pdeathsig cleared False" in report.output_excerpt
    deadline = time.monotonic() + 3
    while _processes_named(f"outlive-{marker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_named(f"outlive-{marker}") == []


def test_kernel_restart_never_writes_through_a_link_the_notebook_planted(tmp_path, kernel_grade):
    """The kernel's socket directory is the sandbox's to write: a link planted there as the next
    connection file must not make the grader (root, perhaps) write or chown the file it points to.
    (As the unprivileged user, the canary is that user's own file: one the grader could write.)"""
    if not kernel_grade.namespaces:
        pytest.skip("the kernel's sockets are only private inside namespaces")
    canary = kernel_grade.place(tmp_path) / "canary"
    canary.write_text("untouched")
    canary.chmod(0o600)
    if kernel_grade.account is not None:
        kernel_grade.account.give(canary)
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


@pytest.mark.parametrize("who", ["this process", "unprivileged check"])
def test_kernel_output_flood_is_not_held_by_the_grader(tmp_path, request, who):
    """nbclient keeps every output; a cell printing 4 MB at a time for seconds must not take the grader with it."""
    import subprocess
    import sys

    flood = ("import sys, time\nstarted = time.time()\n"
             "while time.time() - started < 3:\n    sys.stdout.write('x' * (4 << 20)); sys.stdout.flush()")
    account = None if who == "this process" else request.getfixturevalue("unprivileged_account")
    path = (tmp_path if account is None else account.workspace("sbx-hostile-")) / "flood.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + [flood]))
    # A wrapper of its own measures the largest process among the grader and everything it reaped
    # (this test process has reaped other tests' memory hogs).
    wrapper = ("import resource, subprocess, sys\n"
               "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)\n"
               "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
               "sys.stdout.write(done.stdout)\n")
    python = sys.executable if account is None else str(account.install.python)
    command = [python, "-c", wrapper, python, "-m", "grader", "check", str(path),
               "--backend", "kernel", "--format", "json", "--cell-timeout", "5"]
    if account is None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    else:
        account.give(path)
        done = account.run(command, cwd=path.parent, timeout=180)
    import json

    report = json.loads(done.stdout)
    assert report["score"] == report["max_score"]
    assert "more characters of output not kept" in report["output_excerpt"]
    assert int(done.stderr.strip()) < 500 * 1024  # kilobytes


# In this process only: these make the confinement fail by patching the grader itself, which a ``grader``
# run as another user (a process of its own) cannot be made to do from here. They test what the student
# and the operator are told when no sandbox can be started, not a containment that could differ by account.


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
