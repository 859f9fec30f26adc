"""The loss curve of the HTML feedback page: the student's training loss against the reference's.

One chart per student, so its cost is paid for a whole class: this module
keeps one figure per process and redraws only what the data changes
(``_LossChart``), compositing text and the legend that matplotlib rasterised
once, at the places matplotlib's own layout gives them.

Why not matplotlib's own layout (``tight_layout``, ``constrained``) on a full
draw, as ``grader.render.plot`` does for the class summary's two charts? It was
measured with ``benchmarks/bench_plot.py``: the same 200 distinct curves, every
variant in the same run, interleaved curve by curve; CPU ms per uncached chart on
the 2-core machine (shared and busy that day), matplotlib 3.11.2::

    this module (layers and stamps)            mean  10.1  median   9.0  p95  16.8
    one reused figure, tight_layout            mean  90.4  median  90.8  p95 127.5
    one reused figure, constrained layout      mean 120.2  median 122.9  p95 182.8
    one reused figure, fixed margins (a full   mean  62.6  median  61.9  p95  86.9
      draw without any layout)
    a new figure per chart, tight_layout       mean 251.4  median 246.4  p95 414.3

so matplotlib's layout adds ~80 ms per uncached chart, twice the 40 ms of CPU a
notebook may take at 50 notebooks/s on two cores (this module: a quarter of it).
In a batch (``benchmarks/bench_batch.py -n 300 --jobs 2``, three runs each, CPU
of the pool processes) it was 20.3 ms per notebook with this module and 27.4 with
the reused figure and ``tight_layout``, on a class built from the test fixtures,
where most charts are cache hits (the 2.1 s more of the pool is ~25 charts at
~80 ms); a class whose curves all differ would pay the ~80 ms on every notebook. So the layering
stays, and lives here, apart from the charts drawn once per class.

Every pixel is still drawn by matplotlib's Agg renderer, and the bytes depend
only on the curves: ``tests/test_plot.py`` compares the picture with a figure
drawn whole, tick labels with matplotlib's own axis and the legend with its
``loc="best"``, and bytes across orders, fresh figures and re-entry.
"""
from __future__ import annotations

import functools
import io
import math
import sys
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypedDict

from grader.model import Training
from grader.render.plot import DPI, FIGSIZE, new_figure

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    from matplotlib.artist import Artist

    Pixels = np.ndarray[Any, np.dtype[Any]]

__all__ = ["DPI", "FIGSIZE", "loss_curve_png"]

#: Loss-curve PNGs kept per process (~25 kB each). A class draws few distinct pictures (the
#: correct curve, one per bug), but a batch's pool processes live for the whole class.
LOSS_CURVE_CACHE = 128
#: Cache-key grain of a loss curve: values are rounded to at most 2**-GRAIN_BITS of the span
#: the y-axis shows (see ``_visible_curves``).
GRAIN_BITS = 15
#: zlib level of the loss-curve PNG: level 1 is ~2 ms faster than the default 6 for ~1 kB more.
PNG_COMPRESS_LEVEL = 1
#: Losses beyond this are drawn as gaps like infinities: a run that far gone has diverged, and
#: matplotlib cannot place ticks on an axis spanning most of the float range.
DIVERGED = 1e100
#: The plot area within the figure (fractions), fixed: matplotlib's layout costs ~70 ms a chart (above).
MARGINS = {"left": 0.14, "right": 0.97, "top": 0.9, "bottom": 0.15}


def _finite(values: Sequence[float]) -> list[float]:
    """Values with non-finite or diverged entries (past ``DIVERGED``) turned into gaps (NaN)."""
    out: list[float] = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        out.append(number if math.isfinite(number) and abs(number) <= DIVERGED else math.nan)
    return out


def loss_curve_png(training: Training | None) -> bytes | None:
    """The student's training loss against the reference's, or None with nothing to draw.

    The y-axis is logarithmic when every drawn value is positive, because a
    loss that plateaus at 1e-2 while the reference reaches 1e-6 looks identical
    on a linear axis. Non-finite losses (a run that diverged) are left as gaps.
    """
    if training is None:
        return None
    try:
        curves = _visible_curves(_finite(training.loss), _finite(training.reference_loss))
        return None if curves is None else _loss_curve(curves)
    except Exception:  # noqa: BLE001 - a chart the page can do without must never cost a student their feedback
        return None


class _Curves(NamedTuple):
    """A loss chart reduced to what can be seen of it: the cache key, and exactly what is drawn.

    Each value is an integer count of ``2**grain`` along the y-axis (of ``log2(loss)`` on a log
    axis), or None for a gap; with ``grain`` None (a flat chart) the values are the losses.
    """

    log: bool
    grain: int | None
    student: tuple[int | float | None, ...]
    reference: tuple[int | float | None, ...]


def _visible_curves(student: list[float], reference: list[float]) -> _Curves | None:
    """The curves rounded to ``2**-GRAIN_BITS`` of the drawn span of the y-axis, or None if nothing is drawable.

    The cache used to be keyed by the exact floats, and in a class nearly every student
    missed it: equivalent formulas give losses that differ in the last bits of rounding.
    Rounding to a grain of at most 1/32768 of the span the axis shows (2**-15, under
    1/150 of a pixel of the 210 px plot) makes those curves one key, while curves that
    differ by anything visible still get different keys. The chart is then drawn from the
    rounded values themselves, not from the first student's floats, so a PNG depends only
    on its key: every student sharing it is drawn within 1/300 of a pixel of their own
    curve, and the bytes do not depend on which student of a class came first.

    The grain is a power of two, so scaling by it is exact; it comes from
    the span (``max - min`` of every drawn value, of ``log2`` on a log axis), because a
    linear axis zooms on the data: 1000.0001 against 1000.0002 is a visible difference
    that rounding to significant digits would erase. A flat chart (span zero) or one
    spanning more than a float can hold is keyed by its exact values.
    """
    drawn = [v for v in (*student, *reference) if not math.isnan(v)]
    if not drawn:
        return None
    log = all(v > 0 for v in drawn)
    along = math.log2 if log else float
    positions = [along(v) for v in drawn]
    span = max(positions) - min(positions)
    if not (span > 0 and math.isfinite(span)):
        def key(v: float) -> int | float | None:
            return None if math.isnan(v) else v
        return _Curves(log, None, tuple(map(key, student)), tuple(map(key, reference)))
    grain = math.frexp(span)[1] - 1 - GRAIN_BITS  # 2**grain <= span / 2**GRAIN_BITS

    def rounded(v: float) -> int | None:
        return None if math.isnan(v) else round(math.ldexp(along(v), -grain))
    return _Curves(log, grain, tuple(map(rounded, student)), tuple(map(rounded, reference)))


def _drawn_values(curves: _Curves, values: tuple[int | float | None, ...]) -> list[float]:
    """The losses a ``_Curves`` stands for (NaN for gaps), as the chart draws them."""
    out: list[float] = []
    for value in values:
        if value is None:
            out.append(math.nan)
            continue
        if curves.grain is None:
            out.append(float(value))
            continue
        try:
            position = math.ldexp(value, curves.grain)
            loss = 2.0 ** position if curves.log else position
        except OverflowError:  # rounded up past the largest float: draw the largest float
            loss = math.copysign(sys.float_info.max, value)
        # 2**position can underflow to 0 for a subnormal loss; keep it on the log axis.
        out.append(loss if not curves.log or loss > 0 else math.ulp(0.0))
    return out


@functools.lru_cache(maxsize=LOSS_CURVE_CACHE)
def _loss_curve(curves: _Curves) -> bytes:
    """Cached by what is visible (``_visible_curves``): training is deterministic from the
    notebook's initialisation, so in a class every correct submission (and every copy of
    the same bug) draws the same picture. Bounded: the cache lives as long as a pool
    process of a batch, and each entry is ~25 kB."""
    global _CHART
    # The shared chart is borrowed, never shared: a call that finds it busy (re-entered
    # from a signal handler or a callback, or another thread) draws on a chart of its own,
    # which gives the same bytes, only slower.
    if not _CHART_LOCK.acquire(blocking=False):
        return _LossChart().render(curves)
    try:
        if _CHART is None:
            _CHART = _LossChart()
        chart = _CHART
        try:
            return chart.render(curves)
        except BaseException:
            _CHART = None  # half-drawn state is never reused: the next call builds a fresh chart
            raise
    finally:
        _CHART_LOCK.release()


_CHART: _LossChart | None = None
_CHART_LOCK = threading.Lock()


class LineStyle(TypedDict):
    """How a curve (and its legend handle) is drawn."""

    label: str
    color: str
    linestyle: Literal["-", "--"]
    linewidth: float
    zorder: float


STUDENT_STYLE: LineStyle = {"label": "your network", "color": "#1f77b4", "linestyle": "-", "linewidth": 2.5,
                            "zorder": 2}
# The reference is drawn dashed *on top*: for a correct submission the two curves
# coincide, and the dashes over the solid line show exactly that.
REFERENCE_STYLE: LineStyle = {"label": "reference", "color": "#222222", "linestyle": "--", "linewidth": 1.2,
                              "zorder": 3}

Anchor = Literal["C", "SW", "S", "SE", "E", "NE", "N", "NW", "W"]
# matplotlib's candidates for ``loc="best"``, in its order of preference (legend codes 1-10).
_LEGEND_ANCHORS: tuple[Anchor, ...] = ("NE", "NW", "SW", "SE", "E", "W", "E", "S", "N", "C")


class _StampKey(NamedTuple):
    """What a stamp shows: a y tick label or the offset text (``text``), or the legend with the
    entries of the curves there are."""

    kind: Literal["tick", "offset", "legend"]
    text: str = ""
    student: bool = False
    reference: bool = False


class _Stamp(NamedTuple):
    """Text or a legend rasterised once by matplotlib, to composite again and again.

    Rendered over white and over black: ``black`` is each pixel's own (premultiplied)
    colour and ``white - black`` how much of the background shows through, so
    ``black + background * (white - black) / 255`` is the artist drawn over any
    background (over white, exactly the white rendering). ``left``/``top`` place the
    pixel block relative to the anchor the artist was drawn at; ``width``/``height``
    are the artist's own extent (what ``loc="best"`` places).
    """

    black: Pixels
    transmission: Pixels
    left: float
    top: float
    width: float
    height: float


class _LossChart:
    """The loss-curve figure of one process, redrawn in layers for every student.

    A figure laid out and drawn whole per student costs 60-250 ms of CPU (the module's
    measurement), almost all in matplotlib's per-artist work that is the same for every student: creating ticks,
    laying out and rasterising the title, the axis labels, the legend and ~20 tick labels
    (each text ~0.5 ms). Only the y-axis and the curves depend on the data, so:

    * the background (figure, plot area, the x-axis with its ticks, labels and grid,
      the title and both axis labels) is drawn once per x-range and kept as pixels;
    * per student, matplotlib draws onto a copy of it the y-axis (scale, ticks, grid),
      the curves and the frame, in the z-order of a full draw (frame between the two
      curves). The ~40 minor ticks of a log axis are one marker line instead of 40
      Tick artists (~5 ms), at the positions the axis's own minor locator gives;
    * text that recurs from student to student, the y tick labels ("0.001", "1e-05")
      and the legend, is a ``_Stamp``: rasterised by matplotlib once per process and
      composited since. Tick labels sit where the axis would put them (to the nearest pixel);
      the legend where ``loc="best"`` would (matplotlib's candidates, order and badness).

    Every pixel is drawn by matplotlib's Agg renderer; nothing depends on earlier
    students but those per-process caches of pixels, which depend only on their keys
    (x-range, label text), so a chart is the same bytes in any order and on a fresh
    chart. The y label is a fixed text at the figure's left edge: matplotlib's moves
    with the widest tick label, which is per student.
    """

    def __init__(self) -> None:
        import matplotlib as mpl
        import numpy as np
        from matplotlib.font_manager import FontProperties
        from matplotlib.lines import Line2D
        from matplotlib.markers import TICKLEFT, TICKRIGHT
        from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

        self._np = np
        rc = mpl.rcParams
        figure, self.canvas = new_figure()
        self.figure = figure
        self.axes = axes = figure.add_subplot()
        figure.subplots_adjust(**MARGINS)
        self.student, = axes.plot([], [], **STUDENT_STYLE)
        self.reference, = axes.plot([], [], **REFERENCE_STYLE)
        locator = axes.xaxis.get_major_locator()
        assert isinstance(locator, MaxNLocator)  # matplotlib's default, AutoLocator
        locator.set_params(integer=True)
        axes.set_xlabel("iteration")
        axes.set_title("Training loss")
        axes.grid(True, alpha=0.3)
        # Tick labels and the offset text ("1e6") are composited (stamps); the axis draws ticks
        # and grid only. Its label is the empty one, and fixed coordinates spare the ~1 ms it
        # would take to place it against the tick labels on every draw.
        axes.tick_params(axis="y", which="both", labelleft=False)
        axes.yaxis.set_label_coords(0.0, 0.5)
        middle = (axes.get_position().y0 + axes.get_position().y1) / 2
        figure.text(4 / figure.bbox.width, middle, "loss", rotation=90, rotation_mode="anchor",
                    ha="center", va="top", fontsize=rc["axes.labelsize"], color=rc["axes.labelcolor"])
        # Plain tick labels ("0.001"): the default 10^x labels go through mathtext, which
        # doubled the cost of a chart drawn once per student.
        self._plain = FuncFormatter(lambda value, _: f"{value:g}")
        self._no_labels = NullFormatter()
        # The minor ticks of a log axis as one line of tick markers, styled as the axis's own.
        markers: dict[str, Any] = {"out": TICKLEFT, "in": TICKRIGHT, "inout": "_"}
        self.minor_ticks = Line2D([], [], linestyle="None", clip_on=False, marker=markers[rc["ytick.direction"]],
                                  markersize=rc["ytick.minor.size"], markeredgewidth=rc["ytick.minor.width"],
                                  color=rc["ytick.color"])
        self.minor_ticks.set_figure(figure)
        self.minor_ticks.set_transform(axes.get_yaxis_transform(which="tick1"))
        # Distances matplotlib keeps, in pixels: tick labels from the axes, the offset text
        # above it (Axis.OFFSETTEXTPAD), and the legend from the frame.
        points = figure.dpi / 72
        self._label_pad = (rc["ytick.major.size"] + rc["ytick.major.pad"]) * points
        self._offset_pad = 3 * points
        legend_font = FontProperties(size=rc["legend.fontsize"]).get_size_in_points()
        self._legend_pad = rc["legend.borderaxespad"] * legend_font * points
        label_color = rc["ytick.labelcolor"]
        self._label_style = {"fontsize": rc["ytick.labelsize"],
                             "color": rc["ytick.color"] if label_color == "inherit" else label_color}
        self._scratch, self._scratch_canvas = new_figure()
        self._backgrounds: dict[tuple[float, float], Pixels] = {}
        self._stamps: dict[_StampKey, _Stamp] = {}

    def render(self, curves: _Curves) -> bytes:
        from matplotlib.ticker import NullLocator

        axes = self.axes
        student = _drawn_values(curves, curves.student)
        reference = _drawn_values(curves, curves.reference)
        self.student.set_data(range(len(student)), student)
        self.reference.set_data(range(len(reference)), reference)
        # Everything data-dependent is set again on every render, so nothing leaks between
        # students. The data limits first: the scale is checked against them.
        axes.relim()
        axes.set_yscale("log" if curves.log else "linear")
        yaxis = axes.yaxis
        if curves.log:
            yaxis.set_major_formatter(self._plain)
            yaxis.set_minor_formatter(self._no_labels)
        axes.autoscale_view()
        minor: list[float] = list(yaxis.get_minorticklocs()) if curves.log else []
        yaxis.set_minor_locator(NullLocator())

        pixels = self._background(axes.get_xlim())
        renderer = self.canvas.get_renderer()
        yaxis.draw(renderer)
        minor = [y for y, _ in self._in_view(minor)]
        if minor:
            self.minor_ticks.set_data([0] * len(minor), minor)
            self.minor_ticks.draw(renderer)
        self.student.draw(renderer)
        for spine in axes.spines.values():
            spine.draw(renderer)
        self.reference.draw(renderer)
        self._tick_labels(pixels)
        self._legend(pixels, bool(student), bool(reference))
        return self._png()

    def _background(self, xlim: tuple[float, float]) -> Pixels:
        """The canvas reset to the static layer of this x-range; returns the canvas pixels (a view)."""
        background = self._backgrounds.get(xlim)
        if background is None:
            axes = self.axes
            dynamic: list[Artist] = [axes.yaxis, self.student, self.reference, *axes.spines.values()]
            for artist in dynamic:
                artist.set_visible(False)
            try:
                self.canvas.draw()
            finally:
                for artist in dynamic:
                    artist.set_visible(True)
            if len(self._backgrounds) >= 8:  # one x-range per rubric in practice
                self._backgrounds.clear()
            background = self._backgrounds[xlim] = self._np.array(self.canvas.buffer_rgba())
        pixels: Pixels = self._np.asarray(self.canvas.buffer_rgba())
        pixels[...] = background
        return pixels

    def _tick_labels(self, pixels: Pixels) -> None:
        """The y tick labels and offset text the axis would draw, as stamps at its positions."""
        for key, x, y in self._label_places():
            self._paste(pixels, self._stamp(key), x, y)

    def _label_places(self) -> list[tuple[_StampKey, float, float]]:
        """(key, x, y) of each y tick label (kind "tick") and of the offset text ("offset"):
        the labels the axis's formatter gives its ticks in view, anchored where the axis would
        draw them (display pixels)."""
        axes, yaxis = self.axes, self.axes.yaxis
        locations = yaxis.get_majorticklocs()
        formatter = yaxis.get_major_formatter()
        labels = dict(zip(locations, formatter.format_ticks(list(locations)), strict=True))  # all ticks, as the axis does
        x = axes.bbox.x0 - self._label_pad
        places = [(_StampKey("tick", labels[location]), x, y) for location, y in self._in_view(locations)
                  if labels[location]]
        offset = formatter.get_offset()
        if offset:
            places.append((_StampKey("offset", offset), axes.bbox.x0, axes.bbox.y1 + self._offset_pad))
        return places

    def _in_view(self, locations: Iterable[float]) -> list[tuple[float, float]]:
        """(location, display y) of the y ticks the axis draws: those within the plot's height,
        give or take 1e-10 of it, as matplotlib decides (on the scaled axis, not in data units)."""
        locations = list(locations)
        if not locations:
            return []
        bbox = self.axes.bbox
        slack = bbox.height * 1e-10
        ys = self.axes.transData.transform([(0.0, y) for y in locations])[:, 1]
        return [(location, y) for location, y in zip(locations, ys, strict=True)
                if bbox.y0 - slack <= y <= bbox.y1 + slack]

    def _legend(self, pixels: Pixels, student: bool, reference: bool) -> None:
        """The legend (entries for the curves there are, as ``axes.legend()`` lists them) where
        ``loc="best"`` would put it."""
        stamp = self._stamp(_StampKey("legend", student=student, reference=reference))
        self._paste(pixels, stamp, *self._best_place(stamp.width, stamp.height))

    def _best_place(self, width: float, height: float) -> tuple[float, float]:
        """Lower-left corner (display pixels) of a ``loc="best"`` legend of this size: the first of
        matplotlib's candidate places that no curve enters, else the one with the fewest curve
        points inside plus curves crossing it (its ``Legend._find_best_position``, for lines)."""
        from matplotlib.transforms import Bbox

        inside = self.axes.bbox.padded(-self._legend_pad)
        paths = [line.get_transform().transform_path(line.get_path())
                 for line in (self.student, self.reference)]
        candidates = []
        for code, anchor in enumerate(_LEGEND_ANCHORS, start=1):
            left, bottom = Bbox.from_bounds(0, 0, width, height).anchored(anchor, container=inside).p0
            box = Bbox.from_bounds(left, bottom, width, height)
            badness = (sum(box.count_contains(path.vertices) for path in paths)
                       + sum(path.intersects_bbox(box, filled=False) for path in paths))
            candidates.append((badness, code, float(left), float(bottom)))
            if badness == 0:
                break
        _, _, left, bottom = min(candidates)
        return left, bottom

    def _stamp(self, key: _StampKey) -> _Stamp:
        stamp = self._stamps.get(key)
        if stamp is None:
            if len(self._stamps) >= 256:  # bounded; stamps are a pure function of their key
                self._stamps.clear()
            stamp = self._stamps[key] = self._rasterise(key)
        return stamp

    def _rasterise(self, key: _StampKey) -> _Stamp:
        """Draw one tick label, offset text or legend alone on the scratch figure, over white then black."""
        from matplotlib.lines import Line2D
        from matplotlib.transforms import IdentityTransform

        np, scratch, canvas = self._np, self._scratch, self._scratch_canvas
        width, height = canvas.get_width_height()
        anchor: tuple[float, float] = (width // 2, height // 2)
        artist: Artist
        if key.kind == "legend":
            handles = [Line2D([], [], **style) for style, shown in
                       ((STUDENT_STYLE, key.student), (REFERENCE_STYLE, key.reference)) if shown]
            artist = scratch.legend(handles=handles, loc="center")
        else:
            horizontal, vertical = {"tick": ("right", "center_baseline"), "offset": ("left", "baseline")}[key.kind]
            artist = scratch.text(*anchor, key.text, transform=IdentityTransform(), ha=horizontal,
                                  va=vertical, **self._label_style)
        try:
            renderings = []
            for face in ("white", "black"):
                scratch.patch.set_facecolor(face)
                canvas.draw()
                renderings.append(np.array(canvas.buffer_rgba())[..., :3])
            extent = artist.get_window_extent(canvas.get_renderer())
            if key.kind == "legend":
                anchor = (extent.x0, extent.y0)
            # One pixel more on every side for antialiasing; rows of the buffer run top-down.
            x0, x1 = max(0, math.floor(extent.x0) - 1), min(width, math.ceil(extent.x1) + 1)
            y0, y1 = max(0, math.floor(extent.y0) - 1), min(height, math.ceil(extent.y1) + 1)
            rows, columns = slice(height - y1, height - y0), slice(x0, x1)
            white, black = (r[rows, columns].astype(np.int16) for r in renderings)
            transmission = np.clip(white - black, 0, 255).astype(np.uint16)
            return _Stamp(black.astype(np.uint16), transmission, x0 - anchor[0], y1 - anchor[1],
                          extent.width, extent.height)
        finally:
            artist.remove()

    def _paste(self, pixels: Pixels, stamp: _Stamp, x: float, y: float) -> None:
        """Composite ``stamp`` with its anchor at display point (x, y), snapped to the pixel grid."""
        height, width = pixels.shape[:2]
        left, top = round(x + stamp.left), height - round(y + stamp.top)
        rows, columns = stamp.black.shape[:2]
        r0, r1 = max(top, 0), min(top + rows, height)
        c0, c1 = max(left, 0), min(left + columns, width)
        if r0 >= r1 or c0 >= c1:
            return
        part = (slice(r0 - top, r1 - top), slice(c0 - left, c1 - left))
        target = pixels[r0:r1, c0:c1, :3]
        target[...] = stamp.black[part] + (target * stamp.transmission[part] + 127) // 255

    def _png(self) -> bytes:
        """The canvas as PNG bytes: RGB (the figure is opaque) at zlib level ``PNG_COMPRESS_LEVEL``.

        Pillow, which matplotlib's own ``savefig`` uses for PNG, encodes the canvas
        buffer directly: ``savefig`` would draw the whole figure again. No metadata
        chunk, so the bytes depend only on the picture.
        """
        from PIL import Image

        buffer = io.BytesIO()
        width, height = self.canvas.get_width_height()
        # Any buffer will do (Pillow's documentation); its type hints name bytes and arrays only.
        rgba = self.canvas.buffer_rgba()
        image = Image.frombuffer("RGBA", (width, height), rgba, "raw", "RGBA", 0, 1)  # type: ignore[arg-type]
        image.convert("RGB").save(buffer, format="png", compress_level=PNG_COMPRESS_LEVEL)
        return buffer.getvalue()
