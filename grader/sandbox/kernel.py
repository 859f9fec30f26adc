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
   a sandbox process.

All of that is ``KernelLauncher``: a ``launch.Launcher`` (it starts and cleans up kernels) that
is also its own ``launch.CellRunner`` (steps 2 to 4). ``KernelSandbox`` is ``process.ProcessSandbox``
with it; restarts, replays, calls and training chains are the sandbox's, as for every backend.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grader.cache import cache_root
from grader.errors import SandboxError
from grader.files import write_atomic
from grader.model import CellRun
from grader.sandbox import protocol
from grader.sandbox.confine import interpreter, prepare_child
from grader.sandbox.launch import (
    UNDUMPABLE,
    CellStop,
    PopenHandle,
    ProcessHandle,
    Site,
    Worker,
    sandbox_environment,
    worker_body,
)
from grader.sandbox.limits import Limits
from grader.sandbox.process import WATCHDOG_GRACE_S, ProcessSandbox
from grader.untrusted_text import safe_lines

if TYPE_CHECKING:
    from grader.load import Cell

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

    class BoundedClient(NotebookClient):
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


class KernelLauncher:
    """``--backend kernel``: a confined ipykernel per worker, its cells run by nbclient (``launch.Launcher`` and
    its own ``launch.CellRunner``)."""

    name = "kernel"
    starts_processes = True
    starts_early = True

    def __init__(self) -> None:
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

    @property
    def cells(self) -> KernelLauncher:
        return self

    # --- lifecycle ------------------------------------------------------------------

    def launch(self, site: Site, sources: Sequence[str] | None) -> Worker:
        return Worker.start(lambda channel, output: self._start_kernel(site, channel, output),
                            site.limits.output_kb * 1024)

    def _start_kernel(self, site: Site, channel: tuple[int, int], output: int) -> ProcessHandle:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        self._cleanup_kernel()
        confined, limits, workdir = site.confinement, site.limits, site.workdir
        spec_manager = KernelSpecManager(kernel_dirs=[_kernel_spec_dir(confined.site_path)])
        # nbclient needs the asynchronous client: with a blocking one, its wait for the outputs of a
        # cell whose kernel was killed can never time out.
        self._starts += 1
        self._sockets = sockets = os.path.join(self._private, f"sockets-{self._starts}")
        os.mkdir(sockets, 0o700)
        drop_to = confined.drop_to
        if drop_to is not None:  # the kernel runs as the sandbox user: its (new, empty) directory is its own
            os.chown(sockets, *drop_to)
        km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=spec_manager, transport="ipc",
                                ip=os.path.join(sockets, "kernel"))
        km.connection_file = connection_file = os.path.join(self._private, f"connection-{self._starts}.json")
        km.write_connection_file()  # now, so that start_kernel keeps it and the kernel's user can read it
        if drop_to is not None:
            descriptor = os.open(connection_file, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fchown(descriptor, *drop_to)
            finally:
                os.close(descriptor)
        try:
            run_sync(km.start_kernel)(cwd=workdir, env=sandbox_environment(confined.workdir(workdir)),
                                      stdout=output, stderr=output, pass_fds=channel,
                                      preexec_fn=lambda: prepare_child(limits, workdir, confined, writable=(sockets,),
                                                                       readable=(km.connection_file,)))
        except Exception as exc:  # noqa: BLE001 - jupyter_client raises several kinds: each is a start failure
            raise SandboxError.from_start_failure(f"the kernel did not start ({type(exc).__name__}: {exc})") from None
        self._km = km
        process = getattr(km.provisioner, "process", None)  # the local provisioner's Popen
        if not isinstance(process, subprocess.Popen):
            raise SandboxError.from_start_failure("the kernel did not start (no local process)")
        return PopenHandle(process)

    def connect(self, site: Site, worker: Worker) -> None:
        """Connect to the kernel and load the worker program into it (not yet serving: cells come first)."""
        from jupyter_core.utils import run_sync
        from nbformat.v4 import new_notebook

        assert self._km is not None
        limits = site.limits
        client = _bounded_client_class()(new_notebook(), km=self._km, timeout=max(1, math.ceil(limits.cell_timeout_s)),
                                         allow_errors=True, interrupt_on_timeout=True, record_timing=False,
                                         iopub_timeout=1, startup_timeout=int(START_TIMEOUT_S),
                                         shutdown_kernel="immediate",
                                         error_on_timeout={"ename": "CellTimeoutError", "evalue": "time limit",
                                                           "traceback": []})
        client.output_budget = max(OUTPUT_BUDGET_FACTOR * limits.output_kb * 1024, 1 << 20)
        try:
            client.start_new_kernel_client()
            reply = run_sync(client.kc.execute_interactive)(_setup_code(worker.child_channel), silent=True,
                                                            store_history=False, timeout=30)
        except Exception as exc:  # noqa: BLE001 - a kernel that does not answer, however it fails, did not start
            worker.kill(died=True)
            raise SandboxError.from_start_failure(f"the kernel did not answer ({type(exc).__name__})") from None
        if reply["content"].get("status") != "ok":
            raise SandboxError.from_start_failure("the kernel could not load the grader's worker program")
        self._client = client

    def _cleanup_kernel(self) -> None:
        client, km = self._client, self._km
        self._client = self._km = None
        if client is not None:
            self._dropped += client.dropped
        if client is not None and client.kc is not None:
            try:
                client.kc.stop_channels()
            except Exception:  # noqa: BLE001 - cleaning up after a kernel that may be gone: nothing left to do
                pass
        if km is not None:
            from jupyter_core.utils import run_sync

            try:
                run_sync(km.cleanup_resources)()
            except Exception:  # noqa: BLE001 - as above
                pass

    def stopped(self) -> None:
        self._cleanup_kernel()

    def close(self) -> None:
        self._cleanup_kernel()
        shutil.rmtree(self._private, ignore_errors=True)

    def output_excerpt(self, site: Site) -> str:
        limit = site.limits.output_kb * 1024
        text = "".join(self._cell_output)
        dropped = len(text) - limit if len(text) > limit else 0
        dropped += self._dropped + (self._client.dropped if self._client is not None else 0)
        return text[:limit] + (f"\n[grader] ... {dropped} more characters of output not kept" if dropped else "")

    # --- the notebook -------------------------------------------------------------------

    def run(self, site: Site, worker: Worker, cells: Sequence[Cell], runs: dict[int, CellRun]) -> CellStop | None:
        """Run ``cells`` through nbclient; the worker's serve loop starts once every cell has run (``serve``)."""
        from nbformat.v4 import new_code_cell

        assert self._client is not None
        client, limits = self._client, site.limits
        files: dict[str, bytes] = getattr(site, "files", {})
        if files:  # written before the first cell, as the default backend's worker does (write_companions)
            import base64
            code = "".join(f"with open({name!r}, 'wb') as _f: _f.write(__import__('base64').b64decode({base64.b64encode(data).decode()!r}))\n"
                           for name, data in files.items()) + "del _f\n"
            client.kc.execute(code, silent=True, store_history=False)
        replies: list[Any] = []
        client.on_cell_executed = lambda **hook: replies.append(hook.get("execute_reply"))
        for position, cell in enumerate(cells):
            node = new_code_cell(cell.source)
            client.nb.cells.append(node)
            started = time.monotonic()
            watchdog = threading.Timer(limits.cell_timeout_s + INTERRUPT_GRACE_S + WATCHDOG_GRACE_S,
                                       worker.handle.kill_group)
            watchdog.start()
            replies.clear()
            try:
                client.execute_cell(node, len(client.nb.cells) - 1, store_history=True)
            except Exception:  # noqa: BLE001 - DeadKernelError, CellTimeoutError, a ZeroMQ error after a kill
                watchdog.cancel()
                if time.monotonic() - started >= limits.cell_timeout_s or worker.handle.poll() is None:
                    return position, "timeout"
                return position, "died"
            finally:
                watchdog.cancel()
                self._keep_output(node, limits)
            if time.monotonic() >= site.total_deadline():
                return position, "timeout"
            reply = replies[-1] if replies else None
            if self._still_running(node, reply):
                return position, "timeout"  # it ignored the interrupt: kill, restart, replay the good cells
            runs[cell.index] = self._cell_run(cell.index, node, reply)
        return None

    @staticmethod
    def _still_running(node: Any, reply: Any) -> bool:
        """nbclient answers a timed-out cell after interrupting it, whether or not the code stopped;
        it did stop only if the interrupt surfaced as a KeyboardInterrupt in the cell's outputs."""
        content = (reply or {}).get("content") or {}
        if content.get("ename") != "CellTimeoutError":
            return False
        return not any(o.get("output_type") == "error" and o.get("ename") == "KeyboardInterrupt"
                       for o in node.get("outputs", []))

    @staticmethod
    def _cell_run(index: int, node: Any, reply: Any) -> CellRun:
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

    def _keep_output(self, node: Any, limits: Limits) -> None:
        kept = sum(len(text) for text in self._cell_output)
        for output in node.get("outputs", []):
            if output.get("output_type") == "stream" and kept <= limits.output_kb * 1024:
                text = safe_lines(str(output.get("text", ""))[: limits.output_kb * 1024])
                self._cell_output.append(text)
                kept += len(text)

    def serve(self, site: Site, worker: Worker) -> None:
        """Start the serve loop in the kernel (a request that lasts until the grader is done) and read its "ready"."""
        assert self._client is not None
        self._client.kc.execute("__import__('signal')._sandbox_serve()", silent=True, store_history=False)
        header, _ = worker.receive(min(time.monotonic() + 30, site.total_deadline()))
        if header.get("op") != "ready":
            raise protocol.WireError("the kernel's worker did not start")


class KernelSandbox(ProcessSandbox):
    """``--backend kernel``: the sandbox with a confined ipykernel per submission, cells executed by nbclient."""

    def __init__(self, limits: Limits | None = None, graded: tuple[str, ...] = ()) -> None:
        super().__init__(KernelLauncher(), limits, graded)
