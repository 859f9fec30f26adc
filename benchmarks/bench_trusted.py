"""Trusted-side CPU per notebook, stage by stage. Run by hand; prints figures::

    python benchmarks/bench_trusted.py               # 200 notebooks, 2 passes, best pass per stage
    python benchmarks/bench_trusted.py -n 100 --passes 3 --seed 7

The class is ``bench_batch.build_class`` (the realistic mix of fixture notebooks,
each with its own extra cell), graded one by one in this process with a fork
server, as a batch worker does. Each stage function is wrapped to add up the
CPU time of *this* process (``time.process_time``: user + system, every thread)
spent inside it, so time spent waiting for the sandbox does not count but the
trusted side's own encoding and decoding of calls does:

* load: reading and normalising the notebook (``grader.load``);
* execute: the trusted side of running the cells (``sandbox.run_notebook``);
* checks: ``grader.checks.run_checks``, split into the trusted side of the
  sandbox calls it makes (``call_many``, ``train``) and everything else
  (probes, reference values, comparisons, finite differences);
* diagnose: ``grader.diagnose.diagnose`` (mutants);
* integrity: ``grader.integrity.review`` (static scan of the cells);
* score: ``grader.score.apply_rubric``;
* whole: ``grade_notebook`` from start to end (sandbox start and stop, report).

Another process using the same cores slows these figures less than wall time,
but they are still noisy: each figure is the best of ``--passes`` passes.
The first pass also pays for filling the trusted side's per-process caches.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_batch import build_class  # noqa: E402

import grader.checks  # noqa: E402
import grader.diagnose  # noqa: E402
import grader.sandbox.process  # noqa: E402
import grader.integrity  # noqa: E402
import grader.load  # noqa: E402
import grader.score  # noqa: E402
from grader.sandbox.forkserver import ForkServer  # noqa: E402
from grader.grade import Options, grade_notebook  # noqa: E402
from grader.rubric import load_rubric  # noqa: E402

#: (label, owner, attribute) of every wrapped stage, in the order they are printed.
STAGES = (
    ("load", grader.load, "load_notebook"),
    ("execute", grader.sandbox.process.SubprocessSandbox, "run_notebook"),
    ("checks", grader.checks, "run_checks"),
    ("  sandbox calls", grader.sandbox.process.SubprocessSandbox, "call_many"),
    ("  sandbox train", grader.sandbox.process.SubprocessSandbox, "train"),
    ("diagnose", grader.diagnose, "diagnose"),
    ("integrity", grader.integrity, "review"),
    ("score", grader.score, "apply_rubric"),
)


class Timer:
    """CPU seconds of this process spent inside each wrapped function (outermost call only)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self._depth: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth[label] += 1
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth[label] -= 1
                if not self._depth[label]:
                    self.cpu[label] += time.process_time() - started
        return timed


def install(timer: Timer) -> None:
    for label, owner, name in STAGES:
        setattr(owner, name, timer.wrap(label, getattr(owner, name)))


def one_pass(files: list[Path], seed: int) -> dict[str, float]:
    """ms of trusted CPU per notebook for each stage, grading every file once."""
    timer = Timer()
    originals = [(owner, name, getattr(owner, name)) for _, owner, name in STAGES]
    install(timer)
    rubric = load_rubric(None)
    server = ForkServer()
    try:
        options = Options(seed=seed, limits=rubric.limits, server=server)
        grade = timer.wrap("whole", grade_notebook)
        for path in files:
            grade(path, rubric, options)
    finally:
        server.close()
        for owner, name, original in originals:
            setattr(owner, name, original)
    per_notebook = {label: 1000 * seconds / len(files) for label, seconds in timer.cpu.items()}
    calls = per_notebook.get("  sandbox calls", 0.0) + per_notebook.get("  sandbox train", 0.0)
    per_notebook["  rest of checks"] = per_notebook.get("checks", 0.0) - calls
    mine = ("load", "checks", "diagnose", "integrity", "score")
    per_notebook["load+checks+diagnose+integrity+score"] = sum(per_notebook.get(k, 0.0) for k in mine)
    return per_notebook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="notebooks in the class (default 200)")
    parser.add_argument("--passes", type=int, default=2, help="passes over the class; the best is shown")
    parser.add_argument("--seed", type=int, default=0, help="probe seed (grader --seed)")
    parser.add_argument("--class-dir", type=Path, help="grade this folder's notebooks instead of building a class")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="grader-bench-trusted-"))
    try:
        folder = args.class_dir
        if folder is None:
            folder = work / "class"
            folder.mkdir()
            build_class(folder, args.n)
        files = sorted(folder.glob("*.ipynb"))[: args.n]
        passes = [one_pass(files, args.seed) for _ in range(args.passes)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    order = [label for label, _, _ in STAGES]
    order.insert(order.index("  sandbox train") + 1, "  rest of checks")
    order += ["load+checks+diagnose+integrity+score", "whole"]
    print(f"trusted CPU, ms per notebook ({len(files)} notebooks, seed {args.seed}; "
          f"{len(passes)} passes, first pass fills the caches)")
    print(f"{'stage':<38}" + "".join(f"{'pass ' + str(i + 1):>10}" for i in range(len(passes))) + f"{'best':>10}")
    for label in order:
        values = [p.get(label, 0.0) for p in passes]
        print(f"{label:<38}" + "".join(f"{v:10.2f}" for v in values) + f"{min(values):10.2f}")


if __name__ == "__main__":
    main()
