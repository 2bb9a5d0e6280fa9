"""Benchmark of Pacifica Ingest against the physical floor and the original 0.4.1 (not in CI)."""
