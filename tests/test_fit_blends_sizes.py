"""Parametric deblending of blends of any size: fluxes against truth, children stay on their footprints."""

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.source import SourceFitConfig
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, psf_kernel, render_stamp

PSF = moffat_psf(4.0)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture
SIGMA = 1.0


def make_blend(n_children: int, rng: np.random.Generator, spacing: float = 14.0):
    """Children on a jittered grid (neighbours 14 px = 3.5 PSF FWHM apart), one blend."""
    side = int(np.ceil(np.sqrt(n_children)))
    size = int(side * spacing + 60)
    truths = []
    for k in range(n_children):
        gx, gy = k % side, k // side
        x = 30 + spacing * (gx + 0.5) + rng.uniform(-2, 2)
        y = 30 + spacing * (gy + 0.5) + rng.uniform(-2, 2)
        truths.append(GalaxyTruth(x, y, float(rng.uniform(300, 3000)), n=float(rng.uniform(0.8, 2.5)),
                                  reff=float(rng.uniform(1.5, 3.0)), q=float(rng.uniform(0.5, 0.95)),
                                  theta=float(rng.uniform(0, np.pi))))
    clean = render_stamp(truths, PSF, (size, size))
    img = clean + rng.normal(0, SIGMA, clean.shape)
    objects = Table({
        "objectId": np.arange(1, n_children + 1),
        "parentObjectId": np.full(n_children, 1000),
        # Detection positions: within 0.5 px of the truth.
        "x": [t.x + rng.uniform(-0.5, 0.5) for t in truths],
        "y": [t.y + rng.uniform(-0.5, 0.5) for t in truths],
    })
    return img, objects, truths


def fit_blend(img, objects, **kw):
    return fit_patch({"r": (img, np.full(img.shape, SIGMA**2), None)}, (0, 0), objects, None, {"r": MIX},
                     "sersic", SourceFitConfig(**kw))


@pytest.mark.parametrize(("n_children", "n_blends"), [(2, 8), (5, 4), (8, 3), (15, 2)])
def test_children_fluxes_within_three_sigma(n_children, n_blends):
    rng = np.random.default_rng(n_children)
    pulls, shifts = [], []
    for _ in range(n_blends):
        img, objects, truths = make_blend(n_children, rng)
        out = fit_blend(img, objects)
        assert len(out) == n_children
        assert not out["sersic_flag_bad_fit"].any()
        for row, t, det in zip(out, truths, objects):
            shifts.append(np.hypot(row["sersic_x"] - det["x"], row["sersic_y"] - det["y"]))
            if row["r_sersicFlux"] / row["r_sersicFluxErr"] >= 20:
                pulls.append((row["r_sersicFlux"] - t.flux) / row["r_sersicFluxErr"])
    pulls = np.abs(pulls)
    assert len(pulls) >= 0.8 * n_children * n_blends
    assert np.mean(pulls < 3) >= 0.95, np.sort(pulls)[-5:]
    # No child left its detection for a neighbour (14 px away): all stay within 2 PSF FWHM.
    assert max(shifts) < 8.0


def test_centroids_are_bounded_by_their_detection():
    rng = np.random.default_rng(3)
    img, objects, truths = make_blend(2, rng)
    # A detection 12 px from any source: without a bound its child runs to the nearest galaxy.
    objects.add_row({"objectId": 3, "parentObjectId": 1000, "x": objects["x"][0] + 12.0, "y": objects["y"][0]})
    out = fit_blend(img, objects)
    shift = np.hypot(out["sersic_x"][2] - objects["x"][2], out["sersic_y"][2] - objects["y"][2])
    assert shift <= 2.0 * 2.0 * 4.0 * 1.0001 + 1e-9 or out["sersic_flag_zero_flux"][2]
