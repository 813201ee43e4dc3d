"""harness/checks."""
