"""``python -m pacifica.ingest``: the same as ``pacifica-ingest``."""
import sys

from .server import main

sys.exit(main())
