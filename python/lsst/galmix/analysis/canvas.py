"""Agg canvas of the analysis plots: a renderer shared by figures of one size and memos of the ticks and
text layouts, so that drawing many similar figures one after another measures each thing once.

Every memo here sits in front of a PRIVATE matplotlib method and returns exactly what the method would;
``tests/test_analysis_metrics.py`` checks that the PNG pixels equal those of a plain Agg draw.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib as mpl
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = ["SharedRendererCanvas"]

_PNG_COMPRESS_LEVEL = 3

_TICK_MEMO_HITS = [0]
"""Calls of ``Axis._update_ticks`` skipped by `_ticks_updated_once` (for the tests)."""


@contextmanager
def _ticks_updated_once(figure: Figure) -> Iterator[None]:
    """While the block runs, an axis of ``figure`` recomputes its ticks only when what they depend on
    changed since its previous update.

    PRIVATE MATPLOTLIB API: ``Axis._update_ticks`` (matplotlib 3.x) locates and formats an axis's ticks
    and sets them on its `~matplotlib.axis.Tick` objects. One draw of the analysis plots calls it three
    times per axis with the same inputs (the draw, the axis label's placement, the tight bounding box;
    about 20 times with constrained layout). Within the block each axis gets an
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


_LAYOUT_MEMO_HITS = [0]
"""Calls of ``Text._get_layout`` answered by `_text_layouts_memoized` (for the tests)."""

_LAYOUT_MEMO_SIZE = 4096
"""Layouts kept per shared renderer (a task's plots need a few thousand; the memo is emptied when full)."""

_active_layouts = threading.local()
"""``renderer`` and ``memo`` of the block of `_text_layouts_memoized` running in this thread, if any."""

_install_lock = threading.Lock()


def _layout_key(text: Text) -> tuple:
    """Everything ``Text._get_layout`` reads besides the renderer (matplotlib 3.x).

    The layout (box, lines and their offsets, relative to the text's anchor) does not depend on the
    position, colour or clipping of the text. Font properties are compared by hash, as matplotlib's own
    cache of text extents does.
    """
    return (
        text._get_wrapped_text(), hash(text._fontproperties), text.get_usetex(), text.get_parse_math(),
        text._linespacing, text.get_rotation(), text.get_rotation_mode(), text._horizontalalignment,
        text._verticalalignment, text._get_multialignment(), text.get_figure(root=True).dpi,
    )


def _install_layout_memo() -> bool:
    """Put `_text_layouts_memoized`'s memo in front of ``Text._get_layout`` once per process.

    Returns whether the memo is in place (False if matplotlib no longer has the method or the helpers the
    key needs). Outside a block of `_text_layouts_memoized` in the same thread the memo only passes the
    call on, so other figures and threads draw as before.
    """
    with _install_lock:
        current = vars(Text).get("_get_layout")
        if getattr(current, "_galmix_original", None) is not None:
            return True
        if current is None or not all(hasattr(Text, a) for a in ("_get_wrapped_text", "_get_multialignment")):
            return False

        def _get_layout(self, renderer):
            memo = getattr(_active_layouts, "memo", None)
            if memo is None or renderer is not _active_layouts.renderer:
                return current(self, renderer)
            key = _layout_key(self)
            layout = memo.get(key)
            if layout is None:
                if len(memo) >= _LAYOUT_MEMO_SIZE:
                    memo.clear()
                layout = memo[key] = current(self, renderer)
            else:
                _LAYOUT_MEMO_HITS[0] += 1
            bbox, lines, corner = layout
            # Fresh copies of the mutable parts: callers own what the method returns.
            return bbox.frozen(), list(lines), corner

        _get_layout._galmix_original = current
        _get_layout.__doc__ = current.__doc__
        Text._get_layout = _get_layout
        return True


@contextmanager
def _text_layouts_memoized(renderer: RendererAgg, memo: dict) -> Iterator[None]:
    """While the block runs in this thread, texts drawn with ``renderer`` reuse layouts from ``memo``.

    PRIVATE MATPLOTLIB API: ``Text._get_layout`` (matplotlib 3.x) measures a text's lines with the
    renderer and returns its box and line offsets; matplotlib calls it for every extent query of the
    layout engine, the tight bounding boxes and the draw (three to five times per text and draw), and
    each call reads the font's OS/2 and head tables again through FreeType. The figures of an analysis
    task share renderers (`SharedRendererCanvas`) and many texts (tick labels, axis labels, legends):
    ``memo`` (one per shared renderer) keeps each layout under the key of `_layout_key`, which holds
    everything the method reads besides the renderer. A draw within the block of another renderer,
    another thread, or matplotlib without the method, is not affected.
    """
    if not _install_layout_memo():
        yield
        return
    outer = getattr(_active_layouts, "renderer", None), getattr(_active_layouts, "memo", None)
    _active_layouts.renderer, _active_layouts.memo = renderer, memo
    try:
        yield
    finally:
        _active_layouts.renderer, _active_layouts.memo = outer


class SharedRendererCanvas(FigureCanvasAgg):
    """Agg canvas that shares its renderer with the other figures of the same size and dpi (per thread).

    matplotlib caches the measured extents of texts per renderer, and each figure normally gets its own,
    so every figure measures its tick labels, counts and titles again (a third of the drawing time of
    these plots). The figures of an analysis task are drawn one after another at a few sizes: sharing
    the renderer lets later figures reuse the measurements, and the text layouts built from them
    (`_text_layouts_memoized`, one memo per shared renderer). The renderer is cleared at the start of
    every draw, so the images are identical to those drawn with a private renderer.
    """

    _local = threading.local()

    def get_renderer(self) -> RendererAgg:
        w, h = self.get_width_height(physical=True)
        key = (w, h, self.figure.dpi)
        shared = self._local.__dict__.setdefault("renderers", {})
        renderer = shared.get(key, (None,))[0]
        if renderer is None:
            if len(shared) >= 8:  # a few sizes are in use at a time; do not hold every size ever drawn
                shared.clear()
            renderer = RendererAgg(w, h, self.figure.dpi)
            shared[key] = (renderer, {})  # the renderer and its memo of text layouts
        self.renderer, self._lastKey = renderer, key
        return renderer

    def _memoized(self):
        """The memos of a draw of this canvas: ticks and text layouts."""
        renderer = self.get_renderer()
        layouts = self._local.renderers[self._lastKey][1]
        return _ticks_updated_once(self.figure), _text_layouts_memoized(renderer, layouts)

    def draw(self) -> None:
        ticks, layouts = self._memoized()
        with ticks, layouts:
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
        # ``savefig`` draws through ``FigureCanvasAgg.draw(self)``, not ``self.draw``. (A PDF or SVG is
        # drawn by another renderer, which the layout memo passes on.)
        ticks, layouts = self._memoized()
        with ticks, layouts:
            return super().print_figure(filename, *args, **kwargs)
