"""The result of one check: observed vs expected, with the details a person needs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CheckResult(BaseModel):
    """Outcome of a check. ``details`` names each violation (subject, rule, value...)."""

    name: str
    kind: str
    passed: bool
    expected: Any = None
    observed: Any = None
    details: list[str] = Field(default_factory=list)
    phase: str = "checks"

    def summary(self) -> str:
        """One line for terminals and JUnit messages."""
        state = "PASS" if self.passed else "FAIL"
        text = f"{state} {self.name}: expected {self.expected!r}, observed {self.observed!r}"
        if self.details and not self.passed:
            text += f" ({self.details[0]}{' ...' if len(self.details) > 1 else ''})"
        return text
