"""A preloaded sandbox parent that forks one fresh worker per submission (batch grading).

Starting Python, numpy, IPython and matplotlib costs about 0.4 s of CPU; a class
of 300 notebooks would pay it 300 times. The fork server pays it once: it is
the same confined program as a one-off sandbox (``python -I -S``, the site view,
the namespaces of ``confine.py``), but instead of serving one notebook it waits
on a control socket and, per submission, forks a child that confines itself
further (its own mount and PID namespace, private tmpfs working directory,
rlimits) and then serves exactly like a fresh sandbox. No student code ever runs
in the server itself, so every child starts from the same clean state.

The control socket is a ``SOCK_SEQPACKET`` pair: one JSON datagram per request
or reply, the child's three pipe ends passed with ``SCM_RIGHTS``. Only process
ids and wait statuses travel on it; everything else goes over the child's own
channel, exactly as with a fresh process.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from grader.errors import SandboxError
from grader.sandbox.confine import confinement, interpreter, prepare_child
from grader.sandbox.launch import (
    Site,
    Worker,
    confinement_failure,
    confinement_reason,
    sandbox_environment,
    sandbox_workdir,
    worker_program,
)
from grader.sandbox.limits import Limits

#: The server's own limits: generous, since each child lowers them to the submission's.
SERVER_LIMITS = Limits(memory_mb=1 << 20, cpu_time_s=10.0 ** 7, file_size_mb=64, max_processes=1 << 14)
START_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 10.0
#: What is read of a failed server's stderr (its last lines name the cause).
MAX_STDERR_BYTES = 64 << 10


#: The opening cells are sent to the server in one datagram; a template whose opening is larger
#: than this is simply not primed.
MAX_OPENING_BYTES = 48 << 10


class _Control:
    """One control socket: to the fork server, or to the primed server it forked."""

    def __init__(self, sock: socket.socket, failure: Callable[[str], SandboxError]) -> None:
        self.socket = sock
        self._failure = failure

    def receive(self) -> dict[str, Any]:
        try:
            data = self.socket.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self.close()
            raise self._failure("the fork server stopped")
        reply: dict[str, Any] = json.loads(data)
        return reply

    def request(self, request: dict[str, Any], fds: tuple[int, ...] = ()) -> dict[str, Any]:
        try:
            socket.send_fds(self.socket, [json.dumps(request).encode()], list(fds))
        except OSError:
            self.close()
            raise self._failure("the fork server stopped") from None
        return self.receive()

    @property
    def alive(self) -> bool:
        return self.socket.fileno() >= 0

    def spawn(self, request: dict[str, Any], fds: tuple[int, ...]) -> ForkedProcess:
        """Ask this server for a worker; its own failure (a bad reply included) is raised as this server's."""
        pid = self.request(request, fds).get("pid")
        if not isinstance(pid, int) or pid <= 0:
            raise self._failure("the fork server could not fork")
        return ForkedProcess(self, pid)

    def status(self, pid: int, kill: bool) -> int | None:
        """The child's raw wait status once it has ended (killing its group first when ``kill``), else None."""
        reply = self.request({"op": "kill" if kill else "poll", "pid": pid})
        status = reply.get("status")
        return status if isinstance(status, int) else None

    def close(self) -> None:
        try:
            self.socket.close()
        except OSError:
            pass


def _primed_failure(what: str) -> SandboxError:
    """The primed server failing costs only the shortcut: the fork server itself carries on."""
    return SandboxError.from_start_failure(f"the primed fork server stopped ({what})")


class ForkServer:
    """One server per grading process; not thread-safe (one request at a time).

    ``opening``: the assignment template's opening cells (``grader.template``). The server
    then forks a *primed* server that has run them, and a notebook whose code begins with
    exactly those cells is forked from it, skipping work every such notebook would repeat.
    """

    def __init__(self, opening: Sequence[str] = (), cell_timeout_s: float = 10.0) -> None:
        self.confinement = confinement()
        self.confinement.require()
        self.workdir = sandbox_workdir(self.confinement, "grader-forkserver-")
        self.opening: tuple[str, ...] = ()
        self._primed: _Control | None = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control = _Control(ours, self._failure)
        # The server's stderr is a pipe of ours (not Popen's), so that what a failed start wrote
        # there can still be read when Popen raises.
        stderr_r, stderr_w = os.pipe()
        self._stderr = os.fdopen(stderr_r, "rb")
        try:
            self._popen = subprocess.Popen(
                [interpreter(), "-I", "-S", "-c", worker_program(), "forkserver", str(theirs.fileno()),
                 self.confinement.site_path, json.dumps(self.confinement.lockdown)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr_w, cwd=self.workdir,
                env=sandbox_environment(self.confinement.workdir(self.workdir)), pass_fds=(theirs.fileno(),),
                preexec_fn=lambda: prepare_child(SERVER_LIMITS, self.workdir, self.confinement, lock=False),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            ours.close()
            os.close(stderr_w)
            said = confinement_failure(stderr_r)
            self._stderr.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
            if said:
                raise SandboxError.from_confinement_failure(said) from None
            raise SandboxError.from_start_failure(f"the fork server could not start ({exc})") from None
        finally:
            theirs.close()
        os.close(stderr_w)
        ours.settimeout(START_TIMEOUT_S)
        reply = self._control.receive()
        if reply.get("op") != "ready":
            raise self._failure("the fork server did not start")
        ours.settimeout(REPLY_TIMEOUT_S)
        if opening:
            self._prime(tuple(opening), cell_timeout_s)

    def _prime(self, opening: tuple[str, ...], cell_timeout_s: float) -> None:
        """Fork the primed server; without it (too large, a cell that fails) every notebook forks from this one."""
        if sum(len(source.encode()) for source in opening) > MAX_OPENING_BYTES:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._control.request({"op": "primed", "sources": list(opening), "cell_timeout": cell_timeout_s},
                                  (theirs.fileno(),))
        finally:
            theirs.close()
        primed = _Control(ours, _primed_failure)
        ours.settimeout(START_TIMEOUT_S + len(opening) * cell_timeout_s)
        try:
            ready = primed.receive()
        except SandboxError:
            primed.close()
            return
        ours.settimeout(REPLY_TIMEOUT_S)
        if ready.get("op") == "ready" and ready.get("primed") is True:
            self._primed, self.opening = primed, opening
        else:
            primed.close()

    # --- protocol -------------------------------------------------------------------

    def _failure(self, what: str) -> SandboxError:
        """The server is gone or useless: stop it, then read what it said on stderr (the real cause,
        such as the kernel refusing a namespace), *then* close everything."""
        self._stop()
        stderr = b""
        try:
            stderr = self._stderr.read(MAX_STDERR_BYTES) or b""
        except (OSError, ValueError):
            pass
        self.close()
        lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        cause = confinement_reason(stderr) or (lines[-1][:300] if lines else "")
        return SandboxError.from_start_failure(f"{what}: {cause}" if cause else what)

    @property
    def alive(self) -> bool:
        return self._popen.poll() is None and self._control.alive

    # --- what a sandbox uses ----------------------------------------------------------

    def launcher(self) -> ForkLauncher:
        """The launcher of a sandbox whose workers are forks of this server (``process.SubprocessSandbox``)."""
        return ForkLauncher(self)

    def begins_with_opening(self, sources: Sequence[str] | None) -> bool:
        """Whether a notebook whose code cells are ``sources`` can start from the primed server."""
        return bool(self.opening) and sources is not None and tuple(sources[: len(self.opening)]) == self.opening

    def spawn(self, limits: Limits, workdir: str, channel: tuple[int, int], output: int,
              sources: Sequence[str] | None = None) -> ForkedProcess:
        """A worker for a notebook whose code cells are ``sources`` (None: not known, start from the beginning)."""
        request = {"op": "spawn", "workdir": workdir, "limits": dataclasses.asdict(limits),
                   "namespaces": self.confinement.namespaces}
        fds = (*channel, output)
        if self._primed is not None and self.begins_with_opening(sources):
            try:
                return self._primed.spawn(request, fds)
            except SandboxError:
                # The primed server is gone: carry on without it rather than fail the notebook.
                self._primed.close()
                self._primed, self.opening = None, ()
        return self._control.spawn(request, fds)

    def _stop(self) -> None:
        """Close the control sockets (the server then exits by itself) and wait for it, killing it if it lingers."""
        if self._primed is not None:
            self._primed.close()
        self._control.close()
        if self._popen.poll() is None:
            try:
                self._popen.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()

    def close(self) -> None:
        self._stop()
        self._stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ForkLauncher:
    """``launch.Launcher`` of the fork server: each worker of one sandbox a fork of ``server``, or of its primed
    server for a notebook that begins with the template's opening cells. The server outlives its sandboxes."""

    name = "subprocess"
    starts_processes = True
    #: Which server to fork from depends on the notebook's cells, and a fork is quick: it starts with them.
    starts_early = False
    cells = None

    def __init__(self, server: ForkServer) -> None:
        self.server = server

    def launch(self, site: Site, sources: Sequence[str] | None) -> Worker:
        limits, workdir = site.limits, site.workdir
        return Worker.start(lambda channel, output: self.server.spawn(limits, workdir, channel, output, sources),
                            limits.output_kb * 1024)

    def stopped(self) -> None:
        pass

    def close(self) -> None:
        pass


class ForkedProcess:
    """``launch.ProcessHandle`` for a child of the fork server (or of its primed server)."""

    def __init__(self, server: _Control, pid: int) -> None:
        self._server = server
        self._pid = pid
        self._returncode: int | None = None

    def _record(self, status: int | None) -> None:
        if status is not None and self._returncode is None:
            self._returncode = os.waitstatus_to_exitcode(status)

    def poll(self) -> int | None:
        if self._returncode is None and self._server.alive:
            try:
                self._record(self._server.status(self._pid, kill=False))
            except SandboxError:  # its server is gone, and every child of it with it
                self._returncode = -9
        return self._returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired("sandbox", timeout or 0)
            time.sleep(0.005)
        return self._returncode  # type: ignore[return-value]

    def kill_group(self) -> None:
        if self._returncode is None and self._server.alive:
            try:
                self._record(self._server.status(self._pid, kill=True))
            except SandboxError:  # its server is gone, and every child of it with it
                pass
        if self._returncode is None:
            self._returncode = -9
