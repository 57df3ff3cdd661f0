"""Where the project's shared real-data folder (``shared/``: ``data/``, ``realdata/``) is."""

import os
from pathlib import Path

_CANDIDATES = (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared"))


def shared_dir() -> Path:
    """``$GALMIX_SHARED``, else ``shared/`` beside the checkout (as CI lays it), else ``/work/shared``.

    Raises
    ------
    FileNotFoundError
        If none exists: the tests that use real images need it (they never skip).
    """
    if "GALMIX_SHARED" in os.environ:
        return Path(os.environ["GALMIX_SHARED"])
    for path in _CANDIDATES:
        if (path / "data").is_dir():
            return path
    raise FileNotFoundError(f"No shared data folder in {[str(p) for p in _CANDIDATES]}; set GALMIX_SHARED")
