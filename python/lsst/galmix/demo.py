"""End-to-end demonstration (``make demo``): simulate a repository, run ``galmix_ci.yaml``, summarise.

Usage: ``python -m lsst.galmix.demo --output DIR [--size ci] [--jobs N]``. The repository is written to
``DIR/repo``, the plots are copied to ``DIR/plots`` and the printed summary to ``DIR/summary.txt``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["PIPELINE_URI", "main", "pipetask_command", "run_pipeline", "summarize"]

PIPELINE_URI = "resource://lsst.galmix/pipelines/galmix_ci.yaml"
"""The pipeline the demo runs."""

INPUT_COLLECTION = "galmix/sim"


def pipetask_executable() -> str:
    """Path of ``pipetask`` next to the running interpreter (the package's virtual environment)."""
    candidate = Path(sys.executable).parent / "pipetask"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("pipetask")
    if found is None:
        raise FileNotFoundError("pipetask not found: install lsst-ctrl-mpexec in this environment")
    return found


def pipetask_command(
    repo: str, output: str, pipeline: str = PIPELINE_URI, jobs: int = 1, extra: list[str] | None = None
) -> list[str]:
    """The ``pipetask run`` command line of a run.

    Parameters
    ----------
    repo : `str`
        Butler repository.
    output : `str`
        Output CHAINED collection (new).
    pipeline : `str`
        Pipeline file or URI.
    jobs : `int`
        ``pipetask -j``.
    extra : `list` [`str`], optional
        More arguments (config overrides ``-c label:key=value``...).

    Returns
    -------
    argv : `list` [`str`]
        Command line.
    """
    return [
        pipetask_executable(), "--long-log", "run", "-b", repo, "-i", INPUT_COLLECTION, "-o", output,
        "-p", pipeline, "--register-dataset-types", "-j", str(jobs), *(extra or []),
    ]


def run_pipeline(
    repo: str, output: str, log_path: str, pipeline: str = PIPELINE_URI, jobs: int = 1,
    extra: list[str] | None = None,
) -> float:
    """Run ``pipetask run`` as a subprocess, logging to a file.

    Returns
    -------
    seconds : `float`
        Wall-clock time.

    Raises
    ------
    RuntimeError
        If pipetask fails; the message holds the end of its log.
    """
    argv = pipetask_command(repo, output, pipeline, jobs, extra)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        log.write(" ".join(argv) + "\n")
        log.flush()
        proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(), check=False)
    if proc.returncode != 0:
        tail = Path(log_path).read_text().splitlines()[-30:]
        raise RuntimeError(f"pipetask failed ({proc.returncode}); end of {log_path}:\n" + "\n".join(tail))
    return time.perf_counter() - t0


def summarize(repo: str, output: str, plot_dir: str | None = None) -> str:
    """Describe the outputs of a run: where the tables and plots are, metrics and timings.

    Parameters
    ----------
    repo : `str`
        Butler repository.
    output : `str`
        Output collection of the run.
    plot_dir : `str`, optional
        Directory to copy the PNG plots to.

    Returns
    -------
    text : `str`
        The summary.
    """
    from lsst.daf.butler import Butler

    from .tools.report import format_metrics_summary, format_timings, task_timings

    butler = Butler.from_config(repo, collections=[output])
    lines = [f"Repository {repo}, output collection {output}", "", "Tables:"]
    for name in ("objectTable_tract_galmix", "matched_truth_summary_objectTable_tract_galmix"):
        for ref in butler.query_datasets(name, collections=output, explain=False):
            lines.append(f"  {name} {dict(ref.dataId.required)}: {butler.getURI(ref)}")
    patch_refs = [
        ref
        for dt in butler.registry.queryDatasetTypes("galmix_*_patch")
        for ref in butler.query_datasets(dt.name, collections=output, explain=False)
    ]
    lines.append(f"  {len(patch_refs)} per-patch fit tables (galmix_<model>_patch)")
    plot_refs = [
        ref
        for dt in butler.registry.queryDatasetTypes("galmix_*_Plot")
        for ref in butler.query_datasets(dt.name, collections=output, explain=False)
    ]
    lines.append("")
    if plot_dir is not None:
        os.makedirs(plot_dir, exist_ok=True)
        for ref in plot_refs:
            Path(plot_dir, f"{ref.datasetType.name}.png").write_bytes(butler.getURI(ref).read())
        lines.append(f"Plots: {len(plot_refs)} PNG files copied to {plot_dir}")
    else:
        lines.append(f"Plots: {len(plot_refs)} PNG datasets (galmix_<model>_<plot>_Plot)")
    for dt in sorted(butler.registry.queryDatasetTypes("galmix_*_matchedMetrics"), key=lambda d: d.name):
        for ref in butler.query_datasets(dt.name, collections=output, explain=False):
            lines += ["", f"Metrics {dt.name} ({butler.getURI(ref)}):", format_metrics_summary(butler.get(ref))]
    timings = task_timings(butler, output)
    lines += ["", "Task timings (sum over quanta):", format_timings(timings)]
    n_objects = sum(
        len(butler.get(ref))
        for ref in butler.query_datasets("objectTable_tract_galmix", collections=output, explain=False)
    )
    cpu = sum(t.cpu for t in timings.values())
    wall = sum(t.wall for t in timings.values())
    if n_objects and cpu > 0:
        lines.append(
            f"All quanta: {n_objects} objects, {wall:.1f} s wall, {cpu:.1f} s CPU: "
            f"{n_objects / cpu:.2f} objects per CPU second (per core) for the whole pipeline"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="Directory for the repository, plots and summary")
    parser.add_argument("--size", default="ci", help="Simulated repository size (ci, small, medium)")
    parser.add_argument("--seed", type=int, default=1, help="Simulation seed")
    parser.add_argument("--jobs", type=int, default=1, help="pipetask -j")
    parser.add_argument("--collection", default="galmix/demo", help="Output collection")
    args = parser.parse_args(argv)

    from .sim.make_repo import make_repo

    out = Path(args.output).resolve()
    repo = out / "repo"
    if repo.exists():
        print(f"Removing the previous demo repository {repo}")
        shutil.rmtree(repo)
    out.mkdir(parents=True, exist_ok=True)
    print(f"Simulating the {args.size!r} repository in {repo} ...", flush=True)
    summary = make_repo(str(repo), size=args.size, seed=args.seed, progress=lambda m: print("  " + m, flush=True))
    print(
        f"  {summary.n_truth} truth objects ({summary.n_galaxies} galaxies, {summary.n_stars} stars), "
        f"{summary.n_coadds} coadds in {summary.seconds:.1f} s",
        flush=True,
    )
    log = out / "pipetask.log"
    print(f"Running {PIPELINE_URI} with pipetask (log: {log}) ...", flush=True)
    seconds = run_pipeline(str(repo), args.collection, str(log), jobs=args.jobs)
    print(f"  pipetask finished in {seconds:.1f} s", flush=True)
    text = summarize(str(repo), args.collection, plot_dir=str(out / "plots"))
    text += f"\n\npipetask wall clock: {seconds:.1f} s for the whole pipeline"
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    print(f"\nSummary written to {out / 'summary.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
