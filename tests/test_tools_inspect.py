"""The blend inspector rebuilds models from output-table rows."""

import numpy as np
import pytest
from lsst.galmix.fitting.config import PsfFitConfig
from lsst.galmix.fitting.psf import fit_psf_images_table
from lsst.galmix.fitting.rebuild import theta_from_row
from lsst.galmix.models.definitions import get_model
from lsst.galmix.models.ellipse import q_pa_from_eta
from lsst.galmix.schema import empty_source_table, flux_column, param_column
from lsst.galmix.tools.inspect_blend import render_objects
from reference.render import render


def _row_table(model_name):
    model = get_model(model_name)
    t = empty_source_table(model, ["r"], 1)
    t[param_column(model, "x")][0], t[param_column(model, "y")][0] = 120.3, 45.6
    for comp in model.components:
        if comp.has_shape:
            t[param_column(model, "reffPix", comp)][0] = 3.0
            t[param_column(model, "q", comp)][0] = 0.5
            t[param_column(model, "pa", comp)][0] = 30.0
        if comp.free_n:
            t[param_column(model, "index", comp)][0] = 2.0
        t[flux_column(model, "r", comp)][0] = 1000.0
    return model, t


@pytest.mark.parametrize("name", ["sersic", "expdevFixedCen", "ptsersic", "point"])
def test_theta_from_row_inverts_the_columns(name):
    model, t = _row_table(name)
    theta = theta_from_row(model, t[0])
    assert len(theta) == model.n_nonlinear
    xy = (120.3, 45.6)
    i = 2 if model.free_centroid else 0
    if model.free_centroid:
        assert tuple(theta[:2]) == xy
    for comp in model.components:
        if not comp.has_shape:
            continue
        assert theta[i] == pytest.approx(np.log(3.0))
        q, angle = q_pa_from_eta(theta[i + 1], theta[i + 2])
        assert q == pytest.approx(0.5) and np.degrees(angle) == pytest.approx(30.0)
        i += 3
        if comp.free_n:
            assert theta[i] == 2.0
            i += 1
    assert i == len(theta)


def test_render_objects_matches_the_reference_render():
    model, t = _row_table("sersic")
    y, x = np.mgrid[-16:17, -16:17]
    kernel = np.exp(-(x**2 + y**2) / (2 * 1.5**2))
    psf_table = fit_psf_images_table([kernel / kernel.sum()], [(120.0, 45.0)],
                                     config=PsfFitConfig(n_gauss=2))
    image = render_objects(model, t, "r", psf_table, (40, 50), (100, 25))
    from lsst.galmix.fitting.psf import psf_at

    theta, xy = theta_from_row(model, t[0]), (120.3, 45.6)
    direct = render(model, theta, np.array([1000.0]), psf_at(psf_table, *xy), (40, 50), (100, 25), xy)
    np.testing.assert_allclose(image, direct, rtol=1e-9, atol=1e-12 * direct.max())
    assert image.sum() == pytest.approx(1000.0, rel=0.05)
    # No PSF or non-finite parameters: nothing is drawn.
    assert not render_objects(model, t, "r", None, (40, 50), (100, 25)).any()
    t["sersic_index"][0] = np.nan
    assert not render_objects(model, t, "r", psf_table, (40, 50), (100, 25)).any()
