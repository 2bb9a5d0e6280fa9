"""The HTTP frontend: CherryPy handlers that accept bundles and report job state."""
