"""galmix data."""
