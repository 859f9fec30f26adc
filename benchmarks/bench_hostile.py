"""Containment figures for hostile submissions (issues 4 and 11). Run by hand; prints, asserts nothing::

    python benchmarks/bench_hostile.py [--quick]    # --quick: issue 11's scenarios, two zip bombs

Each scenario grades one generated notebook in a *fresh* Python process with the
bundled rubric's default limits, and reports:

* wall time of the whole ``grade_notebook`` call, beside the limit that applies
  (the target: a hung submission is reported within its limit + 2 s);
* the grader's own peak resident memory (``VmHWM`` of that process only: the
  sandbox is a separate process; not ``ru_maxrss``, which a child started with
  vfork inherits from its parent), target < 200 MB while the submission hits
  its memory limit or floods its output, and < 500 MB whatever it sends
  (issue 11), beside the correct notebook's from the same run;
* the score and the reason the report gives.

Issue 11's scenarios forge the sandbox's side of the protocol from inside the
notebook (the same notebooks as ``tests/test_bounds.py``): an 8 MB ``.npy``
header, a message of 200 arrays of 16 MB, replies of 16 MB three at a time, one
array named 4,096 times; a function that honestly returns 16 million booleans (which
the report would list one by one); and a correct notebook with a 5 MB code cell.

Then batch inputs: ``grader grade`` (``run_batch``, one pool process) over a
small class, then over five zip bombs in one run (each a 0.5 MB zip holding a
student's own zip of ten 45 MB notebooks: 900 MB decompressed per bomb, under
the 1 GB one archive may cost; the fifth is past the 4 GB the run may), with the
peak memory of the main process, which collects.

Plus the load time of a 30 MB notebook of embedded images (target: well under 1 s).
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import CORRECT_CELLS, notebook_json  # noqa: E402
from test_bounds import (  # noqa: E402  (the forged-protocol notebooks of the tests)
    AMPLIFIED, BIG_CELL, HUGE_NPY_HEADER, MANY_LARGE_BLOBS, PEAK_RSS, PROCESS_BUDGET, zip_bomb,
)

SCENARIOS = {
    "correct (baseline)": (CORRECT_CELLS, None),
    "hung forward (call limit 5 s)": (CORRECT_CELLS + ["def forward(x, w1, w2):\n    while True:\n        pass"], 5.0),
    "hung top-level cell (cell limit 10 s)": (CORRECT_CELLS + ["while True:\n    pass"], 10.0),
    "alarm ignored + hung backward": (CORRECT_CELLS + [
        "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "def backward(x, y, y_hat, w1, w2, eta):\n    while True:\n        pass"], 5.0),
    "forward touches 6 GB in 100 MB chunks": (CORRECT_CELLS + [
        "def forward(x, w1, w2):\n    keep = []\n    for _ in range(60):\n"
        "        keep.append(np.ones(100 * 2**20 // 8))\n    return activation(x @ w1) @ w2"], None),
    "200 MB printed": (CORRECT_CELLS + ["import sys\nfor _ in range(200):\n    sys.stdout.write('x' * (1 << 20))"], None),
    "100 children forked": (CORRECT_CELLS + [
        "import os\nfor _ in range(100):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        os.setsid()\n        os.execv('/bin/sleep', ['sleep', '3'])"], None),
    # issue 11: what the grader reads is bounded
    "forged reply: 8 MB .npy header": (CORRECT_CELLS + [HUGE_NPY_HEADER], None),
    "forged message: 200 x 16 MB arrays": (CORRECT_CELLS + [MANY_LARGE_BLOBS], None),
    "forged replies: 3 x 16 MB per call": (CORRECT_CELLS + [PROCESS_BUDGET], None),
    "forged reply: an array named 4096x": (CORRECT_CELLS + [AMPLIFIED], None),
    "forward returns 16 million booleans": (CORRECT_CELLS + [
        "def forward(x, w1, w2):\n    return np.zeros(16_000_000, dtype=bool)"], None),
    "correct + a 5 MB code cell": (CORRECT_CELLS + [BIG_CELL], None),
}
QUICK = ("correct (baseline)", "forged reply: 8 MB .npy header", "forged message: 200 x 16 MB arrays",
         "forged replies: 3 x 16 MB per call", "forged reply: an array named 4096x",
         "forward returns 16 million booleans", "correct + a 5 MB code cell")

CHILD = PEAK_RSS + """
import json, sys, time
from grader.grade import grade_notebook, Options
from grader.rubric import load_rubric
started = time.monotonic()
report = grade_notebook(sys.argv[1], load_rubric(None), Options())
wall = time.monotonic() - started
failed = [c for c in report.checks if not c.passed]
crashed = [c.error for c in report.cells if c.status == "crashed"]
print(json.dumps({"wall": wall, "score": report.score, "max": report.max_score, "rss_mb": peak_rss_mb(),
                  "reason": (failed[0].message if failed else crashed[0] if crashed else "")[-110:],
                  "excerpt": len(report.output_excerpt)}))
"""

#: ``grader grade`` in a fresh process (the collecting main process and one pool process); the peak
#: memory printed is the main process's.
BATCH_CHILD = PEAK_RSS + """
import json, sys, time
from pathlib import Path
from grader.batch.run import BatchOptions, run_batch
started = time.monotonic()
result = run_batch(sys.argv[2:], BatchOptions(out=Path(sys.argv[1]), jobs=1))
statuses = [row.report.status for row in result.rows]
errors = [row.report.error for row in result.rows if row.report.status == "error"]
print(json.dumps({"wall": time.monotonic() - started, "rss_mb": peak_rss_mb(), "rows": len(result.rows),
                  "graded": statuses.count("graded"), "errors": errors}))
"""


def _sleepers() -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes().startswith(b"sleep\x003"):
                    count += 1
            except OSError:
                pass
    return count


def _thirty_megabyte_notebook(directory: Path) -> Path:
    image = base64.b64encode(os.urandom(750_000)).decode()
    cells = json.loads(notebook_json(CORRECT_CELLS))
    for cell in cells["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "display_data", "metadata": {},
                                "data": {"image/png": image, "text/plain": "<Figure>"}}] * 8
    path = directory / "big.ipynb"
    path.write_text(json.dumps(cells))
    return path


def _batch(tmp: Path, label: str, inputs: list[Path]) -> None:
    done = subprocess.run([sys.executable, "-c", BATCH_CHILD, str(tmp / f"out-{label}"), *map(str, inputs)],
                          capture_output=True, text=True, cwd=REPO, timeout=1800)
    if done.returncode != 0:
        print(f"{label:40} failed: {done.stderr.strip().splitlines()[-1:]}")
        return
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{label:40} {row['wall']:7.2f} {row['rss_mb']:8.1f}  {row['rows']} rows, {row['graded']} graded")
    for error in sorted(set(row["errors"])):
        print(f"{'':40} error row: ...{error[-150:]}")


def main() -> None:
    from grader.sandbox.confine import confinement

    quick = "--quick" in sys.argv[1:]
    print(f"confinement: namespaces={confinement().namespaces}; python {sys.version.split()[0]}")
    print(f"{'scenario':40} {'wall s':>7} {'limit+2':>7} {'peak MB':>8} {'vs base':>8} {'score':>7}  reason")
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cells, limit) in SCENARIOS.items():
            if quick and name not in QUICK:
                continue
            path = Path(tmp) / "nb.ipynb"
            path.write_text(notebook_json(cells))
            done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                                  cwd=REPO, timeout=600)
            if done.returncode != 0:
                print(f"{name:40} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            baseline = row["rss_mb"] if baseline is None else baseline
            bound = f"{limit + 2:.0f}" if limit else "-"
            print(f"{name:40} {row['wall']:7.2f} {bound:>7} {row['rss_mb']:8.1f} {row['rss_mb'] - baseline:+8.1f}"
                  f" {row['score']:5.0f}/{row['max']:.0f}  {row['reason']}")
            if "children" in name:
                print(f"{'':40} leftover sleep processes after grading: {_sleepers()}")

        print(f"\n{'batch inputs (grader grade, --jobs 1)':40} {'wall s':>7} {'peak MB':>8}  (main process)")
        folder = Path(tmp) / "class"
        folder.mkdir()
        for i in range(3):
            (folder / f"student{i}.ipynb").write_text(notebook_json(CORRECT_CELLS + [f"x = {i}"]))
        _batch(Path(tmp), "3 correct notebooks (baseline)", [folder])
        bombs = Path(tmp) / "bombs"
        bombs.mkdir()
        count = 2 if quick else 5  # 900 MB decompressed each: the fifth is past the run's 4 GB
        paths = [zip_bomb(bombs, f"bomb{i}", 10, 45 << 20) for i in range(count)]
        size = sum(p.stat().st_size for p in paths) / 1e6
        _batch(Path(tmp), f"{count} zip bombs ({size:.1f} MB on disk)", paths)

        big = _thirty_megabyte_notebook(Path(tmp))
        from grader.load import load_notebook
        started = time.perf_counter()
        notebook = load_notebook(big)
        print(f"\nload a {big.stat().st_size / 1e6:.1f} MB notebook: {time.perf_counter() - started:.3f} s "
              f"({len(notebook.code_cells)} code cells)")


if __name__ == "__main__":
    main()
