"""harness/scenario."""
