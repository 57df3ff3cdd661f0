"""Tests of binned statistics, metrics and plots on synthetic matched tables."""

import io

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.analysis import (
    MatchedSpec,
    binned_stats,
    completeness_purity,
    compute_metrics,
    flux_to_mag,
    make_plots,
    plot_names,
    sigma_mad,
)

BANDS = list("griz")


def test_sigma_mad_gaussian_and_outliers():
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 2.0, 200_000)
    assert sigma_mad(x) == pytest.approx(2.0, rel=0.01)
    x[:1000] = 1e6  # 0.5% outliers barely move it
    assert sigma_mad(x) == pytest.approx(2.0, rel=0.02)
    assert np.isnan(sigma_mad([np.nan]))


def test_binned_stats():
    x = np.array([0.5, 0.6, 0.7, 1.5, 1.6, np.nan, 2.5])
    y = np.array([1.0, 2.0, 30.0, -1.0, np.nan, 5.0, 4.0])
    s = binned_stats(x, y, np.array([0.0, 1.0, 2.0]))
    assert list(s.count) == [3, 1]
    assert list(s.median) == [2.0, -1.0]
    assert s.sigma_mad[0] == pytest.approx(1.4826)
    d = s.to_dict()
    assert d["bin_lo"] == [0.0, 1.0] and d["count"] == [3, 1]


def test_completeness_purity():
    edges = np.array([20.0, 21.0, 22.0])
    cp = completeness_purity(
        np.array([20.1, 20.2, 21.5, 21.6]), np.array([True, False, True, True]),
        np.array([20.5, 21.5, 21.7]), np.array([True, True, False]), edges,
    )
    assert list(cp["completeness"]) == [0.5, 1.0]
    assert list(cp["purity"]) == [1.0, 0.5]
    assert flux_to_mag(np.array([3631e9]))[0] == pytest.approx(31.4 - 2.5 * np.log10(3631e9))


def _matched_table(n=3000, gal_bias=0.05, seed=5):
    """Matched table with a known g-band bias for galaxies and unbiased stars."""
    rng = np.random.default_rng(seed)
    t = Table()
    star = rng.random(n) < 0.3
    mag_r = rng.uniform(18, 26, n)
    colors = {"g": 0.5, "r": 0.0, "i": -0.3, "z": -0.4}
    for b in BANDS:
        ref = 10 ** (-0.4 * (mag_r + colors[b] - 31.4))
        err = 0.01 * ref + 5.0
        scale = 10 ** (-0.4 * gal_bias) if b == "g" else 1.0
        meas = np.where(star, ref, ref * scale) + rng.normal(0, 1, n) * err
        t[f"{b}_sersicFlux"] = meas
        t[f"{b}_sersicFluxErr"] = err
        t[f"refcat_flux_{b}"] = ref
    t["refcat_is_pointsource"] = star
    t["refcat_ra"] = rng.uniform(10, 10.1, n)
    t["refcat_dec"] = rng.uniform(-5, -4.9, n)
    t["sersic_ra"] = t["refcat_ra"] + 20 / 3.6e6 / np.cos(np.deg2rad(t["refcat_dec"]))  # +20 mas east
    t["sersic_dec"] = t["refcat_dec"] + rng.normal(0, 10 / 3.6e6, n)
    t["sersic_reff"] = np.where(star, 0.01, 0.5)
    t["sersic_flag"] = rng.random(n) < 0.05
    t["isPrimary"] = np.ones(n, dtype=bool)
    t["match_hasRef"] = np.ones(n, dtype=bool)
    t["match_hasObject"] = np.ones(n, dtype=bool)
    # Unmatched references fainter than r = 25 half of the time; a few unmatched objects.
    lost = (mag_r > 25) & (rng.random(n) < 0.5)
    t["match_hasObject"][lost] = False
    spurious = rng.random(n) < 0.02
    t["match_hasRef"][spurious & ~lost] = False
    return t, lost, spurious & ~lost


def test_metrics_recover_injected_bias():
    t, _, _ = _matched_table()
    spec = MatchedSpec(model="sersic", bands=BANDS + ["y"], mag_min=18, mag_max=26)
    m = compute_metrics(t, spec)
    assert m["bands"] == BANDS  # y has no columns
    gal_g = m["summary"]["galaxies"]["magDiff"]["g"]
    assert gal_g["median"] == pytest.approx(0.05, abs=0.004)
    assert m["summary"]["stars"]["magDiff"]["g"]["median"] == pytest.approx(0.0, abs=0.004)
    assert m["summary"]["galaxies"]["magDiff"]["r"]["median"] == pytest.approx(0.0, abs=0.004)
    assert m["summary"]["galaxies"]["colorDiff"]["g-r"]["median"] == pytest.approx(0.05, abs=0.005)
    assert m["summary"]["galaxies"]["colorDiff"]["r-i"]["median"] == pytest.approx(0.0, abs=0.005)
    # Chi of unbiased stars ~ N(0, 1).
    assert m["summary"]["stars"]["fluxChi"]["r"]["sigma_mad"] == pytest.approx(1.0, abs=0.1)
    assert m["summary"]["galaxies"]["positionDiff"]["ra_mas"]["median"] == pytest.approx(20.0, abs=0.5)
    assert m["summary"]["galaxies"]["positionDiff"]["dec_mas"]["sigma_mad"] == pytest.approx(10.0, rel=0.1)
    # Per-bin statistics: the g bias is there in every galaxy bin with enough objects.
    meds = np.array([v for v in m["magDiff"]["galaxies"]["g"]["median"] if v is not None])
    assert np.all(np.abs(meds - 0.05) < 0.02)
    # Completeness is 1 for r < 25 and about 0.5 beyond; purity reflects the spurious rows.
    comp = m["completeness"]["galaxies"]["fraction"]
    assert comp[:6] == [1.0] * 6
    assert 0.3 < comp[7] < 0.7
    assert all(0.9 < v <= 1.0 for v in m["purity"]["fraction"] if v is not None)
    good = (t["match_hasRef"] & t["match_hasObject"] & ~t["sersic_flag"]).sum()
    assert m["n_good"] == good


def test_selection_band_summary_uses_one_set_of_objects_for_every_band():
    t, _, _ = _matched_table()
    m = compute_metrics(t, MatchedSpec(model="sersic", bands=BANDS, mag_min=18, mag_max=26))
    assert m["selection_band"] == "r"
    ref_r = 31.4 - 2.5 * np.log10(np.asarray(t["refcat_flux_r"], float))
    sel = (t["match_hasRef"] & t["match_hasObject"] & ~t["sersic_flag"] & ~t["refcat_is_pointsource"]
           & (ref_r >= 20) & (ref_r < 24))
    by_r = m["summary"]["galaxies"]["magDiffSelection"]
    assert {b: by_r[b]["count"] for b in BANDS} == {b: int(sel.sum()) for b in BANDS}
    assert by_r["g"]["median"] == pytest.approx(0.05, abs=0.004)
    assert by_r["i"]["median"] == pytest.approx(0.0, abs=0.004)
    # The band's own magnitude selects a different set when colours are not zero.
    assert m["summary"]["galaxies"]["magDiff"]["g"]["count"] != by_r["g"]["count"]
    assert m["n_ref"] == t["match_hasRef"].sum()


def test_metrics_yaml_serialisable():
    import yaml

    t, _, _ = _matched_table(n=200)
    m = compute_metrics(t, MatchedSpec(bands=BANDS))
    assert yaml.safe_load(yaml.safe_dump(m)) == m


def test_plots_are_png():
    t, _, _ = _matched_table(n=500)
    figs = make_plots(t, MatchedSpec(bands=BANDS))
    assert sorted(figs) == sorted(plot_names(BANDS))
    fig = figs["matchedRefMagDiff_g"]
    assert "selection" in fig._suptitle.get_text()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    # One panel per class, each with median and 3 x 2 sigma_MAD lines.
    ax = fig.axes[0]
    assert len(fig.axes) == 2 and ax.get_title().startswith("galaxies")
    assert len(ax.lines) >= 7


def test_size_plot_of_a_multi_component_model():
    t, _, _ = _matched_table(n=300)
    for b in BANDS:
        t.rename_column(f"{b}_sersicFlux", f"{b}_sersicexpFlux")
        t.rename_column(f"{b}_sersicFluxErr", f"{b}_sersicexpFluxErr")
    t.rename_column("sersic_reff", "sersicexp_sersic_reff")
    for name in ("ra", "dec", "flag"):
        t.rename_column(f"sersic_{name}", f"sersicexp_{name}")
    figs = make_plots(t, MatchedSpec(model="sersicexp", bands=BANDS))
    assert "sizeMagnitude" in figs
    assert "sersicexp_sersic_reff" in figs["sizeMagnitude"].axes[0].get_ylabel()


def test_summary_text_gives_both_selections():
    from lsst.galmix.tools.report import format_metrics_summary

    t, _, _ = _matched_table()
    m = compute_metrics(t, MatchedSpec(model="sersic", bands=BANDS, mag_min=18, mag_max=26))
    text = format_metrics_summary(m)
    g_line = next(line for line in text.splitlines() if line.strip().startswith("galaxies g:"))
    by_r = m["summary"]["galaxies"]["magDiffSelection"]["g"]
    assert f"r selection N={by_r['count']:4d}" in g_line
    assert f"{1000 * by_r['median']:+7.1f}" in g_line


def test_nan_error_metric_and_chi_at_high_snr():
    from lsst.galmix.analysis.metrics import CHI_MIN_SNR, nan_error_fraction, ref_blendedness

    t, _, _ = _matched_table()
    t["parentObjectId"] = np.zeros(len(t), dtype=np.int64)
    t["parentObjectId"][:300] = 7  # blended: not in the S/N chi summary
    spec = MatchedSpec(model="sersic", bands=BANDS, mag_min=18, mag_max=26)
    m = compute_metrics(t, spec)
    assert m["nanFluxErr"]["n_nan"] == 0 and m["nanFluxErr"]["fraction"] == 0.0
    chi = m["summary"]["stars"]["fluxChiSnr"]["r"]
    good = (t["match_hasRef"] & t["match_hasObject"] & ~t["sersic_flag"] & t["refcat_is_pointsource"]
            & (t["parentObjectId"] == 0) & (t["r_sersicFlux"] / t["r_sersicFluxErr"] >= CHI_MIN_SNR)
            & ~(ref_blendedness(t, "r") >= spec.max_ref_blendedness))
    assert chi["count"] == good.sum() and chi["sigma_mad"] == pytest.approx(1.0, abs=0.1)
    assert sum(b["count"] for b in chi["bins"]) == chi["count"]
    # A NaN error of an unflagged row counts; one of a flagged row does not.
    has_obj = np.asarray(t["match_hasObject"], bool)
    unflagged = np.flatnonzero(~t["sersic_flag"] & has_obj)[0]
    flagged = np.flatnonzero(t["sersic_flag"] & has_obj)[0]
    t["g_sersicFluxErr"][unflagged] = np.nan
    t["r_sersicFluxErr"][flagged] = np.nan
    nan = nan_error_fraction(t, "sersic", BANDS)
    assert nan["n_nan"] == 1 and nan["per_band"] == {"g": 1, "r": 0, "i": 0, "z": 0}
    assert nan["n_unflagged"] == (~t["sersic_flag"] & t["match_hasObject"]).sum()  # object rows only
    # The chi plot counts every unflagged row of its class, the non-finite one too.
    fig = make_plots(t, spec)["matchedRefMagChi_g"]
    title = fig.axes[0].get_title()
    gal = t["match_hasRef"] & t["match_hasObject"] & ~t["sersic_flag"] & ~t["refcat_is_pointsource"]
    n_nan = int((gal & ~np.isfinite(t["g_sersicFluxErr"])).sum())
    assert f"all: N={gal.sum() - n_nan} " in title and "sigma_MAD=" in title and f"S/N>={CHI_MIN_SNR:g}" in title
    if n_nan:
        assert f"(+{n_nan} non-finite)" in title


def test_ref_blendedness_finds_unrecognised_blends():
    """A reference with a neighbour inside the PSF is blended, a lone one or one beside a faint distant one is not."""
    from lsst.galmix.analysis.metrics import ref_blendedness

    arcsec = 1.0 / 3600.0
    t = Table({
        "refcat_ra": [10.0, 10.0 + 0.5 * arcsec, 10.1, 10.2, 10.2 + 6 * arcsec, 10.3],
        "refcat_dec": [0.0, 0.0, 0.0, 0.0, 0.0, np.nan],
        "refcat_flux_r": [1000.0, 300.0, 1000.0, 1000.0, 10.0, 1000.0],
    })
    b = ref_blendedness(t, "r", psf_fwhm=0.8)
    # Two sources 0.5" apart (0.6 FWHM): each carries most of the other's weighted flux ratio.
    assert b[0] == pytest.approx(0.3 * np.exp(-0.25 / (4 * (0.8 / 2.3548) ** 2)), rel=1e-6)
    assert b[1] > 1.0
    assert b[2] == 0.0 and b[3] < 1e-6 and np.isnan(b[5])
    # Sizes widen the profiles: the same pair at 2" overlaps more when both are 1" galaxies.
    t2 = Table({"refcat_ra": [10.0, 10.0 + 2 * arcsec], "refcat_dec": [0.0, 0.0],
                "refcat_flux_r": [1000.0, 1000.0], "refcat_reff": [1.0, 1.0]})
    t3 = Table({"refcat_ra": [10.0, 10.0 + 2 * arcsec], "refcat_dec": [0.0, 0.0], "refcat_flux_r": [1000.0, 1000.0]})
    assert ref_blendedness(t2, "r")[0] > 0.01 > ref_blendedness(t3, "r")[0]


def _png_pixels(fig, canvas_class) -> np.ndarray:
    """The pixels of ``fig`` drawn on a canvas of ``canvas_class`` and written as PNG."""
    from PIL import Image

    canvas_class(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return np.asarray(Image.open(buf))


def test_shared_renderer_draws_the_same_pixels_as_a_private_one():
    from lsst.galmix.analysis.plots import SharedRendererCanvas
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    t, _, _ = _matched_table(n=300)
    spec = MatchedSpec(bands=BANDS)
    shared = make_plots(t, spec)
    private = make_plots(t, spec)
    assert isinstance(shared["matchedRefMagDiff_g"].canvas, SharedRendererCanvas)
    # Figures of the same size drawn in turn on the shared renderer (with other sizes in between), each
    # compared with the same figure drawn on a renderer of its own.
    for name in ("matchedRefMagDiff_g", "matchedRefPositionDiff", "matchedRefMagChi_r", "matchedRefMagDiff_z"):
        assert np.array_equal(_png_pixels(shared[name], SharedRendererCanvas),
                              _png_pixels(private[name], FigureCanvasAgg))
    assert shared["matchedRefMagDiff_g"].canvas.get_renderer() is shared["matchedRefMagDiff_z"].canvas.get_renderer()


def test_tick_memo_draws_the_same_pixels_and_is_used():
    """`canvas._ticks_updated_once` (private matplotlib API ``Axis._update_ticks``): every plot's PNG
    pixels equal a plain Agg draw's, the memo skips most tick updates, and no axis keeps the wrapper."""
    from lsst.galmix.analysis import canvas
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    t, _, _ = _matched_table(n=300)
    spec = MatchedSpec(bands=BANDS)
    memo, plain = make_plots(t, spec), make_plots(t, spec)
    assert set(memo) == set(plain) and len(memo) > 5
    hits = canvas._TICK_MEMO_HITS[0]
    for name in memo:
        assert np.array_equal(_png_pixels(memo[name], canvas.SharedRendererCanvas),
                              _png_pixels(plain[name], FigureCanvasAgg)), name
        assert not any("_update_ticks" in vars(a) for ax in memo[name].axes for a in (ax.xaxis, ax.yaxis))
    # Each of the 2 axes of a panel is updated once per draw; its other two calls come from the memo.
    assert canvas._TICK_MEMO_HITS[0] - hits >= 2 * 2 * sum(len(f.axes) for f in memo.values())


def test_text_layout_memo_draws_the_same_pixels_and_is_used():
    """`canvas._text_layouts_memoized` (private matplotlib API ``Text._get_layout``): the PNG pixels equal
    a plain Agg draw's, most layouts come from the memo, and a text whose layout inputs change (size,
    rotation, alignment, string) within a memoised draw is laid out anew."""
    from lsst.galmix.analysis import canvas
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t, _, _ = _matched_table(n=300)
    spec = MatchedSpec(bands=BANDS)
    memo, plain = make_plots(t, spec), make_plots(t, spec)
    hits = canvas._LAYOUT_MEMO_HITS[0]
    for name in memo:
        assert np.array_equal(_png_pixels(memo[name], canvas.SharedRendererCanvas),
                              _png_pixels(plain[name], FigureCanvasAgg)), name
    assert canvas._LAYOUT_MEMO_HITS[0] - hits > 50 * len(memo)

    fig = Figure(figsize=(3, 2))
    canvas.SharedRendererCanvas(fig)
    text = fig.text(0.5, 0.5, "abc", fontsize=10)
    renderer = fig.canvas.get_renderer()
    layouts = canvas.SharedRendererCanvas._local.renderers[fig.canvas._lastKey][1]
    with canvas._text_layouts_memoized(renderer, layouts):
        seen = [text.get_window_extent(renderer).bounds]
    for change in ({"fontsize": 14}, {"rotation": 30}, {"ha": "right"}, {"va": "top"}, {"text": "abcd"},
                   {"linespacing": 2.0, "text": "a\nb"}, {"multialignment": "right", "text": "a\nbcd"},
                   {"weight": "bold"}, {"rotation_mode": "anchor"}):
        text.update(change)
        with canvas._text_layouts_memoized(renderer, layouts):
            seen.append(text.get_window_extent(renderer).bounds)
        assert text.get_window_extent(renderer).bounds == seen[-1], change  # as without the memo
    assert len(set(seen)) == len(seen)  # every change moved or resized the box
    # Outside the block, and for another renderer, the method is matplotlib's.
    hits = canvas._LAYOUT_MEMO_HITS[0]
    text.get_window_extent(renderer)
    other = FigureCanvasAgg(Figure(figsize=(3, 2))).get_renderer()
    with canvas._text_layouts_memoized(other, {}):
        text.get_window_extent(renderer)
        text.get_window_extent(renderer)
    assert canvas._LAYOUT_MEMO_HITS[0] == hits


def test_png_written_at_fast_zlib_level_with_the_same_pixels(tmp_path):
    """`SharedRendererCanvas` writes PNGs at zlib level 3 (as the Butler's formatter calls ``savefig``:
    a path with a .png suffix) with the pixels of a default write; other formats still work."""
    import struct

    from lsst.galmix.analysis import plots
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.image import imread

    def zlib_level_class(path) -> int:
        data = path.read_bytes()
        pos = 8
        while pos < len(data):
            (length,) = struct.unpack(">I", data[pos:pos + 4])
            if data[pos + 4:pos + 8] == b"IDAT":
                return data[pos + 9] >> 6  # FLEVEL of the zlib header: 1 = levels 2-5, 2 = level 6
            pos += 12 + length
        raise AssertionError("no IDAT chunk")

    t, _, _ = _matched_table(n=200)
    ours = make_plots(t, MatchedSpec(bands=BANDS))["matchedRefMagDiff_g"]
    plain = make_plots(t, MatchedSpec(bands=BANDS))["matchedRefMagDiff_g"]
    FigureCanvasAgg(plain)
    assert isinstance(ours.canvas, plots.SharedRendererCanvas)
    ours.savefig(str(tmp_path / "ours.png"), metadata={})
    plain.savefig(str(tmp_path / "plain.png"), metadata={})
    assert zlib_level_class(tmp_path / "ours.png") == 1 and zlib_level_class(tmp_path / "plain.png") == 2
    assert np.array_equal(imread(tmp_path / "ours.png"), imread(tmp_path / "plain.png"))
    ours.savefig(tmp_path / "ours.pdf")
    assert (tmp_path / "ours.pdf").stat().st_size > 0


def test_fixed_layout_keeps_every_text_inside_the_figure_and_apart():
    """The plots' fixed layout (`plots._panels`): every panel's decorations (tick and axis labels, bin
    counts, one- or two-line titles) lie inside the figure, below the figure title and clear of the
    neighbouring panel."""
    t, _, _ = _matched_table(n=2000)
    figs = make_plots(t, MatchedSpec(bands=BANDS))
    for name, fig in figs.items():
        assert fig.get_layout_engine() is None, name
        renderer = fig.canvas.get_renderer()
        fig.draw_without_rendering()
        width, height = fig.bbox.width, fig.bbox.height
        boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
        title = fig._suptitle.get_window_extent(renderer)
        assert 0 <= title.x0 and title.x1 <= width and title.y1 <= height, name
        for k, box in enumerate(boxes):
            assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width, (name, k, box)
            assert box.y1 < title.y0, (name, k, box, title)
            if k:
                assert boxes[k - 1].x1 < box.x0, (name, k)


def test_glyph_cache_draws_the_same_pixels_and_is_used():
    """`canvas._GlyphCachingRenderer` (private matplotlib API of ``RendererAgg`` text drawing): texts at
    sub-pixel positions, rotated, of several sizes and weights, not antialiased, and math text equal a
    plain Agg draw's pixels, also when drawn a second time from the cache."""
    from lsst.galmix.analysis import canvas
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def figure() -> Figure:
        fig = Figure(figsize=(4.13, 3.07), dpi=97)
        for k in range(12):
            fig.text(0.05 + 0.0731 * k, 0.1 + 0.0617 * k, f"N={k}7 g-r", fontsize=6 + k % 4, rotation=15 * k,
                     weight="bold" if k % 3 == 0 else "normal", antialiased=k % 5 != 0)
        fig.text(0.5, 0.9, r"$\sigma_{MAD} = \frac{1}{2}$ and $x^2$", fontsize=9)
        ax = fig.add_axes((0.55, 0.2, 0.4, 0.4))
        ax.set_xlabel("reference r mag")
        ax.set_ylabel("log10 size")
        return fig

    plain = _png_pixels(figure(), FigureCanvasAgg)
    hits = canvas._GLYPH_CACHE_HITS[0]
    first = _png_pixels(figure(), canvas.SharedRendererCanvas)
    again = _png_pixels(figure(), canvas.SharedRendererCanvas)
    assert np.array_equal(first, plain) and np.array_equal(again, plain)
    assert canvas._GLYPH_CACHE_HITS[0] - hits > 100
