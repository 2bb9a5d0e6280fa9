"""Pacifica Ingest: the edge service that receives, verifies and archives data bundles."""
__version__ = "1.0.0"
