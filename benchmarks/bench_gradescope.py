"""Wall time of Gradescope's ``run_autograder`` on the seed notebook, beside ``grader check`` on the same notebook.

Run by hand; it prints figures and asserts nothing::

    python benchmarks/bench_gradescope.py            # 9 rounds
    python benchmarks/bench_gradescope.py --runs 15

It builds the autograder zip once (``grader gradescope``; the build time is printed too), unpacks
it into a temporary simulated ``/autograder`` (``source/``, ``submission/`` holding the seed
notebook, ``results/``; ``GRADER_AUTOGRADER_ROOT`` points there), with this interpreter standing in
for the virtual environment setup.sh makes (``GRADER_AUTOGRADER_PYTHON``). Then, in every round, one
after the other (never two at once: the machine has 2 cores):

  (a) baseline: ``python -m grader check NOTEBOOK --format gradescope``, the same grading and the same
      renderer, from a cold process;
  (b) ``run_autograder``: bash, ``timeout``, a cold Python, the notebook chosen as ``grader grade``
      chooses one (``grader.batch.collect``), grading, results.json written atomically.

The order alternates from round to round. Target: (b) under 3 s. The difference (b) - (a) is what
the autograder adds around grading; the ratio is the figure to compare across runs (this machine is
shared, and its absolute times drift by tens of percent from hour to hour).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "simple_nn_seed.ipynb"
TARGET_S = 3.0


def unpack(archive: Path, root: Path) -> None:
    """As Gradescope does: the zip into source/ with its modes, run_autograder copied to the root."""
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = root / "source" / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zipped.read(info))
            if info.external_attr >> 16:
                target.chmod((info.external_attr >> 16) & 0o777)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    shutil.copy(NOTEBOOK, root / "submission" / NOTEBOOK.name)


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gradescope-") as tmp:
        work = Path(tmp)
        archive = work / "autograder.zip"
        env = {**os.environ}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "grader", "gradescope", "--out", str(archive)], cwd=ROOT, env=env,
                       check=True, capture_output=True)
        build_s = time.perf_counter() - started
        root = work / "autograder"
        unpack(archive, root)
        run_env = {**env, "GRADER_AUTOGRADER_ROOT": str(root), "GRADER_AUTOGRADER_PYTHON": sys.executable}
        check = [sys.executable, "-m", "grader", "check", str(NOTEBOOK), "--format", "gradescope"]
        autograder = [str(root / "run_autograder")]
        walls: dict[str, list[float]] = {"check": [], "autograder": []}
        # One warm-up round of each (bytecode, the grader's caches), not counted.
        timed(check, env, ROOT)
        timed(autograder, run_env, root)
        for round_ in range(args.runs):
            order = ("check", "autograder") if round_ % 2 == 0 else ("autograder", "check")
            for kind in order:
                if kind == "check":
                    walls[kind].append(timed(check, env, ROOT))
                else:
                    (root / "results" / "results.json").unlink(missing_ok=True)
                    walls[kind].append(timed(autograder, run_env, root))
                    assert (root / "results" / "results.json").is_file()
    load = os.getloadavg()[0]
    median = {kind: statistics.median(values) for kind, values in walls.items()}
    print(f"grader gradescope (build the zip): {build_s:.2f} s; {args.runs} rounds, "
          f"load average {load:.2f} on {os.cpu_count()} CPUs")
    print(f"{'':34} {'median':>8} {'min':>8} {'max':>8}")
    labels = {"check": "grader check --format gradescope", "autograder": "run_autograder (simulated)"}
    for kind, values in walls.items():
        print(f"{labels[kind]:34} {median[kind]:7.3f}s {min(values):7.3f}s {max(values):7.3f}s")
    added = median["autograder"] - median["check"]
    verdict = "met" if median["autograder"] < TARGET_S else "NOT met"
    print(f"run_autograder adds {added:+.3f} s ({median['autograder'] / median['check']:.2f}x the baseline); "
          f"target under {TARGET_S:.0f} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
