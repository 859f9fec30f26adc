"""Tests of the per-student loss-curve PNG (``grader.render.loss_chart.loss_curve_png``).

The chart is drawn on one figure reused for the whole process and composited from
cached pixels, and PNGs are cached by the curves rounded to what is visible, so
these tests check what that must not change: the bytes are a function of the
curves alone (same bytes after other charts, on a fresh figure, when the shared
one is busy), visibly different curves never share a PNG while rounding noise
does, and the picture keeps its content (log or linear axis, the tick labels
matplotlib's own axis would show, gaps, the reference drawn alone).
"""
from __future__ import annotations

import hashlib
import io
import math
import random
import struct

import numpy as np
import pytest
from matplotlib.transforms import Bbox
from PIL import Image

from grader.model import Training
from grader.render import loss_chart, plot

from conftest import PNG_SIGNATURE

STUDENT_BLUE = (0x1F, 0x77, 0xB4)
REFERENCE_GREY = (0x22, 0x22, 0x22)


def reference() -> list[float]:
    return [0.5 * math.exp(-i / 18.0) + 1e-7 for i in range(200)]


def decaying(rate: float = 30.0, scale: float = 1.0) -> list[float]:
    return [scale * math.exp(-i / rate) + 1e-4 for i in range(200)]


def training(loss: list[float], reference_loss: list[float] | None = None) -> Training:
    return Training(200, None, 1.0, list(loss), reference() if reference_loss is None else list(reference_loss))


def render(loss: list[float], reference_loss: list[float] | None = None, *, cached: bool = False) -> bytes:
    """The PNG of a chart; drawn now (not from the PNG cache) unless ``cached``."""
    if not cached:
        loss_chart._loss_curve.cache_clear()
    png = loss_chart.loss_curve_png(training(loss, reference_loss))
    assert png is not None
    return png


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    image.load()
    return np.asarray(image.convert("RGB")).astype(int)


def near(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    return int((np.abs(image - np.array(colour)).max(axis=2) <= tolerance).sum())


def plot_area(image: np.ndarray) -> np.ndarray:
    """The inside of the axes frame (subplots_adjust: left 0.14, right 0.97, bottom 0.15, top 0.9), less 3 px."""
    height, width = image.shape[:2]
    return image[int(height * 0.1) + 3:int(height * 0.85) - 3, int(width * 0.14) + 3:int(width * 0.97) - 3]


def chunk_types(png: bytes) -> list[bytes]:
    assert png[:8] == PNG_SIGNATURE
    types, offset = [], 8
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset:offset + 8])
        types.append(kind)
        offset += 12 + length
    return types


@pytest.fixture(autouse=True)
def fresh_cache():
    loss_chart._loss_curve.cache_clear()
    yield
    loss_chart._loss_curve.cache_clear()


# ----------------------------------------------------------------------------- the PNG itself

def test_png_opens_with_pil_at_the_page_size_without_metadata() -> None:
    png = render(decaying())
    image = Image.open(io.BytesIO(png))
    image.verify()
    assert image.format == "PNG" and image.size == (480, 280)
    assert 5_000 < len(png) < 60_000, len(png)
    # No tEXt/iTXt/zTXt/tIME chunk: nothing but the picture decides the bytes.
    assert set(chunk_types(png)) <= {b"IHDR", b"pHYs", b"IDAT", b"IEND"}, chunk_types(png)


def test_none_when_nothing_is_drawable() -> None:
    assert loss_chart.loss_curve_png(None) is None
    assert loss_chart.loss_curve_png(Training(3, None, 1.0, [], [])) is None
    assert loss_chart.loss_curve_png(Training(3, None, 1.0, [math.nan, math.inf], [-math.inf])) is None
    assert loss_chart.loss_curve_png(Training(3, None, 1.0, ["x", None], [])) is None  # type: ignore[list-item]


def test_nan_only_student_still_draws_the_reference() -> None:
    image = plot_area(pixels(render([math.nan] * 200)))
    assert near(image, REFERENCE_GREY) > 150, "the dashed reference curve is drawn"
    # Only the legend's short handle is blue: the student's curve is all gaps.
    assert near(image, STUDENT_BLUE) < 150
    assert near(plot_area(pixels(render(decaying()))), STUDENT_BLUE) > 600


def test_gaps_for_non_finite_values() -> None:
    loss = decaying()
    holed = loss[:80] + [math.inf] * 40 + loss[120:]
    full, gapped = plot_area(pixels(render(loss))), plot_area(pixels(render(holed)))
    assert near(gapped, STUDENT_BLUE) < near(full, STUDENT_BLUE) - 100


# ----------------------------------------------------------------------------- same curves, same bytes

@pytest.mark.slow
def test_same_bytes_in_a_fresh_process_without_a_display() -> None:
    """No display and a GUI backend asked for: the charts are drawn on Agg anyway, and a fresh
    process draws the bytes this one does (the loss chart and the class summary's charts)."""
    import os
    import subprocess
    import sys

    code = ("import hashlib, math, sys\n"
            "from grader.model import Training\n"
            "from grader.render import loss_chart, plot\n"
            "loss = [math.exp(-i / 30.0) + 1e-4 for i in range(200)]\n"
            "pngs = [loss_chart.loss_curve_png(Training(200, None, 1.0, loss, [0.5 * v for v in loss])),\n"
            "        plot.histogram_png([10.0, 55.5, 100.0], 100.0), plot.bar_chart_png({'a': 3, 'b': 1}, 'bugs')]\n"
            "print(' '.join(hashlib.sha256(png).hexdigest() for png in pngs))\n"
            "print('matplotlib.pyplot' in sys.modules)\n")
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "QtAgg"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    hashes, pyplot = out.split("\n")[:2]
    loss = decaying()
    expected = [render(loss, [0.5 * v for v in loss]), plot.histogram_png([10.0, 55.5, 100.0], 100.0),
                plot.bar_chart_png({"a": 3, "b": 1}, "bugs")]
    assert hashes.split() == [hashlib.sha256(png).hexdigest() for png in expected]
    assert pyplot == "False"


def test_identical_curves_give_identical_bytes() -> None:
    first = render(decaying())
    assert render(decaying()) == first  # drawn again, not cached
    assert render(decaying(), cached=True) == first


def test_rendering_a_then_b_then_a_gives_a_the_same_bytes() -> None:
    # B switches everything a reused figure keeps: scale (linear), offset text, x-range, legend entries.
    a = decaying()
    b_loss = [-1000.0 - 1e-3 * math.exp(-i / 30) for i in range(150)]
    first_a = render(a)
    first_b = render(b_loss, [])
    assert render(a) == first_a
    assert render(b_loss, []) == first_b
    assert first_a != first_b


def test_fresh_figure_gives_the_bytes_of_the_reused_one() -> None:
    cases = [(decaying(), None), ([0.5, 0.0, 0.25] * 50, None), ([math.nan] * 200, None),
             ([-5.0 - i for i in range(60)], [])]
    for loss, reference_loss in cases:
        warm = render(loss, reference_loss)
        t = training(loss, reference_loss)
        curves = loss_chart._visible_curves(loss_chart._finite(t.loss), loss_chart._finite(t.reference_loss))
        assert loss_chart._LossChart().render(curves) == warm


def test_busy_shared_figure_draws_on_a_private_one_with_the_same_bytes() -> None:
    png = render(decaying())
    t = training(decaying())
    curves = loss_chart._visible_curves(loss_chart._finite(t.loss), loss_chart._finite(t.reference_loss))
    with loss_chart._CHART_LOCK:  # as if re-entered mid-render
        assert loss_chart._loss_curve.__wrapped__(curves) == png


def test_a_failed_render_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    png = render(decaying())
    monkeypatch.setattr(loss_chart._LossChart, "_png", lambda self: (_ for _ in ()).throw(RuntimeError("disk full")))
    assert loss_chart.loss_curve_png(training(decaying(rate=10.0))) is None  # the page goes without the chart
    assert loss_chart._CHART is None
    monkeypatch.undo()
    assert render(decaying()) == png


# ----------------------------------------------------------------------------- what the cache may share

def test_rounding_noise_shares_the_cached_png() -> None:
    loss = decaying()
    png = render(loss)
    hits = loss_chart._loss_curve.cache_info().hits
    noisy = [v * (1 + 1e-12 * (-1) ** i) for i, v in enumerate(loss)]
    assert loss_chart.loss_curve_png(training(noisy)) == png
    assert loss_chart._loss_curve.cache_info().hits == hits + 1
    # Drawn afresh, the noisy curve is the same picture too: a PNG depends only on its key.
    assert render(noisy) == png


def test_visibly_different_curves_never_share_a_png() -> None:
    loss = decaying()
    bumped = list(loss)
    bumped[100] *= 2  # one point, 0.3 decades higher: ~10 px
    assert render(loss) != render(bumped)
    assert loss_chart.loss_curve_png(training(loss)) != loss_chart.loss_curve_png(training(bumped))
    # A linear axis zooms on the data: 1e-4 apart around -1000 is the whole height of the loss_chart.
    low = [-1000.0 - 1e-4 * math.exp(-i / 30) for i in range(200)]
    high = [-1000.0 - 2e-4 * math.exp(-i / 30) for i in range(200)]
    assert loss_chart.loss_curve_png(training(low, [])) != loss_chart.loss_curve_png(training(high, []))


def test_rounded_curves_stay_within_a_tiny_part_of_a_pixel() -> None:
    rng = random.Random(7)
    for _ in range(200):
        kind = rng.choice(["log", "linear", "offset"])
        n = rng.randint(2, 200)
        if kind == "log":
            loss = [10 ** rng.uniform(-12, 3) for _ in range(n)]
        elif kind == "linear":
            loss = [rng.uniform(-1, 1) * 10 ** rng.randint(-5, 5) for _ in range(n)]
        else:
            loss = [1e4 + rng.uniform(0, 1e-6) for _ in range(n)] + [0.0]
        loss[rng.randrange(n)] = math.nan
        curves = loss_chart._visible_curves(loss_chart._finite(loss), [])
        drawn = loss_chart._drawn_values(curves, curves.student)
        along = math.log2 if curves.log else float
        positions = [along(v) for v in loss if not math.isnan(v)]
        span = max(positions) - min(positions)
        for original, shown in zip(loss, drawn):
            if math.isnan(original):
                assert math.isnan(shown)
            else:
                # The plot is ~190 px for the span: 2**-16 of it is 1/300 of a pixel.
                assert abs(along(shown) - along(original)) <= span * 2.0 ** -16 * 1.0001, (kind, original, shown)


def test_png_cache_is_bounded() -> None:
    assert loss_chart._loss_curve.cache_info().maxsize == loss_chart.LOSS_CURVE_CACHE


# ----------------------------------------------------------------------------- the axis

def test_log_axis_only_when_every_drawn_value_is_positive() -> None:
    def scale(loss: list[float], reference_loss: list[float] | None = None) -> str:
        render(loss, reference_loss)
        return loss_chart._CHART.axes.get_yscale()

    assert loss_chart._visible_curves(decaying(), reference()).log
    assert scale(decaying()) == "log"
    assert scale([0.5, math.inf, math.nan, 0.1] * 50) == "log"  # gaps do not count
    assert scale([0.5, 0.0, 0.1] * 50) == "linear"
    assert scale(decaying(), [-1e-9] + reference()[1:]) == "linear"
    assert scale(decaying()) == "log"  # and back


def test_linear_and_log_charts_look_different() -> None:
    positive = [0.5, 0.25, 0.125] * 60
    assert render(positive) != render(positive[:-1] + [0.0])


@pytest.mark.parametrize("loss, reference_loss", [
    (decaying(), None),                                                           # log, several decades
    ([10 ** (i / 6) for i in range(200)], None),                                 # diverging, log, 1e+n labels
    ([math.exp(-i / 25.0) - 0.3 for i in range(200)], None),                     # linear through zero
    ([-1000.0 - 1e-3 * math.exp(-i / 30) for i in range(200)], []),              # linear with an offset text
    ([-1e7 * i for i in range(200)], [0.5] * 200),                               # linear with a multiplier
])
def test_tick_labels_are_those_of_matplotlibs_own_axis(loss, reference_loss) -> None:
    """The composited y tick labels: the texts and heights a plain matplotlib figure of the same curves shows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    render(loss, reference_loss)
    chart = loss_chart._CHART
    places = chart._label_places()
    ticks = sorted((key.text, round(y, 3)) for key, _, y in places if key.kind == "tick")
    offsets = [key.text for key, _, _ in places if key.kind == "offset"]

    figure = Figure(figsize=loss_chart.FIGSIZE, dpi=loss_chart.DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    figure.subplots_adjust(**loss_chart.MARGINS)
    for line in (chart.student, chart.reference):
        x, y = line.get_data()
        if len(x):
            axes.plot(x, y)
    if chart.axes.get_yscale() == "log":
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    figure.canvas.draw()
    bottom, top = axes.bbox.y0, axes.bbox.y1
    expected = sorted((label.get_text(), round(axes.transData.transform((0, location))[1], 3))
                      for location, label in zip(axes.get_yticks(), axes.get_yticklabels())
                      if bottom - 1e-6 <= axes.transData.transform((0, location))[1] <= top + 1e-6
                      and label.get_text())
    assert ticks == expected
    assert len(ticks) >= 3
    offset = axes.yaxis.get_offset_text().get_text()
    assert offsets == ([offset] if offset else [])


# ----------------------------------------------------------------------------- cost

def test_a_diverged_run_draws_its_finite_part_and_never_raises() -> None:
    huge = [0.5, 0.4, 1.7e308, -1.7e308, 0.3]
    png = loss_chart.loss_curve_png(Training(iterations=5, final_prediction=None, target=1.0, loss=huge,
                                       reference_loss=[0.5, 0.4, 0.3, 0.2, 0.1]))
    assert png is not None and png.startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- against a plain matplotlib figure

def full_figure(chart: loss_chart._LossChart) -> tuple[bytes, Bbox]:
    """The chart the straightforward way (what ``loss_curve_png`` drew before reusing a figure):
    a new figure, both curves, matplotlib's own tick labels and ``loc="best"`` legend, ``savefig``.
    Returns the PNG and where the legend went (display pixels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    figure = Figure(figsize=loss_chart.FIGSIZE, dpi=loss_chart.DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for line, style in ((chart.student, loss_chart.STUDENT_STYLE), (chart.reference, loss_chart.REFERENCE_STYLE)):
        x, y = line.get_data()
        if len(x):
            axes.plot(x, y, **style)
    if chart.axes.get_yscale() == "log":
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(NullFormatter())
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss")
    axes.set_title("Training loss")
    axes.grid(True, alpha=0.3)
    legend = axes.legend()
    figure.subplots_adjust(**loss_chart.MARGINS)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=loss_chart.DPI)
    return buffer.getvalue(), legend.get_window_extent()


@pytest.mark.slow
@pytest.mark.parametrize("loss, reference_loss", [
    (decaying(), None),
    ([10 ** (i / 6) for i in range(120)] + [math.inf] * 80, None),                # diverging, then gaps
    ([math.exp(-i / 25.0) - 0.3 for i in range(200)], None),                     # linear, legend top right
    ([0.2 + 0.1 * math.sin(i / 9) for i in range(200)], None),                   # legend has to dodge
    ([10 ** (i / 6) for i in range(200)], None),                                 # rising: legend top left
    ([-1000.0 - 1e-3 * math.exp(-i / 30) for i in range(200)], []),              # offset text, no reference
    ([math.nan] * 200, None),                                                    # the reference alone
    ([], reference()),                                                           # no student curve at all
    ([0.9, 0.5, 0.2], None),                                                     # a run cut short
])
def test_picture_is_the_full_figure_to_within_half_a_pixel(loss, reference_loss) -> None:
    """Composited layers and stamps against a figure drawn whole: text may sit up to half a pixel
    off (stamps snap to the grid) and the y label is fixed, nothing else differs."""
    image = pixels(render(loss, reference_loss))
    chart = loss_chart._CHART
    png, legend = full_figure(chart)
    expected = pixels(png)
    difference = np.abs(image - expected).max(axis=2)
    assert (difference > 64).mean() < 0.02, (difference > 64).mean()
    assert difference.mean() < 3, difference.mean()
    # Ticks, major and minor, and the frame: the same pixels (a strip just left of the frame).
    frame, height = chart.axes.bbox, image.shape[0]
    strip = (slice(height - int(frame.y1), height - int(frame.y0)), slice(round(frame.x0) - 5, round(frame.x0)))
    assert np.array_equal(image[strip], expected[strip])
    # The legend where matplotlib's loc="best" puts it.
    left, bottom = chart._best_place(legend.width, legend.height)
    assert abs(left - legend.x0) < 0.5 and abs(bottom - legend.y0) < 0.5, ((left, bottom), legend)


def test_legend_lists_only_the_curves_there_are() -> None:
    nan_student = near(pixels(render([math.nan] * 200)), STUDENT_BLUE)
    no_student = near(pixels(render([], reference())), STUDENT_BLUE)
    assert no_student == 0
    assert nan_student > 20  # the "your network" handle, as matplotlib's legend keeps an all-gap line
