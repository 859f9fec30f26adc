"""Small PNG charts for the HTML report and the class summary.

Pure functions returning PNG bytes, so a page can inline them as ``data:``
URLs and stay one self-contained file. matplotlib is imported inside each
function, never at module level: ``grader check --format text`` imports the
renderer registry, and paying matplotlib's import time there for a chart it
will never draw would slow every self-check. Figures are built with
``Figure`` + ``FigureCanvasAgg`` rather than pyplot, so no global figure state
leaks between calls (batch grading draws hundreds) and no GUI backend is ever
selected, whatever ``MPLBACKEND`` says.
"""
from __future__ import annotations

import functools
import io
import math
from typing import TYPE_CHECKING, Sequence

from grader.model import Training

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

#: Figure size in inches and resolution: 480x280 px, a few tens of kB per PNG.
FIGSIZE: tuple[float, float] = (6.0, 3.5)
DPI = 80
#: Number of bins of the score histogram (the class summary uses the same count).
HISTOGRAM_BINS = 10
#: Longest label of a bar chart before it is cut (bug ids are short; this guards the layout).
MAX_LABEL_CHARS = 40


def _figure() -> "Figure":
    """A fresh figure with an Agg canvas attached, independent of pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: "Figure", tight: bool = True) -> bytes:
    """The figure as PNG bytes, without the matplotlib version in the metadata.

    Dropping the "Software" chunk makes the bytes depend only on the data, so
    re-rendering an unchanged report gives an identical page.
    """
    buffer = io.BytesIO()
    if tight:
        figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _finite(values: Sequence[float]) -> list[float]:
    """Values with non-finite entries (a diverged run) turned into gaps (NaN)."""
    out: list[float] = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        out.append(number if math.isfinite(number) else math.nan)
    return out


def loss_curve_png(training: Training | None) -> bytes | None:
    """The student's training loss against the reference's, or None with nothing to draw.

    The y-axis is logarithmic when every drawn value is positive, because a
    loss that plateaus at 1e-2 while the reference reaches 1e-6 looks identical
    on a linear axis. Non-finite losses (a run that diverged) are left as gaps.
    """
    if training is None:
        return None
    return _loss_curve(tuple(_finite(training.loss)), tuple(_finite(training.reference_loss)))


@functools.lru_cache(maxsize=32)
def _loss_curve(student: tuple[float, ...], reference: tuple[float, ...]) -> bytes | None:
    """Cached by the curves themselves: training is deterministic from the notebook's
    initialisation, so in a class every correct submission (and every copy of the
    same bug) draws the same picture, and drawing costs ~0.1 s."""
    drawn = [v for v in student + reference if not math.isnan(v)]
    if not drawn:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    # The reference is drawn dashed *on top*: for a correct submission the two
    # curves coincide, and the dashes over the solid line show exactly that.
    if student:
        axes.plot(range(len(student)), student, label="your network", color="#1f77b4",
                  linewidth=2.5)
    if reference:
        axes.plot(range(len(reference)), reference, label="reference", color="#222222",
                  linestyle="--", linewidth=1.2, zorder=3)
    if all(v > 0 for v in drawn):
        from matplotlib.ticker import FuncFormatter, NullFormatter

        axes.set_yscale("log")
        # Plain tick labels ("0.001"): the default 10^x labels go through mathtext, which
        # doubled the cost of a chart drawn once per student.
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(NullFormatter())
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss")
    axes.set_title("Training loss")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.subplots_adjust(left=0.14, right=0.97, top=0.9, bottom=0.15)  # fixed: tight_layout costs ~40 ms
    return _png(figure, tight=False)


def histogram_png(scores: list[float], max_score: float) -> bytes:
    """A histogram of class scores over ``[0, max_score]`` in ``HISTOGRAM_BINS`` bins.

    Scores outside the range are clipped into the end bins (the summary table
    counts them the same way); with no usable maximum the range is the data's.
    """
    values = [float(s) for s in scores if math.isfinite(float(s))]
    figure = _figure()
    axes = figure.add_subplot()
    if math.isfinite(max_score) and max_score > 0:
        low, high = 0.0, float(max_score)
    elif values:
        low, high = min(values), max(values)
        if low == high:
            low, high = low - 0.5, high + 0.5
    else:
        low, high = 0.0, 1.0
    clipped = [min(max(v, low), high) for v in values]
    axes.hist(clipped, bins=HISTOGRAM_BINS, range=(low, high), color="#1f77b4",
              edgecolor="white")
    axes.set_xlim(low, high)
    axes.set_xlabel("score")
    axes.set_ylabel("students")
    axes.set_title(f"Scores ({len(values)} graded)")
    axes.yaxis.get_major_locator().set_params(integer=True)
    return _png(figure)


def bar_chart_png(counts: dict[str, int], title: str) -> bytes:
    """Horizontal bars, largest first (bug ids read better on the y-axis than rotated)."""
    figure = _figure()
    axes = figure.add_subplot()
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if items:
        labels = [_label(name) for name, _ in items]
        values = [count for _, count in items]
        positions = list(range(len(items)))
        axes.barh(positions, values, color="#d62728")
        axes.set_yticks(positions, labels=labels, fontsize=8)
        axes.invert_yaxis()
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_xlabel("students")
    else:
        axes.text(0.5, 0.5, "nothing to show", ha="center", va="center",
                  transform=axes.transAxes)
        axes.set_axis_off()
    axes.set_title(title)
    return _png(figure)


def _label(name: str) -> str:
    return name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…"
