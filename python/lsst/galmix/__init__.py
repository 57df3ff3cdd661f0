"""galmix: multi-band galaxy photometry by Gaussian-mixture model fitting."""

from .version import __version__

__all__ = ["__version__"]
