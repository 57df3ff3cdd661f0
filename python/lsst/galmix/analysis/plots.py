"""Matched-catalogue plots in the style of analysis_tools (matchedRefMagDiff and friends).

Each panel shows the points, the running median and the 1, 2 and 3 sigma_MAD lines in bins of the x
quantity, the number of points per bin, and the selection in the title. Figures are built with the
object-oriented matplotlib API (no pyplot state), so they are safe inside tasks and write as PNG.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure

from .stats import binned_stats

__all__ = ["PanelData", "SharedRendererCanvas", "plot_binned_panels", "plot_completeness_purity",
           "plot_size_magnitude"]

_PNG_COMPRESS_LEVEL = 3
_SIGMA_STYLES = ((1, "-", 0.9), (2, "--", 0.7), (3, ":", 0.6))
_MIN_FOR_SPREAD = 3


_TICK_MEMO_HITS = [0]
"""Calls of ``Axis._update_ticks`` skipped by `_ticks_updated_once` (for the tests)."""


@contextmanager
def _ticks_updated_once(figure: Figure) -> Iterator[None]:
    """While the block runs, an axis of ``figure`` recomputes its ticks only when what they depend on
    changed since its previous update.

    PRIVATE MATPLOTLIB API: ``Axis._update_ticks`` (matplotlib 3.x) locates and formats an axis's ticks
    and sets them on its `~matplotlib.axis.Tick` objects. One draw of a constrained-layout figure calls
    it about 20 times per axis (layout passes, tight bounding boxes, spines, the draw itself) with the
    same inputs: a quarter of the drawing CPU of the analysis plots. Within the block each axis gets an
    instance attribute in front of the method that skips a call whose key (view and data intervals, the
    axes' box in display pixels, which sets the number of ticks, dpi, locator and formatter) equals that
    of the axis's previous call: the ticks already hold exactly what the call would set, since only the
    latest key is kept. Outside the block the attribute is removed. If matplotlib no longer has the
    method, nothing is changed (plain drawing). ``tests/test_analysis_metrics.py`` checks that the
    memo is hit and that the PNG pixels equal a plain draw's.
    """
    update = getattr(Axis, "_update_ticks", None)
    axes = [axis for ax in figure.axes for axis in (ax.xaxis, ax.yaxis)]
    if update is None or any("_update_ticks" in vars(axis) for axis in axes):
        yield
        return

    def memoized(axis: Axis):
        last: list = [None, None]  # key and ticks of the axis's latest update

        def _update_ticks():
            key = (
                tuple(axis.get_view_interval()), tuple(axis.get_data_interval()), axis.axes.bbox.bounds,
                figure.dpi, id(axis.get_major_locator()), id(axis.get_major_formatter()),
                id(axis.get_minor_locator()), id(axis.get_minor_formatter()),
            )
            if key != last[0]:
                last[0] = None  # an update that raises leaves no key behind
                last[1] = update(axis)
                last[0] = key
            else:
                _TICK_MEMO_HITS[0] += 1
            return last[1]

        return _update_ticks

    for axis in axes:
        axis._update_ticks = memoized(axis)
    try:
        yield
    finally:
        for axis in axes:
            vars(axis).pop("_update_ticks", None)


class SharedRendererCanvas(FigureCanvasAgg):
    """Agg canvas that shares its renderer with the other figures of the same size and dpi (per thread).

    matplotlib caches the measured extents of texts per renderer, and each figure normally gets its own,
    so every figure measures its tick labels, counts and titles again (a third of the drawing time of
    these plots). The figures of an analysis task are drawn one after another at a few sizes: sharing
    the renderer lets later figures reuse the measurements. The renderer is cleared at the start of
    every draw, so the images are identical to those drawn with a private renderer.
    """

    _local = threading.local()

    def get_renderer(self) -> RendererAgg:
        w, h = self.get_width_height(physical=True)
        key = (w, h, self.figure.dpi)
        shared = self._local.__dict__.setdefault("renderers", {})
        renderer = shared.get(key)
        if renderer is None:
            if len(shared) >= 8:  # a few sizes are in use at a time; do not hold every size ever drawn
                shared.clear()
            renderer = shared[key] = RendererAgg(w, h, self.figure.dpi)
        self.renderer, self._lastKey = renderer, key
        return renderer

    def draw(self) -> None:
        # Ticks computed once per axis and layout state (`_ticks_updated_once`).
        with _ticks_updated_once(self.figure):
            super().draw()

    def print_figure(self, filename, *args, **kwargs):
        # PNG at zlib level 3 instead of Pillow's 6: the same pixels, about the same size (1% smaller
        # for these plots) in 0.7 times the encoding CPU. Only when the output is PNG (other formats
        # take no ``pil_kwargs``) and the caller chose no level.
        fmt = kwargs.get("format")
        if fmt is None and isinstance(filename, str | os.PathLike):
            fmt = os.path.splitext(os.fspath(filename))[1][1:] or None
        if str(fmt or mpl.rcParams["savefig.format"]).lower() == "png":
            kwargs["pil_kwargs"] = {"compress_level": _PNG_COMPRESS_LEVEL, **(kwargs.get("pil_kwargs") or {})}
        # ``savefig`` draws through ``FigureCanvasAgg.draw(self)``, not ``self.draw``.
        with _ticks_updated_once(self.figure):
            return super().print_figure(filename, *args, **kwargs)


def _figure(figsize: tuple[float, float]) -> Figure:
    """A figure with constrained layout drawn on a `SharedRendererCanvas`."""
    fig = Figure(figsize=figsize, layout="constrained")
    SharedRendererCanvas(fig)
    return fig


@dataclass
class PanelData:
    """Points of one panel.

    Attributes
    ----------
    label : `str`
        Panel label (``"galaxies"``, ``"stars"``...).
    x, y : `numpy.ndarray`
        Points; non-finite pairs are dropped.
    """

    label: str
    x: np.ndarray
    y: np.ndarray


def _draw_binned(
    ax, panel: PanelData, edges: np.ndarray, ylim: tuple[float, float] | None, zero_line: bool,
    clip: bool = False, note: str | None = None,
) -> None:
    x = np.asarray(panel.x, dtype=float)
    y = np.asarray(panel.y, dtype=float)
    good = np.isfinite(x) & np.isfinite(y)
    x, y = x[good], y[good]
    if clip and ylim is not None:
        inside = (y >= ylim[0]) & (y <= ylim[1])
        ax.scatter(x[inside], y[inside], s=3, alpha=0.4, color="0.3", rasterized=True, linewidths=0)
        # Points beyond the y range are drawn on its edge, so every point stays visible.
        for edge, marker, out in ((ylim[0], "v", y < ylim[0]), (ylim[1], "^", y > ylim[1])):
            ax.scatter(x[out], np.full(int(out.sum()), edge), s=10, marker=marker, color="C1",
                       rasterized=True, linewidths=0, clip_on=False)
    else:
        ax.scatter(x, y, s=3, alpha=0.4, color="0.3", rasterized=True, linewidths=0)
    stats = binned_stats(x, y, edges)
    centers = stats.centers
    ok = stats.count > 0
    ax.plot(centers[ok], stats.median[ok], "-o", color="C3", ms=3, lw=1.5, label="median")
    # A scatter from fewer points than this is not worth a line.
    spread_ok = stats.count >= _MIN_FOR_SPREAD
    for n_sig, style, alpha in _SIGMA_STYLES:
        for sign in (-1, 1):
            ax.plot(
                centers[spread_ok],
                stats.median[spread_ok] + sign * n_sig * stats.sigma_mad[spread_ok],
                style,
                color="C0",
                alpha=alpha,
                lw=1,
                label=f"{n_sig} sigma_MAD" if sign == 1 else None,
            )
    if zero_line:
        ax.axhline(0.0, color="k", lw=0.5)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlim(edges[0], edges[-1])
    top = ax.get_ylim()[1]
    for c, n in zip(centers, stats.count):
        ax.text(c, top, str(int(n)), ha="center", va="bottom", fontsize=6, color="0.3")
    ax.set_title(f"{panel.label}: N={len(x)}" if note is None else f"{panel.label}: {note}",
                 fontsize=9 if note is None else 7, pad=12)
    ax.grid(alpha=0.3)


def plot_binned_panels(
    panels: Sequence[PanelData],
    edges: np.ndarray,
    xlabel: str,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
    zero_line: bool = True,
    clip: bool = False,
    notes: Sequence[str] | None = None,
) -> Figure:
    """Make a figure with one binned-statistics panel per point set.

    Parameters
    ----------
    panels : `~collections.abc.Sequence` [`PanelData`]
        Point sets, one panel each, side by side.
    edges : `numpy.ndarray`
        Bin edges of the running statistics (also the x range).
    xlabel, ylabel : `str`
        Axis labels.
    title : `str`
        Figure title; put the selection here.
    ylim : `tuple` [`float`, `float`], optional
        y range (points outside are not drawn but count in the statistics).
    zero_line : `bool`
        Draw the line y = 0 (for difference plots).
    clip : `bool`
        Draw the points beyond ``ylim`` on its edges (triangles) instead of leaving them out.
    notes : sequence of `str`, optional
        Per panel, text for its title in place of the point count.

    Returns
    -------
    fig : `matplotlib.figure.Figure`
        The figure.
    """
    fig = _figure((4.5 * max(len(panels), 1), 4.2))
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for k, (ax, panel) in enumerate(zip(axes, panels)):
        note = notes[k] if notes is not None else None
        _draw_binned(ax, panel, np.asarray(edges, dtype=float), ylim, zero_line, clip, note)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=6, loc="lower left")
    fig.suptitle(title, fontsize=9)
    return fig


def plot_completeness_purity(
    edges: np.ndarray,
    completeness: Mapping[str, Mapping[str, np.ndarray]],
    purity: Mapping[str, np.ndarray],
    title: str,
) -> Figure:
    """Plot completeness per class against reference magnitude and purity against measured magnitude.

    Parameters
    ----------
    edges : `numpy.ndarray`
        Magnitude bin edges.
    completeness : `~collections.abc.Mapping`
        Class label -> output of `lsst.galmix.analysis.stats.completeness_purity` for that class's
        references (``completeness`` and ``n_ref`` used).
    purity : `~collections.abc.Mapping`
        Output of `~lsst.galmix.analysis.stats.completeness_purity` for all objects (``purity`` and
        ``n_target`` used); measured objects have no class.
    title : `str`
        Figure title (the selection).

    Returns
    -------
    fig : `matplotlib.figure.Figure`
        The figure.
    """
    edges = np.asarray(edges, dtype=float)
    centers = 0.5 * (edges[1:] + edges[:-1])
    fig = _figure((9, 4))
    ax_c, ax_p = fig.subplots(1, 2)
    for i, (label, cp) in enumerate(completeness.items()):
        ax_c.plot(centers, cp["completeness"], "-o", ms=3, color=f"C{i}", label=f"{label} (N={cp['n_ref'].sum()})")
    ax_p.plot(centers, purity["purity"], "-o", ms=3, color="k", label=f"all objects (N={purity['n_target'].sum()})")
    for ax, name, xl in ((ax_c, "completeness", "reference mag"), (ax_p, "purity", "measured mag")):
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(xl)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def plot_size_magnitude(
    panels: Sequence[PanelData],
    edges: np.ndarray,
    xlabel: str,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] = (-2.5, 1.5),
) -> Figure:
    """Size against magnitude with running median and sigma_MAD of log10(size).

    Parameters
    ----------
    panels : `~collections.abc.Sequence` [`PanelData`]
        Point sets with ``y`` the size (positive; other values dropped).
    edges : `numpy.ndarray`
        Magnitude bin edges.
    xlabel, ylabel : `str`
        Axis labels (``ylabel`` describes the size before taking log10).
    title : `str`
        Figure title (the selection).
    ylim : `tuple` [`float`, `float`]
        Range of log10(size) shown (collapsed fits far below it still count in the statistics).

    Returns
    -------
    fig : `matplotlib.figure.Figure`
        The figure.
    """
    logged = []
    for p in panels:
        y = np.asarray(p.y, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            logged.append(PanelData(p.label, p.x, np.where(y > 0, np.log10(y), np.nan)))
    return plot_binned_panels(logged, edges, xlabel, f"log10 {ylabel}", title, ylim=ylim, zero_line=False)
