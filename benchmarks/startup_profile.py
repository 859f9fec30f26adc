"""Where the wall time of one cold ``grader check`` goes. Run by hand; prints figures, asserts nothing::

    python benchmarks/startup_profile.py            # 5 repetitions of each measurement
    python benchmarks/startup_profile.py --runs 9 --skip-imports

Sections:

1. Timeline of a real check, in the order ``grader check`` works: the sandbox's modules, the
   early sandbox (``cli._early_sandbox``), then the rest of the grader while it starts. A fresh
   process runs ``grader.cli.main(["check", ...])``
   with timing wrappers monkeypatched around the pipeline stages (nothing on
   disk is changed). ``time.perf_counter`` is CLOCK_MONOTONIC on Linux, shared
   by all processes, so the parent's spawn/exit times and the child's marks
   sit on one clock. "Critical" phases are the ones a student waits on; the
   sandbox starts in the background and is only waited on in ``_await_ready``.
2. The grader process's imports: ``python -X importtime -m grader check``,
   top imports by cumulative time, and which heavy packages it loads at all.
3. The sandbox's own start-up: its program as ``launch.worker_program`` builds it, run as
   ``python -I -S -c`` (unconfined), timed to its "ready" message, as shipped and in variants
   (no matplotlib preload; the IPython shell made up front, as before issue 15), with phase marks
   and ``-X importtime``.
4. In-process costs: ``import nbformat`` in a fresh process, ``load_notebook``
   on the seed, ``run_checks`` (and the 200-iteration training check's 400
   sequential calls within it) and ``diagnose`` against one live sandbox.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NOTEBOOK = ROOT / "examples" / "simple_nn_seed.ipynb"
#: Where the grader package is run from (cwd of the grader processes); --tree changes it.
TREE = ROOT

# --------------------------------------------------------------------------------------
# 1. timeline driver: runs in a fresh interpreter; writes its marks as JSON to argv[1].
# --------------------------------------------------------------------------------------
TIMELINE_DRIVER = r'''
import time
T_START = time.perf_counter()
import json, os, sys, functools
out_path, notebook = sys.argv[1], sys.argv[2]
spans = []          # (name, start, end)
counters = {"call_many": 0, "calls": 0, "call_many_s": 0.0}

def span(name, start):
    spans.append((name, start, time.perf_counter()))

def timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            span(name, t)
    return wrapper

t = time.perf_counter(); import grader.cli; span("import grader.cli", t)
# `grader check` starts its sandbox first (cli._early_sandbox: the sandbox modules and numpy), then imports
# the rest of the grader and loads the rubric while it starts: the marks follow that order.
t = time.perf_counter(); import grader.sandbox.process; span("import the sandbox's modules (+numpy)", t)
SB = grader.sandbox.process.SubprocessSandbox
SB._spawn = timed("spawn sandbox (fork+exec)", SB._spawn)
SB._await_ready = timed("wait for sandbox ready", SB._await_ready)
SB.run_notebook = timed("run_notebook (incl. wait for ready)", SB.run_notebook)
SB.close = timed("close sandbox", SB.close)
_call_many = SB.call_many
def call_many(self, requests):
    t = time.perf_counter()
    try:
        return _call_many(self, requests)
    finally:
        counters["call_many"] += 1
        counters["calls"] += len(requests)
        counters["call_many_s"] += time.perf_counter() - t
SB.call_many = call_many
_early = grader.cli._early_sandbox


def early_sandbox(args):
    t = time.perf_counter()
    try:
        return _early(args)
    finally:
        span("early sandbox (confinement decided, spawn)", t)
        instrument_grading()


def instrument_grading():
    t = time.perf_counter(); import grader.grade, grader.rubric, grader.render; span("import grader.grade, render (+rubric)", t)
    t = time.perf_counter(); import grader.load; span("import grader.load", t)
    grader.rubric.load_rubric = timed("load_rubric", grader.rubric.load_rubric)
    grader.load.load_notebook = timed("load_notebook", grader.load.load_notebook)
    grader.grade.grade_notebook = timed("grade_notebook (total)", grader.grade.grade_notebook)
    _grade_loaded = grader.grade._grade_loaded

    def grade_loaded(*a, **k):
        # the same imports, at the same point, as _grade_loaded's own first lines
        t = time.perf_counter()
        import grader.checks, grader.diagnose, grader.score
        span("import checks, diagnose, score (+reference, mutants)", t)
        grader.checks.run_checks = timed("run_checks", grader.checks.run_checks)
        training = getattr(getattr(grader.checks, "Grading", None), "_training_check", None)
        if training is not None:
            def training_check(self, *a2, **k2):
                before = dict(counters)
                t2 = time.perf_counter()
                try:
                    return training(self, *a2, **k2)
                finally:
                    span("training check (sequential calls)", t2)
                    counters["training_calls"] = counters["calls"] - before["calls"]
                    counters["training_round_trips"] = counters["call_many"] - before["call_many"]
            grader.checks.Grading._training_check = training_check
        grader.diagnose.diagnose = timed("diagnose", grader.diagnose.diagnose)
        grader.score.apply_rubric = timed("apply_rubric", grader.score.apply_rubric)
        return _grade_loaded(*a, **k)
    grader.grade._grade_loaded = grade_loaded


grader.cli._early_sandbox = early_sandbox

devnull = open(os.devnull, "w")
real_stdout, sys.stdout = sys.stdout, devnull
t_main = time.perf_counter()
try:
    code = grader.cli.main(["check", notebook, "--format", "json"])
finally:
    sys.stdout = real_stdout
T_END = time.perf_counter()
grade_end = max((e for n, s, e in spans if n == "grade_notebook (total)"), default=T_END)
spans.append(("render + write report", grade_end, T_END))
with open(out_path, "w") as f:
    json.dump({"start": T_START, "end": T_END, "main": t_main, "exit_code": code,
               "spans": spans, "counters": counters}, f)
'''


EXEC_CELLS = "execute the cells (run_notebook minus the wait)"


def run_timeline(notebook: str, runs: int) -> None:
    print("== 1. timeline of one `grader check --format json` (fresh process each run; "
          f"median over {runs}) ==")
    per_run: list[dict[str, float]] = []
    counters: dict[str, float] = {}
    order: list[str] = []
    failures = 0
    for _ in range(runs):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            out = tmp.name
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", TIMELINE_DRIVER, out, notebook], cwd=TREE,
                              capture_output=True, text=True, timeout=300)
        t_exit = time.perf_counter()
        try:
            with open(out) as f:
                data = json.load(f)
        except (OSError, ValueError):
            failures += 1
            print(f"  run failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            continue
        finally:
            try:
                os.unlink(out)
            except OSError:
                pass
        row: dict[str, float] = {
            "interpreter start (exec to first line)": data["start"] - t0,
            "process exit after main() (teardown)": t_exit - data["end"],
            "TOTAL wall (as a student sees it)": t_exit - t0,
        }
        names = [n for n, _, _ in data["spans"]]
        for name, start, end in data["spans"]:
            row[name] = row.get(name, 0.0) + (end - start)
            row["@" + name] = start - t0  # first start, relative to spawn
        run_nb, wait = row.get("run_notebook (incl. wait for ready)"), row.get("wait for sandbox ready")
        if run_nb is not None and wait is not None:
            row[EXEC_CELLS] = run_nb - wait
            names.insert(names.index("run_notebook (incl. wait for ready)") + 1, EXEC_CELLS)
        for name in names:
            if name not in order:
                order.append(name)
        per_run.append(row)
        for k, v in data["counters"].items():
            counters.setdefault(k, []).append(v)  # type: ignore[attr-defined]
    if not per_run:
        print("  every run failed")
        return

    def med(key: str) -> float | None:
        values = [r[key] for r in per_run if key in r]
        return statistics.median(values) if values else None

    rows = ["interpreter start (exec to first line)"] + order + ["process exit after main() (teardown)",
                                                                  "TOTAL wall (as a student sees it)"]
    print(f"  {'phase':<55} {'median s':>9} {'starts at':>10}")
    for name in rows:
        value = med(name)
        at = med("@" + name)
        indent = "    " if name in ("spawn sandbox (fork+exec)", "load_notebook", "import checks, diagnose, score (+reference, mutants)",
                                    "run_notebook (incl. wait for ready)", "run_checks", "diagnose",
                                    "apply_rubric", "close sandbox") else "  "
        if name in ("wait for sandbox ready",):
            indent = "      "
        if name in ("training check (sequential calls)", EXEC_CELLS):
            indent = "      "
        if value is not None:
            print(f"{indent}{name:<{57 - len(indent)}} {value:>9.3f} {'' if at is None else f'{at:>9.3f}s':>10}")
    if failures:
        print(f"  ({failures} run(s) failed and are left out)")
    c = {k: statistics.median(v) for k, v in counters.items()}  # type: ignore[arg-type]
    if c:
        print(f"  sandbox calls: {c.get('calls', 0):.0f} calls in {c.get('call_many', 0):.0f} round trips, "
              f"{c.get('call_many_s', 0):.3f} s in call_many")
        if "training_calls" in c:
            tr = med("training check (sequential calls)") or 0.0
            trips = c.get("training_round_trips") or 0
            if trips:
                print(f"  training check: {c['training_calls']:.0f} calls in {trips:.0f} call_many round trips, "
                      f"{tr:.3f} s = {1e6 * tr / trips:.0f} us per round trip")
            else:
                print(f"  training check: {tr:.3f} s, no call_many round trips (it does not go through call_many)")
    wait = med("wait for sandbox ready")
    spawn_at = med("@spawn sandbox (fork+exec)")
    if wait is not None and spawn_at is not None:
        ready_at = (med("@wait for sandbox ready") or 0.0) + wait
        print(f"  sandbox spawned at {spawn_at:.3f} s, ready at ~{ready_at:.3f} s "
              f"(grader waited {wait:.3f} s for it: {'ON' if wait > 0.01 else 'off'} the critical path)")
    print()


# --------------------------------------------------------------------------------------
# 2. importtime of the grader process
# --------------------------------------------------------------------------------------
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S.*)$")
HEAVY = ("numpy", "nbformat", "jsonschema", "fastjsonschema", "traitlets", "IPython", "matplotlib",
         "nbclient", "jupyter_client", "zmq", "tornado", "logging", "uuid", "rpds", "referencing")


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """(self us, cumulative us, depth, module) per line of -X importtime output."""
    rows = []
    for line in stderr.splitlines():
        m = IMPORT_LINE.match(line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2, m.group(4).strip()))
    return rows


def print_top(rows: list[tuple[int, int, int, str]], n: int, title: str) -> None:
    print(f"  {title}")
    print(f"  {'cumulative ms':>13} {'self ms':>8}  module (indent = nesting)")
    for self_us, cum_us, depth, name in sorted(rows, key=lambda r: -r[1])[:n]:
        print(f"  {cum_us / 1000:>13.1f} {self_us / 1000:>8.1f}  {'  ' * depth}{name}")


def run_grader_imports(notebook: str) -> None:
    print("== 2. imports of the grader process: python -X importtime -m grader check ==")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "grader", "check", notebook,
                           "--format", "json"], cwd=TREE, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    rows = parse_importtime(proc.stderr)
    top_level = [r for r in rows if r[2] == 0]
    total = sum(r[1] for r in top_level)
    print(f"  wall {wall:.3f} s with importtime on (exit {proc.returncode}); {len(rows)} modules imported, "
          f"{total / 1000:.0f} ms of import time in all")
    print_top(rows, 15, "top 15 by cumulative time:")
    print()
    print_top(top_level, 12, "top-level imports (these add up to the total):")
    grader_self = sum(r[0] for r in rows if r[3] == "grader" or r[3].startswith("grader."))
    print(f"  grader.* modules' own (self) time: {grader_self / 1000:.1f} ms"
          + ("  <- compiled from source on every run: PYTHONDONTWRITEBYTECODE is set"
             if os.environ.get("PYTHONDONTWRITEBYTECODE") else ""))
    present = {r[3].split(".")[0] for r in rows}
    cum_of = {r[3]: r[1] for r in rows}
    heavy = [(h, cum_of.get(h)) for h in HEAVY if h in present]
    print("  heavy packages loaded: " + (", ".join(f"{h} ({c / 1000:.0f} ms)" if c else h for h, c in heavy) or "none"))
    print("  not loaded: " + ", ".join(h for h in HEAVY if h not in present))
    print()


# --------------------------------------------------------------------------------------
# 3. the sandbox process's own start
# --------------------------------------------------------------------------------------
#: Where the one-off sandbox's start-up lines are in worker.py (the shell is made lazily, then the preload).
PRELOAD_LINES = "        _lazy_shell_names()\n    _preload()\n"
MARKED_LINES = ("        _lazy_shell_names()\n    import time as _t\n"
                "    _w = lambda m: sys.stderr.write('MARK %s %r\\n' % m)\n"
                "    _w(('interpreter, wire + numpy', _t.perf_counter()))\n"
                "    _preload()\n    _w(('matplotlib preload', _t.perf_counter()))\n")


def sandbox_program(variant: str) -> str | None:
    """The sandbox program as ``launch.worker_program`` builds it (bootstrap, jail source, protocol, worker),
    from the tree under test, or a variant of it; None when the worker changed shape."""
    sys.path.insert(0, str(TREE))
    try:
        from grader.sandbox import launch
    finally:
        sys.path.pop(0)
    launch.worker_program.cache_clear()
    launch.worker_body.cache_clear()
    program = launch.worker_program()
    if variant == "as shipped":
        return program
    if PRELOAD_LINES not in program:
        return None
    if variant == "no matplotlib preload":
        return program.replace(PRELOAD_LINES, "        _lazy_shell_names()\n")
    if variant == "IPython shell made up front (as before issue 15)":
        return program.replace(PRELOAD_LINES, "        _shell()\n    _preload()\n")
    if variant == "phase marks":
        return program.replace(PRELOAD_LINES, MARKED_LINES)
    raise ValueError(variant)


def sandbox_env(workdir: str) -> dict[str, str]:
    """The environment _Process gives the sandbox (grader/execute.py)."""
    from grader.cache import cache_root  # the grader's own choice of cache directory

    mpl = str(cache_root() / "matplotlib")
    os.makedirs(mpl, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": workdir, "TMPDIR": workdir,
            "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": mpl, "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1"}


def start_sandbox(program: str, extra_flags: list[str]) -> tuple[float | None, str, float]:
    """Spawn the program as _Process does; return (seconds to 'ready' or None, stderr, spawn time)."""
    from grader.sandbox import protocol as wire  # stdlib + numpy only

    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="grader-profile-") as workdir:
        t0 = time.perf_counter()
        site = sysconfig.get_paths()["purelib"]
        proc = subprocess.Popen([sys.executable, "-I", "-S", *extra_flags, "-c", program, str(to_r), str(from_w), site],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                cwd=workdir, env=sandbox_env(workdir), pass_fds=(to_r, from_w))
        os.close(to_r)
        os.close(from_w)

        def read_exact(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = os.read(from_r, n - len(buf))
                if not chunk:
                    raise EOFError
                buf += chunk
            return buf

        ready = None
        try:
            header, _ = wire.read_message(read_exact)
            if header.get("op") == "ready":
                ready = time.perf_counter() - t0
            wire.write_message(to_w, {"op": "stop"})  # any unknown op ends its loop
        except (EOFError, OSError, wire.WireError):
            pass
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        for fd in (to_w, from_r):
            os.close(fd)
    return ready, err.decode("utf-8", "replace"), t0


def run_sandbox(runs: int) -> None:
    print(f"== 3. sandbox start-up: `python -I -c <wire.py + sandbox_worker.py>` to its ready message "
          f"(median of {runs}) ==")
    t0 = time.perf_counter()
    bare = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=False)
        bare.append(time.perf_counter() - t)
    np_times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "import numpy"], check=False)
        np_times.append(time.perf_counter() - t)
    for label, values in (("python -I -c pass (process exits)", bare),
                          ('python -I -c "import numpy" (process exits)', np_times)):
        print(f"  {label:<48} {statistics.median(values):>7.3f} s")
    for variant in ("as shipped", "no matplotlib preload", "IPython shell made up front (as before issue 15)"):
        program = sandbox_program(variant)
        if program is None:
            print(f"  {variant:<48} (cannot build: sandbox_worker.py changed)")
            continue
        times, failed = [], 0
        for _ in range(runs):
            ready, err, _ = start_sandbox(program, [])
            if ready is None:
                failed += 1
                last = err.strip().splitlines()[-1:] or ["no output"]
            else:
                times.append(ready)
        line = f"  {'ready: ' + variant:<48} "
        line += (f"{statistics.median(times):>7.3f} s  (min {min(times):.3f}, max {max(times):.3f})"
                 if times else "   n/a")
        if failed:
            line += f"  [{failed} failed: {last[0][:100]}]"
        print(line)
    program = sandbox_program("phase marks")
    if program is not None:
        phases: dict[str, list[float]] = {}
        for _ in range(runs):
            ready, err, spawned = start_sandbox(program, [])
            marks = []
            for line in err.splitlines():
                if line.startswith("MARK "):
                    name, _, at = line[5:].rpartition(" ")
                    try:
                        marks.append((name, float(at)))
                    except ValueError:
                        continue
            previous = spawned
            for i, (name, at) in enumerate(marks):
                key = "interpreter start, wire.py + numpy" if i == 0 else name
                phases.setdefault(key, []).append(at - previous)
                previous = at
            if ready is not None and marks:
                phases.setdefault("rest until 'ready' is read", []).append(spawned + ready - previous)
        print("  phases of the shipped program (phase marks on stderr):")
        for name, values in phases.items():
            if values:
                print(f"    {name:<46} {statistics.median(values):>7.3f} s")
    program = sandbox_program("as shipped")
    ready, err, _ = start_sandbox(program, ["-X", "importtime"])
    rows = parse_importtime(err)
    if rows:
        print_top(rows, 15, f"sandbox -X importtime (ready after {ready or float('nan'):.3f} s with importtime on), "
                            "top 15 by cumulative:")
    print(f"  (section took {time.perf_counter() - t0:.1f} s)")
    print()


# --------------------------------------------------------------------------------------
# 4. in-process costs
# --------------------------------------------------------------------------------------
INPROCESS_DRIVER = r'''
import json, statistics, sys, time
notebook, runs = sys.argv[1], int(sys.argv[2])
out = {}
t = time.perf_counter(); import numpy; out["import numpy"] = [time.perf_counter() - t]
t = time.perf_counter(); import grader.load; out["import grader.load"] = [time.perf_counter() - t]
times = []
for _ in range(runs + 1):
    t = time.perf_counter(); nb = grader.load.load_notebook(notebook); times.append(time.perf_counter() - t)
out["load_notebook (first call)"] = times[:1]
out["load_notebook (later calls)"] = times[1:]
out["nbformat imported by load_notebook?"] = ["nbformat" in sys.modules]
t = time.perf_counter()
import grader.checks, grader.diagnose, grader.score
from grader.sandbox.process import SubprocessSandbox
from grader.rubric import load_rubric
out["import checks, diagnose, score, execute, rubric"] = [time.perf_counter() - t]
rubric = load_rubric(None)
t = time.perf_counter(); sb = SubprocessSandbox(graded=rubric.assignment.names); sb._await_ready(); out["SubprocessSandbox() + _await_ready (alone)"] = [time.perf_counter() - t]
try:
    t = time.perf_counter(); ex = sb.run_notebook(nb.code_cells); out["run_notebook (sandbox ready)"] = [time.perf_counter() - t]
    found = {n: i.found for n, i in ex.functions.items()}
    calls = {"n": 0, "trips": 0}
    real = sb.call_many
    def counting(requests):
        calls["n"] += len(requests); calls["trips"] += 1
        return real(requests)
    sb.call_many = counting
    training = grader.checks.Grading._training_check
    tt = []
    def timed_training(self, *a, **k):
        t2 = time.perf_counter()
        try:
            return training(self, *a, **k)
        finally:
            tt.append(time.perf_counter() - t2)
    grader.checks.Grading._training_check = timed_training
    rc, dg = [], []
    for i in range(runs + 1):
        calls.update(n=0, trips=0)
        t = time.perf_counter(); run = grader.checks.run_checks(sb, found, rubric.assignment, rubric.accepted_families, 0); rc.append(time.perf_counter() - t)
        t = time.perf_counter(); d = grader.diagnose.diagnose(rubric.assignment, run, found); dg.append(time.perf_counter() - t)
    out["run_checks (first)"] = rc[:1]
    out["run_checks (later)"] = rc[1:]
    out["  of which training check (later)"] = tt[1:]
    out["  calls per run_checks / round trips"] = [calls["n"], calls["trips"]]
    out["diagnose (first)"] = dg[:1]
    out["diagnose (later)"] = dg[1:]
    # one round trip, for scale
    from grader.sandbox.process import CallRequest
    from grader.probe import arguments, probes_for_seed
    first = probes_for_seed(rubric.assignment, 0).sets["network"][0]  # the notebook's own data
    args = arguments(first, rubric.assignment.function("forward").parameters)
    rt = []
    for _ in range(200):
        t = time.perf_counter(); real([CallRequest("forward", args)]); rt.append(time.perf_counter() - t)
    out["one forward call round trip"] = rt
    batch = [CallRequest("forward", args)] * 200
    t = time.perf_counter(); real(batch); out["200 forward calls in ONE call_many"] = [time.perf_counter() - t]
finally:
    t = time.perf_counter(); sb.close(); out["close sandbox"] = [time.perf_counter() - t]
print(json.dumps(out))
'''


NBFORMAT_DRIVER = r'''
import json, sys, time
t0 = time.perf_counter(); import nbformat; t1 = time.perf_counter()
nb = nbformat.read(sys.argv[1], as_version=4); t2 = time.perf_counter()
nbformat.validate(nb); t3 = time.perf_counter()
print(json.dumps({"import nbformat": t1 - t0, "nbformat.read (first validation)": t2 - t1,
                  "nbformat.validate again": t3 - t2}))
'''


def run_inprocess(notebook: str, runs: int) -> None:
    print("== 4. in-process costs ==")
    walls: dict[str, list[float]] = {}
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", NBFORMAT_DRIVER, notebook], cwd=ROOT,
                              capture_output=True, text=True)
        try:
            for name, value in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                walls.setdefault(name, []).append(value)
        except (ValueError, IndexError):
            print(f"  nbformat driver failed: {proc.stderr.strip().splitlines()[-1:]}")
            break
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT)
    bare = time.perf_counter() - t
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import nbformat"], cwd=ROOT,
                          capture_output=True, text=True)
    rows = parse_importtime(proc.stderr)
    nb_cum = next((r[1] for r in rows if r[3] == "nbformat"), None)
    print(f"  fresh process, nbformat path (not the grader's; median of {runs}; `python -c pass` = {bare:.3f} s):")
    for name, values in walls.items():
        print(f"    {name:<46} {statistics.median(values):>7.3f} s")
    print(f"    (-X importtime: nbformat cumulative {nb_cum / 1000 if nb_cum else float('nan'):.0f} ms)")
    heavy = sorted((r for r in rows if r[2] >= 1), key=lambda r: -r[1])[:6]
    print("    biggest parts: " + ", ".join(f"{r[3]} {r[1] / 1000:.0f} ms" for r in heavy))
    optional = [m for m in ("fastjsonschema", "jsonschema", "rpds", "referencing") if any(r[3] == m for r in rows)]
    print(f"    schema libraries it imports up front: {', '.join(optional) or 'none'}")
    proc = subprocess.run([sys.executable, "-c", INPROCESS_DRIVER, notebook, str(runs)], cwd=TREE,
                          capture_output=True, text=True, timeout=600)
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"  in-process driver failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-3:]}")
        print()
        return
    for name, values in data.items():
        if name.startswith("  calls per"):
            print(f"  {name.strip():<48} {values[0]} calls, {values[1]} round trips")
        elif name.startswith("nbformat imported"):
            print(f"  {name:<48} {values[0]}")
        elif name == "one forward call round trip":
            print(f"  {name:<48} {1e6 * statistics.median(values):>7.0f} us median (min {1e6 * min(values):.0f})")
        elif values:
            print(f"  {name:<48} {statistics.median(values):>7.3f} s" + (f"  (median of {len(values)})" if len(values) > 1 else ""))
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement (default 5)")
    parser.add_argument("--notebook", type=Path, default=DEFAULT_NOTEBOOK)
    parser.add_argument("--only", choices=("timeline", "imports", "sandbox", "inprocess"), action="append",
                        help="run only these sections (repeatable)")
    parser.add_argument("--tree", type=Path, default=ROOT, metavar="DIR",
                        help="run the grader package found in DIR (e.g. a patched copy under /tmp: DIR/grader "
                             "with reference/ and rubrics/ copied in as grader/reference and grader/rubrics); "
                             "default: this checkout")
    args = parser.parse_args(argv)
    global TREE
    TREE = args.tree.resolve()
    notebook = str(args.notebook.resolve())
    try:
        load = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "n/a"
    print(f"python {sys.version.split()[0]} {sys.executable}; nproc {len(os.sched_getaffinity(0))}; "
          f"load avg {load}; PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")
    where = subprocess.run([sys.executable, "-c", "import grader; print(grader.__file__)"], cwd=TREE,
                           capture_output=True, text=True).stdout.strip()
    print(f"notebook {os.path.relpath(notebook, ROOT)}; grader from {os.path.dirname(where) or '?'}")
    print()
    sections = args.only or ["timeline", "imports", "sandbox", "inprocess"]
    if "timeline" in sections:
        run_timeline(notebook, args.runs)
    if "imports" in sections:
        run_grader_imports(notebook)
    if "sandbox" in sections:
        run_sandbox(args.runs)
    if "inprocess" in sections:
        run_inprocess(notebook, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
