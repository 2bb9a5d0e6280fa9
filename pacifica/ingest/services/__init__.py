"""Seams to the other Pacifica services, each with an embedded default and an HTTP client."""
