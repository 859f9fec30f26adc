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
import sys
import tempfile
import time
from typing import Any

from grader.confine import confinement, prepare_child
from grader.errors import SandboxError
from grader.execute import sandbox_environment, worker_program
from grader.limits import Limits

#: The server's own limits: generous, since each child lowers them to the submission's.
SERVER_LIMITS = Limits(memory_mb=1 << 20, cpu_time_s=10.0 ** 7, file_size_mb=64, max_processes=1 << 14)
START_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 10.0


class ForkServer:
    """One server per grading process; not thread-safe (one request at a time)."""

    def __init__(self) -> None:
        self.confinement = confinement()
        self.workdir = tempfile.mkdtemp(prefix="grader-forkserver-")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._socket = ours
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", worker_program(), "forkserver", str(theirs.fileno()),
                 self.confinement.site_view],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.workdir,
                env=sandbox_environment(self.workdir), pass_fds=(theirs.fileno(),),
                preexec_fn=lambda: prepare_child(SERVER_LIMITS, self.workdir, self.confinement),
            )
        except OSError as exc:
            ours.close()
            raise SandboxError.from_start_failure(str(exc)) from None
        finally:
            theirs.close()
        self._socket.settimeout(START_TIMEOUT_S)
        reply = self._receive()
        if reply.get("op") != "ready":
            raise self._failure("the fork server did not start")
        self._socket.settimeout(REPLY_TIMEOUT_S)

    # --- protocol -------------------------------------------------------------------

    def _failure(self, what: str) -> SandboxError:
        self.close()
        stderr = b""
        if self._popen.stderr is not None:
            try:
                stderr = self._popen.stderr.read() or b""
            except (OSError, ValueError):
                pass
        last = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [what]
        return SandboxError.from_start_failure(last[0])

    def _receive(self) -> dict[str, Any]:
        try:
            data = self._socket.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            raise self._failure("the fork server stopped")
        return json.loads(data)

    def _request(self, request: dict[str, Any], fds: tuple[int, ...] = ()) -> dict[str, Any]:
        try:
            socket.send_fds(self._socket, [json.dumps(request).encode()], list(fds))
        except OSError:
            raise self._failure("the fork server stopped") from None
        return self._receive()

    @property
    def alive(self) -> bool:
        return self._popen.poll() is None and self._socket.fileno() >= 0

    # --- what execute.py uses ---------------------------------------------------------

    def spawn(self, limits: Limits, workdir: str, channel: tuple[int, int], output: int) -> "ForkedProcess":
        reply = self._request({
            "op": "spawn", "workdir": workdir, "limits": dataclasses.asdict(limits),
            "namespaces": self.confinement.namespaces, "readonly": [self.workdir],
        }, (*channel, output))
        pid = reply.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            raise self._failure("the fork server could not fork")
        return ForkedProcess(self, pid)

    def status(self, pid: int, kill: bool) -> int | None:
        """The child's raw wait status once it has ended (killing its group first when ``kill``), else None."""
        reply = self._request({"op": "kill" if kill else "poll", "pid": pid})
        status = reply.get("status")
        return status if isinstance(status, int) else None

    def close(self) -> None:
        try:
            self._socket.close()
        except OSError:
            pass
        if self._popen.poll() is None:
            try:
                self._popen.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        if self._popen.stderr is not None:
            self._popen.stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ForkServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ForkedProcess:
    """``execute.ProcessHandle`` for a child of the fork server."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self._server = server
        self._pid = pid
        self._returncode: int | None = None

    def _record(self, status: int | None) -> None:
        if status is not None and self._returncode is None:
            self._returncode = os.waitstatus_to_exitcode(status)

    def poll(self) -> int | None:
        if self._returncode is None and self._server.alive:
            self._record(self._server.status(self._pid, kill=False))
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
            self._record(self._server.status(self._pid, kill=True))
        if self._returncode is None:
            self._returncode = -9
