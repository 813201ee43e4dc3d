"""What a run observed: plain values the runner gathers and the checks judge.

Checks never talk to NATS or SQLite; they take these values and return results, which keeps
them testable without a server and keeps the runner thin (architecture note, "Boundaries").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TappedMessage:
    """One message seen by the tap subscription on the platform's subjects."""

    subject: str
    headers: Mapping[str, str] | None
    payload: bytes
    received_at: float


@dataclass(frozen=True, slots=True)
class LagSample:
    """One poll of one durable consumer; ``t`` is seconds since the run started."""

    t: float
    stream: str
    consumer: str
    lag: int
    num_pending: int = 0
    num_ack_pending: int = 0
    num_redelivered: int = 0
    oldest_unacked_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class RegistrarRecord:
    """One row of the registrar's audit store; times are Unix epoch seconds."""

    code: int
    source: str
    event_id: str
    type: str
    subject: str
    stored_at: float
    reason: str | None = None
    #: the store's insertion order (ties in stored_at are common within one batch)
    seq: int = 0
    #: the CloudEvent's own ``time``, when it had one
    event_time: float | None = None


@dataclass(slots=True)
class DeliveryLog:
    """What the load side did, per message id (the enqueue half of Jepsen's queue checker)."""

    attempted: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)

    def merge(self, other: DeliveryLog) -> None:
        """Add another log's ids to this one (several load steps feed one run)."""
        self.attempted |= other.attempted
        self.acked |= other.acked
        self.failed |= other.failed


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault as it really happened: seconds since run start, ``removed_at`` None if never."""

    kind: str
    target: str
    applied_at: float
    removed_at: float | None = None
    detail: str = ""


@dataclass(slots=True)
class Observations:
    """Everything a run saw, handed to the checks at the end."""

    messages: list[TappedMessage] = field(default_factory=list)
    lag_samples: list[LagSample] = field(default_factory=list)
    records: list[RegistrarRecord] = field(default_factory=list)
    delivery: DeliveryLog = field(default_factory=DeliveryLog)
    faults: list[FaultRecord] = field(default_factory=list)
    #: ids the registrar stored, with multiplicity, for the delivery check
    stored_ids: Counter[str] = field(default_factory=Counter)
    duration_s: float = 0.0
