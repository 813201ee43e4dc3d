"""harness/broker."""
