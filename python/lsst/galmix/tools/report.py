"""Summaries of a finished pipeline run: per-task timings from task metadata and metric digests."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from lsst.daf.butler import Butler

from ..fitting.timing import StageTimer

__all__ = [
    "OVERHEAD_STAGES",
    "TaskTiming",
    "format_metrics_summary",
    "format_timings",
    "stage_seconds",
    "task_timings",
]


OVERHEAD_STAGES = ("io", "task")
"""Stages of a task's `lsst.galmix.fitting.timing.StageTimer` that are not its science step (Butler I/O, the
task's own glue)."""


@dataclass
class TaskTiming:
    """Timing of all quanta of one task label.

    Attributes
    ----------
    label : `str`
        Task label.
    n_quanta : `int`
        Quanta run.
    wall : `float`
        Sum over quanta of wall-clock seconds from quantum preparation to its end (includes I/O).
    cpu : `float`
        Sum of CPU seconds over the same interval.
    work : `float`
        Sum of the wall seconds of the task's science step: the stages of its StageTimer other than
        `OVERHEAD_STAGES` (metadata ``<stage>WallSeconds``), or ``fitSeconds`` for a task without one;
        0 if neither.
    n_objects : `int`
        Sum of ``nObjects`` reported by the task; 0 if none.
    stages : `lsst.galmix.fitting.timing.StageTimer`
        Sum over quanta of the CPU and wall seconds per stage of the task's StageTimer (metadata
        ``<stage>CpuSeconds``, ``<stage>WallSeconds``); empty for a task without one.
    """

    label: str
    n_quanta: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    work: float = 0.0
    n_objects: int = 0
    stages: StageTimer = field(default_factory=StageTimer)

    @property
    def overhead(self) -> float:
        """Wall seconds not spent in the science step (Butler I/O, framework, preparation)."""
        return self.wall - self.work


def _first(value):
    return value[0] if isinstance(value, list) else value


def stage_seconds(metadata: dict, kind: str = "Cpu") -> dict[str, float]:
    """Seconds per stage from a task's own metadata (``<stage>CpuSeconds`` or ``<stage>WallSeconds``, as
    written by `lsst.galmix.fitting.timing.StageTimer.as_dict`; not their total ``stage<kind>Seconds``).

    Parameters
    ----------
    metadata : `dict`
        The task's section of a ``<label>_metadata`` dataset (values may be one-element lists).
    kind : `str`
        ``"Cpu"`` or ``"Wall"``.
    """
    suffix = f"{kind}Seconds"
    return {k.removesuffix(suffix): float(_first(v)) for k, v in metadata.items()
            if k.endswith(suffix) and k != f"stage{suffix}"}


def task_timings(butler: Butler, collection: str) -> dict[str, TaskTiming]:
    """Collect per-label timings from the ``<label>_metadata`` datasets of a collection.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Butler of the repository.
    collection : `str`
        Output collection of the run.

    Returns
    -------
    timings : `dict` [`str`, `TaskTiming`]
        By task label.
    """
    out: dict[str, TaskTiming] = defaultdict(lambda: TaskTiming(""))
    names = [dt.name for dt in butler.registry.queryDatasetTypes("*_metadata")]
    for name in names:
        label = name.removesuffix("_metadata")
        refs = list(butler.registry.queryDatasets(name, collections=collection, findFirst=True))
        for ref in refs:
            md = butler.get(ref).to_dict()
            q = md.get("quantum", {})
            if "prepUtc" not in q or "endUtc" not in q:
                continue
            t = out[label]
            t.label = label
            t.n_quanta += 1
            t.wall += (
                datetime.fromisoformat(_first(q["endUtc"])) - datetime.fromisoformat(_first(q["prepUtc"]))
            ).total_seconds()
            t.cpu += float(_first(q["endCpuTime"])) - float(_first(q["prepCpuTime"]))
            own = md.get(label, {})
            quantum = StageTimer()
            quantum.cpu, quantum.wall = stage_seconds(own, "Cpu"), stage_seconds(own, "Wall")
            if quantum.wall:
                t.work += sum(v for name, v in quantum.wall.items() if name not in OVERHEAD_STAGES)
                t.stages.add(quantum)
            else:
                t.work += float(_first(own.get("fitSeconds", 0.0)) or 0.0)
            t.n_objects += int(_first(own.get("nObjects", 0)) or 0)
    return dict(out)


def format_timings(timings: dict[str, TaskTiming]) -> str:
    """Text table of task timings, then the CPU split by stage of the tasks with a StageTimer.

    Objects per wall-clock second and per CPU second (= per core, quanta run one at a time) are given
    for tasks that report ``nObjects``.
    """
    header = (
        f"{'task':34s} {'quanta':>6s} {'wall s':>8s} {'cpu s':>8s} {'fit s':>8s} {'objects':>8s} "
        f"{'obj/wall-s':>10s} {'obj/cpu-s':>9s}"
    )
    lines = [header]
    for t in sorted(timings.values(), key=lambda t: -t.wall):
        rate = f"{t.n_objects / t.wall:10.2f}" if t.n_objects and t.wall > 0 else f"{'':>10s}"
        cpu_rate = f"{t.n_objects / t.cpu:9.2f}" if t.n_objects and t.cpu > 0 else f"{'':>9s}"
        lines.append(
            f"{t.label:34s} {t.n_quanta:6d} {t.wall:8.2f} {t.cpu:8.2f} {t.work:8.2f} {t.n_objects:8d} "
            f"{rate} {cpu_rate}"
        )
    for t in sorted(timings.values(), key=lambda t: t.label):
        if t.stages.total_cpu > 0:
            lines.append(f"{t.label} CPU by stage: {t.stages.summary()}")
    return "\n".join(lines)


def _fmt(v, scale: float = 1000.0, sign: bool = True) -> str:
    if v is None:
        return f"{'n/a':>7s}"
    return f"{v * scale:+7.1f}" if sign else f"{v * scale:7.1f}"


def format_metrics_summary(metrics: dict) -> str:
    """Short text digest of an ``analyzeMatched`` metrics dict.

    Parameters
    ----------
    metrics : `dict`
        Output of `lsst.galmix.analysis.metrics.compute_metrics`.

    Returns
    -------
    text : `str`
        Magnitude bias and scatter per band for galaxies and stars, colour bias, in mmag; flux chi at
        S/N >= 10; NaN flux errors among unflagged rows.
    """
    lo, hi = metrics["summary_range"]
    sb = metrics.get("selection_band", "r")
    header = (
        f"model {metrics['model']}: {metrics['n_matched']} matched of {metrics['n_ref']} references and "
        f"{metrics['n_object']} primary objects; values in mmag for references with {lo:g} <= mag < {hi:g} "
        f"in the band itself, and with {lo:g} <= {sb} < {hi:g}"
    )
    lines = [header]
    for label in ("galaxies", "stars"):
        summary = metrics["summary"].get(label, {})
        by_sel = summary.get("magDiffSelection", {})
        for band, s in summary.get("magDiff", {}).items():
            line = (
                f"  {label:8s} {band}: N={s['count']:4d}  median dmag {_fmt(s['median'])}"
                f"  sigma_MAD {_fmt(s['sigma_mad'], sign=False)}"
            )
            t = by_sel.get(band)
            if t is not None:
                line += (f"  | {sb} selection N={t['count']:4d}  median {_fmt(t['median'])}"
                         f"  sigma_MAD {_fmt(t['sigma_mad'], sign=False)}")
            lines.append(line)
        colours = summary.get("colorDiff", {})
        if colours:
            lines.append(
                f"  {label:8s} colour bias: "
                + ", ".join(f"{c} {_fmt(s['median']).strip()}" for c, s in colours.items())
            )
        chi = summary.get("fluxChiSnr", {})
        if chi:
            lines.append(
                f"  {label:8s} flux chi at S/N >= 10 (N, median, sigma_MAD): "
                + ", ".join(f"{b} {s['count']} {_fmt(s['median'], 1.0).strip()} "
                            f"{_fmt(s['sigma_mad'], 1.0, sign=False).strip()}" for b, s in chi.items())
            )
    nan = metrics.get("nanFluxErr")
    if nan is not None:
        lines.append(f"  NaN flux errors among unflagged rows: {nan['n_nan']} of {nan['n_unflagged']}")
    return "\n".join(lines)
