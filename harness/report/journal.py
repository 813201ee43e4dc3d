"""The run journal: one typed record of everything a run did and found (``journal.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness.checks.delivery import DeliveryAccount
from harness.checks.replicas import ReplicaAccount
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


class IntervalPoint(BaseModel):
    """Publishes in one interval of the run: acked, failed, PubAck latency percentiles."""

    t: float
    acked: int = 0
    failed: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    #: end-to-end latency (sent -> stored by the registrar), when the run measured it
    e2e_p50_ms: float | None = None
    e2e_p99_ms: float | None = None
    first_ack_s: float | None = None
    last_ack_s: float | None = None


class OutageWindow(BaseModel):
    """A write outage: publishes were attempted but none was acked for longer than the
    threshold (seconds since run start)."""

    start_s: float
    end_s: float
    threshold_s: float

    @property
    def duration_s(self) -> float:
        """Length of the window."""
        return round(self.end_s - self.start_s, 3)


class RecoveryFigure(BaseModel):
    """One recovery figure with its definition, so header, checks and journal agree."""

    #: ``write`` (first PubAck after the heal) or ``lag`` (lag back under the threshold)
    kind: Literal["write", "lag"]
    label: str
    #: what was measured from (seconds since run start), and what that moment is
    reference_s: float
    reference: str
    threshold: float | None = None
    value_s: float | None = None
    #: the lag.recovery check this figure belongs to, when one asked for it
    check: str | None = None


class Availability(BaseModel):
    """Per-interval publish outcomes of every publish and load step (summed), the write
    outage windows, and end-to-end latency per interval when measured."""

    interval_s: float = 1.0
    outage_threshold_s: float = 1.0
    points: list[IntervalPoint] = Field(default_factory=list)
    outages: list[OutageWindow] = Field(default_factory=list)


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
    #: the replicas check: what each replica of the stream holds, split-brain measured
    replicas: ReplicaAccount | None = None
    load: list[dict[str, Any]] = Field(default_factory=list)
    recovery_s: float | None = None
    lag_samples: list[LagPoint] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    registrar_counts: dict[str, int] = Field(default_factory=dict)
    #: every publish step: sent, acked, ids
    published: list[PublishedRecord] = Field(default_factory=list)
    #: acked/failed publishes and PubAck latency per interval, write outages
    availability: Availability | None = None
    #: every recovery figure with its definition (the header and checks show these)
    recoveries: list[RecoveryFigure] = Field(default_factory=list)
    #: registrar code -> {"name": ..., "class": ...} from the run's spec
    code_names: dict[str, dict[str, str]] = Field(default_factory=dict)

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
