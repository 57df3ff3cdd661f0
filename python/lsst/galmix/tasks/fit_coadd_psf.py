"""fitCoaddPsf: Gaussian-mixture fits of a CellCoadd's PSF, per cell or per object position."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.pipe.base import connectionTypes as cT

from .. import connections
from ..data.tables import put_outputs
from ..fitting.config import PsfFitConfig
from ..fitting.psf import fit_psf_images_table
from ..fitting.timing import StageTimer, active_timer, record_stages, stage, timed_quantum
from ..messages import exception_line

__all__ = ["FitCoaddPsfConfig", "FitCoaddPsfConnections", "FitCoaddPsfTask"]


class FitCoaddPsfConnections(
    pipeBase.PipelineTaskConnections,
    dimensions=connections.PATCH_BAND_DIMENSIONS,
    defaultTemplates={"coaddName": "deep_coadd_cell"},
):
    psf = cT.Input(
        doc="PSF of the cell coadd (one kernel image per cell)",
        name="{coaddName}.psf",
        storageClass="CellPointSpreadFunction",
        dimensions=connections.PATCH_BAND_DIMENSIONS,
    )
    objects = connections.objects(cT.Input, "Detected objects (only read when fitting at object positions)")
    psfFits = connections.psf_fits(cT.Output, "PSF mixture per cell (or per object)")

    def __init__(self, *, config: FitCoaddPsfConfig):
        if config.mode == "cell":
            del self.objects


class FitCoaddPsfConfig(pipeBase.PipelineTaskConfig, pipelineConnections=FitCoaddPsfConnections):
    """Configuration of `FitCoaddPsfTask`."""

    psf = pexConfig.ConfigField[PsfFitConfig](
        doc="Settings of the mixture fits (number of Gaussians, iteration limit)", dtype=PsfFitConfig
    )
    mode = pexConfig.ChoiceField[str](
        doc="Where to fit the PSF",
        default="cell",
        allowed={
            "cell": "One fit per cell, of the cell's kernel image, at the cell centre",
            "object": "One fit per object, of the kernel image computed at its position",
        },
    )


class FitCoaddPsfTask(pipeBase.PipelineTask):
    """Fit the PSF kernel images of a coadd with Gaussian mixtures (`lsst.galmix.fitting.psf`).

    A kernel that cannot be fitted gives a row with ``psf_flag`` set, never an exception.
    """

    ConfigClass = FitCoaddPsfConfig
    _DefaultName = "fitCoaddPsf"
    config: FitCoaddPsfConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # One timer for the quantum, as in the fit tasks: Butler I/O here, the fits and the table in `run`.
        with timed_quantum(StageTimer(), self._report_split):
            ref = inputRefs.psf
            with stage("io"):
                try:
                    psf = butlerQC.get(ref)
                except Exception as exc:
                    # No output: the fits of this patch treat the band as missing (bad_psf, missing_band),
                    # the other bands and patches go on.
                    self.log.warning("Band %s of patch %s: cannot read %s (%s); no PSF fits for this band.",
                                     ref.dataId["band"], ref.dataId["patch"], ref.datasetType.name,
                                     exception_line(exc))
                    raise pipeBase.NoWorkFound(
                        f"Unreadable {ref.datasetType.name} {dict(ref.dataId.required)}") from exc
                objects = butlerQC.get(inputRefs.objects) if self.config.mode == "object" else None
            outputs = self.run(psf, objects)
            with stage("io"):
                put_outputs(butlerQC, outputs, outputRefs)

    def _report_split(self, timer: StageTimer) -> None:
        """One info line and task metadata with the quantum's CPU split by stage.

        Metadata keys: ``nKernels``, ``nFlagged``, ``medianPsfChi2`` (set by `run`) and those of
        `lsst.galmix.fitting.timing.record_stages` (stages ``io``, ``fit``, ``write``, ``task``).
        """
        md = self.metadata
        n = int(md["nKernels"]) if "nKernels" in md else 0
        n_flag = int(md["nFlagged"]) if "nFlagged" in md else 0
        chi2 = float(md["medianPsfChi2"]) if "medianPsfChi2" in md else float("nan")
        record_stages(timer, md)
        self.log.info("Fitted %d PSF kernels with %d Gaussians (%d flagged; median residual power %.2g): "
                      "%.2f s CPU, %.2f s wall; CPU by stage: %s", n, self.config.psf.n_gauss, n_flag, chi2,
                      timer.total_cpu, timer.total_wall, timer.summary())

    def run(self, psf, objects: Table | None = None) -> pipeBase.Struct:
        """Fit the PSF.

        Parameters
        ----------
        psf : `lsst.images.cells.CellPointSpreadFunction`
            The coadd PSF.
        objects : `astropy.table.Table`, optional
            Objects (``x``, ``y`` tract pixels); required in ``object`` mode.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``psfFits``: the ``galmix_psf_fits`` table.
        """
        if active_timer() is None:
            # Called directly (not by `runQuantum`): this call is the unit whose split is reported.
            with timed_quantum(StageTimer(), self._report_split):
                return self.run(psf, objects)
        kernels, positions, cells = [], [], []
        if self.config.mode == "cell":
            grid = psf.grid
            for cell in psf.bounds.cell_indices():
                bbox = grid.bbox_of(cell)
                kernels.append(self._kernel(lambda c=cell: psf[c].array))
                positions.append((bbox.x.start + (bbox.x.stop - bbox.x.start - 1) / 2,
                                  bbox.y.start + (bbox.y.stop - bbox.y.start - 1) / 2))
                cells.append((cell.j, cell.i))  # CellIJ is (row, column)
        else:
            if objects is None:
                raise ValueError("mode='object' needs the object table")
            for x, y in zip(np.asarray(objects["x"], float), np.asarray(objects["y"], float)):
                kernels.append(self._kernel(lambda x=x, y=y: psf.compute_kernel_image(x=x, y=y).array))
                positions.append((x, y))
                index = psf.grid.index_of(x=round(x), y=round(y)) if np.isfinite(x + y) else None
                cells.append((index.j, index.i) if index is not None else (-1, -1))
        table = fit_psf_images_table(kernels, positions, cells, config=self.config.psf)
        self.metadata["nKernels"] = len(table)
        self.metadata["nFlagged"] = int(np.sum(table["psf_flag"]))
        self.metadata["medianPsfChi2"] = float(np.nanmedian(table["psf_chi2"])) if len(table) else float("nan")
        return pipeBase.Struct(psfFits=table)

    def _kernel(self, get) -> np.ndarray | None:
        """A kernel image, or `None` (a flagged row) when the PSF cannot provide it."""
        try:
            return np.asarray(get(), dtype=float)
        except Exception as exc:  # noqa: BLE001 - one missing cell gives a flagged row
            self.log.warning("No PSF kernel image: %s", exc)
            return None
