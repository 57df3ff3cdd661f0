"""`misfit.psf_half_light_radius` caches per distinct mixture: results identical to the uncached solve."""

from __future__ import annotations

import numpy as np
from lsst.galmix.fitting import misfit
from lsst.galmix.models.psf_mixture import PsfMixture


def _mixture(rng, n=3) -> PsfMixture:
    z = np.zeros(n)
    return PsfMixture(frac=rng.uniform(0.05, 0.6, n), dx=z, dy=z, xx=rng.uniform(1, 15, n),
                      yy=rng.uniform(1, 15, n), xy=z)


def test_cached_radius_equals_fresh_solve():
    rng = np.random.default_rng(5)
    misfit._half_light_radius_of.cache_clear()
    psfs = [_mixture(rng, n) for n in (1, 2, 3, 3, 4)]
    psfs.append(PsfMixture(frac=[0.5, -0.5], dx=[0, 0], dy=[0, 0], xx=[2, 3], yy=[2, 3], xy=[0, 0]))  # no light
    for psf in psfs:
        var = 0.5 * (psf.xx + psf.yy)
        fresh = misfit._half_light_radius(psf.frac, var)
        first, again = misfit.psf_half_light_radius(psf), misfit.psf_half_light_radius(psf)
        assert np.array_equal([first, again], [fresh, fresh], equal_nan=True)
    assert misfit._half_light_radius_of.cache_info().currsize == len(psfs)
    # Another object with the same mixture (a new instance) hits the cache.
    copy = PsfMixture(psfs[2].frac.copy(), psfs[2].dx, psfs[2].dy, psfs[2].xx.copy(), psfs[2].yy.copy(), psfs[2].xy)
    assert misfit.psf_half_light_radius(copy) == misfit.psf_half_light_radius(psfs[2])
    assert misfit._half_light_radius_of.cache_info().currsize == len(psfs)
    # A different mixture is solved, not served from the cache.
    other = PsfMixture(psfs[2].frac, psfs[2].dx, psfs[2].dy, psfs[2].xx * 1.5, psfs[2].yy * 1.5, psfs[2].xy)
    assert misfit.psf_half_light_radius(other) > misfit.psf_half_light_radius(psfs[2])
    # Half the light of a single round Gaussian lies within sigma * sqrt(2 ln 2).
    single = PsfMixture([0.98], [0], [0], [4.0], [4.0], [0])
    assert np.isclose(misfit.psf_half_light_radius(single), 2.0 * np.sqrt(2 * np.log(2)), rtol=1e-6)
