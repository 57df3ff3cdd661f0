"""``benchmarks/bench_fit.py --stages`` prints galmix's CPU per object by stage for each galaxy set, with
stages that sum to the total and the C++ fits among them. Its times are printed, never compared with
limits."""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_fit.py"


def test_stage_split_lines_sum_to_their_totals():
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--no-imfit", "--stages"], check=True,
                         capture_output=True, text=True, timeout=600).stdout
    lines = [line for line in out.splitlines() if "CPU per object by stage" in line]
    assert [line.split()[0] + " " + line.split()[1] for line in lines] == ["sersic 1-band", "sersic 3-band"]
    for line in lines:
        total = float(re.search(r"total ([0-9.]+) ms", line).group(1))
        split = line.split("ms;")[1]
        stages = {name: float(v) for name, v in re.findall(r"(\w+) ([0-9.]+)(?:,|$)", split)}
        assert {"engine", "solve", "stamps"} <= set(stages)
        assert stages["engine"] > 0
        # Each figure is rounded to 1 us.
        assert abs(sum(stages.values()) - total) <= 0.0005 * (len(stages) + 1)
