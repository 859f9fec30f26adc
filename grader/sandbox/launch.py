"""Starting a sandbox worker and holding on to it: what every backend shares.

A backend is a *launcher* (``Launcher``): a fresh confined Python (``FreshLauncher``, the
default), a fork of the fork server (``forkserver.ForkLauncher``), a confined ipykernel
(``kernel.KernelLauncher``), or a worker already running in a student's own kernel
(``AttachedLauncher``, for ``grader.check()``). What a launcher starts is a ``Worker``: the
process, the private pipe pair the grader talks to it over (``protocol``), and the drain of
its output. ``process.ProcessSandbox`` drives a worker the same way whatever started it.

The worker itself is ``worker.py``, shipped as source after ``protocol.py`` (``worker_body``)
and a bootstrap (``worker_program``), so the grader package is never imported in the sandbox.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from grader.errors import SandboxError
from grader.sandbox import protocol
from grader.sandbox.confine import MPLCONFIG_SUBDIR, Confinement, interpreter, prepare_child
from grader.untrusted_text import safe_lines

if TYPE_CHECKING:
    from grader.load import Cell
    from grader.model import CellRun
    from grader.sandbox.limits import Limits

#: Why the worker stopped answering: it ran past a limit, it died, or it sent something malformed.
StopKind = Literal["timeout", "died", "protocol"]
#: What reading from the worker raises in each of those cases.
CHANNEL_FAILURES = (TimeoutError, EOFError, protocol.WireError)
#: Where running cells stopped: the position of the cell that stopped the worker, and why.
CellStop = tuple[int, StopKind]


def stop_kind(error: BaseException) -> StopKind:
    """The StopKind of one of ``CHANNEL_FAILURES``."""
    if isinstance(error, TimeoutError):
        return "timeout"
    return "died" if isinstance(error, EOFError) else "protocol"


# --- the program -------------------------------------------------------------------------

_PACKAGE_DIR = Path(__file__).resolve().parent

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


# --- the process ---------------------------------------------------------------------------


class ProcessHandle(Protocol):
    """A started worker process, however it was started (``subprocess``, the fork server, a kernel manager)."""

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill_group(self) -> None: ...


class PopenHandle:
    """A worker this process started with ``subprocess`` (a fresh Python, a kernel): killed with its process group."""

    def __init__(self, popen: subprocess.Popen[Any]) -> None:
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


class AttachedHandle:
    """A worker the grader did not start and may not stop (a student's own kernel)."""

    def poll(self) -> int | None:
        return None

    def wait(self, timeout: float | None = None) -> int:
        raise subprocess.TimeoutExpired("kernel", timeout or 0)

    def kill_group(self) -> None:
        pass


class OutputDrain:
    """Reads the student's output pipe to the end, keeping only the first ``limit`` bytes."""

    def __init__(self, fd: int, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0
        self._fd = fd
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                select.select([self._fd], [], [])  # wait outside the lock; read and keep inside it, as one step,
            except OSError:                        # so that ``settle`` never finds bytes read but not yet kept
                break
            with self._lock:
                try:
                    chunk = os.read(self._fd, 1 << 16)
                except OSError:
                    break
                if not chunk:
                    break
                room = self.limit - len(self.kept)
                self.kept += chunk[:max(room, 0)]
                self.dropped += max(len(chunk) - max(room, 0), 0)
        self._closed = True
        os.close(self._fd)

    def settle(self, timeout: float = 0.5) -> None:
        """Wait (at most ``timeout``) until the thread has read what is already in the pipe: the last cell's
        traceback is written just before the worker reports, and a loaded machine may not have run this
        thread since. Hand-written with FIONREAD: the pipe's pending bytes are what decides, not a sleep."""
        import fcntl
        import termios

        deadline = time.monotonic() + timeout
        while not self._closed and time.monotonic() < deadline:
            try:
                pending = int.from_bytes(fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0"), "little")
            except OSError:
                return
            if pending == 0:
                with self._lock:  # a read in progress holds it until its bytes are kept
                    return
            time.sleep(0.002)

    def excerpt(self) -> str:
        """What was kept, as safe text: the student printed it, so escapes and controls are shown, not obeyed."""
        self.settle()
        text = safe_lines(bytes(self.kept))
        if self.dropped:
            text += (f"\n[grader] ... {self.dropped} more bytes of output not kept"
                     " (and print() calls past the limit were skipped)")
        return text

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


#: ``start(channel, output)``: launch a worker process that inherits the channel's two ends (its
#: input, its output) and writes its stdout and stderr to ``output``.
StartProcess = Callable[[tuple[int, int], int], ProcessHandle]


class Worker:
    """One live worker process and its channel."""

    def __init__(self, handle: ProcessHandle, child_channel: tuple[int, int], send_fd: int, recv_fd: int,
                 drain: OutputDrain) -> None:
        self.handle = handle
        #: The channel's descriptor numbers as the child inherited them (a kernel is told them).
        self.child_channel = child_channel
        self.send_fd = send_fd
        self.recv_fd = recv_fd
        self.drain = drain
        #: One budget for everything this process sends, from its first message.
        self.read_budget = protocol.ReadBudget()
        #: Why a message it sent was refused, in the grader's words (for the report).
        self.wire_error: str | None = None
        self._buffer = bytearray()
        #: ``send`` never blocks: the grader's end of the request pipe is set non-blocking once, on first use.
        self._send_ready = False

    @classmethod
    def start(cls, start: StartProcess, drain_limit: int) -> Worker:
        """A new worker: ``start`` launches its process with fresh pipes; the first ``drain_limit`` bytes
        of its output are kept. SandboxError when it cannot start (the confinement's own words if it said why)."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            handle = start((to_child_r, from_child_w), out_w)
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
        return cls(handle, (to_child_r, from_child_w), to_child_w, from_child_r, OutputDrain(out_r, drain_limit))

    @classmethod
    def attached(cls, recv_fd: int, send_fd: int) -> Worker:
        """A worker the grader did not start and may not stop; its output is not the grader's to drain."""
        out_r, out_w = os.pipe()
        os.close(out_w)
        return cls(AttachedHandle(), (-1, -1), send_fd, recv_fd, OutputDrain(out_r, 0))

    def send(self, header: dict[str, Any], blobs: list[bytes] | None, deadline: float) -> None:
        """Write one message, waiting for room in the pipe until ``deadline`` at most: TimeoutError past it,
        EOFError when the worker is gone. An honest worker reads every request and answer at once, so this
        only ever waits for one that has stopped reading: a notebook that stops its worker's loop, or asks a
        live stand-in's question and leaves the answer unread, would otherwise hang the grader in a blocking
        write for good (red team, issue 15)."""
        data = memoryview(protocol.pack(header, blobs or []))
        try:
            if not self._send_ready:
                os.set_blocking(self.send_fd, False)  # only the grader writes to it, only here
                self._send_ready = True
            while data:
                try:
                    data = data[os.write(self.send_fd, data):]
                    continue
                except BlockingIOError:
                    pass
                wait = deadline - time.monotonic()
                if wait <= 0 or not select.select([], [self.send_fd], [], wait)[1]:
                    raise TimeoutError("the sandbox stopped reading its channel")
        except OSError:  # the worker is gone (a broken pipe, or its end closed)
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
            header, blobs = protocol.read_message(read_exact, protocol.FROM_SANDBOX, self.read_budget)
        except protocol.WireError as exc:
            self.wire_error = str(exc)
            raise
        blobs.on_refused = self._refused  # an array refused when decoded
        return header, blobs

    def _refused(self, reason: str) -> None:
        self.wire_error = reason

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


# --- backends ------------------------------------------------------------------------------


class Site(Protocol):
    """What a launcher is told of the sandbox it starts workers for (``process.ProcessSandbox`` is one)."""

    @property
    def limits(self) -> Limits: ...

    @property
    def workdir(self) -> str:
        """The sandbox's private host directory (``sandbox_workdir``)."""

    @property
    def confinement(self) -> Confinement: ...

    def total_deadline(self) -> float:
        """When the submission's total time is up (``time.monotonic``)."""


class CellRunner(Protocol):
    """A backend that runs the notebook's cells itself, then hands the process over to the worker
    (the kernel backend: nbclient runs the cells in the kernel, as "Restart & Run All" would).

    Without one, the worker runs the cells (an "exec" request) and serves from its first message on.
    """

    def connect(self, site: Site, worker: Worker) -> None:
        """Make a just started process ready for cells (instead of waiting for the worker's "ready");
        SandboxError when it cannot be."""

    def run(self, site: Site, worker: Worker, cells: Sequence[Cell], runs: dict[int, CellRun]) -> CellStop | None:
        """Run ``cells`` in order, recording each in ``runs``; None when all ran, else where and why it stopped."""

    def serve(self, site: Site, worker: Worker) -> None:
        """After the cells: start the worker's serve loop and read its "ready" (``CHANNEL_FAILURES`` when
        it does not come); the sandbox then asks it, as any worker, what the cells defined."""

    def output_excerpt(self, site: Site) -> str:
        """The cells' output this runner collected (bounded, safe text), shown before the process's own."""


class Launcher(Protocol):
    """How one backend starts the sandbox's worker and tears it down; the sandbox does everything else.

    A launcher belongs to one sandbox (``process.ProcessSandbox``), which calls ``launch`` for its
    first worker and for each restart, ``stopped`` after it killed one, and ``close`` once, last
    (also when the sandbox itself could not be set up).
    """

    @property
    def name(self) -> str:
        """The backend's name, as reports give it ("subprocess", "kernel")."""

    @property
    def starts_processes(self) -> bool:
        """False for a worker the grader did not start and may not restart (a self-check's): the
        machine's confinement is then not required either."""

    @property
    def starts_early(self) -> bool:
        """True: the first worker starts with the sandbox, so its start-up overlaps loading the notebook.
        False: it starts when the notebook's cells are known (a fork server picks what to fork by them)."""

    @property
    def cells(self) -> CellRunner | None:
        """The backend's own way of running cells, or None: the worker runs them."""

    def launch(self, site: Site, sources: Sequence[str] | None) -> Worker:
        """Start a worker whose first cells, when known, are ``sources``; SandboxError when it cannot start."""

    def stopped(self) -> None:
        """The current worker was killed: release what went with it."""

    def close(self) -> None:
        """The sandbox is done (or could not be set up): release everything."""


class FreshLauncher:
    """The default backend: each worker a fresh ``python -I -S``, confined between fork and exec."""

    name = "subprocess"
    starts_processes = True
    starts_early = True
    cells = None

    def launch(self, site: Site, sources: Sequence[str] | None) -> Worker:
        limits, workdir, confined = site.limits, site.workdir, site.confinement

        def start(channel: tuple[int, int], output: int) -> ProcessHandle:
            popen = subprocess.Popen(
                [interpreter(), "-I", "-S", "-c", worker_program(), str(channel[0]), str(channel[1]),
                 confined.site_path],
                stdin=subprocess.DEVNULL, stdout=output, stderr=output, cwd=workdir,
                env=sandbox_environment(confined.workdir(workdir)),
                pass_fds=channel, preexec_fn=lambda: prepare_child(limits, workdir, confined),
            )
            return PopenHandle(popen)

        return Worker.start(start, limits.output_kb * 1024)

    def stopped(self) -> None:
        pass

    def close(self) -> None:
        pass


class AttachedLauncher:
    """A worker that already runs elsewhere (``grader.check()`` in a student's kernel), on the channel
    ``channel_in``/``channel_out``: the grader neither starts nor kills it, nor restarts it after a call hangs."""

    name = "subprocess"
    starts_processes = False
    starts_early = True
    cells = None

    def __init__(self, channel_in: int, channel_out: int) -> None:
        self.channel = (channel_in, channel_out)

    def launch(self, site: Site, sources: Sequence[str] | None) -> Worker:
        return Worker.attached(*self.channel)

    def stopped(self) -> None:
        pass

    def close(self) -> None:
        pass
