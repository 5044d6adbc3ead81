"""Benchmarks: scripts that print figures and never fail on a timing (docs/benchmarks.md)."""
