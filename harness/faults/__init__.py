"""harness/faults."""
