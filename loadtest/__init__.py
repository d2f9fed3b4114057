"""HTTP load generator for coldproxy (``python -m loadtest``): talks to the service over HTTP only."""
