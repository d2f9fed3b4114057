"""The load generator against a live server."""
