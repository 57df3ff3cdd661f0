"""galmix analysis."""
