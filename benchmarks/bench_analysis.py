"""CPU seconds of the analysis quanta (``analyzeMatched``, ``analyzeMatchedExp`` of galmix_ci.yaml), in
process, on an existing repository whose input collection holds the matched table (e.g. the demo's).

Each repeat runs both labels into a new output collection ``bench/analysis/<pid>/<k>`` of ``--repo`` and
reads the quantum CPU from the task metadata (``quantum`` start to end); the medians are printed. The
runs write into the repository: pass a copy (``cp -r DEMO/repo /tmp/copy``), not the demo's own.

Usage: ``python benchmarks/bench_analysis.py --repo PATH [--input galmix/demo] [--repeat K]``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from bench_pipeline import quantum_metadata
from lsst.pipe.base import Pipeline
from lsst.pipe.base.simple_pipeline_executor import SimplePipelineExecutor

LABELS = ("analyzeMatched", "analyzeMatchedExp")
PIPELINE = f"resource://lsst.galmix/pipelines/galmix_ci.yaml#{','.join(LABELS)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="repository to write into (a copy)")
    parser.add_argument("--input", default="galmix/demo", help="collection with the matched tables")
    parser.add_argument("--repeat", type=int, default=3, help="runs of both labels (medians reported)")
    args = parser.parse_args()
    cpu: dict[str, list[float]] = {label: [] for label in LABELS}
    for k in range(args.repeat):
        output = f"bench/analysis/{os.getpid()}/{k}"
        butler = SimplePipelineExecutor.prep_butler(args.repo, inputs=[args.input], output=output)
        SimplePipelineExecutor.from_pipeline(Pipeline.from_uri(PIPELINE), butler=butler).run(
            register_dataset_types=True
        )
        for label in LABELS:
            cpu[label] += [m["quantumCpuSeconds"] for m in quantum_metadata(args.repo, output, label)]
    print(f"load average {os.getloadavg()[0]:.1f}; quantum CPU seconds (median of {args.repeat} runs)")
    for label, values in cpu.items():
        print(f"  {label:20s} {np.median(values):6.2f}   ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
