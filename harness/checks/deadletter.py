"""Dead-letter accounting: every rejected message must land in the dead-letter stream."""

from __future__ import annotations

from harness.checks.result import CheckResult


def check_dead_letters(
    dead_lettered: int, expected: int, *, name: str = "dead_letters"
) -> CheckResult:
    """Exactly ``expected`` messages were dead-lettered.

    Fewer means a rejection was acked without its copy (lost evidence); more means valid
    traffic was dead-lettered, or a dead letter looped back into the platform.
    """
    details: list[str] = []
    if dead_lettered < expected:
        details.append(f"only {dead_lettered} of {expected} rejected message(s) dead-lettered")
    elif dead_lettered > expected:
        details.append(
            f"{dead_lettered} message(s) dead-lettered, expected {expected}: valid traffic "
            "rejected, or a dead letter looped"
        )
    return CheckResult(name=name, kind="registrar", passed=not details,
                       expected={"dead_lettered": expected},
                       observed={"dead_lettered": dead_lettered}, details=details)
