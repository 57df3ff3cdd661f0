"""Shared pieces of the fuzz suite: hypothesis settings, input strategies and the bounded call wrapper.

Every fuzzed call goes through `call`: it must return (the test then checks the result is finite) or raise
one of `CLEAN_ERRORS`; a crash kills the process, and a call that runs longer than `CALL_TIMEOUT` seconds
ends the process with a traceback of every thread (faulthandler), so hangs cannot pass unnoticed.
"""

from __future__ import annotations

import faulthandler
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Examples per test: a fixed, derandomised handful in ``make test``; ``make fuzz`` sets
#: GALMIX_FUZZ_EXAMPLES (and draws new random examples each run).
EXAMPLES = int(os.environ.get("GALMIX_FUZZ_EXAMPLES", "0") or 0)
#: Hard bound on one call (seconds): far above any legitimate call here, also under AddressSanitizer.
CALL_TIMEOUT = float(os.environ.get("GALMIX_FUZZ_CALL_TIMEOUT", "120"))

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
           HealthCheck.large_base_example]


def fuzz_settings(weight: float = 1.0) -> settings:
    """Hypothesis settings of one test; ``weight`` scales the example count of expensive tests."""
    if EXAMPLES:
        return settings(max_examples=max(1, int(EXAMPLES * weight)), deadline=None, database=None,
                        suppress_health_check=_HEALTH, derandomize=False)
    return settings(max_examples=max(2, int(12 * weight)), deadline=None, database=None,
                    suppress_health_check=_HEALTH, derandomize=True)


#: Errors a public entry point may raise for bad input (the engine's InputError is a ValueError).
CLEAN_ERRORS = (TypeError, ValueError, IndexError)


class Stats:
    """Number of fuzzed calls and the longest one, for the suite's summary line."""

    calls = 0
    errors = 0
    max_seconds = 0.0
    start = time.perf_counter()


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """Run one fuzzed call: ``(True, result)``, or ``(False, exception)`` for a clean error.

    Any other exception propagates (the test fails); a call exceeding `CALL_TIMEOUT` ends the process.
    """
    Stats.calls += 1
    faulthandler.dump_traceback_later(CALL_TIMEOUT, exit=True)
    t0 = time.perf_counter()
    try:
        return True, fn(*args, **kwargs)
    except CLEAN_ERRORS as e:
        Stats.errors += 1
        assert str(e), f"{type(e).__name__} without a message"
        return False, e
    finally:
        faulthandler.cancel_dump_traceback_later()
        Stats.max_seconds = max(Stats.max_seconds, time.perf_counter() - t0)


def all_finite(*values: Any) -> bool:
    """True if every number in the (nested) values is finite."""
    for v in values:
        if isinstance(v, (tuple, list)):
            if not all_finite(*v):
                return False
        elif not np.isfinite(np.asarray(v, dtype=np.float64)).all():
            return False
    return True


SPECIALS = [np.nan, np.inf, -np.inf, 1e308, -1e308, 1e200, -1e200, 1e154, 5e-324, -5e-324, 2.2250738585072014e-308,
            1e-300, 0.0, -0.0, 3.5e38, 1e-45, 709.9, -745.2]

#: Any double, weighted towards the ones that break code: specials, subnormals, huge and tiny values.
any_float = st.one_of(st.sampled_from(SPECIALS), st.floats(allow_nan=True, allow_infinity=True,
                                                           allow_subnormal=True))
#: Mostly reasonable numbers, sometimes anything.
mostly_sane_float = st.one_of(st.floats(-100.0, 100.0), st.floats(-100.0, 100.0), any_float)

FLOAT_DTYPES = ["<f8", "<f4", ">f8", ">f4"]
OTHER_DTYPES = ["<f2", "<i4", "<i8", "|u1", "|b1", "<c16", "O"]
ARRAY_LAYOUTS = ["c", "c", "c", "f", "rows_strided", "cols_strided", "reversed", "readonly", "misaligned",
                 "ravel", "3d"]
LAYOUTS = ARRAY_LAYOUTS + ["list", "scalar"]


def _layout(a: np.ndarray, layout: str) -> Any:
    """``a`` (C order) rearranged into one of `LAYOUTS` (same values, different memory/type)."""
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "rows_strided":
        big = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
        big[::2] = a
        return big[::2]
    if layout == "cols_strided" and a.ndim == 2:
        big = np.zeros((a.shape[0], 2 * a.shape[1]), a.dtype)
        big[:, ::2] = a
        return big[:, ::2]
    if layout == "reversed":
        return np.ascontiguousarray(a[::-1])[::-1]
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if layout == "misaligned" and a.dtype.kind != "O" and a.dtype.itemsize > 1:
        buf = bytearray(a.nbytes + 1)
        b = np.frombuffer(buf, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
        b[...] = a
        return b
    if layout == "ravel":
        return a.ravel()
    if layout == "3d":
        return a[None]
    if layout == "list":
        return a.tolist()
    if layout == "scalar":
        return a.ravel()[0] if a.size else 0.0
    return a


@st.composite
def shapes(draw, large: bool = True) -> tuple[int, int]:
    """(ny, nx): empty, one pixel, small, and (rarely) large."""
    if large and draw(st.integers(0, 40)) == 0:
        return draw(st.sampled_from([(1, 20000), (300, 300), (3000, 1), (0, 100000)]))
    small = st.sampled_from([0, 1, 1, 2, 3, 5, 8, 16]) | st.integers(0, 40)
    return draw(small), draw(small)


@st.composite
def arrays(draw, shape: tuple[int, int] | None = None, positive: bool = False, sane: bool = False,
           large: bool = True, ndarray: bool = False) -> Any:
    """A 2-d array of random values with a few special values, in a random dtype and layout.

    With ``ndarray`` the result is always a numpy array (no lists or scalars).
    """
    shp = shape if shape is not None else draw(shapes(large))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 1.0, 1.0, 1e-3, 1e3, 1e-160, 1e160, 1e-300, 1e300]))
    with np.errstate(all="ignore"):
        a = rng.normal(0.0, 1.0, shp) * scale
        if positive:
            a = np.abs(a) + (0.1 if scale == 1.0 else 0.0)
        if a.size and not sane:
            for _ in range(draw(st.integers(0, 3))):
                a.flat[draw(st.integers(0, a.size - 1))] = draw(any_float)
        dtype = draw(st.sampled_from(FLOAT_DTYPES * 4 + OTHER_DTYPES))
        a = a.astype(dtype, casting="unsafe")
    return _layout(a, "c" if sane else draw(st.sampled_from(ARRAY_LAYOUTS if ndarray else LAYOUTS)))


@st.composite
def gaussian_rows(draw, n_max: int = 5, centre: float = 10.0, sane: bool = False) -> np.ndarray:
    """(N, 6) rows (flux, x, y, xx, xy, yy) of mostly valid Gaussians with injected bad values."""
    n = draw(st.integers(0 if not sane else 1, n_max))
    rows = []
    for _ in range(n):
        flux = draw(st.floats(0.0, 1e4) | (st.just(1.0) if sane else any_float))
        x, y = draw(st.floats(-5, 2 * centre + 5)), draw(st.floats(-5, 2 * centre + 5))
        a = draw(st.floats(0.05, 30.0))
        q = draw(st.floats(0.05, 1.0))
        th = draw(st.floats(-3.2, 3.2))
        c, s = np.cos(th), np.sin(th)
        a2, b2 = a * a, (a * q) ** 2
        rows.append([flux, x, y, a2 * c * c + b2 * s * s, (a2 - b2) * c * s, a2 * s * s + b2 * c * c])
    m = np.array(rows, dtype=np.float64).reshape(n, 6)
    if n and not sane:
        for _ in range(draw(st.integers(0, 2))):
            m[draw(st.integers(0, n - 1)), draw(st.integers(0, 5))] = draw(any_float)
    return m


@st.composite
def mixtures(draw, n_max: int = 5, centre: float = 10.0) -> Any:
    """A mixture argument: usually (N, 6) float rows, sometimes a wrong shape, dtype, layout or type."""
    m = draw(gaussian_rows(n_max, centre))
    kind = draw(st.sampled_from(["ok"] * 8 + ["layout", "shape", "object"]))
    if kind == "layout":
        return _layout(m, draw(st.sampled_from(LAYOUTS)))
    if kind == "shape":
        return draw(st.sampled_from([m.reshape(-1), m[:, :5], np.zeros((2, 7)), m[None], np.zeros((0,)),
                                     np.zeros(6), m.astype(np.float32)]))
    if kind == "object":
        return draw(st.sampled_from([None, "gaussians", [[1, 2, 3]], {"a": 1}, 3.0, [m, m]]))
    return m
