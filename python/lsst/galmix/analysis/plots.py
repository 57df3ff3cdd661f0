"""Matched-catalogue plots in the style of analysis_tools (matchedRefMagDiff and friends).

Each panel shows the points, the running median and the 1, 2 and 3 sigma_MAD lines in bins of the x
quantity, the number of points per bin, and the selection in the title. Figures are built with the
object-oriented matplotlib API (no pyplot state), so they are safe inside tasks and write as PNG.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from .canvas import SharedRendererCanvas
from .stats import binned_stats

__all__ = ["PanelData", "SharedRendererCanvas", "plot_binned_panels", "plot_completeness_purity",
           "plot_size_magnitude"]

_SIGMA_STYLES = ((1, "-", 0.9), (2, "--", 0.7), (3, ":", 0.6))
_MIN_FOR_SPREAD = 3


@dataclass(frozen=True)
class _Margins:
    """Fixed layout of a row of panels, inches: figure edges to the axes, and between axes.

    The values are those constrained layout found for these plots (tick labels of the fixed y ranges,
    one axis label per side, one- or two-line panel titles above the bin counts, a two-line figure
    title), plus a few hundredths of an inch. A fixed layout draws in 0.7 times the CPU of constrained
    layout, which measures every text of the figure twice before the draw.
    """

    left: float
    right: float
    bottom: float
    top: float
    gap: float


_BINNED = _Margins(left=0.78, right=0.05, bottom=0.49, top=0.75, gap=0.83)
"""Binned panels with one-line titles; two-line titles (notes) take `_NOTES_TOP` instead."""

_NOTES_TOP = 0.85
_COMPLETENESS = _Margins(left=0.57, right=0.05, bottom=0.49, top=0.28, gap=0.62)
_SUPTITLE_PAD = 3.0 / 72.0
"""Figure edge to the top of the figure title, inches (constrained layout's default pad)."""


def _panels(figsize: tuple[float, float], n: int, margins: _Margins, title: str) -> tuple[Figure, list]:
    """A figure drawn on a `SharedRendererCanvas` with ``n`` panels in a row at fixed ``margins``.

    Parameters
    ----------
    figsize : `tuple` [`float`, `float`]
        Width and height, inches.
    n : `int`
        Number of panels.
    margins : `_Margins`
        Layout, inches.
    title : `str`
        Figure title (9 pt, at the top).

    Returns
    -------
    fig : `matplotlib.figure.Figure`
        The figure.
    axes : `list` [`matplotlib.axes.Axes`]
        The panels, left to right.
    """
    width, height = figsize
    fig = Figure(figsize=figsize)
    SharedRendererCanvas(fig)
    panel = (width - margins.left - margins.right - (n - 1) * margins.gap) / n
    axes = fig.subplots(1, n, squeeze=False, gridspec_kw={
        "left": margins.left / width, "right": 1 - margins.right / width, "bottom": margins.bottom / height,
        "top": 1 - margins.top / height, "wspace": margins.gap / panel,
    })[0]
    fig.suptitle(title, fontsize=9, y=1 - _SUPTITLE_PAD / height, va="top")
    return fig, list(axes)


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
    # Where matplotlib would place the title (the x axis has nothing on top, and a given y range has no
    # offset text to avoid), fixed: otherwise every draw measures the y axis again to check.
    ax.set_title(f"{panel.label}: N={len(x)}" if note is None else f"{panel.label}: {note}",
                 fontsize=9 if note is None else 7, pad=12, y=None if ylim is None else 1.0)
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
    margins = _BINNED if notes is None else dataclasses.replace(_BINNED, top=_NOTES_TOP)
    n = max(len(panels), 1)
    fig, axes = _panels((4.5 * n, 4.2), n, margins, title)
    for k, (ax, panel) in enumerate(zip(axes, panels)):
        note = notes[k] if notes is not None else None
        _draw_binned(ax, panel, np.asarray(edges, dtype=float), ylim, zero_line, clip, note)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=6, loc="lower left")
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
    fig, (ax_c, ax_p) = _panels((9, 4), 2, _COMPLETENESS, title)
    for i, (label, cp) in enumerate(completeness.items()):
        ax_c.plot(centers, cp["completeness"], "-o", ms=3, color=f"C{i}", label=f"{label} (N={cp['n_ref'].sum()})")
    ax_p.plot(centers, purity["purity"], "-o", ms=3, color="k", label=f"all objects (N={purity['n_target'].sum()})")
    for ax, name, xl in ((ax_c, "completeness", "reference mag"), (ax_p, "purity", "measured mag")):
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(xl)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
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
