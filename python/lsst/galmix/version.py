"""The galmix version: the release number with the git revision as a PEP 440 local label.

``__version__`` is ``"<release>+g<sha>"`` (``.dirty`` appended when tracked files are modified) when
this file lives in a git checkout of galmix (an editable install or a build from the source tree), the
version recorded at build time in the installed distribution's metadata otherwise, and the bare release
number when neither is known. It is what the middleware's ``packages`` dataset records for galmix, so
every output collection names the code that made it.

This module uses the standard library only: setuptools executes it on its own at build time to read
the version (``[tool.setuptools.dynamic]`` in pyproject.toml), which puts the revision in the wheel's
metadata.
"""

from __future__ import annotations

import os
import subprocess

__all__ = ["RELEASE", "__version__", "git_revision"]

RELEASE = "0.1.0"
"""Release number without the local label."""


def _git(*args: str, cwd: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_revision(path: str | None = None) -> str | None:
    """Local version label ``g<sha>[.dirty]`` of the galmix checkout holding ``path``.

    Parameters
    ----------
    path
        A file of the package (default: this module).

    Returns
    -------
    label : `str` or `None`
        `None` when ``path`` is not inside a git checkout of galmix (an installed wheel, an exported
        tarball) or git is unavailable.
    """
    here = os.path.realpath(path or __file__)
    folder = os.path.dirname(here)
    top = _git("rev-parse", "--show-toplevel", cwd=folder)
    # Only a checkout in which this very file is galmix's version module counts (not, say, a site-packages
    # folder that happens to sit inside some other repository).
    if top is None or os.path.realpath(os.path.join(top, "python", "lsst", "galmix", "version.py")) != here:
        return None
    sha = _git("rev-parse", "--short=10", "HEAD", cwd=top)
    if not sha:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=top)
    return f"g{sha}.dirty" if dirty else f"g{sha}"


def _installed_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - always present on Python >= 3.8
        return None
    try:
        found = version("lsst-galmix")
    except PackageNotFoundError:
        return None
    return found if found.startswith(RELEASE + "+") else None


def _version() -> str:
    label = git_revision()
    if label is not None:
        return f"{RELEASE}+{label}"
    return _installed_version() or RELEASE


__version__ = _version()
