"""The kernel backend: the notebook runs in a real ipykernel driven by nbclient ("Restart & Run All").

Everything after execution is shared with the default backend, so both compute
every check, diagnosis and score with the same trusted code:

1. A fresh ipykernel starts, confined exactly like a sandbox process (the same
   ``prepare_child``: namespaces, read-only file system, site view without the
   grader, rlimits); only its ZeroMQ sockets' directory stays writable, and it
   talks over unix sockets (``ipc``), since its network namespace has no network.
2. A silent setup request loads the sandbox worker program (``sandbox_worker.py``
   in kernel mode) into a private namespace of the kernel: not the notebook's.
3. nbclient executes the code cells: per-cell timeout with interrupt, errors
   allowed and recorded. A cell that ignores the interrupt is killed by a
   watchdog; the kernel is restarted and the good cells replayed, as the default
   backend does.
4. One more request starts the worker's serve loop inside the kernel; from then
   on the grader talks to it over the same private pipe pair and protocol as to
   a sandbox process (``execute.SubprocessSandbox``, which this class extends).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from grader.sandbox import protocol
from grader.cache import cache_root
from grader.files import write_atomic
from grader.sandbox.confine import interpreter, prepare_child
from grader.errors import SandboxError
from grader.sandbox.process import (CHANNEL_FAILURES, UNDUMPABLE, WATCHDOG_GRACE_S, ProcessHandle, StopKind,
                            SubprocessSandbox, _PopenHandle, sandbox_environment, stop_kind, worker_body)
from grader.sandbox.limits import Limits
from grader.model import CellRun
from grader.untrusted_text import safe_lines

KERNEL_NAME = "grader-sandbox"
START_TIMEOUT_S = 60.0
#: nbclient interrupts a cell at its limit; a kernel still busy this long after that is killed.
INTERRUPT_GRACE_S = 2.0


def _kernel_spec_dir(site_view: str) -> str:
    """A kernelspec whose kernel is ``python -I -S`` with the site view (cached per interpreter and view)."""
    launcher = (UNDUMPABLE.replace("\n", "; ") + f"import sys; sys.path.append({site_view!r}); sys.path.insert(0, ''); "
                "from ipykernel.kernelapp import launch_new_instance; launch_new_instance()")
    spec = {"argv": [interpreter(), "-I", "-S", "-c", launcher, "-f", "{connection_file}"],
            "display_name": "grader sandbox (Python 3)", "language": "python", "interrupt_mode": "signal"}
    text = json.dumps(spec, indent=1)
    root = cache_root() / "kernels" / hashlib.sha256(text.encode()).hexdigest()[:16]
    target = root / KERNEL_NAME / "kernel.json"
    if not target.is_file():
        write_atomic(target, text)
    return str(root)


#: What nbclient may hold of a kernel's outputs, as a multiple of ``output_kb`` (at least 1 MiB).
OUTPUT_BUDGET_FACTOR = 4
#: An error output is always kept (it decides the cell's status), cut to this many characters.
MAX_ERROR_CHARS = 64 << 10


def _bounded_client_class() -> Any:
    """nbclient's client, holding no more than a budget of a kernel's outputs.

    nbclient keeps every output of every cell in memory, and a cell that prints without end would
    hold all of it in the grader (880 MB in ten seconds). Past ``output_budget`` characters,
    outputs are counted and dropped as they arrive; an error output is always kept, shortened,
    since it decides the cell's status.
    """
    from nbclient import NotebookClient

    class BoundedClient(NotebookClient):  # type: ignore[misc]
        output_budget = 1 << 20
        used = 0
        dropped = 0

        def output(self, outs: Any, msg: dict[str, Any], display_id: Any, cell_index: int) -> Any:
            content = msg.get("content") or {}
            if msg.get("msg_type") == "error":
                content["evalue"] = str(content.get("evalue", ""))[:MAX_ERROR_CHARS]
                content["traceback"] = [str(line)[:MAX_ERROR_CHARS] for line in content.get("traceback", [])[:200]]
                return super().output(outs, msg, display_id, cell_index)
            size = len(str(content.get("text", ""))) + sum(len(str(v)) for v in (content.get("data") or {}).values())
            if self.used + size > self.output_budget:
                self.dropped += size
                return None
            self.used += size
            return super().output(outs, msg, display_id, cell_index)

    return BoundedClient


def _setup_code(channel: tuple[int, int]) -> str:
    """Loads the worker program, in kernel mode, into a namespace of its own inside the kernel."""
    program = f"_CHANNEL_ARGS = ['kernel', '{channel[0]}', '{channel[1]}']\n_JAIL_SOURCE = ''\n" + worker_body()
    return f"exec(compile({program!r}, '<sandbox>', 'exec'), {{'__name__': '__sandbox__'}})"


class KernelSandbox(SubprocessSandbox):
    """``--backend kernel``: a confined ipykernel per submission, cells executed by nbclient."""

    name = "kernel"

    def __init__(self, limits: Limits | None = None, graded: tuple[str, ...] = ()) -> None:
        # Each kernel start gets a fresh socket directory of the sandbox user's inside a directory only
        # the grader can enter, bound at the same path into that kernel's root alone. Its connection file
        # (the key) stays in the grader's directory, bound read-only: the grader never writes or chowns
        # by path where the sandbox could have planted a link.
        self._private = tempfile.mkdtemp(prefix="nbkernel-")
        self._sockets = ""
        self._starts = 0
        self._km: Any = None
        self._client: Any = None
        self._cell_output: list[str] = []
        self._dropped = 0
        try:
            super().__init__(limits, None, graded)
        except BaseException:
            shutil.rmtree(self._private, ignore_errors=True)  # no sandbox to close: its directory goes now
            raise

    # --- lifecycle ------------------------------------------------------------------

    def _starter(self, channel: tuple[int, int], output: int, sources: list[str] | None = None) -> ProcessHandle:
        from jupyter_client import AsyncKernelManager
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_core.utils import run_sync

        self._cleanup_kernel()
        spec_manager = KernelSpecManager(kernel_dirs=[_kernel_spec_dir(self.confinement.site_path)])
        # nbclient needs the asynchronous client: with a blocking one, its wait for the outputs of a
        # cell whose kernel was killed can never time out.
        self._starts += 1
        self._sockets = os.path.join(self._private, f"sockets-{self._starts}")
        os.mkdir(self._sockets, 0o700)
        drop_to = self.confinement.drop_to
        if drop_to is not None:  # the kernel runs as the sandbox user: its (new, empty) directory is its own
            os.chown(self._sockets, *drop_to)
        km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=spec_manager, transport="ipc",
                                ip=os.path.join(self._sockets, "kernel"))
        km.connection_file = os.path.join(self._private, f"connection-{self._starts}.json")
        workdir = self.workdir
        km.write_connection_file()  # now, so that start_kernel keeps it and the kernel's user can read it
        if drop_to is not None:
            descriptor = os.open(km.connection_file, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fchown(descriptor, *drop_to)
            finally:
                os.close(descriptor)
        try:
            run_sync(km.start_kernel)(cwd=workdir, env=sandbox_environment(self.confinement.workdir(workdir)),
                                      stdout=output, stderr=output, pass_fds=channel,
                                      preexec_fn=lambda: prepare_child(self.limits, workdir, self.confinement,
                                                                       writable=(self._sockets,),
                                                                       readable=(km.connection_file,)))
        except Exception as exc:  # jupyter_client raises several kinds
            raise SandboxError.from_start_failure(f"the kernel did not start ({type(exc).__name__}: {exc})") from None
        self._km = km
        return _PopenHandle(km.provisioner.process)

    def _await_ready(self) -> None:
        """Connect to the kernel and load the worker program into it (not yet serving: cells come first)."""
        from jupyter_core.utils import run_sync
        from nbformat.v4 import new_notebook

        if self._ready:
            return
        assert self._process is not None and self._km is not None
        client = _bounded_client_class()(new_notebook(), km=self._km, timeout=max(1, math.ceil(self.limits.cell_timeout_s)),
                                allow_errors=True, interrupt_on_timeout=True, record_timing=False, iopub_timeout=1,
                                startup_timeout=int(START_TIMEOUT_S), shutdown_kernel="immediate",
                                error_on_timeout={"ename": "CellTimeoutError", "evalue": "time limit",
                                                  "traceback": []})
        client.output_budget = max(OUTPUT_BUDGET_FACTOR * self.limits.output_kb * 1024, 1 << 20)
        try:
            client.start_new_kernel_client()
            reply = run_sync(client.kc.execute_interactive)(_setup_code(self._process.child_channel), silent=True,
                                                            store_history=False, timeout=30)
        except Exception as exc:
            self._process.kill(died=True)
            raise SandboxError.from_start_failure(f"the kernel did not answer ({type(exc).__name__})") from None
        if reply["content"].get("status") != "ok":
            raise SandboxError.from_start_failure("the kernel could not load the grader's worker program")
        self._client = client
        self._ready = True

    def _cleanup_kernel(self) -> None:
        client, km = self._client, self._km
        self._client = self._km = None
        if client is not None:
            self._dropped += client.dropped
        if client is not None and client.kc is not None:
            try:
                client.kc.stop_channels()
            except Exception:
                pass
        if km is not None:
            from jupyter_core.utils import run_sync

            try:
                run_sync(km.cleanup_resources)()
            except Exception:
                pass

    def _retire(self, stop: StopKind = "timeout") -> str:
        how = super()._retire(stop)
        self._cleanup_kernel()
        return how

    def close(self) -> None:
        super().close()
        self._cleanup_kernel()
        shutil.rmtree(self._private, ignore_errors=True)

    def output_excerpt(self) -> str:
        limit = self.limits.output_kb * 1024
        text = "".join(self._cell_output)
        dropped = len(text) - limit if len(text) > limit else 0
        dropped += self._dropped + (self._client.dropped if self._client is not None else 0)
        kept = text[:limit] + (f"\n[grader] ... {dropped} more characters of output not kept" if dropped else "")
        process = super().output_excerpt()
        return "\n".join(part for part in (kept, process) if part)

    # --- the notebook -------------------------------------------------------------------

    def _exec_once(self, cells: list, runs: dict[int, CellRun], warnings: list[str] | None
                   ) -> tuple[int, StopKind] | None:
        """Run ``cells`` through nbclient, then start the worker's serve loop and ask it what is defined."""
        from nbformat.v4 import new_code_cell

        assert self._client is not None and self._process is not None
        client = self._client
        for position, cell in enumerate(cells):
            node = new_code_cell(cell.source)
            client.nb.cells.append(node)
            started = time.monotonic()
            watchdog = threading.Timer(self.limits.cell_timeout_s + INTERRUPT_GRACE_S + WATCHDOG_GRACE_S,
                                       self._process.handle.kill_group)
            watchdog.start()
            replies: list[Any] = []
            client.on_cell_executed = lambda **hook: replies.append(hook.get("execute_reply"))
            try:
                client.execute_cell(node, len(client.nb.cells) - 1, store_history=True)
            except Exception:  # DeadKernelError, CellTimeoutError, a ZeroMQ error after a kill
                watchdog.cancel()
                if time.monotonic() - started >= self.limits.cell_timeout_s or self._process.handle.poll() is None:
                    return position, "timeout"
                return position, "died"
            finally:
                watchdog.cancel()
                self._keep_output(node)
            if time.monotonic() >= self._total_deadline():
                return position, "timeout"
            reply = replies[-1] if replies else None
            if self._still_running(node, reply):
                return position, "timeout"  # it ignored the interrupt: kill, restart, replay the good cells
            runs[cell.index] = self._cell_run(cell.index, node, reply)
        return None  # the serve loop starts once every cell has run (see _serve)

    @staticmethod
    def _still_running(node: Any, reply: Any) -> bool:
        """nbclient answers a timed-out cell after interrupting it, whether or not the code stopped;
        it did stop only if the interrupt surfaced as a KeyboardInterrupt in the cell's outputs."""
        content = (reply or {}).get("content") or {}
        if content.get("ename") != "CellTimeoutError":
            return False
        return not any(o.get("output_type") == "error" and o.get("ename") == "KeyboardInterrupt"
                       for o in node.get("outputs", []))

    def _cell_run(self, index: int, node: Any, reply: Any) -> CellRun:
        content = (reply or {}).get("content") or {}
        if content.get("ename") == "CellTimeoutError":
            return CellRun(index, "timeout", "time limit")
        for output in node.get("outputs", []):
            if output.get("output_type") == "error":
                if output.get("ename") == "KeyboardInterrupt":
                    return CellRun(index, "timeout", "time limit")
                return CellRun(index, "error", safe_lines(protocol.describe_error(str(output.get("ename", "Error")),
                                                                              str(output.get("evalue", "")))))
        if content.get("status") == "error":
            # The kernel could not send the error itself (a lone surrogate in its message cannot be
            # encoded for the wire): its reply still says the cell failed, so it is not "ok".
            return CellRun(index, "error", safe_lines(protocol.describe_error(str(content.get("ename", "Error")),
                                                                          str(content.get("evalue", "")))))
        return CellRun(index, "ok")

    def _keep_output(self, node: Any) -> None:
        kept = sum(len(text) for text in self._cell_output)
        for output in node.get("outputs", []):
            if output.get("output_type") == "stream" and kept <= self.limits.output_kb * 1024:
                text = safe_lines(str(output.get("text", ""))[: self.limits.output_kb * 1024])
                self._cell_output.append(text)
                kept += len(text)

    def run_notebook(self, cells):
        execution = super().run_notebook(cells)
        self._serve()
        execution.functions = self._functions
        return execution

    def _restart_and_replay(self) -> None:
        super()._restart_and_replay()
        self._serve()

    def _serve(self) -> None:
        """Hand the kernel over to the worker's serve loop; a kernel that cannot is retired."""
        if self._process is None:
            return
        stop = self._serve_and_describe(-1)
        if stop is not None:
            self._retire(stop[1])
            self._process = None

    def _serve_and_describe(self, last: int) -> tuple[int, StopKind] | None:
        """Start the serve loop in the kernel (a request that lasts until the grader is done) and ask for
        the functions, as the default backend's worker reports them after its cells."""
        assert self._client is not None and self._process is not None
        self._client.kc.execute("__import__('signal')._sandbox_serve()", silent=True, store_history=False)
        try:
            header, _ = self._process.receive(min(time.monotonic() + 30, self._total_deadline()))
            if header.get("op") != "ready":
                raise protocol.WireError("the kernel's worker did not start")
            token = self._request({"op": "exec", "cell_timeout": self.limits.cell_timeout_s, "cells": [],
                                   "functions": list(self.graded)})
            self._await_exec_done(token)
            return None
        except CHANNEL_FAILURES as error:
            return last, stop_kind(error)
