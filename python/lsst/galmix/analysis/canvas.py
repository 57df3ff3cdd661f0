"""Agg canvas of the analysis plots: a renderer shared by figures of one size, which keeps the glyph
runs and bitmaps of the texts it draws, and memos of the ticks and text layouts, so that drawing many
similar figures one after another measures and renders each thing once.

Every memo here sits in front of a PRIVATE matplotlib method and returns exactly what the method would;
``tests/test_analysis_metrics.py`` checks that the PNG pixels equal those of a plain Agg draw.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib as mpl
import numpy as np
from matplotlib import ft2font
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
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


_GLYPH_CACHE_SIZE = 20000
"""Glyph runs, and glyph bitmaps, kept per shared renderer (emptied when full)."""

_GLYPH_CACHE_HITS = [0]
"""Glyphs drawn from `_GlyphCachingRenderer`'s bitmaps (for the tests)."""

_CAN_CACHE_GLYPHS = all(
    hasattr(RendererAgg, m) for m in ("_prepare_font", "_draw_text_glyphs_and_boxes")
) and all(hasattr(ft2font.FT2Font, m) for m in ("_layout", "_set_transform", "_render_glyph")) and hasattr(
    ft2font, "RenderMode"
)
"""Whether matplotlib draws text as `_GlyphCachingRenderer` expects (matplotlib 3.11)."""


class _GlyphCachingRenderer(RendererAgg):
    """Agg renderer that keeps the glyph runs of the strings it draws and the bitmaps of their glyphs.

    PRIVATE MATPLOTLIB API (3.11): ``RendererAgg.draw_text`` lays a string out with ``FT2Font._layout``
    (shaping, through FreeType reading the font file) and ``_draw_text_glyphs_and_boxes`` renders each
    glyph with ``FT2Font._set_transform`` and ``_render_glyph`` (loading, hinting and rasterising it)
    before compositing it with ``draw_text_image``: 40% of the CPU of the analysis plots, for a few
    hundred distinct strings (tick labels, counts, axis labels) drawn again and again at the same places.
    This renderer does the same steps but keeps a string's glyph run under everything ``_layout`` reads
    (string, font properties, dpi, hinting, features, language), and a glyph's bitmap under its font,
    size, dpi, index, transform matrix, hinting, render mode and the 1/64-pixel fraction of its position:
    FreeType hints before it applies the transform, so moving a glyph by whole pixels moves its bitmap
    by whole pixels and leaves it unchanged. Math text, and matplotlib without these methods, are drawn
    by matplotlib's code. ``tests/test_analysis_metrics.py`` checks that the pixels equal a plain draw's.
    """

    def __init__(self, width: int, height: int, dpi: float):
        super().__init__(width, height, dpi)
        self._glyph_runs: dict = {}
        self._glyph_bitmaps: dict = {}
        self._glyph_matrices: dict = {}

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath or not _CAN_CACHE_GLYPHS:
            return super().draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)
        features = mtext.get_fontfeatures() if mtext is not None else None
        language = mtext.get_language() if mtext is not None else None
        flags = get_hinting_flag()
        key = (s, hash(prop), self.dpi, flags,
               None if features is None else tuple(features), language)
        run = self._glyph_runs.get(key)
        if run is None:
            font = self._prepare_font(prop)
            size = prop.get_size_in_points()
            run = tuple(
                (item.ft_object, size, item.glyph_index, 0, 1, item.x, item.y)
                for item in font._layout(s, flags=flags, features=features, language=language)
            )
            if len(self._glyph_runs) >= _GLYPH_CACHE_SIZE:
                self._glyph_runs.clear()
            self._glyph_runs[key] = run
        self._draw_text_glyphs_and_boxes(gc, x, y, angle, run, [])

    def _matrix(self, angle: float, slant: float, extend: float) -> tuple[np.ndarray, bytes]:
        """FreeType's transform matrix of matplotlib's glyph loop, and its key."""
        key = (angle, slant, extend)
        matrix = self._glyph_matrices.get(key)
        if matrix is None:
            cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            m = (0x10000 * np.array([[cos, -sin], [sin, cos]])
                 @ [[extend, extend * slant], [0, 1]]).round().astype(int)
            matrix = self._glyph_matrices[key] = (m, m.tobytes())
        return matrix

    def _draw_text_glyphs_and_boxes(self, gc, x, y, angle, glyphs, boxes):
        if boxes or not _CAN_CACHE_GLYPHS:  # math text's rules: matplotlib's code
            return super()._draw_text_glyphs_and_boxes(gc, x, y, angle, glyphs, boxes)
        # As matplotlib's loop (y is downwards, FreeType's upwards; positions in 1/64 pixel).
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        load_flags = get_hinting_flag()
        antialiased = gc.get_antialiased()
        mode = ft2font.RenderMode.NORMAL if antialiased else ft2font.RenderMode.MONO
        bitmaps = self._glyph_bitmaps
        for font, size, glyph_index, slant, extend, dx, dy in glyphs:
            matrix, matrix_key = self._matrix(angle, slant, extend)
            tx = round(0x40 * (x + dx * cos - dy * sin))
            ty = round(0x40 * (self.height - y + dx * sin + dy * cos))
            key = (font, size, self.dpi, glyph_index, matrix_key, load_flags, mode, tx & 0x3F, ty & 0x3F)
            hit = bitmaps.get(key)
            if hit is None:
                font.set_size(size, self.dpi)
                font._set_transform(matrix, [tx, ty])
                bitmap = font._render_glyph(glyph_index, load_flags, mode)
                buffer = bitmap.buffer
                if not antialiased:
                    buffer *= 0xff
                if len(bitmaps) >= _GLYPH_CACHE_SIZE:
                    bitmaps.clear()
                # The bitmap's corner relative to the whole-pixel part of the position.
                hit = bitmaps[key] = (buffer, bitmap.left - (tx >> 6), bitmap.top - (ty >> 6))
            else:
                _GLYPH_CACHE_HITS[0] += 1
            buffer, left, top = hit
            self._renderer.draw_text_image(
                buffer, left + (tx >> 6), int(self.height) - (top + (ty >> 6)) + buffer.shape[0], 0, gc
            )


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
            renderer = _GlyphCachingRenderer(w, h, self.figure.dpi)
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
