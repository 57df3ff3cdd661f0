"""Objects per CPU second of the CI pipeline's tasks on one patch, in process, and where a fit quantum's
time goes.

Runs ``pipelines/galmix_ci.yaml`` up to the fits on one patch of a simulated CI repository (built into a
temporary directory with `lsst.galmix.sim.make_repo` unless ``--repo`` is given): detection and the PSF
fits once, then each fit label (``fitCoaddMultibandSersic``, ``...Exp``, ``...Point`` by default)
``--repeat`` times, each run in its own output collection. For every task it prints the quantum CPU
seconds (from the task metadata: ``quantum`` start to end) and objects per CPU second; for the fit tasks
also the split of the quantum by stage (`lsst.galmix.fitting.timing`: Butler I/O, plan, stamps, engine
(C++ fits), solve (Python around them), refine (stamp growth, sky), residual-source search, blends,
writing rows, the task's own glue), with the median over the repeats.

CPU seconds, not wall: on a shared machine they are the figures that measure the code. ``GALMIX_ISA``
selects the engine's kernels.

Usage: ``python benchmarks/bench_pipeline.py [--repo PATH] [--patch N] [--repeat K] [--labels a,b]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import defaultdict

import numpy as np
from lsst.daf.butler import Butler
from lsst.galmix import engine as ge
from lsst.pipe.base import Pipeline
from lsst.pipe.base.simple_pipeline_executor import SimplePipelineExecutor

PIPELINE = "resource://lsst.galmix/pipelines/galmix_ci.yaml"
UPSTREAM = ("detectCoaddSources", "fitCoaddPsf")
FITS = ("fitCoaddMultibandSersic", "fitCoaddMultibandExp", "fitCoaddMultibandPoint")
SIM_RUN = "galmix/sim"


def run_labels(repo: str, labels: list[str], inputs: list[str], output: str, patch: int) -> None:
    """Run the given labels of the CI pipeline on one patch of tract 0 (in process)."""
    butler = SimplePipelineExecutor.prep_butler(repo, inputs=inputs, output=output)
    executor = SimplePipelineExecutor.from_pipeline(
        Pipeline.from_uri(f"{PIPELINE}#{','.join(labels)}"), butler=butler,
        where=f"skymap = 'galmix_sim' AND tract = 0 AND patch = {patch}",
    )
    executor.run(register_dataset_types=True)


def _first(value):
    return value[0] if isinstance(value, list) else value


def quantum_metadata(repo: str, collection: str, label: str) -> list[dict]:
    """The metadata of every quantum of ``label`` in ``collection``: ``quantum`` CPU seconds and the
    task's own keys."""
    butler = Butler.from_config(repo)
    out = []
    for ref in butler.registry.queryDatasets(f"{label}_metadata", collections=collection, findFirst=True):
        md = butler.get(ref).to_dict()
        q = md.get("quantum", {})
        own = {k: _first(v) for k, v in md.get(label, {}).items()}
        own["quantumCpuSeconds"] = float(_first(q["endCpuTime"])) - float(_first(q["startCpuTime"]))
        out.append(own)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", help="existing simulated repository (default: build a CI one in a temp dir)")
    parser.add_argument("--patch", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each fit label (median reported)")
    parser.add_argument("--labels", default=",".join(FITS), help="fit labels of galmix_ci.yaml")
    parser.add_argument("--seed", type=int, default=1, help="seed of the built repository")
    args = parser.parse_args()
    print(f"galmix engine: {ge.dispatch_info()}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="galmix_bench_") as tmp:
        repo = args.repo
        if repo is None:
            from lsst.galmix.sim import make_repo

            repo = os.path.join(tmp, "repo")
            print(f"building a CI repository in {repo} ...", flush=True)
            make_repo(repo, size="ci", seed=args.seed)
        upstream = f"bench/{os.getpid()}/upstream"
        run_labels(repo, list(UPSTREAM), [SIM_RUN], upstream, args.patch)
        print(f"patch {args.patch}; CPU seconds per quantum from the task metadata (quantum start to end)")
        print(f"  {'task':28s} {'quanta':>6s} {'objects':>8s} {'CPU s':>8s} {'obj/CPU s':>10s}")
        for label in UPSTREAM:
            mds = quantum_metadata(repo, upstream, label)
            cpu = sum(m["quantumCpuSeconds"] for m in mds)
            n = sum(int(m.get("nObjects", m.get("nKernels", 0)) or 0) for m in mds)
            print(f"  {label:28s} {len(mds):6d} {n:8d} {cpu:8.2f} {n / cpu if cpu > 0 else np.nan:10.1f}")
        splits = {}
        for label in args.labels.split(","):
            runs = []
            for k in range(args.repeat):
                out = f"bench/{os.getpid()}/{label}/{k}"
                run_labels(repo, [label], [upstream, SIM_RUN], out, args.patch)
                runs += quantum_metadata(repo, out, label)
            cpu = float(np.median([m["quantumCpuSeconds"] for m in runs]))
            n = int(runs[0]["nObjects"])
            print(f"  {label:28s} {1:6d} {n:8d} {cpu:8.2f} {n / cpu:10.1f}   (median of {len(runs)} runs)")
            split = defaultdict(list)
            for m in runs:
                if "stageCpuSeconds" not in m:
                    continue  # a library without the stage timer: quantum CPU only
                for key, value in m.items():
                    if key.endswith("CpuSeconds") and key not in ("stageCpuSeconds", "quantumCpuSeconds"):
                        split[key.removesuffix("CpuSeconds")].append(float(value))
                split["(stages)"].append(float(m["stageCpuSeconds"]))
            if split:
                splits[label] = (n, cpu, {s: float(np.median(v)) for s, v in split.items()})
        if not splits:
            return
        from lsst.galmix.fitting.timing import STAGES

        names = [s for s in STAGES if any(s in sp for _, _, sp in splits.values())]
        print("\nCPU split of the fit quanta by stage (median seconds per quantum, share of the stages' sum):")
        print(f"  {'stage':10s}" + "".join(f" {lab.removeprefix('fitCoaddMultiband'):>16s}" for lab in splits))
        for s in [*names, "(stages)"]:
            cells = []
            for _, _, sp in splits.values():
                v, tot = sp.get(s, 0.0), sp["(stages)"]
                cells.append(f" {v:8.3f} ({100 * v / tot:3.0f}%)" if tot > 0 else f" {'':>16s}")
            print(f"  {s:10s}" + "".join(cells))
        print("  quantum   " + "".join(f" {cpu:8.3f}        " for _, cpu, _ in splits.values()))


if __name__ == "__main__":
    main()
