"""galmix data: Butler repository setup (seed config, dimension records, dataset types) and skymap geometry."""

from .repository import *
from .skymap import *
