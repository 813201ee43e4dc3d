"""The run journal: one typed record of everything a run did and found (``journal.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness.checks.delivery import DeliveryAccount
from harness.checks.result import CheckResult

Verdict = Literal["passed", "failed", "error"]

#: exit codes a CI gate can use
EXIT_CODES: dict[Verdict, int] = {"passed": 0, "failed": 1, "error": 2}


class TimelineEntry(BaseModel):
    """A step as it really ran; times in seconds since the run started."""

    kind: str
    name: str
    planned_at_s: float | None = None
    started_s: float
    ended_s: float | None = None
    ok: bool = True
    detail: str = ""
    #: the step's ``name`` in the scenario, when it has one (checks refer to it)
    step: str | None = None


class PublishedRecord(BaseModel):
    """What one ``publish`` step sent and what JetStream acknowledged."""

    step: str | None = None
    subject: str
    type: str | None = None
    source: str | None = None
    sent: int
    acked: int
    malformed: int = 0
    #: first ack failures, as ``id: error``
    errors: list[str] = Field(default_factory=list)
    #: ``Nats-Msg-Id`` of the first events sent (the whole list would bloat the journal)
    first_ids: list[str] = Field(default_factory=list)
    started_s: float
    ended_s: float


class FaultEntry(BaseModel):
    """A fault with its exact apply/remove times (seconds since run start)."""

    action: str
    target: str
    applied_s: float
    removed_s: float | None = None
    detail: str = ""


class LagPoint(BaseModel):
    """One lag sample, kept compact for the chart."""

    t: float
    stream: str
    consumer: str
    lag: int
    pending: int = 0
    ack_pending: int = 0
    redelivered: int = 0


class Journal(BaseModel):
    """Everything a person or a machine needs to judge a run afterwards."""

    run_id: str
    scenario: str
    scenario_file: str | None = None
    description: str = ""
    verdict: Verdict = "error"
    error: str | None = None
    started_at: str = ""
    duration_s: float = 0.0
    backend: str = ""
    backend_reason: str = ""
    broker: dict[str, Any] = Field(default_factory=dict)
    nats_server_version: str = ""
    services: dict[str, dict[str, Any]] = Field(default_factory=dict)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    faults: list[FaultEntry] = Field(default_factory=list)
    steady_state_before: list[CheckResult] = Field(default_factory=list)
    steady_state_after: list[CheckResult] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    delivery: DeliveryAccount | None = None
    load: list[dict[str, Any]] = Field(default_factory=list)
    recovery_s: float | None = None
    lag_samples: list[LagPoint] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    registrar_counts: dict[str, int] = Field(default_factory=dict)
    #: every publish step: sent, acked, ids
    published: list[PublishedRecord] = Field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 passed, 1 a check failed, 2 bad input or set-up error."""
        return EXIT_CODES[self.verdict]

    def failed_checks(self) -> list[CheckResult]:
        """Every failing check, steady state included."""
        return [
            c
            for c in [*self.steady_state_before, *self.checks, *self.steady_state_after]
            if not c.passed
        ]

    def write(self, path: Path) -> Path:
        """Write as indented JSON; returns the path."""
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> Journal:
        """Read a journal written by :meth:`write`."""
        return cls.model_validate_json(path.read_text(encoding="utf-8"))
