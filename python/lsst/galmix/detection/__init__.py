"""galmix detection."""
