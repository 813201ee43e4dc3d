"""harness/load."""
