"""The QIKI reference platform: the system under test. Never imports harness."""
