"""Error hierarchy of qiki-harness: one root, misuse errors also ValueError/TypeError."""

from __future__ import annotations


class HarnessError(Exception):
    """Root of every error the harness raises on purpose."""


class ConfigError(HarnessError, ValueError):
    """Bad input (scenario file, flag, spec): maps to exit code 2."""


class SetupError(HarnessError):
    """The topology could not be brought up (broker, service, container): exit code 2."""
