"""galmix tasks."""
