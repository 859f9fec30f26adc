"""Containment figures for hostile submissions (issue 4). Run by hand; prints, asserts nothing::

    python benchmarks/bench_hostile.py

Each scenario grades one generated notebook in a *fresh* Python process with the
bundled rubric's default limits, and reports:

* wall time of the whole ``grade_notebook`` call, beside the limit that applies
  (the target: a hung submission is reported within its limit + 2 s);
* the grader's own peak resident memory (``ru_maxrss`` of that process only:
  the sandbox is a separate process), target < 200 MB while the submission hits
  its memory limit or floods its output;
* the score and the reason the report gives.

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
}

CHILD = """
import json, resource, sys, time
from grader.grade import grade_notebook, Options
from grader.rubric import load_rubric
started = time.monotonic()
report = grade_notebook(sys.argv[1], load_rubric(None), Options())
wall = time.monotonic() - started
failed = [c for c in report.checks if not c.passed]
print(json.dumps({"wall": wall, "score": report.score, "max": report.max_score,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "reason": failed[0].message[:90] if failed else "",
                  "excerpt": len(report.output_excerpt)}))
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


def main() -> None:
    from grader.confine import confinement

    print(f"confinement: namespaces={confinement().namespaces}; python {sys.version.split()[0]}")
    print(f"{'scenario':40} {'wall s':>7} {'limit+2':>7} {'peak MB':>8} {'score':>7}  reason")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cells, limit) in SCENARIOS.items():
            path = Path(tmp) / "nb.ipynb"
            path.write_text(notebook_json(cells))
            done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                                  cwd=REPO, timeout=600)
            if done.returncode != 0:
                print(f"{name:40} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            bound = f"{limit + 2:.0f}" if limit else "-"
            print(f"{name:40} {row['wall']:7.2f} {bound:>7} {row['rss_mb']:8.1f} {row['score']:5.0f}/{row['max']:.0f}"
                  f"  {row['reason']}")
            if "children" in name:
                print(f"{'':40} leftover sleep processes after grading: {_sleepers()}")
        big = _thirty_megabyte_notebook(Path(tmp))
        from grader.load import load_notebook
        started = time.perf_counter()
        notebook = load_notebook(big)
        print(f"\nload a {big.stat().st_size / 1e6:.1f} MB notebook: {time.perf_counter() - started:.3f} s "
              f"({len(notebook.code_cells)} code cells)")


if __name__ == "__main__":
    main()
