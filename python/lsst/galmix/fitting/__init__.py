"""galmix fitting."""
