"""One timer for the stages of a patch fit: CPU and wall seconds accumulated per stage name.

A `StageTimer` is made active for a block of code (`StageTimer.active`); inside it, any module marks
what it is doing with ``with stage("name"):``. Time is exclusive: while a nested stage runs, its
enclosing stage does not accumulate, so the stages of a block sum to the block's total. Outside an
active timer, and on threads other than the one that activated it, `stage` does nothing: CPU time is
measured for the whole process (`time.process_time`), so the enclosing stage on the activating thread
already holds the CPU of worker threads (C++ fit threads, parallel blends).

Stage names used by the library (`STAGES`): ``plan`` (groups, PSFs at the objects), ``stamps``
(cutting stamps, adaptive moments, starting parameters), ``engine`` (C++ fits), ``solve`` (Python
set-up of the engine problems and reading their results), ``refine`` (stamp growth and sky decisions),
``residuals`` (residual-source search), ``blends`` (blends fitted child by child with neighbours
subtracted, less the stages nested in them), ``write`` (rows, flags, plausibility, table), ``fit``
(PSF mixture fits of kernel images, `lsst.galmix.fitting.psf`). The task adds ``io`` (Butler get/put) and
``task`` (the rest of the quantum); `timed_quantum` and `record_stages` are what the tasks share to
time a quantum and store its split.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar, cast

__all__ = ["STAGES", "StageTimer", "active_timer", "record_stages", "stage", "staged", "timed_quantum"]

F = TypeVar("F", bound=Callable[..., Any])

STAGES: tuple[str, ...] = ("io", "plan", "stamps", "engine", "solve", "refine", "residuals", "blends", "fit",
                           "write", "task")
"""Stage names in reporting order (others may be added; they are reported after these)."""

_current: ContextVar[StageTimer | None] = ContextVar("galmix_stage_timer", default=None)


class StageTimer:
    """CPU and wall seconds per stage name (exclusive of nested stages).

    Attributes
    ----------
    cpu, wall : `dict` [`str`, `float`]
        Seconds per stage name.
    """

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self._stack: list[str] = []
        self._thread: int | None = None
        self._mark_cpu = 0.0
        self._mark_wall = 0.0

    def _charge(self) -> None:
        """Add the time since the last mark to the innermost running stage and move the mark."""
        cpu, wall = time.process_time(), time.perf_counter()
        if self._stack:
            top = self._stack[-1]
            self.cpu[top] = self.cpu.get(top, 0.0) + cpu - self._mark_cpu
            self.wall[top] = self.wall.get(top, 0.0) + wall - self._mark_wall
        self._mark_cpu, self._mark_wall = cpu, wall

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Accumulate the block's time under ``name`` (nested stages take their own share).

        Only the thread that first used the timer records; on other threads this does nothing.
        """
        me = threading.get_ident()
        if self._thread is None:
            self._thread = me
        if me != self._thread:
            yield
            return
        self._charge()
        self._stack.append(name)
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    @contextlib.contextmanager
    def active(self) -> Iterator[StageTimer]:
        """Make this the timer that `stage` records into, for the block (and this context)."""
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)

    def add(self, other: StageTimer) -> None:
        """Add another timer's seconds to this one's (e.g. to sum quanta)."""
        for name, v in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + v
        for name, v in other.wall.items():
            self.wall[name] = self.wall.get(name, 0.0) + v

    def snapshot(self) -> tuple[dict[str, float], dict[str, float]]:
        """Copies of ``(cpu, wall)``, to measure a block with `since`."""
        return dict(self.cpu), dict(self.wall)

    def since(self, snapshot: tuple[dict[str, float], dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
        """``(cpu, wall)`` seconds per stage accumulated since a `snapshot` (stages with time only)."""
        cpu = {n: v - snapshot[0].get(n, 0.0) for n, v in self.cpu.items() if v > snapshot[0].get(n, 0.0)}
        wall = {n: v - snapshot[1].get(n, 0.0) for n, v in self.wall.items() if v > snapshot[1].get(n, 0.0)}
        return cpu, wall

    @property
    def total_cpu(self) -> float:
        """CPU seconds of all stages."""
        return float(sum(self.cpu.values()))

    @property
    def total_wall(self) -> float:
        """Wall seconds of all stages."""
        return float(sum(self.wall.values()))

    def names(self) -> list[str]:
        """Stage names with recorded time, `STAGES` order first."""
        known = [n for n in STAGES if n in self.wall]
        return known + sorted(n for n in self.wall if n not in STAGES)

    def summary(self) -> str:
        """One line: CPU seconds and share of each stage, e.g. ``engine 1.20 s (61%), stamps ...``."""
        total = self.total_cpu
        parts = [f"{n} {self.cpu.get(n, 0.0):.2f} s ({100 * self.cpu.get(n, 0.0) / total if total > 0 else 0:.0f}%)"
                 for n in self.names()]
        return ", ".join(parts)

    def as_dict(self) -> dict[str, float]:
        """``{"<stage>CpuSeconds": ..., "<stage>WallSeconds": ...}`` for task metadata."""
        out: dict[str, float] = {}
        for n in self.names():
            out[f"{n}CpuSeconds"] = float(self.cpu.get(n, 0.0))
            out[f"{n}WallSeconds"] = float(self.wall.get(n, 0.0))
        return out


def active_timer() -> StageTimer | None:
    """The timer `stage` records into on this context, if any."""
    return _current.get()


def stage(name: str) -> contextlib.AbstractContextManager[None]:
    """``with stage(name):`` records into the active `StageTimer` (nothing when none is active)."""
    timer = _current.get()
    return contextlib.nullcontext() if timer is None else timer.stage(name)


def staged(name: str) -> Callable[[F], F]:
    """Decorator: every call of the function is recorded as stage ``name`` (see `stage`)."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def inner(*args, **kwargs):
            timer = _current.get()
            if timer is None:
                return func(*args, **kwargs)
            with timer.stage(name):
                return func(*args, **kwargs)

        return cast(F, inner)

    return wrap


@contextlib.contextmanager
def timed_quantum(timer: StageTimer, report: Callable[[StageTimer], None]) -> Iterator[StageTimer]:
    """Run a block as one quantum under ``timer``, then ``report(timer)``.

    The timer is active for the block (`StageTimer.active`) and the block's own time, outside the stages
    opened in it, is stage ``task``. ``report`` is not called when the block raises.

    Parameters
    ----------
    timer : `StageTimer`
        The quantum's timer (a task's ``runQuantum`` may open stages, e.g. ``io``, inside the block).
    report : callable
        Called with the timer when the block ends, e.g. to log its `StageTimer.summary` and
        `record_stages`.
    """
    with timer.active(), timer.stage("task"):
        yield timer
    report(timer)


def record_stages(timer: StageTimer, metadata: Any) -> None:
    """Store a quantum's split in task metadata.

    Keys: ``<stage>CpuSeconds`` and ``<stage>WallSeconds`` per stage (`StageTimer.as_dict`), and
    ``stageCpuSeconds``/``stageWallSeconds``, their totals (`lsst.galmix.tools.report` reads them).

    Parameters
    ----------
    timer : `StageTimer`
        The quantum's timer.
    metadata : `lsst.pipe.base.TaskMetadata`
        The task's metadata (any mapping that takes float values).
    """
    for key, value in timer.as_dict().items():
        metadata[key] = value
    metadata["stageCpuSeconds"] = timer.total_cpu
    metadata["stageWallSeconds"] = timer.total_wall
