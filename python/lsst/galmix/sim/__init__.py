"""galmix sim."""
