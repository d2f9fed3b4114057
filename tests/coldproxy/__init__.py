"""The no-torch core."""
