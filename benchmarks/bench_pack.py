"""A student pack, end to end: build, install, and a cold self-check of the seed, beside the full grader.

Run by hand; it prints figures and asserts nothing::

    python benchmarks/bench_pack.py            # 7 rounds
    python benchmarks/bench_pack.py --runs 15

Once: ``grader pack`` (instructor side) and the wheel's size. Then every round, in fresh processes one
after the other, with a fresh cache directory each (``GRADER_CACHE_DIR``: nothing a previous round left
helps the next, as on a student's machine the first time):

  (a) ``pip install --no-deps`` of the pack into a new, isolated environment that has numpy & co.
      (tests/student_pack.py): what a student's ``pip install numpy_nn_grader_pack-*.whl`` does;
  (b) ``python -m grader check seed.ipynb`` with that pack: the student's first self-check, cold (a new
      process, an empty cache directory: matplotlib's font list is built then, once per machine);
  (b') the same again: every later self-check (a new process, the cache directory as (b) left it);
  (c) the baseline, in the same round: ``python -m grader check seed.ipynb`` with the full grader, cold.

The target (issue 14) is (a) + (b) under 2 s on the 2-core machine. The ratio (b)/(c) is the figure to
compare across machines: what answering from tables instead of running the reference costs or saves.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "simple_nn_seed.ipynb"
sys.path.insert(0, str(REPO / "tests"))
import student_pack  # noqa: E402


def _timed(command: list[str], cwd: Path, cache: Path) -> float:
    import os
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "GRADER_CACHE_DIR": str(cache)})
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-400:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "grader", "pack", "--out", str(root / "pack")], check=True,
                       capture_output=True, cwd=root)
        build = time.perf_counter() - started
        (wheel,) = (root / "pack").glob("*.whl")
        print(f"grader pack: {build:.2f} s; wheel {wheel.stat().st_size / 1e6:.2f} MB")
        installs, checks, warm, baselines = [], [], [], []
        for run in range(args.runs):
            python, site = student_pack.environment(root / f"venv{run}")
            started = time.perf_counter()
            student_pack.pip_install(wheel, site)
            installs.append(time.perf_counter() - started)
            cache = root / f"cache{run}"
            checks.append(_timed([str(python), "-m", "grader", "check", str(SEED)], root, cache))
            warm.append(_timed([str(python), "-m", "grader", "check", str(SEED)], root, cache))
            baselines.append(_timed([sys.executable, "-m", "grader", "check", str(SEED)], root, root / f"base{run}"))
    median = statistics.median
    print(f"{'':40}{'median':>8}{'min':>8}{'max':>8}   ({args.runs} rounds)")
    for name, values in (("(a) pip install the pack", installs), ("(b) self-check, pack, first run", checks),
                         ("(b') self-check, pack, next run", warm), ("(c) grader check, full, first run", baselines)):
        print(f"{name:40}{median(values):8.2f}{min(values):8.2f}{max(values):8.2f}")
    total = [a + b for a, b in zip(installs, checks, strict=True)]
    print(f"{'(a)+(b) install and self-check':40}{median(total):8.2f}{min(total):8.2f}{max(total):8.2f}   target < 2 s")
    print(f"ratio (b)/(c): {median(checks) / median(baselines):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
