"""fitCoaddMultiband: one source model fitted to every object of a patch in all bands at once."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.pipe.base import connectionTypes as cT

from ..fitting.optimize import FitSettings, Priors
from ..fitting.patch import fit_patch
from ..fitting.source import SourceFitConfig
from ..models.definitions import MODELS
from ._templates import MODEL_TEMPLATE_DEFAULT, apply_model_template

__all__ = ["FitCoaddMultibandConfig", "FitCoaddMultibandConnections", "FitCoaddMultibandTask"]


class FitCoaddMultibandConnections(
    pipeBase.PipelineTaskConnections,
    dimensions=("skymap", "tract", "patch"),
    defaultTemplates={"coaddName": "deep_coadd_cell", "model": MODEL_TEMPLATE_DEFAULT},
):
    coadds = cT.Input(
        doc="Cell coadds of all bands",
        name="{coaddName}",
        storageClass="CellCoadd",
        dimensions=("skymap", "tract", "patch", "band"),
        multiple=True,
    )
    objects = cT.Input(
        doc="Detected (deblended) objects",
        name="galmix_objects",
        storageClass="ArrowAstropy",
        dimensions=("skymap", "tract", "patch"),
    )
    footprints = cT.Input(
        doc="Label image: which object owns each pixel",
        name="galmix_footprints",
        storageClass="NumpyArray",
        dimensions=("skymap", "tract", "patch"),
    )
    psfFits = cT.Input(
        doc="PSF mixtures of all bands",
        name="galmix_psf_fits",
        storageClass="ArrowAstropy",
        dimensions=("skymap", "tract", "patch", "band"),
        multiple=True,
    )
    outputTable = cT.Output(
        doc="One row per object: fluxes in all bands, shape, centroid, flags, timings",
        name="galmix_{model}_patch",
        storageClass="ArrowAstropy",
        dimensions=("skymap", "tract", "patch"),
    )

    def __init__(self, *, config: FitCoaddMultibandConfig):
        if not config.usePsfFits:
            del self.psfFits
        apply_model_template(self, config.modelName)


class FitCoaddMultibandConfig(pipeBase.PipelineTaskConfig, pipelineConnections=FitCoaddMultibandConnections):
    """Configuration of `FitCoaddMultibandTask`.

    The fitted model is ``modelName``: ``model`` with a point source added (``addPointSource``; only
    where the registry has that model, e.g. ``sersic`` -> ``ptsersic``) and ``FixedCen`` appended when
    ``fixCentroid``. The output dataset type is ``galmix_<modelName>_patch``.
    """

    model = pexConfig.Field[str](doc="Base model (a registry name without FixedCen)", default="sersic")
    addPointSource = pexConfig.Field[bool](doc="Add a point source sharing the centre", default=False)
    fixCentroid = pexConfig.Field[bool](doc="Hold the centroid at the detection position", default=False)
    bands = pexConfig.ListField[str](
        doc="Bands fitted; a band without a coadd gives NaN fluxes and missing_band", default=list("ugrizy")
    )
    badMaskPlanes = pexConfig.ListField[str](
        doc="Mask planes whose pixels get zero weight", default=["BAD", "SAT", "NO_DATA"]
    )
    usePsfFits = pexConfig.Field[bool](
        doc="PSF from galmix_psf_fits (else fitted here to the coadd kernel at each object)", default=True
    )
    psfNGauss = pexConfig.Field[int](
        doc="Gaussians for PSFs fitted here (usePsfFits=False)", default=SourceFitConfig().psf_n_gauss
    )
    blendMode = pexConfig.ChoiceField[str](
        doc="How blends are fitted",
        default="joint",
        allowed={"joint": "Children fitted simultaneously", "subtract": "Each child with neighbours subtracted"},
    )
    maxChildren = pexConfig.Field[int](doc="Largest blend fitted jointly; larger ones per child", default=5)
    useFootprints = pexConfig.Field[bool](doc="Zero weight for pixels of other objects", default=True)
    stampSigmas = pexConfig.Field[float](doc="First stamp half-size, observed sigmas",
                                         default=SourceFitConfig.stamp_sigmas)
    stampMin = pexConfig.Field[int](doc="Smallest stamp half-size (pixels)", default=10)
    stampMax = pexConfig.Field[int](doc="Largest stamp half-size (pixels)", default=SourceFitConfig.stamp_max)
    nInit = pexConfig.Field[float](doc="Initial Sersic index of free-index components", default=2.0)
    maxIter = pexConfig.Field[int](doc="Optimizer iteration limit", default=100)
    nThreads = pexConfig.Field[int](doc="Threads fitting groups in parallel within the quantum", default=1)
    residualThreshold = pexConfig.Field[float](
        doc="Significance (sigma) of a residual peak that becomes a point source fitted with the object "
        "(a source detection missed); 0 disables the search",
        default=5.0,
    )
    residualMinSeparation = pexConfig.Field[float](
        doc="Residual peaks nearer than this to a fitted centre (PSF FWHM) are ignored", default=1.0
    )
    residualMaxSources = pexConfig.Field[int](doc="Most residual sources per fitted group", default=3)
    priorN = pexConfig.ListField[float](
        doc="Gaussian prior on the Sersic index: [mean, sigma]; empty for none (maximum likelihood)",
        default=[],
        length=None,
    )
    priorEtaSigma = pexConfig.Field[float](
        doc="Sigma of a Gaussian prior on each conformal-shear component about 0; 0 for none", default=0.0
    )

    @property
    def modelName(self) -> str:
        """Registry name of the fitted model."""
        name = f"pt{self.model}" if self.addPointSource else self.model
        return f"{name}FixedCen" if self.fixCentroid else name

    def validate(self):
        super().validate()
        if self.priorN and (len(self.priorN) != 2 or self.priorN[1] <= 0):
            raise pexConfig.FieldValidationError(
                FitCoaddMultibandConfig.priorN, self, "priorN is [mean, sigma] with sigma > 0"
            )
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

    def fit_config(self, pixel_scale: float) -> SourceFitConfig:
        """The library configuration of this task config."""
        return SourceFitConfig(
            pixel_scale=pixel_scale,
            stamp_sigmas=self.stampSigmas,
            stamp_min=self.stampMin,
            stamp_max=self.stampMax,
            n_init=self.nInit,
            blend_mode=self.blendMode,
            max_children=self.maxChildren,
            use_footprints=self.useFootprints,
            n_threads=self.nThreads,
            residual_threshold=self.residualThreshold,
            residual_min_separation=self.residualMinSeparation,
            residual_max_sources=self.residualMaxSources,
            psf_n_gauss=self.psfNGauss,
            settings=dataclasses.replace(
                FitSettings(),
                max_iter=self.maxIter,
                priors=Priors(
                    n=tuple(self.priorN) if self.priorN else None,
                    eta_sigma=self.priorEtaSigma if self.priorEtaSigma > 0 else None,
                ),
            ),
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
        coadds = {}
        for ref in inputRefs.coadds:
            band = ref.dataId["band"]
            try:
                coadds[band] = butlerQC.get(ref)
            except Exception as exc:  # noqa: BLE001 - an unreadable band is a missing band
                self.log.warning("Band %s: cannot read coadd (%s); fitting without it", band, exc)
        psf_fits = {}
        if self.config.usePsfFits:
            for ref in inputRefs.psfFits:
                psf_fits[ref.dataId["band"]] = butlerQC.get(ref)
        outputs = self.run(
            coadds=coadds,
            objects=butlerQC.get(inputRefs.objects),
            footprints=butlerQC.get(inputRefs.footprints),
            psfFits=psf_fits,
        )
        butlerQC.put(outputs, outputRefs)

    def run(self, coadds: dict, objects: Table, footprints: np.ndarray | None, psfFits: dict) -> pipeBase.Struct:
        """Fit every object.

        Parameters
        ----------
        coadds : `dict` [`str`, `lsst.images.cells.CellCoadd`]
            Coadds by band (bands may be absent).
        objects : `astropy.table.Table`
            ``galmix_objects`` of the patch.
        footprints : `numpy.ndarray` or `None`
            ``galmix_footprints`` of the patch.
        psfFits : `dict` [`str`, `astropy.table.Table`]
            ``galmix_psf_fits`` by band (ignored when ``usePsfFits`` is False).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``outputTable``: the ``galmix_<modelName>_patch`` table.
        """
        cfg = self.config
        t0 = time.perf_counter()
        images, psfs = {}, {}
        reference = None
        for band in cfg.bands:
            coadd = coadds.get(band)
            images[band] = self._band_arrays(band, coadd) if coadd is not None else None
            if images[band] is None:
                psfs[band] = None
                continue
            if reference is None:
                reference = coadd
            if cfg.usePsfFits:
                psfs[band] = psfFits.get(band)
            else:
                psfs[band] = self._kernel_callable(coadd.psf)
        if reference is None:
            self.log.warning("No usable band in this patch: every object is flagged")
            origin = (0, 0)
            pixel_to_sky = None
            pixel_scale = 0.2
        else:
            origin = (reference.bbox.x.start, reference.bbox.y.start)
            pixel_to_sky = self._pixel_to_sky(reference.sky_projection)
            pixel_scale = self._pixel_scale(reference.sky_projection, origin)
        t1 = time.perf_counter()
        table = fit_patch(
            images, origin, objects, footprints, psfs, cfg.modelName,
            config=cfg.fit_config(pixel_scale), pixel_to_sky=pixel_to_sky, bands=list(cfg.bands),
        )
        t2 = time.perf_counter()
        flag = f"{cfg.modelName}_flag"
        n_flag = int(np.sum(table[flag])) if flag in table.colnames else 0
        self.metadata["nObjects"] = len(table)
        self.metadata["nFlagged"] = n_flag
        self.metadata["prepareSeconds"] = t1 - t0
        self.metadata["fitSeconds"] = t2 - t1
        self.log.info(
            "Fitted %s to %d objects in %d bands: %.2f s (%.1f objects/s), %d flagged; preparation %.2f s",
            cfg.modelName, len(table), sum(v is not None for v in images.values()), t2 - t1,
            len(table) / max(t2 - t1, 1e-9), n_flag, t1 - t0,
        )
        return pipeBase.Struct(outputTable=table)

    def _band_arrays(self, band: str, coadd):
        """``(image, variance, bad)`` of a coadd, or `None` when no pixel is usable."""
        try:
            image = np.asarray(coadd.image.array, dtype=float)
            variance = np.asarray(coadd.variance.array, dtype=float)
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
