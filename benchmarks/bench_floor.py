"""The floor of batch grading: a class's notebooks executed, cells only, in bare forks of a preloaded
interpreter. Run by hand (``bench_batch.py`` runs it beside the grader, on the same class); prints
figures and asserts nothing::

    python benchmarks/bench_floor.py FOLDER [--jobs 2]

What "bare" keeps of the grader's sandbox worker (``grader/sandbox/worker.py``), so that the
comparison is fair:

* the same preloads, once, in a parent that forks a child per notebook: numpy, matplotlib with the
  Agg backend and ``matplotlib.pyplot``, the worker's own IPython shell (``_make_shell``, executed
  from worker.py: no history, no colours, plain tracebacks), the same warm-up cells (``WARM_UP_CELLS``) and the same empty current figure, then ``gc.freeze()``; the sandbox's environment
  variables (one BLAS thread, Agg, hash seed 0);
* cells run as the worker runs them, with its own code (``worker_parts``): plain Python by its
  ``_plain_python`` and ``_run_plain`` in the shell's namespace, the rest by ``shell.run_cell``,
  each under a ``--cell-timeout`` alarm (10 s, the default limit), an error's traceback printed; every
  code cell, in order, the grader's self-check cell included (the grader skips it; rare);
* output captured: the child's stdout and stderr are a pipe the parent drains (the worker's output
  pipe), and ``print()`` past ``--output-kb`` (the default limit) is skipped, as the worker skips it;
* the ``.py`` files beside a notebook in a folder of its own are written into the child's fresh
  working directory first (``grade.companion_files``), which is first on ``sys.path``.

What it leaves out: every confinement step (namespaces, minimal root, seccomp, rlimits, tmpfs), the
channel, the checks and the training check, diagnosis, reports and feedback files, the pool. The
primed server (template opening cells run once per process) is not copied: every cell of every
notebook runs here.

Its last line on stdout is JSON: notebooks, wall seconds, cells run, cells that failed, output bytes.
CPU is measured from outside: ``resource.getrusage(RUSAGE_CHILDREN)`` of whoever started it covers
this process and every fork it reaped.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "grader" / "sandbox" / "worker.py"
#: The sandbox's environment (``launch.sandbox_environment``) less its per-process directories.
SANDBOX_ENV = {"MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}


#: What the floor takes from worker.py itself, so that its cells run as the sandbox runs them: the warm-up
#: cells, the shell (``_make_shell``) and what it needs, and the plain-Python path (``_plain_python``, the
#: test that sends the rest to IPython, and ``_run_plain``, given ``user_ns`` and ``Deadline`` here).
WORKER_PARTS = ("WARM_UP_CELLS", "_IPYTHON_SYNTAX", "BLOCKED_CELL_MAGICS", "refused_commands", "_once", "_make_shell",
                "_plain_python", "_run_plain")


def _defined_name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def worker_parts() -> dict[str, Any]:
    """``WORKER_PARTS``, executed from worker.py's own top-level definitions (worker.py cannot be imported:
    it runs as the sandbox program, after protocol.py and a bootstrap), so that the two stay in step."""
    import linecache
    import re
    import traceback
    import types

    chosen = [node for node in ast.parse(WORKER.read_text()).body if _defined_name(node) in WORKER_PARTS]
    missing = set(WORKER_PARTS) - {_defined_name(node) for node in chosen}
    if missing:
        raise SystemExit(f"bench_floor: worker.py no longer defines {', '.join(sorted(missing))}; update this benchmark")
    namespace: dict[str, Any] = {"ast": ast, "linecache": linecache, "re": re, "sys": sys, "traceback": traceback,
                                 "types": types, "Any": Any}
    exec(compile(ast.Module(body=chosen, type_ignores=[]), str(WORKER), "exec"), namespace)
    return namespace


def _companions(notebook: Path) -> dict[str, bytes]:
    """As ``grade.companion_files``: the ``.py`` files beside a notebook alone in its folder."""
    folder = notebook.parent
    if any(other.suffix == ".ipynb" and other != notebook for other in folder.iterdir()):
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.py")) if p.is_file()}


# --- the preloaded parent ----------------------------------------------------------------------

def serve(folder: Path, jobs: int, cell_timeout: float, output_kb: int, warm: bool) -> dict[str, Any]:
    import builtins
    import gc
    import selectors
    import shutil
    import signal
    import tempfile
    import types

    import matplotlib
    import numpy

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = worker_parts()
    warm_up, plain_python, run_plain = parts["WARM_UP_CELLS"], parts["_plain_python"], parts["_run_plain"]
    shell = parts["_make_shell"]()  # the worker's own: no shell escapes, Agg for %matplotlib, %timeit once
    if warm:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for cell in warm_up:
                shell.run_cell(cell, store_history=False, silent=True)  # type: ignore[no-untyped-call]
        shell.reset(new_session=False)  # type: ignore[no-untyped-call]
        shell.execution_count = 1
        plt.figure().add_subplot()
    sys.path.insert(0, "")

    class Deadline(BaseException):
        pass

    def on_alarm(signum: int, frame: types.FrameType | None) -> None:
        raise Deadline()

    signal.signal(signal.SIGALRM, on_alarm)

    written = [0]
    limit = output_kb * 1024
    real_print = builtins.print

    def counting(stream: Any) -> None:
        write = stream.write

        def counted(text: Any) -> Any:
            if isinstance(text, str):
                written[0] += len(text)
            return write(text)
        stream.write = counted

    def bounded_print(*args: Any, **kwargs: Any) -> None:
        target = kwargs.get("file")
        if written[0] > limit and (target is None or target is sys.stdout or target is sys.stderr):
            return None
        return real_print(*args, **kwargs)

    parts.update(Deadline=Deadline, user_ns=lambda: shell.user_ns)

    def run_cell(index: int, source: str) -> bool:
        """One cell, as worker.execute_cell runs it; whether it succeeded."""
        signal.setitimer(signal.ITIMER_REAL, cell_timeout)
        try:
            plain = plain_python(index, source)
            if plain is not None:
                return run_plain(plain) is None
            shell.execution_count = index + 1
            result = shell.run_cell(source, store_history=False, silent=False)  # type: ignore[no-untyped-call]
            return result.error_before_exec is None and result.error_in_exec is None
        except Deadline:
            return False
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def child(notebook: Path, output_fd: int) -> None:
        import random

        workdir = tempfile.mkdtemp(prefix="grader-floor-")
        for name, data in _companions(notebook).items():
            Path(workdir, name).write_bytes(data)
        os.chdir(workdir)
        os.environ.update(HOME=workdir, TMPDIR=workdir)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        counting(sys.stdout)
        counting(sys.stderr)
        builtins.print = bounded_print
        random.seed(os.urandom(16))
        numpy.random.seed(int.from_bytes(os.urandom(4), "little"))
        cells = [c for c in json.loads(notebook.read_bytes())["cells"] if c.get("cell_type") == "code"]
        failed = 0
        for index, cell in enumerate(cells):
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            if not run_cell(index, source):
                failed += 1
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001
                    pass
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(min(failed, 100))

    gc.collect()
    gc.freeze()
    notebooks = sorted(folder.rglob("*.ipynb"))
    selector = selectors.DefaultSelector()
    running: dict[int, int] = {}  # pid -> read end of its output pipe
    names: dict[int, str] = {}
    cpu: dict[str, float] = {}  # notebook -> CPU seconds of its fork
    cells_run = failures = output = 0
    started = time.perf_counter()
    queue = list(reversed(notebooks))

    def drain(fd: int) -> bool:
        nonlocal output
        chunk = os.read(fd, 1 << 16)
        output += len(chunk)
        return bool(chunk)

    while queue or running:
        while queue and len(running) < jobs:
            notebook = queue.pop()
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(read_end)
                    child(notebook, write_end)
                finally:
                    os._exit(101)
            os.close(write_end)
            running[pid] = read_end
            names[pid] = notebook.name
            selector.register(read_end, selectors.EVENT_READ, pid)
        for key, _ in selector.select():
            if not drain(key.fd):  # EOF: the child is done with its output
                selector.unregister(key.fd)
                os.close(key.fd)
                pid = key.data
                _, status, usage = os.wait4(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                failures += code if 0 <= code <= 100 else 0
                cpu[names.pop(pid)] = usage.ru_utime + usage.ru_stime
                del running[pid]
    wall = time.perf_counter() - started
    for notebook in notebooks:  # (in the parent, so a child's count never travels: counted here, cheaply)
        cells_run += sum(1 for c in json.loads(notebook.read_bytes())["cells"] if c.get("cell_type") == "code")
    by_fixture: dict[str, list[float]] = {}
    for name, seconds in cpu.items():
        by_fixture.setdefault(name.split("_", 1)[-1], []).append(seconds)
    slowest = sorted(((sum(v) / len(v), k) for k, v in by_fixture.items()), reverse=True)[:8]
    return {"notebooks": len(notebooks), "wall_s": wall, "cells": cells_run, "failed_cells": failures,
            "output_bytes": output, "forks_cpu_s": sum(cpu.values()),
            "slowest_ms": {k: round(1000 * v, 1) for v, k in slowest}}


# --- from outside: what bench_batch.py calls --------------------------------------------------

@dataclass
class Floor:
    notebooks: int
    #: From spawning the floor process to its exit (preloads included, as the grader's start is).
    wall_s: float
    #: User + system CPU of the floor process and every fork it reaped (``RUSAGE_CHILDREN``).
    cpu_s: float
    #: The floor's own figures: wall of the fork loop only, cells run and failed, output bytes.
    inner: dict[str, Any]

    @property
    def per_second(self) -> float:
        return self.notebooks / self.wall_s

    @property
    def cpu_ms_per_notebook(self) -> float:
        return 1000 * self.cpu_s / self.notebooks


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def floor_command(folder: Path, jobs: int, cell_timeout: float = 10.0, output_kb: int | None = None,
                  warm: bool = True) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run the floor on ``folder`` (run with cwd ``folder``)."""
    if output_kb is None:
        sys.path.insert(0, str(REPO))
        from grader.sandbox.limits import Limits

        output_kb = int(Limits().output_kb)
    command = [sys.executable, str(Path(__file__).resolve()), str(folder), "--jobs", str(jobs),
               "--cell-timeout", str(cell_timeout), "--output-kb", str(output_kb), *([] if warm else ["--no-warm-up"])]
    return command, {**os.environ, **SANDBOX_ENV}


def parse_output(stdout: str) -> dict[str, Any]:
    """The floor's own figures: its last line on stdout."""
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def run_floor(folder: Path, jobs: int, cell_timeout: float = 10.0, output_kb: int | None = None,
              warm: bool = True) -> Floor:
    """Run this script on ``folder`` in a fresh process; its wall time and CPU, measured from here."""
    command, env = floor_command(folder, jobs, cell_timeout, output_kb, warm)
    cpu, started = children_cpu_s(), time.perf_counter()
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, children_cpu_s() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"bench_floor failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    inner = parse_output(proc.stdout)
    return Floor(inner["notebooks"], wall, cpu, inner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--jobs", type=int, default=2, help="children at once (default 2)")
    parser.add_argument("--cell-timeout", type=float, default=10.0)
    parser.add_argument("--output-kb", type=int, default=None, help="print() past this is skipped (default: the limit)")
    parser.add_argument("--no-warm-up", dest="warm", action="store_false",
                        help="skip the fork server's warm-up cells (preloads only)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if os.environ.get("MPLBACKEND") != "Agg":  # started by hand: run again in the sandbox's environment
        floor = run_floor(args.folder.resolve(), args.jobs, args.cell_timeout, args.output_kb, args.warm)
        print(f"floor: {floor.notebooks} notebooks in {floor.wall_s:.2f} s = {floor.per_second:.1f} notebooks/s; "
              f"CPU {floor.cpu_s:.2f} s = {floor.cpu_ms_per_notebook:.1f} ms per notebook; {floor.inner}")
        return
    output_kb = args.output_kb if args.output_kb is not None else 1024
    print(json.dumps(serve(args.folder.resolve(), args.jobs, args.cell_timeout, output_kb, args.warm)))


if __name__ == "__main__":
    main()
