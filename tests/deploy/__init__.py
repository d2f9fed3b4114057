"""Dockerfile and Helm chart linted and rendered."""
