"""The ``qiki-harness`` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``qiki-harness``; returns the process exit code."""
    print("qiki-harness: not built yet", file=sys.stderr)
    return 2
