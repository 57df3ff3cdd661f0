"""matchTruth: probabilistic one-to-one matching of a reference catalogue to the tract object table."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.pipe.base import connectionTypes as cT

from ..analysis.catalogs import column_values, in_primary_area, match_tables, pixel_scale_arcsec
from ..analysis.matching import match_probabilistic
from ..analysis.stats import flux_to_mag
from ..connections import MATCH_REF, MATCH_TARGET, MatchedConnections, table
from ..schema import error_column, flux_column, param_column

__all__ = ["MatchTruthConfig", "MatchTruthConnections", "MatchTruthTask"]


def _stack(table: Table, names: list[str]) -> np.ndarray:
    """Columns as an ``(N, len(names))`` float array."""
    out = np.empty((len(table), len(names)))
    for i, name in enumerate(names):
        out[:, i] = column_values(table, name)
    return out


class MatchTruthConnections(MatchedConnections):
    matchRef = table(cT.Output, "Match table row-aligned with the reference catalogue", MATCH_REF)
    matchTarget = table(cT.Output, "Match table row-aligned with the object table", MATCH_TARGET)


class MatchTruthConfig(pipeBase.PipelineTaskConfig, pipelineConnections=MatchTruthConnections):
    """Configuration of `MatchTruthTask`."""

    model = pexConfig.Field[str](doc="Model whose centroid and fluxes are matched", default="sersic")
    bands = pexConfig.ListField[str](
        doc="Bands whose fluxes enter the chi-square (bands missing from either table are skipped)",
        default=list("ugrizy"),
    )
    radius = pexConfig.Field[float](doc="Match radius (arcsec)", default=0.5)
    refFluxTemplate = pexConfig.Field[str](doc="Reference flux column of a band", default="flux_{band}")
    refRaColumn = pexConfig.Field[str](doc="Reference RA column (deg)", default="ra")
    refDecColumn = pexConfig.Field[str](doc="Reference Dec column (deg)", default="dec")
    refUniqueColumn = pexConfig.Field[str](
        doc="Boolean reference column selecting unique entries ('' or absent column: all)",
        default="is_unique_truth_entry",
    )
    refMagBand = pexConfig.Field[str](doc="Band of the reference magnitude limit", default="r")
    refMagMax = pexConfig.Field[float](
        doc="References fainter than this (AB) in refMagBand are not matched", default=28.0
    )
    targetPrimaryColumn = pexConfig.Field[str](
        doc="Boolean object column selecting objects that may be matched", default="isPrimary"
    )
    refInPrimaryArea = pexConfig.Field[bool](
        doc="Only references in the area where objects are primary are candidates (see "
        "lsst.galmix.analysis.catalogs.in_primary_area): references in patch or tract borders would "
        "otherwise count as missed",
        default=True,
    )
    primaryAreaRadius = pexConfig.Field[float](
        doc="Neighbourhood radius (arcsec) deciding whether a reference lies in the primary area", default=2.0
    )
    pixelScale = pexConfig.Field[float](
        doc="Pixel scale (arcsec) used when it cannot be measured from the table", default=0.2
    )


class MatchTruthTask(pipeBase.PipelineTask):
    """Match references (brightest first) to objects by least chi-square over position and fluxes.

    Object position errors are ``<model>_xErr``/``<model>_yErr`` converted with the pixel scale measured
    from the table's own pixel and sky coordinates.
    """

    ConfigClass = MatchTruthConfig
    _DefaultName = "matchTruth"
    config: MatchTruthConfig

    def run(self, reference: Table, target: Table) -> pipeBase.Struct:
        """Match the tables.

        Parameters
        ----------
        reference : `astropy.table.Table`
            Reference catalogue.
        target : `astropy.table.Table`
            Object table with the configured model's columns.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``matchRef`` and ``matchTarget`` tables, row-aligned with the inputs.
        """
        cfg = self.config
        m = cfg.model
        bands = [
            b
            for b in cfg.bands
            if cfg.refFluxTemplate.format(band=b) in reference.colnames and flux_column(m, b) in target.colnames
        ]

        ref_flux = _stack(reference, [cfg.refFluxTemplate.format(band=b) for b in bands])
        tgt_flux = _stack(target, [flux_column(m, b) for b in bands])
        tgt_err = _stack(target, [error_column(flux_column(m, b)) for b in bands])

        ref_select = np.ones(len(reference), dtype=bool)
        if cfg.refUniqueColumn and cfg.refUniqueColumn in reference.colnames:
            ref_select &= column_values(reference, cfg.refUniqueColumn, False).astype(bool)
        mag_col = cfg.refFluxTemplate.format(band=cfg.refMagBand)
        if mag_col in reference.colnames:
            with np.errstate(invalid="ignore"):
                ref_select &= flux_to_mag(column_values(reference, mag_col)) <= cfg.refMagMax
        tgt_select = np.ones(len(target), dtype=bool)
        if cfg.targetPrimaryColumn in target.colnames:
            tgt_select &= column_values(target, cfg.targetPrimaryColumn, False).astype(bool)
        elif "detect_isPrimary" in target.colnames:
            tgt_select &= column_values(target, "detect_isPrimary", False).astype(bool)

        t_ra, t_dec = column_values(target, param_column(m, "ra")), column_values(target, param_column(m, "dec"))
        if cfg.refInPrimaryArea:
            ref_select &= in_primary_area(
                column_values(reference, cfg.refRaColumn), column_values(reference, cfg.refDecColumn),
                t_ra, t_dec, tgt_select, radius=cfg.primaryAreaRadius,
            )
        scale = np.nan
        if param_column(m, "x") in target.colnames:
            scale = pixel_scale_arcsec(column_values(target, param_column(m, "x")), column_values(target, param_column(m, "y")),
                                       t_ra, t_dec)
        if not np.isfinite(scale):
            scale = cfg.pixelScale
        x_err, y_err = error_column(param_column(m, "x")), error_column(param_column(m, "y"))
        if x_err in target.colnames:
            pos_err = scale * np.hypot(column_values(target, x_err), column_values(target, y_err)) / np.sqrt(2)
        else:
            pos_err = np.full(len(target), np.nan)

        result = match_probabilistic(
            column_values(reference, cfg.refRaColumn), column_values(reference, cfg.refDecColumn), ref_flux,
            t_ra, t_dec, pos_err, tgt_flux, tgt_err,
            radius=cfg.radius, ref_select=ref_select, target_select=tgt_select,
        )
        match_ref, match_target = match_tables(result)
        self.log.info(
            "Matched %d of %d reference candidates to %d object candidates (bands %s, %.3f\"/pixel)",
            result.n_matched, int(result.ref_candidate.sum()), int(result.target_candidate.sum()), bands, scale,
        )
        return pipeBase.Struct(matchRef=match_ref, matchTarget=match_target)
