"""fitCoaddMultiband: one source model fitted to every object of a patch in all bands at once."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.daf.butler import DeferredDatasetHandle
from lsst.pipe.base import connectionTypes as cT

from .. import connections
from ..data.tables import put_outputs
from ..fitting.config import SourceFitConfig
from ..fitting.patch import fit_patch
from ..fitting.timing import StageTimer, active_timer, record_stages, stage, timed_quantum
from ..models.definitions import MODELS
from ..schema import summary_flag_column

__all__ = [
    "FitCoaddMultibandConfig",
    "FitCoaddMultibandConnections",
    "FitCoaddMultibandTask",
    "upstream_objects",
]


class FitCoaddMultibandConnections(
    pipeBase.PipelineTaskConnections,
    dimensions=connections.PATCH_DIMENSIONS,
    defaultTemplates={"coaddName": "deep_coadd_cell", "model": connections.MODEL_TEMPLATE_DEFAULT},
):
    coadds = connections.coadds("Cell coadds of all bands (read one band at a time)")
    objects = connections.objects(cT.Input, "Detected (deblended) objects")
    footprints = connections.footprints(cT.Input, "Label image: which object owns each pixel")
    psfFits = connections.psf_fits(cT.Input, "PSF mixtures of all bands", multiple=True)
    outputTable = connections.table(cT.Output, "One row per object: fluxes in all bands, shape, centroid, flags",
                                    "galmix_{model}_patch", connections.PATCH_DIMENSIONS)

    def __init__(self, *, config: FitCoaddMultibandConfig):
        if not config.usePsfFits:
            del self.psfFits
        if config.inputCatalog == "upstream":
            self.objects = connections.table(cT.Input, "Upstream object catalogue of the patch (Rubin column "
                                             "names)", config.upstreamCatalog, connections.PATCH_DIMENSIONS)
            if not config.upstreamFootprints:
                del self.footprints
        connections.apply_model_template(self, config.modelName)


class FitCoaddMultibandConfig(pipeBase.PipelineTaskConfig, pipelineConnections=FitCoaddMultibandConnections):
    """Configuration of `FitCoaddMultibandTask`.

    The fitted model is ``modelName``: ``model`` with a point source added (``addPointSource``; only
    where the registry has that model, e.g. ``sersic`` -> ``ptsersic``) and ``FixedCen`` appended when
    ``fixCentroid``. The output dataset type is ``galmix_<modelName>_patch``.
    """

    model = pexConfig.Field[str](doc="Base model (a registry name without FixedCen)", default="sersic")
    inputCatalog = pexConfig.ChoiceField[str](
        doc="Which catalogue gives the objects to fit",
        default="galmix",
        allowed={
            "galmix": "galmix_objects and galmix_footprints of detectCoaddSources",
            "upstream": "An upstream per-patch object catalogue (upstreamCatalog) in Rubin column names: "
            "objectId, x, y (tract pixels) or coord_ra/coord_dec (degrees), parentObjectId optional",
        },
    )
    upstreamCatalog = pexConfig.Field[str](
        doc="Dataset type of the upstream catalogue (inputCatalog='upstream'); per (tract, patch)",
        default="object_patch",
    )
    upstreamFootprints = pexConfig.Field[bool](
        doc="With inputCatalog='upstream': also read the footprints connection, a label image whose values "
        "are the catalogue's footprintLabel column (else no footprints: neighbours are fitted or "
        "modelled, not masked)",
        default=False,
    )
    addPointSource = pexConfig.Field[bool](doc="Add a point source sharing the centre", default=False)
    fixCentroid = pexConfig.Field[bool](doc="Hold the centroid at the detection position", default=False)
    bands = pexConfig.ListField[str](
        doc="Bands fitted; a band without a coadd gives NaN fluxes and missing_band", default=list("ugrizy")
    )
    badMaskPlanes = pexConfig.ListField[str](
        doc="Mask planes whose pixels get zero weight", default=["BAD", "SAT", "NO_DATA"]
    )
    usePsfFits = pexConfig.Field[bool](
        doc="PSF from galmix_psf_fits (else the coadd kernel at each object, fitted with fit.psf)", default=True
    )
    fit = pexConfig.ConfigField[SourceFitConfig](
        doc="Settings of the fitting library (stamps, sky, blends, residual sources, PSF fits of kernel "
        "images, optimizer and priors); fit.pixel_scale is replaced by the scale of the coadd's WCS",
        dtype=SourceFitConfig,
    )

    @property
    def modelName(self) -> str:
        """Registry name of the fitted model."""
        name = f"pt{self.model}" if self.addPointSource else self.model
        return f"{name}FixedCen" if self.fixCentroid else name

    def validate(self):
        super().validate()
        if self.model.endswith("FixedCen"):
            raise pexConfig.FieldValidationError(
                FitCoaddMultibandConfig.model, self, "Give the base model and set fixCentroid instead"
            )
        if self.modelName not in MODELS:
            raise pexConfig.FieldValidationError(
                FitCoaddMultibandConfig.addPointSource,
                self,
                f"Model {self.modelName!r} is not in the registry ({', '.join(MODELS)})",
            )


class FitCoaddMultibandTask(pipeBase.PipelineTask):
    """Translate a patch's coadds, objects, footprints and PSF fits into a `fit_patch` call.

    Every object gets exactly one row; unusable bands (absent, unreadable, all pixels bad) are passed
    as missing so the other bands are still fitted.
    """

    ConfigClass = FitCoaddMultibandConfig
    _DefaultName = "fitCoaddMultiband"
    config: FitCoaddMultibandConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # One timer for the quantum: Butler I/O here, reading the coadds and the fit stages in `run`.
        timer = StageTimer()
        with timed_quantum(timer, self._report_split):
            with stage("io"):
                # Deferred handles: `run` reads one band at a time and keeps only its pixel planes.
                coadds = {ref.dataId["band"]: butlerQC.get(ref) for ref in inputRefs.coadds}
                psf_fits = {}
                if self.config.usePsfFits:
                    for ref in inputRefs.psfFits:
                        psf_fits[ref.dataId["band"]] = butlerQC.get(ref)
                objects = butlerQC.get(inputRefs.objects)
                footprint_ref = getattr(inputRefs, "footprints", None)
                footprints = butlerQC.get(footprint_ref) if footprint_ref is not None else None
            if "patch" not in objects.colnames:
                objects["patch"] = np.full(len(objects), outputRefs.outputTable.dataId["patch"], dtype=np.int32)
            outputs = self.run(coadds=coadds, objects=objects, footprints=footprints, psfFits=psf_fits)
            with stage("io"):
                put_outputs(butlerQC, outputs, outputRefs)

    def _report_split(self, timer: StageTimer) -> None:
        """One info line and task metadata with the quantum's CPU split by stage and objects per CPU second.

        Metadata keys: those of `lsst.galmix.fitting.timing.record_stages` and ``objectsPerCpuSecond``.
        """
        md = self.metadata
        n = int(md["nObjects"]) if "nObjects" in md else 0
        n_bands = int(md["nBands"]) if "nBands" in md else 0
        n_flag = int(md["nFlagged"]) if "nFlagged" in md else 0
        cpu = timer.total_cpu
        record_stages(timer, self.metadata)
        self.metadata["objectsPerCpuSecond"] = n / cpu if cpu > 0 else float("nan")
        self.log.info("Fitted %s to %d objects in %d bands (%d flagged): %.2f s CPU, %.1f objects per CPU s, "
                      "%.2f s wall; CPU by stage: %s", self.config.modelName, n, n_bands, n_flag, cpu,
                      n / max(cpu, 1e-9), timer.total_wall, timer.summary())

    def run(self, coadds: dict, objects: Table, footprints: np.ndarray | None, psfFits: dict) -> pipeBase.Struct:
        """Fit every object.

        Memory: the bands are read one at a time; of each coadd only float32 image and variance planes and
        a boolean bad-pixel plane are kept (9 bytes per pixel and band), plus its PSF when
        ``usePsfFits`` is False, so a quantum holds about one coadd more than those planes.

        Parameters
        ----------
        coadds : `dict` [`str`, `lsst.images.cells.CellCoadd` or `lsst.daf.butler.DeferredDatasetHandle`]
            Coadds by band (bands may be absent); a handle is read when its band is reached, and a band
            that cannot be read is fitted as missing.
        objects : `astropy.table.Table`
            ``galmix_objects`` of the patch, or the upstream catalogue (``inputCatalog='upstream'``; see
            `upstream_objects`).
        footprints : `numpy.ndarray` or `None`
            ``galmix_footprints`` of the patch; `None` for none.
        psfFits : `dict` [`str`, `astropy.table.Table`]
            ``galmix_psf_fits`` by band (ignored when ``usePsfFits`` is False).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``outputTable``: the ``galmix_<modelName>_patch`` table.
        """
        timer = active_timer()
        if timer is None:
            # Called directly (not by `runQuantum`): this call is the unit whose split is reported.
            with timed_quantum(StageTimer(), self._report_split):
                return self.run(coadds, objects, footprints, psfFits)
        cfg = self.config
        images, psfs = {}, {}
        origin, projection, pixel_to_sky, pixel_scale = None, None, None, 0.2
        for band in cfg.bands:
            coadd = self._read(band, coadds.get(band))
            images[band] = self._band_arrays(band, coadd) if coadd is not None else None
            if images[band] is None:
                psfs[band] = None
                continue
            if origin is None:
                origin = (coadd.bbox.x.start, coadd.bbox.y.start)
                projection = coadd.sky_projection
                pixel_to_sky = self._pixel_to_sky(coadd.sky_projection)
                pixel_scale = self._pixel_scale(coadd.sky_projection, origin)
            if cfg.usePsfFits:
                psfs[band] = psfFits.get(band)
            else:
                psfs[band] = self._kernel_callable(coadd.psf)
            # Drop this band's coadd (mask planes, cell PSFs, metadata) before reading the next one.
            del coadd
        if origin is None:
            self.log.warning("No usable band in this patch: every object is flagged")
            origin = (0, 0)
        if cfg.inputCatalog == "upstream":
            objects = upstream_objects(objects, sky_to_pixel=None if projection is None else
                                       self._sky_to_pixel(projection), log=self.log)
            if not cfg.upstreamFootprints:
                footprints = None
        fit_config = cfg.fit.copy()
        fit_config.pixel_scale = pixel_scale
        table = fit_patch(
            images, origin, objects, footprints, psfs, cfg.modelName,
            config=fit_config, pixel_to_sky=pixel_to_sky, bands=list(cfg.bands), timer=timer,
        )
        flag = summary_flag_column(cfg.modelName)
        n_flag = int(np.sum(table[flag])) if flag in table.colnames else 0
        self.metadata["nObjects"] = len(table)
        self.metadata["nFlagged"] = n_flag
        self.metadata["nBands"] = sum(v is not None for v in images.values())
        return pipeBase.Struct(outputTable=table)

    def _read(self, band: str, source):
        """The coadd of a band from a coadd or a deferred handle; `None` if absent or unreadable.

        With ``usePsfFits`` only the ``masked_image`` component (image, mask, variance, bounding box and
        projection) is read: the cell PSFs and provenance would double the reading time.
        """
        if not isinstance(source, DeferredDatasetHandle):
            return source
        try:
            with stage("io"):
                return source.get(component="masked_image") if self.config.usePsfFits else source.get()
        except Exception as exc:  # noqa: BLE001 - an unreadable band is a missing band
            self.log.warning("Band %s: cannot read coadd (%s); fitting without it", band, exc)
            return None

    def _band_arrays(self, band: str, coadd):
        """``(image, variance, bad)`` of a coadd, or `None` when no pixel is usable.

        Image and variance are float32 copies (the fit converts each stamp to float64 as it cuts it), so
        nothing here keeps the coadd itself alive.
        """
        try:
            image = np.array(coadd.image.array, dtype=np.float32)
            variance = np.array(coadd.variance.array, dtype=np.float32)
            bad = np.zeros(image.shape, dtype=bool)
            planes = {p.name for p in coadd.mask.schema}
            for plane in self.config.badMaskPlanes:
                if plane in planes:
                    bad |= coadd.mask.get(plane)
        except Exception as exc:  # noqa: BLE001 - a corrupt band is a missing band
            self.log.warning("Band %s: unusable coadd (%s)", band, exc)
            return None
        usable = ~bad & np.isfinite(image) & np.isfinite(variance) & (variance > 0)
        if not usable.any():
            self.log.warning("Band %s: no usable pixel (all NaN, masked or zero variance)", band)
        return image, variance, bad

    @staticmethod
    def _pixel_to_sky(projection):
        def convert(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            sky = projection.pixel_to_sky(x=np.asarray(x, dtype=float), y=np.asarray(y, dtype=float))
            return np.asarray(sky.ra.deg), np.asarray(sky.dec.deg)

        return convert

    @staticmethod
    def _sky_to_pixel(projection):
        def convert(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            from astropy.coordinates import SkyCoord

            xy = projection.sky_to_pixel(SkyCoord(ra=np.asarray(ra, float), dec=np.asarray(dec, float),
                                                  unit="deg"))
            return np.asarray(xy.x, dtype=float), np.asarray(xy.y, dtype=float)

        return convert

    @staticmethod
    def _pixel_scale(projection, origin: tuple[int, int]) -> float:
        """Pixel scale (arcsec) at the patch origin from the projection's local Jacobian."""
        x0, y0 = origin
        sky = projection.pixel_to_sky(x=np.array([x0, x0 + 1.0, x0]), y=np.array([y0, y0, y0 + 1.0]))
        return float(np.sqrt(sky[0].separation(sky[1]).arcsec * sky[0].separation(sky[2]).arcsec))

    def _kernel_callable(self, psf):
        def kernel(x: float, y: float) -> np.ndarray | None:
            try:
                return np.asarray(psf.compute_kernel_image(x=x, y=y).array, dtype=float)
            except Exception:  # noqa: BLE001 - no kernel gives bad_psf for this object and band
                return None

        return kernel


def upstream_objects(catalog: Table, sky_to_pixel=None, log=None) -> Table:
    """The fit's input table from an upstream object catalogue in Rubin column names.

    Parameters
    ----------
    catalog : `astropy.table.Table`
        Per-patch catalogue with ``objectId`` and either ``x``, ``y`` (tract pixels, LSST convention) or
        ``coord_ra``, ``coord_dec`` (ICRS degrees); ``parentObjectId`` (0 or absent: isolated; children
        of one parent are fitted jointly), ``patch``, ``detect_isPrimary``, ``detect_isPatchInner`` and
        ``footprintLabel`` are used when present. Other columns (shapes, fluxes) are ignored: the fit
        measures its own starting moments.
    sky_to_pixel : callable, optional
        ``(ra, dec) -> (x, y)`` of the patch; fills positions missing or NaN in ``x``/``y``.
    log : `logging.Logger`, optional
        Where to say how many positions came from the sky coordinates.

    Returns
    -------
    objects : `astropy.table.Table`
        One row per catalogue row, in order: ``objectId``, ``parentObjectId``, ``x``, ``y`` and the
        optional columns above. A row without any usable position keeps NaN and is flagged by the fit.

    Raises
    ------
    ValueError
        If ``objectId`` is missing, or neither ``x``/``y`` nor ``coord_ra``/``coord_dec`` is there.
    """
    names = catalog.colnames
    if "objectId" not in names:
        raise ValueError(f"Upstream catalogue has no objectId column (columns: {', '.join(names)})")
    has_xy = {"x", "y"} <= set(names)
    has_sky = {"coord_ra", "coord_dec"} <= set(names)
    if not (has_xy or has_sky):
        raise ValueError("Upstream catalogue needs x, y (tract pixels) or coord_ra, coord_dec (degrees)")
    n = len(catalog)
    out = Table()
    out["objectId"] = np.asarray(catalog["objectId"], dtype=np.int64)
    parent = np.asarray(catalog["parentObjectId"]) if "parentObjectId" in names else np.zeros(n)
    out["parentObjectId"] = np.where(np.isfinite(parent.astype(float)), parent, 0).astype(np.int64)
    x = np.asarray(catalog["x"], dtype=float).copy() if has_xy else np.full(n, np.nan)
    y = np.asarray(catalog["y"], dtype=float).copy() if has_xy else np.full(n, np.nan)
    missing = ~(np.isfinite(x) & np.isfinite(y))
    if missing.any() and has_sky and sky_to_pixel is not None:
        ra = np.asarray(catalog["coord_ra"], dtype=float)[missing]
        dec = np.asarray(catalog["coord_dec"], dtype=float)[missing]
        x[missing], y[missing] = sky_to_pixel(ra, dec)
        if log is not None:
            log.info("%d of %d upstream positions from coord_ra/coord_dec", int(missing.sum()), n)
    out["x"], out["y"] = x, y
    for name, dtype in (("patch", np.int32), ("detect_isPrimary", bool), ("detect_isPatchInner", bool),
                        ("footprintLabel", np.int32)):
        if name in names:
            out[name] = np.asarray(catalog[name]).astype(dtype)
    if "detect_isPrimary" not in names:
        # Without the upstream primary flag every row counts; consolidation then resolves overlaps.
        out["detect_isPrimary"] = np.ones(n, dtype=bool)
    return out
