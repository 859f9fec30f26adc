"""The kernel backend beside a bare nbclient run of the same notebook. Run by hand; prints figures::

    python benchmarks/bench_kernel.py            # 7 rounds on the seed notebook
    python benchmarks/bench_kernel.py --runs 15 NOTEBOOK

Each round, in this process, one after the other (alternating which goes first):

  (a) bare nbclient: ``NotebookClient(nb, kernel_name="python3").execute()`` on the notebook
      (kernel start, all cells, shutdown): what "Restart & Run All" costs;
  (b) ``grade_notebook(..., Options(backend="kernel"))``: a confined kernel, the same cells
      through nbclient, then every check, diagnosis and score, and teardown.

Target: (b) within 1.2x of (a). Medians are printed with the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bare_nbclient(path: Path) -> float:
    import nbformat
    from nbclient import NotebookClient

    started = time.perf_counter()
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, kernel_name="python3", timeout=120, allow_errors=True).execute()
    return time.perf_counter() - started


def kernel_backend(path: Path) -> float:
    from grader.grade import Options, grade_notebook
    from grader.rubric import load_rubric

    started = time.perf_counter()
    report = grade_notebook(path, load_rubric(None), Options(backend="kernel"))
    wall = time.perf_counter() - started
    if report.status != "graded":
        raise SystemExit(f"the kernel backend could not grade {path}: {report.error}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", nargs="?", default=str(REPO / "examples" / "simple_nn_seed.ipynb"))
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    path = Path(args.notebook)
    bare_nbclient(path), kernel_backend(path)  # warm-up: imports, caches, kernelspec
    bare, graded = [], []
    for round_ in range(args.runs):
        order = (bare_nbclient, kernel_backend) if round_ % 2 == 0 else (kernel_backend, bare_nbclient)
        for measure in order:
            (bare if measure is bare_nbclient else graded).append(measure(path))
    b, g = statistics.median(bare), statistics.median(graded)
    print(f"{path.name}, {args.runs} rounds")
    print(f"bare nbclient execution : median {b:.3f} s (min {min(bare):.3f}, max {max(bare):.3f})")
    print(f"grader --backend kernel : median {g:.3f} s (min {min(graded):.3f}, max {max(graded):.3f})")
    print(f"ratio {g / b:.2f} (target <= 1.20)")


if __name__ == "__main__":
    main()
