"""``python -m pacifica.ingest.client``: the same as ``pacifica-ingest-upload``."""
import sys

from .cli import main

sys.exit(main())
