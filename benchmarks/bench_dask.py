"""``grader grade --scheduler`` against the local pool, on this machine; run by hand, prints figures::

    python benchmarks/bench_dask.py                   # 300 notebooks, and 30 with --backend kernel
    python benchmarks/bench_dask.py -n 500 --kernel-n 0 --cores 32

A Dask scheduler and two worker processes of one thread each are started as an operator would start them
(``dask scheduler``, ``dask worker ADDRESS --nworkers 2 --nthreads 1``: separate processes, so the
scheduler's CPU can be read from /proc), and stay up for the whole run, like a cluster. Over the same
class (``bench_batch.build_class``: the fixture mix, each notebook unique), in one run:

* ``run_batch --jobs 2`` and ``run_batch --scheduler``: notebooks/s of each and the ratio (target ≥ 0.9),
  alternated ``--rounds`` times, the best of each. Both start cold: the worker processes are restarted
  before each run on the cluster, as a local run starts its pool's processes (no grader imported, no
  per-process caches); each run starts its fork servers (the pool's initializer, the workers' plugin).
  A second run on the same, warm, workers is printed beside (long-lived workers keep their caches);
* the same with ``--backend kernel`` (``--kernel-n`` notebooks);
* what each report costs the client (CPU of this process while it grades on the cluster: reading the
  notebook, sending it, receiving, parsing and validating the JSON, writing four files) and the scheduler
  (its process's CPU per task), and from those a model of N machines: the workers scale with the cores,
  the client and the scheduler (one core each) cap the rate at 1 / their cost per report.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
from bench_batch import build_class  # noqa: E402

from grader.batch import cluster as dask_cluster  # noqa: E402
from grader.batch import run as batch  # noqa: E402

DASK = Path(sys.executable).with_name("dask")
TARGET_RATIO = 0.9


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (and its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(v) for v in fields[11:15]) / ticks


class Cluster:
    """A scheduler and one ``dask worker`` command with two worker processes, as docs/cluster.md starts them."""

    def __init__(self, folder: Path, workers: int) -> None:
        env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1")
        info = folder / "scheduler.json"
        self.scheduler = subprocess.Popen([str(DASK), "scheduler", "--port", "0", "--no-dashboard",
                                           "--scheduler-file", str(info)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        import json
        time.sleep(0.2)
        self.address = json.loads(info.read_text())["address"]
        self.workers = subprocess.Popen([str(DASK), "worker", self.address, "--nworkers", str(workers),
                                         "--nthreads", "1", "--no-dashboard"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from distributed import Client

        with Client(self.address, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)

    def restart_workers(self) -> None:
        """Fresh worker processes (the nannies restart them), so that a run on the cluster starts as cold as
        a local pool: no grader imported yet, no per-process caches (probes, reference curves) kept."""
        from distributed import Client

        with Client(self.address, set_as_default=False) as client:
            client.restart(wait_for_workers=True)

    def scheduler_cpu_s(self) -> float:
        return _cpu_s(self.scheduler.pid)

    def close(self) -> None:
        for process in (self.workers, self.scheduler):
            process.terminate()
        for process in (self.workers, self.scheduler):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _grade(paths: list[str], out: Path, backend: str, scheduler: str | None, jobs: int) -> tuple[float, int]:
    """Seconds to grade the class into a fresh ``out``, and how many were graded."""
    shutil.rmtree(out, ignore_errors=True)
    options = batch.BatchOptions(out=out, jobs=jobs, backend=backend, scheduler=scheduler)
    started = time.perf_counter()
    result = batch.run_batch(paths, options, progress=lambda n: batch.Progress(n, io.StringIO()))
    return time.perf_counter() - started, result.graded


def _client_cost(paths: list[str], out: Path, cluster: Cluster) -> tuple[float, float, int]:
    """CPU seconds per report of this process (the client) while ``Cluster.grade_all`` runs, and of the
    scheduler's process; how many reports."""
    measured: dict[str, float] = {}
    original = dask_cluster.Cluster.grade_all

    def timed(self: Any, todo: list[Any], *args: Any, **kwargs: Any) -> None:
        # What the scheduler spends anyway (heartbeats, its own housekeeping) is not a cost per report.
        idle, idle_since = cluster.scheduler_cpu_s(), time.perf_counter()
        time.sleep(3)
        idle_rate = (cluster.scheduler_cpu_s() - idle) / (time.perf_counter() - idle_since)
        cpu, scheduler, started = time.process_time(), cluster.scheduler_cpu_s(), time.perf_counter()
        try:
            original(self, todo, *args, **kwargs)
        finally:
            measured["client"] = time.process_time() - cpu
            measured["scheduler"] = (cluster.scheduler_cpu_s() - scheduler
                                     - idle_rate * (time.perf_counter() - started))
            measured["count"] = len(todo)

    dask_cluster.Cluster.grade_all = timed  # type: ignore[method-assign]
    try:
        _grade(paths, out, "subprocess", cluster.address, 2)
    finally:
        dask_cluster.Cluster.grade_all = original  # type: ignore[method-assign]
    count = int(measured["count"])
    return measured["client"] / count, measured["scheduler"] / count, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="notebooks in the class (default %(default)s)")
    parser.add_argument("--kernel-n", type=int, default=30, help="notebooks for --backend kernel (0: skip)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternated; the best counts "
                                                              "(default %(default)s)")
    parser.add_argument("--cores", type=int, default=16, help="cores per machine in the model (default %(default)s)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dask-") as scratch:
        root = Path(scratch)
        (root / "class").mkdir()
        build_class(root / "class", args.n)
        paths = [str(root / "class")]
        cluster = Cluster(root, workers=2)
        try:
            print(f"class: {args.n} notebooks; 2 local processes (--jobs 2) against 2 Dask worker processes "
                  f"(dask worker --nworkers 2 --nthreads 1) on this {os.cpu_count()}-core machine")
            rows = []
            for backend, count in (("subprocess", args.n), ("kernel", args.kernel_n)):
                if not count:
                    continue
                if backend == "kernel":
                    (root / "kclass").mkdir()
                    build_class(root / "kclass", count, seed=1)
                    paths = [str(root / "kclass")]
                # Alternated, best of --rounds each: the machine is shared, and its load drifts within a run.
                local_runs, dask_runs, warm_runs = [], [], []
                for _ in range(args.rounds):
                    local_runs.append(_grade(paths, root / f"local-{backend}", backend, None, 2))
                    cluster.restart_workers()
                    dask_runs.append(_grade(paths, root / f"dask-{backend}", backend, cluster.address, 2))
                    warm_runs.append(_grade(paths, root / f"dask-{backend}", backend, cluster.address, 2))
                local_s, local_n = min(local_runs)
                dask_s, dask_n = min(dask_runs)
                warm_s, warm_n = min(warm_runs)
                local_rate, dask_rate = local_n / local_s, dask_n / dask_s
                rows.append((backend, local_rate, dask_rate))
                verdict = "met" if dask_rate / local_rate >= TARGET_RATIO else "NOT met"
                print(f"  --backend {backend:10s} local {local_rate:6.1f} notebooks/s ({local_n} in {local_s:.1f} s)"
                      f"   dask {dask_rate:6.1f} notebooks/s ({dask_n} in {dask_s:.1f} s)"
                      f"   ratio {dask_rate / local_rate:.2f} (target >= {TARGET_RATIO}: {verdict})")
                print(f"  {'':20s} dask with workers already warm (a second run on the same worker processes): "
                      f"{warm_n / warm_s:.1f} notebooks/s, ratio {warm_n / warm_s / local_rate:.2f}")
            client_s, scheduler_s, count = _client_cost([str(root / "class")], root / "dask-cost", cluster)
        finally:
            cluster.close()

    per_core = rows[0][2] / 2  # notebooks/s of one worker process (one core)
    client_cap, scheduler_cap = 1 / client_s, 1 / scheduler_s
    print(f"\nper report ({count} graded on the cluster): client {client_s * 1000:.2f} ms CPU (read, send, receive, "
          f"parse, validate, write), scheduler {scheduler_s * 1000:.2f} ms CPU (beyond its idle rate); one worker core "
          f"{per_core:.1f} notebooks/s")
    print(f"caps: the client at {client_cap:.0f} notebooks/s, the scheduler at {scheduler_cap:.0f} notebooks/s "
          "(each on one core of its own)")
    print(f"model: N machines of {args.cores} cores, one worker process per core (this machine's per-core rate):")
    print(f"  {'N':>4} {'workers':>10} {'client cap':>11} {'scheduler':>10} {'expected':>10}  bottleneck")
    for machines in (1, 2, 4, 8, 16, 32, 64, 128):
        workers = machines * args.cores * per_core
        expected = min(workers, client_cap, scheduler_cap)
        limit = "workers" if expected == workers else ("client" if expected == client_cap else "scheduler")
        print(f"  {machines:>4} {workers:>10.0f} {client_cap:>11.0f} {scheduler_cap:>10.0f} {expected:>10.0f}  {limit}")


if __name__ == "__main__":
    main()
