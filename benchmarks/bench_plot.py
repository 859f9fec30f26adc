"""CPU cost of the per-student loss-curve PNG (``grader.render.loss_chart.loss_curve_png``). Run by hand; prints figures::

    python benchmarks/bench_plot.py              # 200 distinct curves, 3 rounds, then the layouts side by side
    python benchmarks/bench_plot.py -n 500 --rounds 5 --save /tmp/curves  # also write the PNGs to look at
    python benchmarks/bench_plot.py --compare-rounds 0                     # the loss chart's own figures only

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

Then, side by side in the same run (``--compare-rounds``, each curve drawn by every
variant in turn, so machine noise hits them alike), the chart drawn by
``grader.render.loss_chart`` (layers and stamps, fixed margins) against the same chart
laid out and drawn by matplotlib itself:

* one figure per process reused, ``tight_layout`` then a full draw;
* the same with the ``constrained`` layout engine;
* the same with fixed margins and no layout engine (what a full draw costs alone);
* a new figure per chart, ``tight_layout``, ``savefig`` (the plain way);

each as CPU ms per chart, and what it adds per uncached chart over the loss chart,
as a share of the 40 ms of CPU a notebook may take at 50 notebooks/s on 2 cores.
"""
from __future__ import annotations

import argparse
import io
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader.model import Training  # noqa: E402
from grader.render import loss_chart  # noqa: E402

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


def cpu_ms(call: Callable[..., T], *args: Any) -> tuple[float, T]:
    """CPU milliseconds of ``call(*args)``, and its result."""
    start = time.process_time()
    result = call(*args)
    return (time.process_time() - start) * 1000, result


def clear_cache() -> None:
    """Forget the PNGs (the per-process figure, backgrounds and label stamps stay warm, as in a batch)."""
    loss_chart._loss_curve.cache_clear()


def summary(label: str, times: list[float]) -> None:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    print(f"  {label:<42} mean {statistics.fmean(times):7.2f} ms  median {statistics.median(times):7.2f} ms"
          f"  p95 {p95:7.2f} ms  (n={len(times)})")


# ----------------------------------------------------------------------------- matplotlib's own layout

class MatplotlibLayoutChart:
    """The loss chart as matplotlib lays it out and draws it whole: same curves, styles, labels,
    log axis with plain tick labels, ``loc="best"`` legend; PNG encoded as the loss chart does.

    ``layout``: "tight" (``tight_layout`` before each draw), "constrained" (the layout engine),
    or None (``loss_chart.MARGINS``, no layout at all: the cost of a full draw alone).
    ``reuse``: one figure for every chart, as the loss chart keeps one; else a new figure per chart.
    """

    def __init__(self, layout: str | None, reuse: bool = True) -> None:
        self.layout, self.reuse = layout, reuse
        self.state: tuple[Any, ...] | None = None

    def _build(self) -> tuple[Any, ...]:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, NullFormatter

        figure = Figure(figsize=loss_chart.FIGSIZE, dpi=loss_chart.DPI,
                        layout="constrained" if self.layout == "constrained" else None)
        canvas = FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        student, = axes.plot([], [], **loss_chart.STUDENT_STYLE)
        reference, = axes.plot([], [], **loss_chart.REFERENCE_STYLE)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_xlabel("iteration")
        axes.set_ylabel("loss")
        axes.set_title("Training loss")
        axes.grid(True, alpha=0.3)
        if self.layout is None:
            figure.subplots_adjust(**loss_chart.MARGINS)
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        return figure, canvas, axes, student, reference, plain, NullFormatter()

    def render(self, curves: Any) -> bytes:
        from PIL import Image

        if self.state is None or not self.reuse:
            self.state = self._build()
        figure, canvas, axes, student_line, reference_line, plain, no_labels = self.state
        student = loss_chart._drawn_values(curves, curves.student)
        reference = loss_chart._drawn_values(curves, curves.reference)
        student_line.set_data(range(len(student)), student)
        reference_line.set_data(range(len(reference)), reference)
        axes.relim()
        axes.set_yscale("log" if curves.log else "linear")
        if curves.log:
            axes.yaxis.set_major_formatter(plain)
            axes.yaxis.set_minor_formatter(no_labels)
        axes.autoscale_view()
        handles = [line for line, shown in ((student_line, student), (reference_line, reference)) if shown]
        legend = axes.legend(handles=handles, loc="best")
        try:
            if self.layout == "tight":
                figure.tight_layout()
            canvas.draw()
            buffer = io.BytesIO()
            if self.reuse:
                width, height = canvas.get_width_height()
                image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
                image.convert("RGB").save(buffer, format="png", compress_level=loss_chart.PNG_COMPRESS_LEVEL)
            else:
                figure.savefig(buffer, format="png", dpi=loss_chart.DPI, metadata={"Software": None})
            return buffer.getvalue()
        finally:
            legend.remove()


class LayeredChart:
    """``grader.render.loss_chart``'s chart, one per process, drawn without the PNG cache."""

    def __init__(self) -> None:
        self.chart = loss_chart._LossChart()

    def render(self, curves: Any) -> bytes:
        return self.chart.render(curves)


VARIANTS: dict[str, Callable[[], Any]] = {
    "loss_chart (layers, stamps)": LayeredChart,
    "matplotlib: reused figure, tight_layout": lambda: MatplotlibLayoutChart("tight"),
    "matplotlib: reused figure, constrained": lambda: MatplotlibLayoutChart("constrained"),
    "matplotlib: reused figure, fixed margins": lambda: MatplotlibLayoutChart(None),
    "matplotlib: new figure, tight_layout": lambda: MatplotlibLayoutChart("tight", reuse=False),
}


def compare(trainings: list[Training], rounds: int, save: Path | None) -> None:
    """Every variant on the same curves in the same run, interleaved curve by curve."""
    keys = [loss_chart._visible_curves(loss_chart._finite(t.loss), loss_chart._finite(t.reference_loss))
            for t in trainings]
    drawable = [key for key in keys if key is not None]
    charts = {name: make() for name, make in VARIANTS.items()}
    for chart in charts.values():  # build each figure and warm its caches outside the figures
        chart.render(drawable[0])
    times: dict[str, list[float]] = {name: [] for name in charts}
    for round_ in range(rounds):
        for i, key in enumerate(drawable):
            for number, (name, chart) in enumerate(charts.items()):
                ms, png = cpu_ms(chart.render, key)
                times[name].append(ms)
                if save and round_ == 0 and i < 20:
                    save.mkdir(parents=True, exist_ok=True)
                    (save / f"layout{number}-curve{i:04d}.png").write_bytes(png)
    print(f"layouts side by side, CPU per chart ({len(drawable)} distinct curves x {rounds} round(s), interleaved):")
    base = statistics.fmean(times[next(iter(times))])
    budget_ms = 2 / 50 * 1000
    for name, samples in times.items():
        summary(name, samples)
        extra = statistics.fmean(samples) - base
        if extra:
            print(f"  {'':<42} {extra:+7.2f} ms per uncached chart against the loss chart "
                  f"= {extra / budget_ms:+.0%} of the {budget_ms:.0f} ms of CPU per notebook at 50/s on 2 cores")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200, help="distinct curves (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="uncached rounds over the curves, cache cleared each time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="write the first round's PNGs to this directory")
    parser.add_argument("--compare-rounds", type=int, default=1,
                        help="rounds of the side-by-side comparison with matplotlib's layout (default 1; 0 to skip)")
    args = parser.parse_args()

    import matplotlib  # import cost is paid once per process, not per chart: keep it out of the figures
    from matplotlib.backends import backend_agg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401

    trainings = curves(args.n, args.seed)
    print(f"matplotlib {matplotlib.__version__}, {args.n} distinct curves of {ITERATIONS} iterations")

    first_ms, _ = cpu_ms(loss_chart.loss_curve_png, trainings[1])
    print(f"  {'first render in the process':<42} {first_ms:7.2f} ms")

    uncached: list[float] = []
    sizes: list[int] = []
    distinct: set[bytes] = set()
    nones = 0
    for round_ in range(args.rounds):
        clear_cache()
        for i, training in enumerate(trainings):
            ms, png = cpu_ms(loss_chart.loss_curve_png, training)
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

    hits = [cpu_ms(loss_chart.loss_curve_png, t)[0] for t in trainings[-min(len(trainings), 30):]]
    summary("cached hit (same curve)", hits)
    near = []
    for training in trainings[-min(len(trainings), 30):]:
        nudged = Training(training.iterations, None, training.target,
                          [v * (1 + 1e-12) for v in training.loss], list(training.reference_loss))
        near.append(cpu_ms(loss_chart.loss_curve_png, nudged)[0])
    summary("curve off by 1e-12 relative", near)
    print(f"  {'PNG size':<42} mean {statistics.fmean(sizes) / 1024:6.1f} kB  max {max(sizes) / 1024:6.1f} kB"
          f"  min {min(sizes) / 1024:6.1f} kB")
    print(f"  {'distinct PNGs':<42} {len(distinct)} for {len(sizes)} drawable curves")
    if nones:
        print(f"  (None for {nones} renders: nothing drawable)")
    budget_ms = 2 / 50 * 1000  # 2 cores at 50 notebooks/s: 40 ms of CPU per notebook, for everything
    print(f"  an uncached chart is {statistics.fmean(uncached) / budget_ms:.0%} of the {budget_ms:.0f} ms of CPU"
          " a notebook may take at 50 notebooks/s on 2 cores")
    if args.compare_rounds:
        compare(trainings, args.compare_rounds, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
