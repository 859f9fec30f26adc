"""The execute stage: run a notebook's code in a separate, limited process and call its functions.

The sandbox process is a fresh ``python -I`` running ``sandbox_worker.py`` (with
``protocol.py`` prepended as source, so the grader package is never imported
there). The grader talks to it over a dedicated pipe pair; the student's own
stdout and stderr go to a third pipe that is drained into a bounded excerpt and
never parsed. When the sandbox dies or hangs, it is killed (its whole process
group), restarted, and the cells that ran cleanly before are replayed, so one
bad call costs that call only.
"""
from __future__ import annotations

import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, NamedTuple, Protocol, Sequence, TypeVar

import numpy as np

from grader.sandbox import environment
from grader.sandbox import protocol
from grader.sandbox.confine import MPLCONFIG_SUBDIR, Confinement, confinement, interpreter, prepare_child
from grader.errors import SandboxError
from grader.sandbox.limits import Limits
from grader.model import CellRun, FunctionInfo
from grader.untrusted_text import safe_lines, safe_text

if TYPE_CHECKING:
    from grader.sandbox.forkserver import ForkServer
    from grader.load import Cell

#: Why the sandbox stopped answering: it ran past a limit, it died, or it sent something malformed.
StopKind = Literal["timeout", "died", "protocol"]
#: What reading from the sandbox raises in each of those cases.
CHANNEL_FAILURES = (TimeoutError, EOFError, protocol.WireError)


def stop_kind(error: BaseException) -> StopKind:
    """The StopKind of one of ``CHANNEL_FAILURES``."""
    if isinstance(error, TimeoutError):
        return "timeout"
    return "died" if isinstance(error, EOFError) else "protocol"
CallStatus = Literal["ok", "raised", "timeout", "crashed", "missing", "protocol"]

_PACKAGE_DIR = Path(__file__).resolve().parent
#: Extra wall time the watchdog allows beyond a limit before it kills the sandbox:
#: the in-process alarm should have fired by then; if not, the code ignores signals.
WATCHDOG_GRACE_S = 0.5
#: The worker sends batched replies at least this often (``CallReplies.FLUSH_S`` in the worker).
BATCH_FLUSH_S = 0.2
MAX_RESTARTS = 4


@dataclass(frozen=True)
class CallRequest:
    function: str
    args: tuple[Any, ...]
    #: Ask for the arguments' state after the call (to see in-place updates); costs a round of encoding.
    args_after: bool = True


@dataclass
class CallOutcome:
    """What one call of a student function did, as reported by the sandbox (untrusted data)."""

    status: CallStatus
    value: Any = None
    error: str | None = None
    args_after: tuple[Any, ...] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class LoopStep(NamedTuple):
    """One call of a training loop's iteration, as the sandbox runs it: ``function`` takes ``parameters``
    from the loop's state by name; what it returns binds ``result`` (one name: the whole value; several:
    the elements of a returned tuple or list), and its ``in_place`` arguments are taken back after it ran."""

    function: str
    parameters: tuple[str, ...]
    result: tuple[str, ...] = ()
    in_place: tuple[str, ...] = ()

    @property
    def bound(self) -> tuple[str, ...]:
        """Every name the call binds: its results, then its in-place arguments."""
        return (*self.result, *self.in_place)


_T = TypeVar("_T")

#: The shape a bound name's value must have (``protocol.shaped_value``): () a number, a tuple an array, None any.
Shape = tuple[int, ...] | None


def _step_json(step: LoopStep) -> dict[str, Any]:
    return {"function": step.function, "parameters": list(step.parameters), "result": list(step.result),
            "in_place": list(step.in_place)}


def _shapes_json(shapes: Mapping[str, Shape]) -> dict[str, list[int] | None]:
    return {name: None if shape is None else [int(n) for n in shape] for name, shape in shapes.items()}


@dataclass
class Chain:
    """What the sandbox says its run of a training loop did (untrusted: the grader audits it).

    ``outputs[k][name][i]`` is what step k bound to ``name`` at iteration i (numbers as a 1-d
    float64 array, arrays stacked), for the ``counts[k]`` iterations step k completed. ``stop_*``
    name the iteration and the step whose call ended the chain early, with that call's outcome;
    all None when every iteration ran.
    """

    outputs: list[dict[str, np.ndarray]]
    counts: list[int]
    stop_iteration: int | None = None
    stop_step: int | None = None
    stop_function: str | None = None
    stop_outcome: CallOutcome | None = None

    @property
    def done(self) -> int:
        """Iterations completed: every step ran."""
        return min(self.counts) if self.counts else 0

    @classmethod
    def from_reply(cls, header: dict[str, Any], blobs: list[bytes], steps: Sequence[LoopStep] = ()) -> Chain | None:
        """The chain a ``trained`` reply describes for ``steps``; None when the sandbox says it has none to give
        (past its budget, too large): WireError when the reply is malformed or contradicts itself."""
        status = header.get("status")
        if status == "unavailable":
            return None
        descs, counts = header.get("outputs"), header.get("counts")
        if (status != "ok" or not steps or not isinstance(descs, list) or len(descs) != len(steps)
                or not isinstance(counts, list) or len(counts) != len(steps)
                or not all(type(count) is int and count >= 0 for count in counts)):
            raise protocol.WireError("malformed training chain")
        outputs: list[dict[str, np.ndarray]] = []
        for step, desc, count in zip(steps, descs, counts, strict=True):
            if not isinstance(desc, dict) or set(desc) != set(step.bound):
                raise protocol.WireError("malformed training chain")
            values: dict[str, np.ndarray] = {}
            for name in step.bound:
                value = protocol.decode_value(desc[name], blobs)
                if not isinstance(value, np.ndarray) or value.ndim < 1 or value.dtype != np.float64:
                    raise protocol.WireError("malformed training chain")
                if len(value) != count:
                    raise protocol.WireError("inconsistent training chain")
                values[name] = value
            outputs.append(values)
        stop = header.get("stop")
        if stop is None:
            if len(set(counts)) != 1:
                raise protocol.WireError("inconsistent training chain")
            return cls(outputs, counts)
        if (not isinstance(stop, dict) or type(stop.get("iteration")) is not int or type(stop.get("step")) is not int
                or not 0 <= stop["step"] < len(steps) or not isinstance(stop.get("reply"), dict)):
            raise protocol.WireError("malformed training stop")
        iteration, index = stop["iteration"], stop["step"]
        if any(count != iteration + (k < index) for k, count in enumerate(counts)):
            raise protocol.WireError("inconsistent training chain")
        outcome = SubprocessSandbox._parse_outcome({"op": "result", **stop["reply"]}, blobs)
        return cls(outputs, counts, iteration, index, steps[index].function, outcome)


@dataclass
class Execution:
    cells: list[CellRun] = field(default_factory=list)
    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Sandbox(Protocol):
    """What every execution backend offers the probe stage."""

    name: str

    def run_notebook(self, cells: Sequence[Cell]) -> Execution: ...

    def call_many(self, requests: Sequence[CallRequest]) -> list[CallOutcome]: ...

    def output_excerpt(self) -> str: ...

    def close(self) -> None: ...


#: exec makes a process dumpable again, so its peers of the same uid could read its memory through
#: /proc (without namespaces): every sandbox program's first line undoes that (the filter refuses the reverse).
UNDUMPABLE = "import ctypes as _ctypes\n_ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\ndel _ctypes\n"

#: First lines of the worker program: ``-S`` left site-packages off ``sys.path``; add the
#: site view (everything installed except the grader) and hide the channel from ``sys.argv``.
_BOOTSTRAP = ("from __future__ import annotations\nimport sys\nsys.path.append(sys.argv[3])\n_CHANNEL_ARGS = sys.argv[1:3]\n"
              "_LOCKDOWN = sys.argv[4] if len(sys.argv) > 4 else ''\nsys.argv = ['']\n" + UNDUMPABLE)


@lru_cache(maxsize=1)
def worker_body() -> str:
    """``protocol.py`` and the worker, as source; what runs it prepends ``_CHANNEL_ARGS`` and ``_JAIL_SOURCE``."""
    wire_source = (_PACKAGE_DIR / "protocol.py").read_text().replace("from __future__ import annotations\n", "", 1)
    return wire_source + "\n" + (_PACKAGE_DIR / "worker.py").read_text()


@lru_cache(maxsize=1)
def worker_program() -> str:
    """The sandbox program: bootstrap, the jail's source (for the fork server), then ``worker_body``."""
    jail_source = (_PACKAGE_DIR / "jail.py").read_text()
    return _BOOTSTRAP + f"_JAIL_SOURCE = {jail_source!r}\n" + worker_body()


def sandbox_environment(workdir: str) -> dict[str, str]:
    """The whole environment of a sandbox process: nothing of the grader's own is passed on."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": os.path.join(workdir, MPLCONFIG_SUBDIR),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def sandbox_workdir(confined: Confinement, prefix: str) -> str:
    """A new private host directory for one sandbox: the mount point its root is built over, or,
    without namespaces, where it works (then handed to the unprivileged uid a root grader drops to)."""
    path = tempfile.mkdtemp(prefix=prefix)
    if not confined.namespaces and confined.drop_to is not None:
        os.chown(path, *confined.drop_to)
    return path


class ProcessHandle(Protocol):
    """A started sandbox process, however it was started (``subprocess`` or the fork server)."""

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill_group(self) -> None: ...


class _AttachedHandle:
    """A worker the grader did not start and may not stop (a student's own kernel)."""

    def poll(self) -> int | None:
        return None

    def wait(self, timeout: float | None = None) -> int:
        raise subprocess.TimeoutExpired("kernel", timeout or 0)

    def kill_group(self) -> None:
        pass


class _PopenHandle:
    def __init__(self, popen: subprocess.Popen) -> None:
        self.popen = popen

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def kill_group(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.popen.kill()
        self.popen.wait()


def _start_with_subprocess(limits: Limits, workdir: str, confined: Confinement,
                           channel: tuple[int, int], output: int) -> ProcessHandle:
    """A fresh ``python -I -S`` confined between fork and exec."""
    popen = subprocess.Popen(
        [interpreter(), "-I", "-S", "-c", worker_program(), str(channel[0]), str(channel[1]), confined.site_path],
        stdin=subprocess.DEVNULL, stdout=output, stderr=output, cwd=workdir,
        env=sandbox_environment(confined.workdir(workdir)),
        pass_fds=channel, preexec_fn=lambda: prepare_child(limits, workdir, confined),
    )
    return _PopenHandle(popen)


class OutputDrain:
    """Reads the student's output pipe to the end, keeping only the first ``limit`` bytes."""

    def __init__(self, fd: int, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0
        self._fd = fd
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            room = self.limit - len(self.kept)
            self.kept += chunk[:max(room, 0)]
            self.dropped += max(len(chunk) - max(room, 0), 0)
        os.close(self._fd)

    def excerpt(self) -> str:
        """What was kept, as safe text: the student printed it, so escapes and controls are shown, not obeyed."""
        text = safe_lines(bytes(self.kept))
        if self.dropped:
            text += (f"\n[grader] ... {self.dropped} more bytes of output not kept"
                     " (and print() calls past the limit were skipped)")
        return text

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def confinement_reason(stderr: bytes) -> str:
    """The last line a sandbox process wrote to stderr about failing its confinement (``confine.prepare_child``
    says why there, since ``subprocess`` only reports "Exception occurred in preexec_fn"), or ""."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if "could not be confined" in line]
    return lines[-1].removeprefix("grader: ")[:300] if lines else ""


def confinement_failure(fd: int) -> str:
    """``confinement_reason`` of what a child that died starting wrote to ``fd`` (read without waiting)."""
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 1 << 16)
    except OSError:
        data = b""
    return confinement_reason(data)


class _Process:
    """One live sandbox process and its channel."""

    def __init__(self, start: "Callable[[tuple[int, int], int], ProcessHandle]", drain_limit: int) -> None:
        """``start(channel, output)`` launches the process with the channel's two ends and its output pipe."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            self.handle: ProcessHandle = start((to_child_r, from_child_w), out_w)
        except (OSError, SandboxError, subprocess.SubprocessError) as exc:
            os.close(out_w)
            said = confinement_failure(out_r)  # a failed preexec_fn wrote why to its stderr, our pipe
            for fd in (to_child_r, to_child_w, from_child_r, from_child_w, out_r):
                os.close(fd)
            if said:
                raise SandboxError.from_confinement_failure(said) from None
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError.from_start_failure(str(exc)) from None
        for fd in (to_child_r, from_child_w, out_w):
            os.close(fd)
        #: The channel's descriptor numbers as the child inherited them (a kernel is told them).
        self.child_channel = (to_child_r, from_child_w)
        self.send_fd = to_child_w
        self.recv_fd = from_child_r
        self.drain = OutputDrain(out_r, drain_limit)
        self._buffer = bytearray()

    @classmethod
    def attached(cls, recv_fd: int, send_fd: int) -> "_Process":
        """A worker the grader did not start and may not stop; its output is not the grader's to drain."""
        process = cls.__new__(cls)
        out_r, out_w = os.pipe()
        os.close(out_w)
        process.handle, process.child_channel = _AttachedHandle(), (-1, -1)
        process.recv_fd, process.send_fd = recv_fd, send_fd
        process.drain = OutputDrain(out_r, 0)
        process._buffer = bytearray()
        return process

    def send(self, header: dict[str, Any], blobs: list[bytes] | None = None) -> None:
        try:
            protocol.write_message(self.send_fd, header, blobs)
        except OSError:
            raise EOFError("sandbox closed its channel") from None

    def receive(self, deadline: float) -> tuple[dict[str, Any], list[bytes]]:
        """Read one message; TimeoutError past ``deadline``, EOFError if the process died.

        Reads whatever the pipe holds into a buffer and parses from it: replies to
        a batch of calls arrive back to back, and one read per burst instead of five per reply
        (frame, header, and a length and a body per array) halves the grader's cost per call.

        The sandbox is untrusted: every size it declares is checked against ``protocol.FROM_SANDBOX``
        and this process's ``protocol.ReadBudget`` before it is read, and bytes are read only as they
        arrive, so whatever it sends costs the grader at most those limits. Why a message was
        refused is kept in ``wire_error`` for the report.
        """
        buffer = self._buffer
        budget = getattr(self, "read_budget", None)
        if budget is None:  # one budget for everything this process sends, from its first message
            budget = self.read_budget = protocol.ReadBudget()

        def read_exact(n: int) -> bytes:
            while len(buffer) < n:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise TimeoutError
                ready, _, _ = select.select([self.recv_fd], [], [], wait)
                if not ready:
                    raise TimeoutError
                chunk = os.read(self.recv_fd, protocol.PIPE_READ)
                if not chunk:
                    raise EOFError("sandbox closed its channel")
                buffer.extend(chunk)
            return protocol.take_front(buffer, n)

        try:
            header, blobs = protocol.read_message(read_exact, protocol.FROM_SANDBOX, budget)
        except protocol.WireError as exc:
            self.wire_error = str(exc)
            raise
        blobs.on_refused = lambda reason: setattr(self, "wire_error", reason)  # an array refused when decoded
        return header, blobs

    def kill(self, died: bool) -> None:
        """Stop the process; when it ``died`` on its own, give it a moment to be reaped so its exit status is real."""
        if died:
            try:
                self.handle.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        # In a PID namespace the worker was its init: every process it started died with it.
        # Without one, killing the group reached the children that stayed in its session.
        self.handle.kill_group()
        for fd in (self.send_fd, self.recv_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.drain.join(1.0)

    def exit_description(self) -> str:
        code = self.handle.poll()
        if code is None:
            return "stopped by the grader"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return {"SIGKILL": "stopped by the grader", "SIGXCPU": "stopped at the CPU time limit",
                    "SIGXFSZ": "stopped at the file size limit",
                    "SIGSEGV": "crashed (segmentation fault)",
                    "SIGABRT": "crashed (aborted)"}.get(name, f"killed by {name}")
        return f"exited with status {code}"


class SubprocessSandbox:
    """The default backend: a fresh Python process per submission."""

    name = "subprocess"
    #: Whether this backend starts sandbox processes (a self-check's worker is the student's own kernel).
    starts_processes = True

    def __init__(self, limits: Limits | None = None, server: "ForkServer | None" = None,
                 graded: tuple[str, ...] = ()) -> None:
        self.limits = limits or Limits()
        self.server = server
        #: The names of the functions the assignment grades: the worker reports on these after the cells.
        self.graded: tuple[str, ...] = tuple(graded)
        self.confinement = confinement()
        # What this machine cannot enforce is the operator's to know (stderr, summary), never a student's report.
        environment.note(*self.confinement.notices)
        if self.starts_processes:
            self.confinement.require()
        self.workdir = sandbox_workdir(self.confinement, "grader-sandbox-")
        self._started = time.monotonic()
        self._replayable: list[Cell] = []
        self._functions: dict[str, FunctionInfo] = self._parse_functions({})
        self._excerpts: list[str] = []
        self._restarts = 0
        #: Functions that hung or killed the sandbox once, with the outcome every later call gets.
        self._broken: dict[str, CallOutcome] = {}
        #: Replies to a batch of calls come several per message, until a batch fails unclearly.
        self._batched_replies = True
        #: What the notebook did to the grader's channel (for an integrity diagnosis), in words.
        self.tampering: list[str] = []
        #: What the worker's audit hook noticed (untrusted, only ever used to flag for review).
        self.seen: list[str] = []
        self._process: _Process | None = None
        self._ready = False
        if server is None:
            try:
                self._spawn()  # a fresh Python takes a while to start: let it, while the notebook loads
            except BaseException:
                shutil.rmtree(self.workdir, ignore_errors=True)  # nothing to close() later: clean up now
                raise
        # A fork is quick, and which server to fork from depends on the notebook's cells: see run_notebook.

    # --- lifecycle ------------------------------------------------------------

    def _start(self, first_cells: Sequence[Cell] | None = None) -> None:
        self._spawn(first_cells)
        self._await_ready()

    def _spawn(self, first_cells: Sequence[Cell] | None = None) -> None:
        """Start the process without waiting, so its start-up overlaps the grader's own work.

        ``first_cells``: the cells its first execution begins with, when known (a fork server
        may then start it from a process that has already run the template's opening cells)."""
        sources = None if first_cells is None else [cell.source for cell in first_cells]
        self._process = _Process(lambda channel, output: self._starter(channel, output, sources),
                                 self.limits.output_kb * 1024)
        self._ready = False

    def _starter(self, channel: tuple[int, int], output: int, sources: list[str] | None = None) -> ProcessHandle:
        """How this backend launches a worker: a fork of the fork server, or a fresh confined Python."""
        if self.server is not None:
            return self.server.spawn(self.limits, self.workdir, channel, output, sources)
        return _start_with_subprocess(self.limits, self.workdir, self.confinement, channel, output)

    def _await_ready(self) -> None:
        if self._process is None:
            self._spawn()
        assert self._process is not None
        if self._ready:
            return
        try:
            header, _ = self._process.receive(time.monotonic() + 60)
        except (EOFError, TimeoutError, protocol.WireError):
            self._process.kill(died=True)
            reason = self._process.drain.excerpt().strip().splitlines()[-1:] or ["no output"]
            raise SandboxError.from_start_failure(reason[0]) from None
        if header.get("op") != "ready":
            raise SandboxError.from_start_failure("unexpected first message")
        self._ready = True

    def _retire(self, stop: StopKind = "timeout") -> str:
        """Kill the current process and keep its output; return how it ended, in words."""
        assert self._process is not None
        self._process.kill(died=stop != "timeout")
        how = self._process.exit_description()
        self._excerpts.append(self._process.drain.excerpt())
        if stop == "protocol":
            self.tampering.append("the notebook wrote to the grader's private channel or broke its protocol")
            reason = getattr(self._process, "wire_error", None)  # set by _Process.receive (the grader's words)
            how = "stopped: it broke the grader's protocol" + (f" ({reason})" if reason else "")
        return how

    def close(self) -> None:
        if self._process is not None:
            self._retire()
            self._process = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "SubprocessSandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def output_excerpt(self) -> str:
        parts = list(self._excerpts)
        if self._process is not None:
            parts.append(self._process.drain.excerpt())
        # Each process's excerpt is already bounded; restarts are bounded by MAX_RESTARTS.
        return "\n".join(p for p in parts if p)

    def _total_deadline(self) -> float:
        return self._started + self.limits.total_timeout_s

    def _request(self, header: dict[str, Any], blobs: list[bytes] | None = None) -> str:
        """Send a request tagged with a fresh token that every reply to it must echo."""
        assert self._process is not None
        token = secrets.token_hex(8)
        self._process.send({**header, "token": token}, blobs)
        return token

    def _reply(self, token: str, deadline: float) -> tuple[dict[str, Any], list[bytes]]:
        assert self._process is not None
        header, blobs = self._process.receive(deadline)
        if header.get("token") != token:
            raise protocol.WireError("a reply without the request's token")
        if "seen" in header and header.get("op") != "exec_done":
            self._take_seen(header.get("seen"))
        return header, blobs

    # --- notebook ---------------------------------------------------------------

    def run_notebook(self, cells: Sequence[Cell]) -> Execution:
        cells = list(cells)
        if self._process is None and self.server is not None:
            self._spawn(cells)
        self._await_ready()
        execution = Execution()
        runs = self._exec(cells, execution.warnings)
        execution.cells = runs
        self._replayable = [c for c, r in zip(cells, runs) if r.status in ("ok", "error")]
        execution.functions = self._functions
        return execution

    def _exec(self, cells: list[Cell], warnings: list[str]) -> list[CellRun]:
        """Run ``cells`` in order; a cell that kills or hangs the process is skipped after a restart."""
        runs: dict[int, CellRun] = {}
        if not cells:  # still ask what is defined (a kernel must start serving; a self-check has no cells)
            stop = self._exec_once([], runs, warnings)
            if stop is not None:
                self._retire(stop[1])
                self._process = None
            return []
        pending = list(cells)
        while pending:
            stop = self._exec_once(pending, runs, warnings)
            if stop is None:
                break
            culprit, kind = stop
            bad = pending[culprit]
            how = self._retire(kind)
            runs[bad.index] = CellRun(bad.index, "timeout" if kind == "timeout" else "crashed",
                                      f"this cell stopped the sandbox: {how}")
            pending = pending[culprit + 1:]
            if self._restarts >= MAX_RESTARTS:
                self._process = None
                break
            self._restarts += 1
            replay = [c for c in cells if c.index in runs and runs[c.index].status in ("ok", "error")]
            self._start(replay)
            if replay:
                stop = self._exec_once(replay, {}, None)
                if stop is not None:
                    self._retire(stop[1])
                    self._process = None
                    break
        return [runs.get(c.index, CellRun(c.index, "skipped", "not run: the sandbox had stopped")) for c in cells]

    def _exec_once(self, cells: list[Cell], runs: dict[int, CellRun],
                   warnings: list[str] | None) -> tuple[int, StopKind] | None:
        """Run ``cells`` in the live process; None when all ran, else (position of the cell that stopped it, why)."""
        assert self._process is not None
        limit = self.limits.cell_timeout_s
        position = 0
        try:
            # Sources travel as blobs, not in the JSON header: a cell of any size a notebook can have
            # fits the sandbox's limits (protocol.FROM_GRADER), and it is not escaped and parsed as JSON.
            # "surrogatepass": a lone surrogate in a source reaches the cell as it was in the notebook.
            sources = [c.source.encode("utf-8", "surrogatepass") for c in cells]
            token = self._request({"op": "exec", "cell_timeout": limit, "output_limit": self.limits.output_kb * 1024,
                                   "functions": list(self.graded),
                                   "cells": [{"index": c.index, "blob": i} for i, c in enumerate(cells)]}, sources)
            for position, cell in enumerate(cells):
                deadline = min(time.monotonic() + limit + WATCHDOG_GRACE_S, self._total_deadline())
                header, _ = self._reply(token, deadline)
                if header.get("op") != "cell" or header.get("index") != cell.index:
                    raise protocol.WireError("out-of-order cell report")
                status = header.get("status")
                error = header.get("error")
                runs[cell.index] = CellRun(cell.index, status if status in ("ok", "error", "timeout") else "error",
                                           safe_lines(error, limit=300) if error else None)
                refused = header.get("refused")
                if warnings is not None and isinstance(refused, list):
                    warnings.extend(f"Cell {cell.index + 1}: shell command not run while grading: {safe_text(c, limit=120)}"
                                    for c in refused[:10])
            position = len(cells) - 1
            self._await_exec_done(token)
            return None
        except CHANNEL_FAILURES as error:
            return position, stop_kind(error)

    def _await_exec_done(self, token: str) -> None:
        header, _ = self._reply(token, min(time.monotonic() + 30, self._total_deadline()))
        if header.get("op") != "exec_done":
            raise protocol.WireError("missing end of execution")
        self._take_exec_done(header)

    def _take_exec_done(self, header: dict[str, Any]) -> None:
        """What the worker says is defined after the cells, and what its audit hook noticed."""
        self._functions = self._parse_functions(header.get("functions"))
        self._take_signatures(header.get("signatures"))
        self._take_seen(header.get("seen"))

    def _take_signatures(self, data: Any) -> None:
        """The graded functions' parameter names (untrusted and bounded: only ever words in a message)."""
        if not isinstance(data, dict):
            return
        for name, info in self._functions.items():
            entries = data.get(name)
            if not info.found or not isinstance(entries, list):
                continue
            pairs = [e for e in entries[:16] if isinstance(e, list) and len(e) == 2 and all(isinstance(v, str) for v in e)]
            positional = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
            info.parameters = tuple(safe_text(n, limit=40) for n, kind in pairs if kind in positional)
            info.variadic = any(kind == "VAR_POSITIONAL" for _, kind in pairs)

    def _take_seen(self, seen: Any) -> None:
        """Add the audit hook's notes (untrusted, bounded, only ever used to flag for review)."""
        if isinstance(seen, list):
            self.seen.extend(note for note in (safe_text(item, limit=200) for item in seen[:20])
                             if note not in self.seen and len(self.seen) < 40)

    def _parse_functions(self, data: Any) -> dict[str, FunctionInfo]:
        data = data if isinstance(data, dict) else {}
        kinds = ("function", "lambda", "builtin", "other callable")
        result = {}
        for name in self.graded:
            kind = data.get(name)
            kind = kind if kind in kinds else None
            result[name] = FunctionInfo(name=name, found=kind is not None, kind=kind)
        return result

    # --- calls --------------------------------------------------------------------

    def call_many(self, requests: Sequence[CallRequest]) -> list[CallOutcome]:
        """Answer ``requests`` in order. A function that once hung or killed the sandbox is not called again:
        its later calls fail at once with the same reason, so a hung submission costs one limit, not one per probe."""
        outcomes: list[CallOutcome] = []
        remaining = list(requests)
        while remaining:
            broken = self._broken.get(remaining[0].function)
            if broken is not None:
                outcomes.append(broken)
                remaining = remaining[1:]
                continue
            if time.monotonic() >= self._total_deadline():
                outcomes += [CallOutcome("timeout", error="total time limit for this submission")] * len(remaining)
                break
            if self._process is None:
                outcomes += [CallOutcome("crashed", error="the sandbox could not be restarted")] * len(remaining)
                break
            batch = [remaining[0]]
            for request in remaining[1:]:
                if request.function in self._broken:
                    break
                batch.append(request)
            answered = self._call_batch(batch, outcomes)
            remaining = remaining[answered:]
        return outcomes

    def _call_batch(self, requests: list[CallRequest], outcomes: list[CallOutcome]) -> int:
        """Send ``requests``; append outcomes as they arrive; return how many were answered.

        Replies come a few per message (``batched``, see ``CallReplies`` in the worker) until a
        batch ends in a way that leaves unclear which call caused it (the sandbox died, or went
        silent without saying a call was overdue): then the unanswered calls are sent again, from
        then on one reply per message, which pins the failure on the right call.
        """
        assert self._process is not None
        blobs: list[bytes] = []
        calls = [{"fn": r.function, "args": [protocol.encode_value(a, blobs) for a in r.args], "args_after": r.args_after}
                 for r in requests]
        limit = self.limits.call_timeout_s
        batched = self._batched_replies
        answered = 0
        overdue = False
        stop: StopKind
        try:
            token = self._request({"op": "call", "call_timeout": limit, "calls": calls, "batched": batched}, blobs)
            while answered < len(requests):
                # Batched, a message may wait for a call that started just before a send was due.
                wait = WATCHDOG_GRACE_S if overdue else limit + WATCHDOG_GRACE_S + (BATCH_FLUSH_S if batched else 0)
                header, reply_blobs = self._reply(token, min(time.monotonic() + wait, self._total_deadline()))
                if batched:
                    replies, overdue = self._parse_batch(header, len(requests) - answered)
                else:
                    replies = [header]
                for reply in replies:
                    outcome = self._parse_outcome(reply, reply_blobs, batched)
                    outcomes.append(outcome)
                    if outcome.status == "timeout":
                        self._broken[requests[answered].function] = outcome
                    answered += 1
            return answered
        except CHANNEL_FAILURES as error:
            stop = stop_kind(error)
        how = self._retire(stop)
        if batched and not overdue:
            self._batched_replies = False  # which call failed is unknown: ask again, a reply per message
            self._restart_and_replay()
            return answered
        if stop == "timeout":
            outcome = CallOutcome("timeout", error="time limit (the code did not stop when asked)")
        else:
            outcome = CallOutcome("crashed", error=f"the sandbox was {how}")
        outcomes.append(outcome)
        self._broken[requests[answered].function] = outcome
        self._restart_and_replay()
        return answered + 1

    @staticmethod
    def _parse_batch(header: dict[str, Any], expected: int) -> tuple[list[dict[str, Any]], bool]:
        """A batched message's replies (no more than the calls still unanswered) and its overdue mark."""
        replies, overdue = header.get("replies"), header.get("overdue")
        if (header.get("op") != "results" or not isinstance(replies, list) or len(replies) > expected
                or not isinstance(overdue, bool) or not all(isinstance(r, dict) for r in replies)):
            raise protocol.WireError("unexpected message")
        return replies, overdue

    def train(self, steps: Sequence[LoopStep], start: Mapping[str, Any], shapes: Mapping[str, Shape],
              iterations: int) -> Chain | None:
        """Run a training loop inside the sandbox in one request; None when the caller should go call by call.

        From the ``start`` state, ``iterations`` times the ``steps``; ``shapes`` gives the shape every
        name a step binds must have. None covers every irregular case (a time budget used up, a chain
        too large to send, a crash, a malformed answer): the call-by-call path then reproduces it with
        its usual per-call handling.
        """
        steps = tuple(steps)
        if self._process is None or not steps or any(step.function in self._broken for step in steps):
            return None
        blobs: list[bytes] = []
        header = {"op": "train", "steps": [_step_json(step) for step in steps],
                  "start": {name: protocol.encode_value(value, blobs) for name, value in start.items()},
                  "shapes": _shapes_json(shapes), "iterations": iterations}
        return self._chain_request(header, blobs, "trained",
                                   lambda reply, reply_blobs: Chain.from_reply(reply, reply_blobs, steps))

    def _chain_request(self, header: dict[str, Any], blobs: list[bytes], answer: str,
                       read: Callable[[dict[str, Any], list[bytes]], _T]) -> _T | None:
        """One request that runs many calls inside the sandbox within one call-time budget (the training
        chain, its replay), answered by one ``answer`` message that ``read`` turns into a result.

        None when anything goes wrong (past the budget, a dead sandbox, a malformed answer): the sandbox
        is then retired and restarted, and the caller goes call by call, which reports the failure precisely.
        """
        budget = self.limits.call_timeout_s
        try:
            token = self._request({**header, "call_timeout": self.limits.call_timeout_s, "budget": budget}, blobs)
            deadline = min(time.monotonic() + budget + self.limits.call_timeout_s + WATCHDOG_GRACE_S,
                           self._total_deadline())
            reply, reply_blobs = self._reply(token, deadline)
            if reply.get("op") != answer:
                raise protocol.WireError("unexpected message")
            return read(reply, reply_blobs)
        except CHANNEL_FAILURES as error:
            stop: StopKind = stop_kind(error)
        self._retire(stop)
        self._restart_and_replay()
        return None

    def replay(self, step: LoopStep, fixed: Mapping[str, Any], stacked: Mapping[str, np.ndarray], count: int,
               shapes: Mapping[str, Shape]) -> dict[str, np.ndarray] | None:
        """``step`` called at each of ``count`` iterations of a training chain, independently, in one request.

        Call i takes ``fixed`` arguments (the same for every call) and row i of the ``stacked`` ones.
        The answer is what the calls bound, stacked (name -> array of ``count`` rows of the name's
        shape), or None whenever anything is irregular (a failed call, a malformed or inconsistent
        answer, a dead sandbox); the caller then replays call by call, which reports the failure
        precisely. Untrusted like any answer.
        """
        if self._process is None or step.function in self._broken or count <= 0:
            return None
        blobs: list[bytes] = []
        header = {"op": "replay", "step": _step_json(step),
                  "fixed": {name: protocol.encode_value(value, blobs) for name, value in fixed.items()},
                  "stacked": {name: protocol.encode_value(value, blobs) for name, value in stacked.items()},
                  "count": count, "shapes": _shapes_json(shapes)}

        def read(reply: dict[str, Any], reply_blobs: list[bytes]) -> dict[str, np.ndarray] | None:
            descs = reply.get("outputs")
            if reply.get("status") != "ok" or not isinstance(descs, dict) or set(descs) != set(step.bound):
                return None
            outputs: dict[str, np.ndarray] = {}
            for name in step.bound:
                value = protocol.decode_value(descs[name], reply_blobs)
                shape = shapes.get(name)
                if not (isinstance(value, np.ndarray) and value.dtype == np.float64 and value.ndim >= 1
                        and len(value) == count and (shape is None or value.shape[1:] == tuple(shape))):
                    return None
                outputs[name] = value
            return outputs

        return self._chain_request(header, blobs, "replayed", read)

    def _restart_and_replay(self) -> None:
        self._process = None
        if self._restarts >= MAX_RESTARTS:
            return
        self._restarts += 1
        self._start(self._replayable)
        stop = self._exec_once(list(self._replayable), {}, None)
        if stop is not None:
            self._retire(stop[1])
            self._process = None

    @staticmethod
    def _parse_outcome(header: dict[str, Any], blobs: list[bytes], batched: bool = False) -> CallOutcome:
        if not batched and header.get("op") != "result":
            raise protocol.WireError("unexpected message")
        status = header.get("status")
        if status == "ok":
            value = protocol.decode_value(header.get("value"), blobs)
            after = header.get("args_after")
            args_after = tuple(protocol.decode_value(a, blobs) for a in after) if isinstance(after, list) else None
            return CallOutcome("ok", value=value, args_after=args_after)
        if status in ("raised", "timeout", "missing"):
            error = header.get("error")
            return CallOutcome(status, error=safe_lines(error, limit=300) if error else None)
        raise protocol.WireError("unknown call status")


class AttachedSandbox(SubprocessSandbox):
    """A sandbox whose worker already runs elsewhere (``grader.check()`` in a student's kernel):
    the grader neither starts nor kills it, and after a call hangs it there is no restart."""

    starts_processes = False

    def __init__(self, channel_in: int, channel_out: int, limits: Limits | None = None) -> None:
        self._channel = (channel_in, channel_out)
        super().__init__(limits)

    def _spawn(self, first_cells: Sequence[Cell] | None = None) -> None:
        self._process = _Process.attached(*self._channel)
        self._ready = False

    def _restart_and_replay(self) -> None:
        self._process = None
