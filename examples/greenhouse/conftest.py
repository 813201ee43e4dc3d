"""The greenhouse's pytest setup: the qiki-harness plugin (installed with the package)
provides the markers, the scenario items and the ``nats_server`` fixture; this file only
makes the ``greenhouse`` package importable when it is not installed (``pip install -e .``
does the same)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
