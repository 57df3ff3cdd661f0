"""Fuzz suite plumbing: the summary line (fuzzed calls, clean errors, longest call) and the stats file.

``GALMIX_FUZZ_STATS=<path>`` makes every test process (each xdist worker too) append one line
``calls errors seconds max_call_seconds`` at the end of its session; ``make fuzz`` sums them.
"""

from __future__ import annotations

import os
import time

from fuzzlib import Stats


def pytest_sessionstart(session):
    Stats.start = time.perf_counter()


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("GALMIX_FUZZ_STATS")
    if path and Stats.calls:
        with open(path, "a") as f:
            f.write(f"{Stats.calls} {Stats.errors} {time.perf_counter() - Stats.start:.1f} {Stats.max_seconds:.3f}\n")


def pytest_terminal_summary(terminalreporter):
    if Stats.calls:
        terminalreporter.write_line(
            f"galmix fuzz: {Stats.calls} calls ({Stats.errors} clean errors) in "
            f"{time.perf_counter() - Stats.start:.1f} s; longest call {Stats.max_seconds:.2f} s"
        )
