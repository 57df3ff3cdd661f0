"""galmix configs."""
