"""Server-side SVG plots for the versions page and the dashboard: learning curve, confusion matrix, labels per day,
label distribution.

Pure plotting over plain numbers (no ORM): each function returns an ``<svg>`` element as text,
ready to be written into a page. Text stays text in the SVG (``svg.fonttype: none``), so titles
and axis names are searchable and scale with the page's font.
"""
from __future__ import annotations

import functools
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d", "#ff9da6",
           "#bab0ac"]


# Bumped whenever the drawing changes, so that cached SVGs of the old look are not served.
STYLE_VERSION = 2


@functools.cache
def _matplotlib() -> None:
    """Import matplotlib on the first plot (a web process that draws none saves its memory) and set it up once."""
    import matplotlib

    # Set once for the process rather than in rc_context(), which swaps global state and so is not safe
    # in a threaded web server. Both keys only affect SVG output, which only this module writes.
    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "labelhub"  # stable element ids: the same data gives the same SVG
    matplotlib.rcParams["text.usetex"] = False  # a matplotlibrc must not send names to LaTeX (see ``plain``)


def plain(text: str) -> str:
    """A user's string (a label or user name) to draw as it is written: matplotlib reads text between two
    ``$`` as math, and a name such as ``$\\foo$`` failed the whole page; an escaped dollar is drawn as one."""
    return text.replace("$", r"\$")


def _svg(figure: Figure) -> str:
    """Render a figure as an inline ``<svg>`` element (no XML prolog, no fixed pixel size)."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.StringIO()
    FigureCanvasSVG(figure).print_svg(buffer, metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    # matplotlib writes a <style> element (line joins and caps); the page's Content-Security-Policy
    # forbids inline style elements, so the same rule lives in app.css (svg.mpl).
    text = re.sub(r"<style[^>]*>.*?</style>", "", text, flags=re.S)
    # Let the page's CSS size the plot: keep the viewBox, drop the fixed width and height.
    head, rest = text.split(">", 1)
    head = " ".join(part for part in head.split(" ") if not part.startswith(("width=", "height=")))
    return f'{head} class="mpl" role="img">{rest}'


def _figure(width: float, height: float) -> Figure:
    _matplotlib()
    from matplotlib.figure import Figure

    # The object API needs no display and leaves pyplot's global state alone (thread-safe in a web process).
    return Figure(figsize=(width, height), dpi=72, layout="constrained")


@dataclass(frozen=True)
class CurvePoint:
    """One model version on the learning curve."""

    version: int
    labels: int
    accuracy: float
    low: float
    high: float
    live: bool = False


def learning_curve_svg(points: Sequence[CurvePoint], *, title: str = "Learning curve") -> str:
    """Audit accuracy (with its interval as error bars) against the labels each version was trained on."""
    figure = _figure(7.5, 3.6)
    axes = figure.add_subplot()
    if points:
        ordered = sorted(points, key=lambda p: (p.labels, p.version))
        x = np.array([p.labels for p in ordered], dtype=float)
        y = np.array([p.accuracy for p in ordered])
        errors = np.array([[p.accuracy - p.low for p in ordered], [p.high - p.accuracy for p in ordered]])
        axes.errorbar(x, y, yerr=np.clip(errors, 0, None), color=COLOURS[0], marker="o", markersize=4, capsize=3,
                      linewidth=1.5, label="audit accuracy (95% Wilson interval)")
        for point in ordered:
            axes.annotate(f"v{point.version}", (point.labels, point.accuracy), textcoords="offset points",
                          xytext=(4, 6), fontsize=8, color="#1d232a", fontweight="bold" if point.live else "normal")
        live = [p for p in ordered if p.live]
        if live:
            axes.plot([live[0].labels], [live[0].accuracy], marker="o", markersize=9, markerfacecolor="none",
                      markeredgecolor=COLOURS[3], linestyle="none", label="live")
        axes.legend(loc="lower right", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no evaluated version yet", ha="center", va="center", transform=axes.transAxes,
                  color="#5b6672")
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("labels used for training")
    axes.set_ylabel("audit accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return _svg(figure)


def confusion_matrix_svg(matrix: Sequence[Sequence[int]], class_names: Sequence[str], *, title: str) -> str:
    """A confusion matrix as a heat map with its counts; rows are the expert's label, columns the model's."""
    counts = np.asarray(matrix, dtype=int).reshape(len(class_names), len(class_names))
    size = min(7.0, 2.4 + 0.42 * len(class_names))
    figure = _figure(size + 0.6, size)
    axes = figure.add_subplot()
    # Shade by share of the row, so a rare class's errors show as clearly as a common one's.
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        axes.text(j, i, str(count), ha="center", va="center", fontsize=8,
                  color="white" if shares[i, j] > 0.6 else "#1d232a")
    ticks = np.arange(len(class_names))
    names = [plain(name) for name in class_names]
    axes.set_xticks(ticks, labels=names, rotation=45 if len(class_names) > 4 else 0, ha="right"
                    if len(class_names) > 4 else "center")
    axes.set_yticks(ticks, labels=names)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("expert label")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the row")
    return _svg(figure)


def labels_per_day_svg(days: Sequence[date], per_expert: Mapping[str, Sequence[int]], *,
                       title: str = "Labels per day") -> str:
    """Stacked bars of labels per day, one colour per expert; ``per_expert`` counts align with ``days``."""
    figure = _figure(7.5, 3.2)
    axes = figure.add_subplot()
    x = np.arange(len(days))
    bottom = np.zeros(len(days))
    for i, (name, counts) in enumerate(per_expert.items()):
        values = np.asarray(counts, dtype=float)
        axes.bar(x, values, bottom=bottom, color=COLOURS[i % len(COLOURS)], label=plain(name), width=0.8)
        bottom += values
    if per_expert:
        axes.legend(loc="upper left", fontsize=8, ncols=min(4, len(per_expert)))
    else:
        axes.text(0.5, 0.5, "no labels in this period", ha="center", va="center", transform=axes.transAxes,
                  color="#5b6672")
    step = max(1, len(days) // 10)
    axes.set_xticks(x[::step], labels=[d.strftime("%m-%d") for d in days][::step])
    axes.set_ylim(0, max(1.0, float(bottom.max()) * 1.2 if len(bottom) else 1.0))
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("day")
    axes.set_ylabel("labels")
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    return _svg(figure)


_HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def label_distribution_svg(names: Sequence[str], counts: Sequence[int], colours: Sequence[str], *,
                           title: str = "Items by final label") -> str:
    """Horizontal bars of items per final label, each in its label's colour (a colour that is no #rrggbb: the palette's)."""
    figure = _figure(7.5, min(12.0, 1.2 + 0.32 * max(1, len(names))))
    axes = figure.add_subplot()
    y = np.arange(len(names))
    fill = [c if isinstance(c, str) and _HEX_COLOUR.fullmatch(c) else COLOURS[i % len(COLOURS)]
            for i, c in enumerate(colours)]
    bars = axes.barh(y, np.asarray(counts, dtype=float), color=fill, edgecolor="#5b6672", linewidth=0.5, height=0.7)
    axes.bar_label(bars, labels=[str(n) for n in counts], padding=3, fontsize=8)
    axes.set_yticks(y, labels=[plain(name) for name in names])
    axes.invert_yaxis()  # the first label on top, as in the table
    axes.set_xlim(0, max(1.0, max(counts, default=0) * 1.15))
    axes.xaxis.get_major_locator().set_params(integer=True)
    if not any(counts):
        axes.text(0.5, 0.5, "no labeled item yet", ha="center", va="center", transform=axes.transAxes,
                  color="#5b6672")
    axes.set_xlabel("items")
    axes.set_title(title)
    axes.grid(axis="x", alpha=0.3)
    return _svg(figure)
