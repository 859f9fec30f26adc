"""Measure start-up suggestions on patched copies of the grader, never touching this checkout.

Run by hand; prints figures, asserts nothing::

    python benchmarks/try_variants.py                    # 15 interleaved rounds, every variant
    python benchmarks/try_variants.py --runs 20 orig lazy_numpy stub_pyplot

Each variant is a copy of this checkout's package (grader/, with reference/ and
rubrics/ copied in as grader/reference and grader/rubrics) under a temporary
directory, with PROTOTYPE source patches applied as text. ``python -m grader
check`` run with that directory as its working directory imports the copy (it
comes before the editable install on sys.path). Each copy's JSON report is first
compared with the original's (ignoring duration_s and submission): a variant
that changes the report is reported as such. Then all variants and a bare
``import numpy`` run in rotating order, one process at a time, as in
bench_check.py (its helpers are reused).

Variants (each patch asserts the text it replaces, so a patch that no longer
applies to a changed source says so and that variant is skipped):

  orig          this checkout, unpatched
  pyc           this checkout with a bytecode cache (PYTHONPYCACHEPREFIX) instead of
                PYTHONDONTWRITEBYTECODE; measures what compiling grader/*.py costs
  lazy_numpy    wire.py imports numpy on first use, so ``import grader.grade`` does not,
                and the sandbox is spawned ~60 ms earlier, before numpy is imported
  no_preload    lazy_numpy + the sandbox does not preload matplotlib.pyplot
  stub_pyplot   lazy_numpy + the sandbox puts cheap stand-ins for matplotlib and
                matplotlib.pyplot in sys.modules: common plotting calls (plot, xlabel,
                show, ...) do nothing; any other attribute loads the real matplotlib
  chain         lazy_numpy + a "train" op: the sandbox runs the training check's
                200 forward/backward iterations itself and streams every call's result
                (400 messages, one request) instead of 400 request/reply round trips;
                the grader replays its own loop over those results
  all           lazy_numpy + stub_pyplot + chain
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_check as bench  # noqa: E402

ROOT = bench.ROOT
PRELOAD = "\nshell = _make_shell()\n_preload()\n"


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise LookupError(f"{path.name}: the text this patch replaces is not there once: {old.strip()[:60]!r}")
    path.write_text(text.replace(old, new))


def patch_lazy_numpy(pkg: Path) -> None:
    _replace(pkg / "wire.py", "\nimport numpy as np\n", '''
class _LazyNumpy:  # PROTOTYPE: import numpy on first use, so `import grader.execute` stays numpy-free
    def __getattr__(self, name):
        import numpy
        globals()["np"] = numpy
        return getattr(numpy, name)


np = _LazyNumpy()
''')


def patch_no_preload(pkg: Path) -> None:
    _replace(pkg / "sandbox_worker.py", PRELOAD, "\nshell = _make_shell()\n")


STUB_PYPLOT = '''
def _lazy_matplotlib():
    """PROTOTYPE: cheap stand-ins for matplotlib/pyplot; common plotting calls do nothing,
    anything else loads the real matplotlib (Agg) and delegates to it."""
    # Only calls whose return value notebooks rarely use (not figure/subplots/hist/scatter, whose
    # results are used, and which load the real matplotlib). `line, = plt.plot(...)` would still break.
    noop_names = {"plot", "show", "xlabel", "ylabel", "title", "legend", "grid", "semilogy", "semilogx",
                  "loglog", "tight_layout", "close", "clf", "ion", "ioff", "axhline", "axvline", "xticks",
                  "yticks", "suptitle"}
    real = {}

    def load_real():
        if not real:
            for n in ("matplotlib.pyplot", "matplotlib"):
                sys.modules.pop(n, None)
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as p
            real["mpl"], real["plt"] = matplotlib, p
        return real

    def noop(*args, **kwargs):
        return None

    class LazyPyplot(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            if name in noop_names and not real:
                return noop
            return getattr(load_real()["plt"], name)

    class LazyMatplotlib(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return getattr(load_real()["mpl"], name)

    mpl, plt = LazyMatplotlib("matplotlib"), LazyPyplot("matplotlib.pyplot")
    mpl.__path__ = []
    mpl.pyplot = plt
    sys.modules["matplotlib"], sys.modules["matplotlib.pyplot"] = mpl, plt


shell = _make_shell()
_lazy_matplotlib()
'''


def patch_stub_pyplot(pkg: Path) -> None:
    _replace(pkg / "sandbox_worker.py", PRELOAD, STUB_PYPLOT)


WORKER_TRAIN = '''
def _as_float_array(value):
    if value is None or isinstance(value, Unsupported):
        return None
    try:
        return __import__("numpy").asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None


def _train(header, blobs):
    """PROTOTYPE: the training chain, fed back here exactly as checks._training_check feeds it back."""
    np_ = __import__("numpy")
    timeout = header["call_timeout"]
    x, y, w1, w2, eta = [decode_value(a, blobs) for a in header["args"]]
    for _ in range(header["iterations"]):
        enc = []
        request = {"fn": "forward", "args": [encode_value(v, enc) for v in (x, w1, w2)], "args_after": False}
        reply, out = call(request, enc, timeout)
        _flush()
        send({"op": "result", **reply}, out)
        if reply["status"] != "ok":
            break
        y_hat = _as_float_array(decode_value(reply["value"], out))
        if y_hat is None or y_hat.size != 1 or not np_.isfinite(y_hat).all():
            break
        y_hat = float(y_hat.reshape(()))
        enc = []
        request = {"fn": "backward", "args": [encode_value(v, enc) for v in (x, y, y_hat, w1, w2, eta)],
                   "args_after": False}
        reply, out = call(request, enc, timeout)
        _flush()
        send({"op": "result", **reply}, out)
        if reply["status"] != "ok":
            break
        value = decode_value(reply["value"], out)
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            break
        n1, n2 = (_as_float_array(v) for v in value)
        if n1 is None or n2 is None or n1.shape != w1.shape:
            break
        if n2.shape != w2.shape:
            if n2.size != w2.size:
                break
            n2 = n2.reshape(w2.shape)
        if not (np_.isfinite(n1).all() and np_.isfinite(n2).all()):
            break
        w1, w2 = n1, n2
    send({"op": "train_done"})

'''

SANDBOX_TRAIN = '''    def train_chain(self, x, y, w1, w2, eta, iterations: int) -> list[CallOutcome]:
        """PROTOTYPE: results of the forward/backward chain run inside the sandbox (may stop early)."""
        if self._process is None:
            return []
        blobs: list[bytes] = []
        args = [wire.encode_value(a, blobs) for a in (x, y, w1, w2, eta)]
        limit = self.limits.call_timeout_s
        outcomes: list[CallOutcome] = []
        try:
            self._process.send({"op": "train", "call_timeout": limit, "iterations": iterations, "args": args}, blobs)
            while True:
                deadline = min(time.monotonic() + limit + WATCHDOG_GRACE_S, self._total_deadline())
                header, reply_blobs = self._process.receive(deadline)
                if header.get("op") == "train_done":
                    return outcomes
                outcomes.append(self._parse_outcome(header, reply_blobs))
        except (TimeoutError, EOFError, wire.WireError):
            self._retire()
            self._restart_and_replay()
            return outcomes

'''


def patch_chain(pkg: Path) -> None:
    worker = pkg / "sandbox_worker.py"
    _replace(worker, '        elif op == "call":', '        elif op == "train":\n            _train(header, blobs)\n'
                                                     '        elif op == "call":')
    _replace(worker, "\ndef main() -> None:", WORKER_TRAIN + "\ndef main() -> None:")
    _replace(pkg / "execute.py", "    @staticmethod\n    def _parse_outcome(",
             SANDBOX_TRAIN + "    @staticmethod\n    def _parse_outcome(")
    checks = pkg / "checks.py"
    _replace(checks, """        failure = None
        for step in range(NOTEBOOK_ITERATIONS):
""", """        failure = None
        import collections
        chain = collections.deque(getattr(self.sandbox, "train_chain", lambda *a: [])(
            start.x, start.y, w1, w2, start.eta, NOTEBOOK_ITERATIONS))

        def one(function, arg_list, **kw):
            if chain:
                return [chain.popleft()]
            return self._call(function, arg_list, **kw)

        for step in range(NOTEBOOK_ITERATIONS):
""")
    for call in ('(out,) = self._call("forward", [(start.x, w1, w2)]',
                 '(out,) = self._call("backward", [(start.x, start.y, y_hat, w1, w2, start.eta)]'):
        _replace(checks, call, call.replace("self._call(", "one("))


VARIANTS = {
    "orig": None,
    "pyc": None,
    "lazy_numpy": [patch_lazy_numpy],
    "no_preload": [patch_lazy_numpy, patch_no_preload],
    "stub_pyplot": [patch_lazy_numpy, patch_stub_pyplot],
    "chain": [patch_lazy_numpy, patch_chain],
    "all": [patch_lazy_numpy, patch_stub_pyplot, patch_chain],
}


def build(name: str, base: Path) -> Path:
    tree = base / name
    pkg = tree / "grader"
    shutil.copytree(ROOT / "grader", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "reference", pkg / "reference", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "rubrics", pkg / "rubrics", ignore=shutil.ignore_patterns("__pycache__"))
    for patch in VARIANTS[name] or []:
        patch(pkg)
    return tree


def report_of(tree: Path, env: dict[str, str], notebook: str) -> dict | str:
    proc = subprocess.run([sys.executable, "-m", "grader", "check", notebook, "--format", "json"], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        return f"no report (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
    report.pop("duration_s", None)
    report.pop("submission", None)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="*", metavar="VARIANT", help=f"default: all of {', '.join(VARIANTS)}")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--notebook", type=Path, default=bench.DEFAULT_NOTEBOOK)
    parser.add_argument("--wait-idle", type=float, default=10.0, metavar="S",
                        help="wait up to S s for an idle moment before each process (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the patched copies and print where they are")
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    names = list(dict.fromkeys(args.variants)) or list(VARIANTS)
    if "orig" not in names:
        names.insert(0, "orig")
    notebook = str(args.notebook.resolve())
    base = Path(tempfile.mkdtemp(prefix="grader-variants-"))
    commit = subprocess.run(["git", "log", "--oneline", "-1"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"patched copies of {ROOT} (HEAD {commit or '?'}, plus uncommitted changes) in {base}")
    try:
        kinds: list[bench.Kind] = []
        reference = None
        for name in names:
            env = dict(os.environ)
            if name == "orig":
                tree = ROOT
            elif name == "pyc":
                tree = ROOT
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
            else:
                try:
                    tree = build(name, base)
                except LookupError as exc:
                    print(f"  {name}: skipped, patch does not apply: {exc}")
                    continue
            report = report_of(tree, env, notebook)
            if name == "orig":
                reference = report
                same = "reference report"
            else:
                same = "same report as orig" if report == reference else "REPORT DIFFERS from orig"
            print(f"  {name:<12} {same}" + (f": {report}" if isinstance(report, str) else ""))
            kind = bench.Kind(name, name, [sys.executable, "-m", "grader", "check", notebook, "--format", "json"],
                              parse_json=True)
            kind.tree, kind.env = tree, env  # type: ignore[attr-defined]
            kinds.append(kind)
        numpy_kind = bench.Kind("numpy", "numpy", [sys.executable, "-c", "import numpy"])
        numpy_kind.tree, numpy_kind.env = ROOT, dict(os.environ)  # type: ignore[attr-defined]
        kinds.append(numpy_kind)
        print()
        for round_no in range(args.runs + 1):
            order = kinds[round_no % len(kinds):] + kinds[:round_no % len(kinds)]
            cells = []
            for kind in order:
                if args.wait_idle > 0:
                    bench.wait_idle(args.wait_idle, 0.10)
                bench.TREE = kind.tree  # type: ignore[attr-defined]
                sample = bench.run_once(kind, kind.env, 120)  # type: ignore[attr-defined]
                if sample.wall is None:
                    cells.append(f"{kind.key} FAILED")
                    if round_no:
                        kind.failures.append(str(sample.failure))
                    continue
                cells.append(f"{kind.key} {sample.wall:.3f}")
                if round_no:
                    kind.walls.append(sample.wall)
            print(("warm-up " if round_no == 0 else f"round {round_no:2d}") + ": " + "  ".join(cells), flush=True)
        print()
        orig = statistics.median(kinds[0].walls) if kinds[0].walls else None
        numpy_median = statistics.median(numpy_kind.walls) if numpy_kind.walls else None
        print(f"{'variant':<12} {'n':>3} {'median':>7} {'min':>7} {'p90':>7} {'vs orig':>8} {'/numpy':>7}")
        for kind in kinds:
            if not kind.walls:
                print(f"{kind.key:<12}   0  (every run failed: {kind.failures[:1]})")
                continue
            med = statistics.median(kind.walls)
            delta = f"{med - orig:+.3f}" if orig is not None and kind not in (kinds[0], numpy_kind) else ""
            ratio = f"{med / numpy_median:.1f}x" if numpy_median else ""
            print(f"{kind.key:<12} {len(kind.walls):>3} {med:>7.3f} {min(kind.walls):>7.3f} "
                  f"{bench.percentile(kind.walls, 90):>7.3f} {delta:>8} {ratio:>7}")
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
