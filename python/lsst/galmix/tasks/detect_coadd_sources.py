"""PipelineTask ``detectCoaddSources``: detect and deblend the sources of one patch in all bands."""

from __future__ import annotations

__all__ = ("DetectCoaddSourcesConfig", "DetectCoaddSourcesConnections", "DetectCoaddSourcesTask")

import functools
from typing import Any

import numpy as np

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.daf.butler import DeferredDatasetHandle
from lsst.pipe.base import connectionTypes as cT

from .. import connections
from ..data.tables import put_outputs
from ..detection.coadds import NoCoaddError, patch_images_from_coadds
from ..detection.detect import DetectionConfig, detect_patch
from ..messages import exception_line


class DetectCoaddSourcesConnections(
    pipeBase.PipelineTaskConnections,
    dimensions=connections.PATCH_DIMENSIONS,
    defaultTemplates={"coaddName": "deep_coadd_cell"},
):
    """Connections: all bands' cell coadds of a patch in, object table and footprint labels out."""

    coadds = connections.coadds("Cell-based coadds of the patch, one per band.")
    objects = connections.objects(cT.Output, "One row per deblended source (galmix_objects columns, "
                                  "doc/conventions.rst).")
    footprints = connections.footprints(cT.Output, "int32 label image of the patch: 0 = no object, else the "
                                        "owning object's footprintLabel.")


class DetectCoaddSourcesConfig(
    pipeBase.PipelineTaskConfig, pipelineConnections=DetectCoaddSourcesConnections
):
    """Configuration of `DetectCoaddSourcesTask`."""

    detection = pexConfig.ConfigField[DetectionConfig](
        doc="Settings of the detection and deblending library (lsst.galmix.detection.detect_patch)",
        dtype=DetectionConfig,
    )
    expectedBands = pexConfig.ListField[str](
        doc="Bands a patch should have; a band without a coadd (or with an unreadable one) is logged as "
        "a WARNING and detection goes on with the others.",
        default=list("ugrizy"),
    )


class DetectCoaddSourcesTask(pipeBase.PipelineTask):
    """Detect and deblend sources on the inverse-variance weighted multi-band image of a patch."""

    _DefaultName = "detectCoaddSources"
    ConfigClass = DetectCoaddSourcesConfig
    config: DetectCoaddSourcesConfig

    def runQuantum(
        self,
        butlerQC: pipeBase.QuantumContext,
        inputRefs: pipeBase.InputQuantizedConnection,
        outputRefs: pipeBase.OutputQuantizedConnection,
    ) -> None:
        # Deferred handles: `run` reads one band at a time and keeps only the planes detection needs.
        coadds = {ref.dataId["band"]: butlerQC.get(ref) for ref in inputRefs.coadds}
        missing = sorted(set(self.config.expectedBands) - set(coadds), key="ugrizy".find)
        if missing:
            self.log.warning("Patch %s has no coadd in bands %s; detecting with %s.",
                             inputRefs.coadds[0].dataId["patch"], "".join(missing), "".join(sorted(
                                 coadds, key="ugrizy".find)))
        put_outputs(butlerQC, self.run(coadds), outputRefs)

    def run(self, coadds: dict[str, Any]) -> pipeBase.Struct:
        """Detect the sources of one patch.

        Parameters
        ----------
        coadds
            `lsst.images.cells.CellCoadd` per band, all of the same patch.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``objects`` (`astropy.table.Table`) and ``footprints`` (`numpy.ndarray`, int32).
        """
        ordered = {band: coadds[band] for band in sorted(coadds, key="ugrizy".find)}
        loaders = {band: functools.partial(self._read, band, source) for band, source in ordered.items()}
        del coadds, ordered
        try:
            data = patch_images_from_coadds(loaders)
        except NoCoaddError as exc:
            # Nothing to detect on: no output, so downstream quanta of this patch are skipped and the
            # tract is consolidated from the other patches.
            raise pipeBase.NoWorkFound(str(exc)) from None
        bands = list(data.images)
        result = detect_patch(data, self.config.detection)
        objects = result.objects
        self.log.info(
            "Detected %d sources (%d primary, %d in blends) in patch %s with bands %s.",
            len(objects),
            int(objects["detect_isPrimary"].sum()) if len(objects) else 0,
            int((objects["nChild"] > 1).sum()) if len(objects) else 0,
            data.patch,
            "".join(bands),
        )
        return pipeBase.Struct(objects=objects, footprints=result.labels)

    def _read(self, band: str, source: Any) -> Any:
        """The coadd of a band from a coadd or a deferred handle; `None` if unreadable.

        A band without any usable pixel is logged as a WARNING (it adds nothing to detection).
        """
        if isinstance(source, DeferredDatasetHandle):
            try:
                coadd = source.get()
            except Exception as exc:  # noqa: BLE001 - an unreadable band is a missing band
                self.log.warning("Band %s of patch %s: cannot read %s (%s); detecting without it.",
                                 band, source.dataId["patch"], source.ref.datasetType.name, exception_line(exc))
                return None
        else:
            coadd = source
        image, variance = coadd.image.array, coadd.variance.array
        if not (np.isfinite(image) & np.isfinite(variance) & (variance > 0)).any():
            self.log.warning("Band %s of patch %s has no usable pixel (image or variance all NaN, or "
                             "variance <= 0): it adds nothing to detection.", band, coadd.patch.id)
        return coadd
