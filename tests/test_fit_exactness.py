"""Values the fitter keeps or reuses (derived PSF values, problem templates, error limits) give the same
numbers, to the bit, as computing them afresh."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.galmix.models.psf_mixture import PsfMixture


def _mixture() -> PsfMixture:
    return PsfMixture([0.5, 0.3, 0.2], [0.1, -0.2, 0.0], [0.0, 0.3, -0.1], [2.0, 5.0, 12.0], [1.5, 4.0, 11.0],
                      [0.1, -0.3, 0.5])


def _fresh_covariance(m: PsfMixture) -> np.ndarray:
    return PsfMixture(m.frac.copy(), m.dx.copy(), m.dy.copy(), m.xx.copy(), m.yy.copy(), m.xy.copy())._covariance()


def test_psf_mixture_keeps_derived_values():
    m = _mixture()
    cov, arr = m.covariance(), m.engine_array()
    assert m.covariance() is cov and m.engine_array() is arr
    assert np.array_equal(cov, _fresh_covariance(m))
    assert np.array_equal(arr, np.column_stack([m.frac, m.dx, m.dy, m.xx, m.xy, m.yy]))
    with pytest.raises(ValueError):
        cov[0, 0] = 1.0  # shared: read-only


def test_psf_mixture_assignment_drops_derived_values():
    m = _mixture()
    cov, arr = m.covariance(), m.engine_array()
    m.frac = m.frac * 0.99
    assert m.covariance() is not cov and m.engine_array() is not arr
    assert np.array_equal(m.covariance(), _fresh_covariance(m))
    assert np.array_equal(m.engine_array()[:, 0], m.frac)
    assert "_derived" not in repr(m)
