"""Probabilistic one-to-one matching of a reference catalogue to measured objects.

References are taken brightest first; each takes, among the still unmatched candidates within a
radius, the one of least chi-square over position and fluxes (using the candidate's errors). This is
the scheme of LSST's ``MatchProbabilisticTask`` reduced to what galmix needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["MatchResult", "angular_separation_arcsec", "chord_length", "match_probabilistic", "sky_to_unit"]

_ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0


def sky_to_unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Convert ICRS coordinates to unit vectors.

    Parameters
    ----------
    ra, dec : `numpy.ndarray`
        Coordinates in degrees.

    Returns
    -------
    xyz : `numpy.ndarray`
        Array of shape ``(N, 3)``.
    """
    ra_r = np.deg2rad(np.asarray(ra, dtype=float))
    dec_r = np.deg2rad(np.asarray(dec, dtype=float))
    cos_dec = np.cos(dec_r)
    return np.column_stack([cos_dec * np.cos(ra_r), cos_dec * np.sin(ra_r), np.sin(dec_r)])


def chord_length(radius: float) -> float:
    """Length of the chord between two unit vectors (`sky_to_unit`) ``radius`` arcsec apart: the search
    radius of a k-d tree of unit vectors."""
    return float(2 * np.sin(radius / _ARCSEC_PER_RAD / 2))


def angular_separation_arcsec(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray
) -> np.ndarray:
    """Angular separation in arcsec (haversine form, accurate at small separations).

    Parameters
    ----------
    ra1, dec1, ra2, dec2 : `numpy.ndarray`
        Coordinates in degrees.

    Returns
    -------
    sep : `numpy.ndarray`
        Separations in arcsec.
    """
    ra1, dec1, ra2, dec2 = (np.deg2rad(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return 2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))) * _ARCSEC_PER_RAD


def _offsets_arcsec(
    ra_ref: float, dec_ref: float, ra: np.ndarray, dec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane offsets (east, north) of ``ra, dec`` from a reference point, in arcsec."""
    dra = (np.asarray(ra) - ra_ref + 180.0) % 360.0 - 180.0
    d_east = dra * np.cos(np.deg2rad(dec_ref)) * 3600.0
    d_north = (np.asarray(dec) - dec_ref) * 3600.0
    return d_east, d_north


@dataclass
class MatchResult:
    """Outcome of `match_probabilistic`.

    Attributes
    ----------
    ref_to_target : `numpy.ndarray`
        For each reference row, the index of its matched target, or -1.
    target_to_ref : `numpy.ndarray`
        For each target row, the index of its matched reference, or -1.
    ref_candidate : `numpy.ndarray`
        Whether each reference row took part in matching (passed the selection).
    target_candidate : `numpy.ndarray`
        Whether each target row was eligible to be matched.
    ref_count : `numpy.ndarray`
        Number of unmatched candidates within the radius when the reference was processed.
    ref_chisq : `numpy.ndarray`
        Chi-square of the chosen match (NaN if unmatched).
    ref_n_finite : `numpy.ndarray`
        Number of finite chi-square terms of the chosen match (0 if unmatched).
    distance : `numpy.ndarray`
        Angular distance of each reference's match in arcsec (NaN if unmatched).
    """

    ref_to_target: np.ndarray
    target_to_ref: np.ndarray
    ref_candidate: np.ndarray
    target_candidate: np.ndarray
    ref_count: np.ndarray
    ref_chisq: np.ndarray
    ref_n_finite: np.ndarray
    distance: np.ndarray

    @property
    def n_matched(self) -> int:
        """Number of matched pairs."""
        return int(np.sum(self.ref_to_target >= 0))


def match_probabilistic(
    ref_ra: np.ndarray,
    ref_dec: np.ndarray,
    ref_fluxes: np.ndarray,
    target_ra: np.ndarray,
    target_dec: np.ndarray,
    target_pos_err: np.ndarray,
    target_fluxes: np.ndarray,
    target_flux_errs: np.ndarray,
    radius: float = 0.5,
    ref_select: np.ndarray | None = None,
    target_select: np.ndarray | None = None,
) -> MatchResult:
    """Match references to targets one-to-one, brightest reference first.

    Parameters
    ----------
    ref_ra, ref_dec : `numpy.ndarray`
        Reference coordinates (deg), shape ``(N_ref,)``.
    ref_fluxes : `numpy.ndarray`
        Reference fluxes, shape ``(N_ref, N_band)`` (nJy). The order of processing is by decreasing
        total finite flux.
    target_ra, target_dec : `numpy.ndarray`
        Target coordinates (deg), shape ``(N_target,)``.
    target_pos_err : `numpy.ndarray`
        1-sigma positional error of each target per axis (arcsec); non-finite or non-positive values
        drop the position terms from that target's chi-square.
    target_fluxes, target_flux_errs : `numpy.ndarray`
        Target fluxes and errors, shape ``(N_target, N_band)`` (nJy); terms with a non-finite value or a
        non-positive error are left out of the chi-square.
    radius : `float`
        Search radius in arcsec.
    ref_select, target_select : `numpy.ndarray`, optional
        Boolean selections of rows that may be matched (default: rows with finite coordinates).

    Returns
    -------
    result : `MatchResult`
        The matches.

    Notes
    -----
    The chi-square is ``sum((d_east/err)^2 + (d_north/err)^2) + sum_b ((f_t - f_r)/err_t)^2`` over finite
    terms. When every candidate's chi-square is non-finite, the nearest candidate wins.
    """
    ref_ra = np.asarray(ref_ra, dtype=float)
    ref_dec = np.asarray(ref_dec, dtype=float)
    target_ra = np.asarray(target_ra, dtype=float)
    target_dec = np.asarray(target_dec, dtype=float)
    ref_fluxes = np.atleast_2d(np.asarray(ref_fluxes, dtype=float).reshape(len(ref_ra), -1))
    target_fluxes = np.asarray(target_fluxes, dtype=float).reshape(len(target_ra), -1)
    target_flux_errs = np.asarray(target_flux_errs, dtype=float).reshape(len(target_ra), -1)
    target_pos_err = np.asarray(target_pos_err, dtype=float)
    if ref_fluxes.shape[1] != target_fluxes.shape[1]:
        raise ValueError(
            f"Reference and target flux arrays have {ref_fluxes.shape[1]} and {target_fluxes.shape[1]} bands"
        )
    n_ref, n_target = len(ref_ra), len(target_ra)
    ref_ok = np.isfinite(ref_ra) & np.isfinite(ref_dec)
    if ref_select is not None:
        ref_ok &= np.asarray(ref_select, dtype=bool)
    target_ok = np.isfinite(target_ra) & np.isfinite(target_dec)
    if target_select is not None:
        target_ok &= np.asarray(target_select, dtype=bool)

    result = MatchResult(
        ref_to_target=np.full(n_ref, -1, dtype=np.int64),
        target_to_ref=np.full(n_target, -1, dtype=np.int64),
        ref_candidate=ref_ok.copy(),
        target_candidate=target_ok.copy(),
        ref_count=np.zeros(n_ref, dtype=np.int32),
        ref_chisq=np.full(n_ref, np.nan),
        ref_n_finite=np.zeros(n_ref, dtype=np.int32),
        distance=np.full(n_ref, np.nan),
    )
    target_idx = np.flatnonzero(target_ok)
    if n_ref == 0 or len(target_idx) == 0:
        return result

    tree = cKDTree(sky_to_unit(target_ra[target_idx], target_dec[target_idx]))
    chord = chord_length(radius)
    ref_idx = np.flatnonzero(ref_ok)
    brightness = np.nansum(np.where(np.isfinite(ref_fluxes[ref_idx]), ref_fluxes[ref_idx], 0.0), axis=1)
    ref_idx = ref_idx[np.argsort(-brightness, kind="stable")]
    neighbours = tree.query_ball_point(sky_to_unit(ref_ra[ref_idx], ref_dec[ref_idx]), chord)
    taken = np.zeros(n_target, dtype=bool)

    with np.errstate(invalid="ignore", divide="ignore"):
        for i_ref, found in zip(ref_idx, neighbours):
            if not found:
                continue
            cand = target_idx[np.asarray(found, dtype=int)]
            cand = cand[~taken[cand]]
            if len(cand) == 0:
                continue
            d_east, d_north = _offsets_arcsec(ref_ra[i_ref], ref_dec[i_ref], target_ra[cand], target_dec[cand])
            dist = np.hypot(d_east, d_north)
            inside = dist <= radius
            cand, d_east, d_north, dist = cand[inside], d_east[inside], d_north[inside], dist[inside]
            if len(cand) == 0:
                continue
            pos_err = target_pos_err[cand]
            pos_terms = np.column_stack([(d_east / pos_err) ** 2, (d_north / pos_err) ** 2])
            pos_terms[~(np.isfinite(pos_err) & (pos_err > 0))] = np.nan
            flux_terms = ((target_fluxes[cand] - ref_fluxes[i_ref]) / target_flux_errs[cand]) ** 2
            flux_terms[~(target_flux_errs[cand] > 0)] = np.nan
            terms = np.column_stack([pos_terms, flux_terms])
            finite = np.isfinite(terms)
            n_finite = finite.sum(axis=1)
            chisq = np.where(finite, terms, 0.0).sum(axis=1)
            chisq[n_finite == 0] = np.nan
            if np.any(np.isfinite(chisq)):
                best = int(np.nanargmin(chisq))
            else:
                best = int(np.argmin(dist))
            i_t = cand[best]
            taken[i_t] = True
            result.ref_to_target[i_ref] = i_t
            result.target_to_ref[i_t] = i_ref
            result.ref_count[i_ref] = len(cand)
            result.ref_chisq[i_ref] = chisq[best]
            result.ref_n_finite[i_ref] = n_finite[best]
            result.distance[i_ref] = dist[best]
    return result
