"""The drain before the checks: a lag of 0 is not trusted alone when acked load messages are
still missing from the registrar's store (a restarted replica can answer a stale lag 0)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.checks.observations import LagSample, RegistrarRecord
from harness.progress import ProgressSink
from harness.report.journal import Journal
from harness.scenario import runner as runner_mod
from harness.scenario.loader import parse_scenario
from harness.scenario.runner import LOAD_SOURCE, RunOptions, ScenarioRunner, _Run

SCENARIO = """
name: t
method:
  - load: {duration_s: 1, rate_per_s: 10}
checks:
  - delivery: {max_lost: 0}
drain_timeout_s: 3
"""


@dataclass
class StaleLagPlatform:
    """Answers lag 0 from the start (stale); the store receives the acked ids only after
    ``store_after`` reads of ``/records``."""

    ids: list[str]
    store_after: int
    services: dict[str, Any] = field(default_factory=lambda: {"registrar": object()})
    reads: int = 0

    def now(self) -> float:
        return 0.0

    async def drain_sample(self, t: float) -> tuple[list[LagSample], set[str]]:
        return ([LagSample(t=t, stream="S", consumer="registrar-events", lag=0,
                           num_pending=0, num_ack_pending=0, num_redelivered=0)],
                {"registrar-events"})

    async def registrar_records(self, after_seq: int = 0) -> list[RegistrarRecord]:
        self.reads += 1
        if self.reads < self.store_after or after_seq:
            return []
        return [RegistrarRecord(code=210, source=LOAD_SOURCE, event_id=i, type="t", subject="s",
                                stored_at=0.0, seq=n + 1) for n, i in enumerate(self.ids)]


def _state(ids: list[str]) -> _Run:
    state = _Run(journal=Journal(run_id="r", scenario="t"))
    state.delivery.acked |= set(ids)
    return state


@pytest.fixture(autouse=True)
def fast_stability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "DRAIN_STABLE_S", 0.0)


async def test_the_drain_waits_for_the_store_not_only_a_lag_of_zero() -> None:
    ids = [f"id-{i}" for i in range(5)]
    p = StaleLagPlatform(ids, store_after=4)
    state = _state(ids)
    await ScenarioRunner(parse_scenario(SCENARIO))._drain(p, state)  # type: ignore[arg-type]
    (drain,) = [e for e in state.journal.timeline if e.kind == "drain"]
    assert drain.ok, drain
    assert p.reads >= 4  # it kept reading the store after lag said 0


async def test_a_store_that_never_completes_times_out_naming_the_missing() -> None:
    ids = [f"id-{i}" for i in range(5)]
    p = StaleLagPlatform(ids, store_after=10**9)
    state = _state(ids)
    notes: list[str] = []

    class Notes(ProgressSink):
        def note(self, text: str) -> None:
            notes.append(text)

    runner = ScenarioRunner(parse_scenario(SCENARIO), options=RunOptions(progress=Notes()))
    await runner._drain(p, state)  # type: ignore[arg-type]
    (drain,) = [e for e in state.journal.timeline if e.kind == "drain"]
    assert not drain.ok
    assert "5 acked load message(s) not stored" in drain.name
    # and the user hears it, not only the journal
    assert notes == ["drain gave up after 3s: not caught up (registrar-events; 5 acked load "
                     "message(s) not stored); checking what is there"]
