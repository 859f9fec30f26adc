"""CPU cost of the per-student loss-curve PNG (``grader.render.plot.loss_curve_png``). Run by hand; prints figures::

    python benchmarks/bench_plot.py              # 200 distinct curves, 3 rounds
    python benchmarks/bench_plot.py -n 500 --rounds 5 --save /tmp/curves  # also write the PNGs to look at

The curves are what a class produces: 200 iterations each (``NOTEBOOK_ITERATIONS``),
drawn next to one reference curve, as in batch grading. The mix:

* converging (decaying exponential with noise, floors from 1e-9 to 1e-2): log axis;
* random walks around a plateau: log axis;
* curves with NaN/inf holes, and runs that diverge to inf part-way: gaps;
* curves with zero or negative values: linear axis;
* NaN-only student (the reference alone).

Every curve is distinct (a random perturbation), so each render is a cache miss,
the case of a real class where curves differ in the last bits of rounding.

Figures, CPU time (``time.process_time``) per call:
* first render in the process (imports excluded; building the reused figure included);
* uncached render: mean, median and p95 over the distinct curves;
* cached hit: the same curves again, and curves differing at 1e-12 relative
  (which share a PNG when the cache key is quantized to what is visible);
* PNG size: mean and max bytes.
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader.model import Training  # noqa: E402
from grader.render import plot  # noqa: E402

ITERATIONS = 200


def reference_curve() -> list[float]:
    return [0.5 * math.exp(-i / 18.0) + 1e-7 for i in range(ITERATIONS)]


def student_curve(rng: random.Random, kind: str) -> list[float]:
    n = ITERATIONS
    if kind == "converging":
        rate, floor = rng.uniform(5, 60), 10 ** rng.uniform(-9, -2)
        return [rng.uniform(0.2, 2.0) * math.exp(-i / rate) * (1 + rng.gauss(0, 0.05)) + floor for i in range(n)]
    if kind == "walk":
        value, out = rng.uniform(0.05, 3.0), []
        for _ in range(n):
            value *= math.exp(rng.gauss(0, 0.08))
            out.append(value)
        return out
    if kind == "holes":
        out = [rng.uniform(0.5, 1.5) * math.exp(-i / 30.0) for i in range(n)]
        for _ in range(rng.randint(1, 10)):
            out[rng.randrange(n)] = rng.choice([math.nan, math.inf, -math.inf])
        return out
    if kind == "diverging":
        stop, growth = rng.randrange(10, n), rng.uniform(1.05, 1.6)
        out = [rng.uniform(0.1, 1.0) * growth ** i for i in range(stop)]
        return out + [math.inf] * (n - stop)
    if kind == "negative":  # a loss the student computed with the wrong sign, or through zero
        shift = rng.uniform(-1.0, 0.2)
        return [math.exp(-i / 25.0) + shift + rng.gauss(0, 0.01) for i in range(n)]
    if kind == "nan_only":
        return [math.nan] * n
    raise ValueError(kind)


KINDS = ["converging"] * 5 + ["walk"] * 2 + ["holes", "diverging", "negative"]


def curves(count: int, seed: int) -> list[Training]:
    rng = random.Random(seed)
    reference = reference_curve()
    out = [Training(ITERATIONS, None, 1.0, student_curve(rng, "nan_only"), reference)]
    while len(out) < count:
        out.append(Training(ITERATIONS, None, 1.0, student_curve(rng, rng.choice(KINDS)), reference))
    return out


def cpu_ms(call) -> tuple[float, object]:
    start = time.process_time()
    result = call()
    return (time.process_time() - start) * 1000, result


def clear_cache() -> None:
    """Forget the PNGs (the per-process figure, backgrounds and label stamps stay warm, as in a batch)."""
    plot._loss_curve.cache_clear()


def summary(label: str, times: list[float]) -> None:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    print(f"  {label:<38} mean {statistics.fmean(times):7.2f} ms  median {statistics.median(times):7.2f} ms"
          f"  p95 {p95:7.2f} ms  (n={len(times)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200, help="distinct curves (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="uncached rounds over the curves, cache cleared each time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="write the first round's PNGs to this directory")
    args = parser.parse_args()

    import matplotlib  # import cost is paid once per process, not per chart: keep it out of the figures
    from matplotlib.backends import backend_agg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401

    trainings = curves(args.n, args.seed)
    print(f"matplotlib {matplotlib.__version__}, {args.n} distinct curves of {ITERATIONS} iterations")

    first_ms, _ = cpu_ms(lambda: plot.loss_curve_png(trainings[1]))
    print(f"  {'first render in the process':<38} {first_ms:7.2f} ms")

    uncached: list[float] = []
    sizes: list[int] = []
    distinct: set[bytes] = set()
    nones = 0
    for round_ in range(args.rounds):
        clear_cache()
        for i, training in enumerate(trainings):
            ms, png = cpu_ms(lambda: plot.loss_curve_png(training))
            uncached.append(ms)
            if png is None:
                nones += 1
                continue
            if round_ == 0:
                sizes.append(len(png))
                distinct.add(png)
                if args.save:
                    args.save.mkdir(parents=True, exist_ok=True)
                    (args.save / f"curve{i:04d}.png").write_bytes(png)
    summary("uncached render", uncached)

    hits = [cpu_ms(lambda: plot.loss_curve_png(t))[0] for t in trainings[-min(len(trainings), 30):]]
    summary("cached hit (same curve)", hits)
    near = []
    for training in trainings[-min(len(trainings), 30):]:
        nudged = Training(training.iterations, None, training.target,
                          [v * (1 + 1e-12) for v in training.loss], list(training.reference_loss))
        near.append(cpu_ms(lambda: plot.loss_curve_png(nudged))[0])
    summary("curve off by 1e-12 relative", near)
    print(f"  {'PNG size':<38} mean {statistics.fmean(sizes) / 1024:6.1f} kB  max {max(sizes) / 1024:6.1f} kB"
          f"  min {min(sizes) / 1024:6.1f} kB")
    print(f"  {'distinct PNGs':<38} {len(distinct)} for {len(sizes)} drawable curves")
    if nones:
        print(f"  (None for {nones} renders: nothing drawable)")
    budget_ms = 2 / 50 * 1000  # 2 cores at 50 notebooks/s: 40 ms of CPU per notebook, for everything
    print(f"  an uncached chart is {statistics.fmean(uncached) / budget_ms:.0%} of the {budget_ms:.0f} ms of CPU"
          " a notebook may take at 50 notebooks/s on 2 cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
