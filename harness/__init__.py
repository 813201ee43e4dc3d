"""qiki-harness: chaos and smoke testing for NATS JetStream microservices."""

from harness.errors import ConfigError, HarnessError, SetupError

__all__ = ["ConfigError", "HarnessError", "SetupError"]
__version__ = "0.1.0"
