"""galmix models."""
