"""Small PNG charts for the class summary: pure functions returning PNG bytes.

A page inlines them as ``data:`` URLs and stays one self-contained file.
matplotlib is imported inside each function, never at module level: ``grader
check --format text`` imports the renderer registry, and paying matplotlib's
import time there for a chart it will never draw would slow every self-check.
Figures are built with ``Figure`` + ``FigureCanvasAgg`` rather than pyplot, so
no global figure state leaks between calls and no GUI backend is ever selected,
whatever ``MPLBACKEND`` says (no display is needed). These charts are drawn once
per class, so they use matplotlib's own layout (``tight_layout``); the loss
curve, drawn once per student, has a module of its own
(``grader.render.loss_chart``) with the measurement that made it so.
"""
from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axis import Axis
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure

#: Figure size in inches and resolution: 480x280 px, a few tens of kB per PNG.
FIGSIZE: tuple[float, float] = (6.0, 3.5)
DPI = 80
#: Number of bins of the score histogram (the class summary uses the same count).
HISTOGRAM_BINS = 10
#: Longest label of a bar chart before it is cut (bug ids are short; this guards the layout).
MAX_LABEL_CHARS = 40


class AggCanvas(Protocol):
    """What the charts use of matplotlib's ``FigureCanvasAgg`` (which matplotlib ships untyped)."""

    def draw(self) -> None: ...

    def get_renderer(self) -> RendererBase: ...

    def buffer_rgba(self) -> memoryview: ...

    def get_width_height(self) -> tuple[int, int]: ...


def new_figure() -> tuple[Figure, AggCanvas]:
    """A fresh figure with an Agg canvas attached, independent of pyplot (and of any display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    canvas: AggCanvas = FigureCanvasAgg(figure)
    return figure, canvas


def _png(figure: Figure) -> bytes:
    """The figure laid out by matplotlib (``tight_layout``) as PNG bytes, without the matplotlib
    version in the metadata: the bytes depend only on the data, so re-rendering an unchanged
    summary gives an identical page."""
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _integer_ticks(axis: Axis) -> None:
    """Ticks at whole numbers only (counts of students)."""
    from matplotlib.ticker import MaxNLocator

    locator = axis.get_major_locator()
    assert isinstance(locator, MaxNLocator)  # matplotlib's default, AutoLocator
    locator.set_params(integer=True)


def histogram_png(scores: list[float], max_score: float) -> bytes:
    """A histogram of class scores over ``[0, max_score]`` in ``HISTOGRAM_BINS`` bins.

    Scores outside the range are clipped into the end bins (the summary table
    counts them the same way); with no usable maximum the range is the data's.
    """
    values = [float(s) for s in scores if math.isfinite(float(s))]
    figure, _ = new_figure()
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
    _integer_ticks(axes.yaxis)
    return _png(figure)


def bar_chart_png(counts: dict[str, int], title: str) -> bytes:
    """Horizontal bars, largest first (bug ids read better on the y-axis than rotated)."""
    figure, _ = new_figure()
    axes = figure.add_subplot()
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if items:
        labels = [_label(name) for name, _ in items]
        values = [count for _, count in items]
        positions = list(range(len(items)))
        axes.barh(positions, values, color="#d62728")
        axes.set_yticks(positions, labels=labels, fontsize=8)
        axes.invert_yaxis()
        _integer_ticks(axes.xaxis)
        axes.set_xlabel("students")
    else:
        axes.text(0.5, 0.5, "nothing to show", ha="center", va="center",
                  transform=axes.transAxes)
        axes.set_axis_off()
    axes.set_title(title)
    return _png(figure)


def _label(name: str) -> str:
    return name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…"
