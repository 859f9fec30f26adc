"""Batch throughput of ``grader grade`` on a generated class, beside nbgrader. Run by hand; prints figures::

    python benchmarks/bench_batch.py                      # 1000 notebooks, --jobs 2, nbgrader on 10 of them
    python benchmarks/bench_batch.py -n 300 --nbgrader 0  # without nbgrader
    python benchmarks/bench_batch.py -n 40 --backend kernel
    python benchmarks/bench_batch.py -n 1000 --rounds 3 --nbgrader 0 --baseline ''   # grader vs floor, medians

The class is a realistic mix built from the fixture notebooks (``tests/fixtures``):
45 % correct, 45 % buggy, 10 % broken (errors, syntax errors, missing functions;
the fixtures whose cells loop until the 10 s cell limit are left out: a class
with a dozen of those measures the limit, not the grader). Each copy gets a
unique extra cell, so every notebook has its own content hash. A fixture that
imports the ``.py`` files beside it (the manifest's ``companions``) is copied into
a folder of its own with them, as a student submits it; copied flat among the
others, its imports would fail (the grader only takes the ``.py`` files of a
folder holding one notebook), and the class would measure an ImportError.

Figures, all from one run:
* first run: wall time, notebooks per second;
* peak memory (proportional set size, sampled every 50 ms from /proc): the grader's trusted processes
  (the main process and its pool) summed, and the fork servers and sandboxes
  separately (they are per-process and isolated, but they are memory too);
* a re-run over the same ``--out`` (everything reused): wall time and speed-up;
* CPU seconds by role (the grader's main process, its pool, the fork servers, the
  sandboxes) from /proc, so a change can be traced to the side it made faster;
* nbgrader's ``autograde`` on K (``--nbgrader``, default 10) of the same notebooks,
  serially and with 2 processes, in its own venv (``benchmarks/nbgrader_baseline.py``,
  built on first use), and the ratio of seconds per notebook;
* the floor (``bench_floor.py``, issue 15): the same notebooks' cells executed in bare forks of
  a preloaded interpreter (numpy, matplotlib/Agg, IPython as the sandbox worker runs cells), no
  confinement and no checks, with its notebooks/s beside the grader's, and the CPU per notebook of
  each (user+sys of every process: ``RUSAGE_CHILDREN``, and /proc per process where a process is
  never waited for) as a ratio, grader / floor (target <= 1.2x). ``--rounds K`` alternates grader
  and floor K times and prints medians: on a shared machine one run of each is noisy;
* the issue's targets (≥ 100 notebooks/s, 50 at the very least; peak memory ≤ 300 MB;
  re-run ≥ 10x faster), each met or not.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_floor import floor_command, parse_output  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
SLOW_FIXTURES = {"broken/infinite_loop_between_definitions.ipynb"}
MIX = {"correct": 0.45, "buggy": 0.45, "broken": 0.10}
#: The last revision before the sandbox was hardened (issue 11): minimal root, seccomp, no capabilities.
BASELINE_REV = "aaa2fd7"


def build_class(directory: Path, count: int, seed: int = 0) -> dict[str, int]:
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    by_kind: dict[str, list[str]] = {kind: [] for kind in MIX}
    for name, entry in manifest.items():
        if name not in SLOW_FIXTURES and entry["category"] in by_kind:
            by_kind[entry["category"]].append(name)
    rng = random.Random(seed)
    made = {kind: 0 for kind in MIX}
    for i in range(count):
        kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        name = rng.choice(sorted(by_kind[kind]))
        notebook = json.loads((FIXTURES / "notebooks" / name).read_text())
        notebook["cells"].append({"cell_type": "code", "execution_count": None, "id": f"student-{i}",
                                  "metadata": {}, "outputs": [], "source": f"student_number = {i}"})
        stem = f"student{i:04d}_{Path(name).stem}"
        companions = manifest[name].get("companions") or []
        target = directory
        if companions:  # a notebook that imports the .py files beside it gets a folder of its own, with them
            target = directory / stem
            target.mkdir()
            for companion in companions:
                shutil.copyfile(FIXTURES / "notebooks" / Path(name).parent / companion, target / companion)
        (target / f"{stem}.ipynb").write_text(json.dumps(notebook))
        made[kind] += 1
    return made


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _rss_mb(pid: int) -> float:
    """Proportional set size: a page shared by n processes counts 1/n to each. Plain RSS would count
    the copy-on-write pages of every fork (pool processes, PID-namespace relays) again and again."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _is_sandbox(pid: int) -> bool:
    try:
        return b"-S\x00-c" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # a process that vanished or hides its command line is not the grader's trusted side


def _role(pid: int, root: int) -> str:
    if pid == root:
        return "main"
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"
    if name == "grader-forksrv":
        return "fork servers"
    if name == "grader-sandbox" or _is_sandbox(pid):
        return "sandboxes"
    return "pool"


def _cpu_s(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of the process itself, and of its children it has reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks, (int(fields[13]) + int(fields[14])) / ticks
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


class MemorySampler(threading.Thread):
    """Peak summed PSS of the trusted processes and of the sandbox processes of one process tree,
    and the CPU time of every process in it by role. A sandbox lives ~50 ms, too short to sample:
    its time is read from its fork server's reaped-children counter instead."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.trusted_peak, self.sandbox_peak, self.stop = root, 0.0, 0.0, threading.Event()
        self.cpu: dict[int, tuple[str, float, float]] = {}
        self.busy_s = self.rusage_s = self.tree_cpu_s = 0.0  # set by run_measured

    def run(self) -> None:
        while not self.stop.is_set():
            trusted = sandbox = 0.0
            for pid in _descendants(self.root):
                role = _role(pid, self.root)  # a fork server is named only once it has started
                own, reaped = _cpu_s(pid)
                _, seen_own, seen_reaped = self.cpu.get(pid, (role, 0.0, 0.0))
                if role != "gone":  # an exited process reads as 0
                    self.cpu[pid] = (role, max(seen_own, own), max(seen_reaped, reaped))
                if role in ("sandboxes", "fork servers"):
                    sandbox += _rss_mb(pid)
                else:
                    trusted += _rss_mb(pid)
            self.trusted_peak = max(self.trusted_peak, trusted)
            self.sandbox_peak = max(self.sandbox_peak, sandbox)
            self.stop.wait(0.05)

    def cpu_by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for role, own, reaped in self.cpu.values():
            if role == "fork servers":  # the sandboxes are the fork servers' reaped children
                totals["sandboxes"] = totals.get("sandboxes", 0.0) + reaped
            totals[role] = totals.get(role, 0.0) + own
        return totals


def _busy_s() -> float:
    """CPU seconds spent by the whole machine so far (every process, including short-lived sandboxes)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    """User + system CPU of every child this process has waited for, and of their reaped descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load avg {one:.2f} {five:.2f} {fifteen:.2f}"


def run_measured(command: list[str], cwd: Path, env: dict[str, str] | None = None,
                 what: str = "grader grade") -> tuple[float, MemorySampler, str]:
    """Run ``command`` once, sampled as a grader run is: wall, memory and CPU by role, the machine's CPU
    meanwhile (``busy_s``) and the CPU of the whole process tree (``tree_cpu_s``: ``RUSAGE_CHILDREN``,
    every process it reaped included; nothing else on the machine); its stdout and stderr."""
    started, busy, tree = time.perf_counter(), _busy_s(), _children_cpu_s()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = MemorySampler(process.pid)
    sampler.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    sampler.busy_s = _busy_s() - busy
    sampler.rusage_s = _children_cpu_s() - tree
    sampler.stop.set()
    sampler.join()
    # Two lower bounds of the tree's CPU, neither counting anything twice: RUSAGE_CHILDREN misses a
    # process its parent never waited for (a fork server exits without waiting for its primed server,
    # which init then reaps, with the CPU of every sandbox forked from it); the /proc roles miss a
    # short-lived process that no fork server reaped (the floor's forks), and each process's last 50 ms.
    sampler.tree_cpu_s = max(sampler.rusage_s, sum(sampler.cpu_by_role().values()))
    if process.returncode != 0:
        raise SystemExit(f"{what} failed ({process.returncode}): {stderr.strip()[-500:]}")
    return wall, sampler, stdout + "\0" + stderr


def _ms(runs: list[Any], what: str, count: int) -> str:
    """Median CPU ms per notebook of a list of (wall, sampler, ...) runs: ``what`` is a sampler
    attribute, or "roles" for the sum of its CPU by role."""
    values = [sum(run[1].cpu_by_role().values()) if what == "roles" else getattr(run[1], what) for run in runs]
    return f"{1000 * statistics.median(values) / count:.1f}"


def run_grader(folder: Path, out: Path, jobs: int, backend: str = "subprocess",
               source: Path = REPO) -> tuple[float, MemorySampler, str]:
    """``grader grade`` from ``source`` (this checkout, or a worktree of an earlier revision: the
    current directory comes first on ``sys.path``, so ``-m grader`` imports that revision's package)."""
    command = [sys.executable, "-m", "grader", "grade", str(folder), "--out", str(out), "--jobs", str(jobs),
               "--backend", backend]
    wall, sampler, output = run_measured(command, source)
    return wall, sampler, output.partition("\0")[2].strip().splitlines()[-1]


def run_floor(folder: Path, jobs: int) -> tuple[float, MemorySampler, dict[str, object]]:
    """The floor (``bench_floor.py``) on the same class: cells only, in bare forks of a preloaded interpreter."""
    command, env = floor_command(folder, jobs)
    wall, sampler, output = run_measured(command, folder, env, "bench_floor.py")
    return wall, sampler, parse_output(output.partition("\0")[0])


def _lost_companions(out: Path) -> list[str]:
    """The reports whose notebook could not import one of the fixtures' companion modules."""
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    modules = {Path(c).stem for entry in manifest.values() for c in entry.get("companions") or []}
    failed = []
    for path in sorted((out / "reports").glob("*.json")):
        text = path.read_text()
        if any(f"No module named '{module}'" in text or f'No module named \\"{module}' in text for module in modules):
            failed.append(path.stem)
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="notebooks in the class (default 1000)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--backend", choices=("subprocess", "kernel"), default="subprocess")
    parser.add_argument("--baseline", default=BASELINE_REV, metavar="REV",
                        help="also grade the class with this git revision of the grader, in a worktree, for the "
                             f"cost of what changed since (default {BASELINE_REV}, before the sandbox hardening; "
                             "'' to skip)")
    parser.add_argument("--nbgrader", type=int, default=10, metavar="K",
                        help="also time nbgrader autograde on K of the notebooks (default 10; 0 to skip)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="grade the class (and run the floor) this many times, alternating; medians (default 1)")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="skip the floor (bench_floor.py: cells only, in bare forks of a preloaded interpreter)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="grader-bench-batch-"))
    try:
        folder, out = work / "class", work / "out"
        folder.mkdir()
        made = build_class(folder, args.n)
        print(f"class: {args.n} notebooks ({', '.join(f'{v} {k}' for k, v in made.items())}); "
              f"{os.cpu_count()} CPUs; --jobs {args.jobs}; --backend {args.backend}; {_load()} at start")
        # Grader and floor alternate, round after round (which goes first alternates too), so that a
        # change in the machine's load weighs on both; the figures are medians over the rounds.
        graders: list[tuple[float, MemorySampler]] = []
        floors: list[tuple[float, MemorySampler, dict[str, object]]] = []
        line = ""
        for round_no in range(args.rounds):
            order = ("grader", "floor") if round_no % 2 == 0 else ("floor", "grader")
            for kind in order:
                if kind == "floor" and args.floor:
                    floors.append(run_floor(folder, args.jobs))
                elif kind == "grader":
                    target = out if round_no == 0 else work / f"out-{round_no}"
                    wall, memory, line = run_grader(folder, target, args.jobs, args.backend)
                    graders.append((wall, memory))
                    if round_no:
                        shutil.rmtree(target, ignore_errors=True)
            if args.rounds > 1:
                print(f"  round {round_no + 1}: grader {args.n / graders[-1][0]:5.1f} nb/s, "
                      f"{1000 * graders[-1][1].tree_cpu_s / args.n:5.1f} ms CPU/nb"
                      + (f"; floor {args.n / floors[-1][0]:5.1f} nb/s, {1000 * floors[-1][1].tree_cpu_s / args.n:5.1f} "
                         "ms CPU/nb" if floors else "") + f"  ({_load()})", flush=True)
        wall = statistics.median(w for w, _ in graders)
        memory = graders[0][1]
        grader_cpu = statistics.median(m.tree_cpu_s for _, m in graders)
        print(f"first run : {wall:7.2f} s  {args.n / wall:6.1f} notebooks/s   ({line})"
              + (f"  [median of {len(graders)}]" if len(graders) > 1 else ""))
        print(f"            peak memory: grader (main + pool) {memory.trusted_peak:.0f} MB; "
              f"fork servers + sandboxes {memory.sandbox_peak:.0f} MB")
        roles = memory.cpu_by_role()
        print(f"            CPU: {memory.busy_s:.1f} s on the machine = {1000 * memory.busy_s / args.n:.0f} ms per "
              "notebook; seen by role: " + ", ".join(f"{role} {seconds:.1f} s" for role, seconds in sorted(roles.items())))
        lost = _lost_companions(out)
        if lost:
            print(f"            {len(lost)} report(s) could not import a companion module: {', '.join(lost[:3])}")
        if floors:
            floor_wall = statistics.median(w for w, _, _ in floors)
            floor_cpu = statistics.median(m.tree_cpu_s for _, m, _ in floors)
            inner = floors[0][2]
            print(f"floor     : {floor_wall:7.2f} s  {args.n / floor_wall:6.1f} notebooks/s   (the same notebooks' "
                  f"{inner['cells']} code cells in bare forks of a preloaded interpreter, no confinement, no checks; "
                  f"{inner['failed_cells']} cells failed, as in the class; {inner['output_bytes']} bytes of output)"
                  + (f"  [median of {len(floors)}]" if len(floors) > 1 else ""))
            ratio = grader_cpu / floor_cpu
            print(f"CPU/nb    : grader {1000 * grader_cpu / args.n:.1f} ms, floor {1000 * floor_cpu / args.n:.1f} ms "
                  f"(user+sys of every process of each: the larger of RUSAGE_CHILDREN, {_ms(graders, 'rusage_s', args.n)} / "
                  f"{_ms(floors, 'rusage_s', args.n)}, and /proc by process, {_ms(graders, 'roles', args.n)} / "
                  f"{_ms(floors, 'roles', args.n)}): ratio {ratio:.2f}x "
                  f"(target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'}); notebooks/s grader "
                  f"{args.n / wall:.1f}, floor {args.n / floor_wall:.1f}; machine CPU meanwhile (others' included) "
                  f"{1000 * statistics.median(m.busy_s for _, m in graders) / args.n:.1f} / "
                  f"{1000 * statistics.median(m.busy_s for _, m, _ in floors) / args.n:.1f} ms per notebook; "
                  f"{_load()}")
        if args.baseline:
            tree = work / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline], cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                base_wall, base_memory, _ = run_grader(folder, work / "out-baseline", args.jobs, args.backend, tree)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            print(f"baseline  : {base_wall:7.2f} s  {args.n / base_wall:6.1f} notebooks/s   (revision {args.baseline}, "
                  f"same class; CPU {1000 * base_memory.busy_s / args.n:.0f} ms per notebook); this revision costs "
                  f"{100 * (wall / base_wall - 1):+.1f} % wall time (target: at most +10 %)")
            print("            CPU by role, ms per notebook (this revision / baseline): " + ", ".join(
                f"{role} {1000 * seconds / args.n:.1f} / {1000 * base_memory.cpu_by_role().get(role, 0.0) / args.n:.1f}"
                for role, seconds in sorted(roles.items())))
        rerun, _, line = run_grader(folder, out, args.jobs, args.backend)
        print(f"re-run    : {rerun:7.2f} s  {wall / rerun:6.1f}x faster   ({line})")
        per_notebook = wall / args.n
        rate = args.n / wall
        print(f"targets   : {rate:.1f} notebooks/s (≥ 100: {'met' if rate >= 100 else 'NOT met'}; "
              f"≥ 50 at the very least: {'met' if rate >= 50 else 'NOT met'}); peak memory "
              f"{memory.trusted_peak:.0f} MB (≤ 300: {'met' if memory.trusted_peak <= 300 else 'NOT met'}); "
              f"re-run {wall / rerun:.0f}x (≥ 10x: {'met' if wall / rerun >= 10 else 'NOT met'})")
        if args.nbgrader:
            sys.path.insert(0, str(REPO / "benchmarks"))
            from nbgrader_baseline import ensure_nbgrader_venv, time_autograde

            python = ensure_nbgrader_venv()
            sample = sorted(folder.glob("*.ipynb"))[: args.nbgrader]
            for processes in (1, 2):
                figures = time_autograde(sample, processes=processes, python=python)
                print(f"nbgrader {figures.get('nbgrader_version', '?')} autograde, {processes} process(es), "
                      f"{len(sample)} notebooks: {figures['per_notebook_s']:.2f} s/notebook; "
                      f"grader --jobs {args.jobs}: {per_notebook:.3f} s/notebook "
                      f"(ratio {figures['per_notebook_s'] / per_notebook:.0f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
