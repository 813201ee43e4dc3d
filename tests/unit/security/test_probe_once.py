"""Security probes in a steady state run once per phase, and a violation the server logged is
journalled (and published as an 830) once per run however often the log is read (issue 10)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from harness.scenario.model import SecurityCheck
from harness.security import session
from harness.security.probes import ProbeResult
from services.common.botspec import load_runtime_config

LOG = (
    '[1] 2026/11/27 18:51:10.774586 [ERR] 127.0.0.1:47054 - cid:35 - '
    '"v2.16.0:python3:qiki-registrar" - "QIKI_APP/user:registrar" - Subscription Violation - '
    'Subject "qiki.radar.v1.>", SID 1\n'
)
INBOX_LINE = (
    '[1] 2026/11/27 18:51:11.000000 [ERR] 127.0.0.1:47060 - cid:36 - '
    '"v2.16.0:python3:greenhouse" - "QIKI_APP/user:greenhouse" - Subscription Violation - '
    'Subject "_INBOX.AbC.*", SID 2\n'
)


@dataclass
class _Node:
    name: str
    text: str

    def log_text(self) -> str:
        return self.text


@dataclass
class _Platform:
    """What probe_platform reads of a platform: an accounts broker whose log is given."""

    node: _Node
    events: list[dict[str, Any]] = field(default_factory=list)
    config: Any = field(default_factory=load_runtime_config)
    nc: None = None  # nothing to publish to: the journal is what is counted here
    credentials: Any = field(default_factory=lambda: SimpleNamespace(
        mode="accounts", tls=None, credentials={}))

    @property
    def broker(self) -> Any:
        return SimpleNamespace(nodes=[self.node])

    def event(self, kind: str, **data: Any) -> None:
        self.events.append({"kind": kind, **data})

    def settings(self, identity: str = "harness", **overrides: Any) -> Any:
        from services.common.settings import NatsSettings

        return NatsSettings(**overrides)


def _probe_events(p: _Platform) -> list[dict[str, Any]]:
    return [e for e in p.events if e["kind"] == "security.probe"]


def test_a_logged_violation_is_journalled_once_but_fails_every_evaluation() -> None:
    p = _Platform(_Node("n1", LOG + LOG))  # the same violation twice: two lines, two events
    check = SecurityCheck.model_validate({"probes": []})
    seen: Counter[str] = Counter()
    first = asyncio.run(session.probe_platform(p, check, seen_violations=seen))  # type: ignore[arg-type]
    assert len(first) == 2 and not any(r.passed for r in first)
    assert len(_probe_events(p)) == 2
    again = asyncio.run(session.probe_platform(p, check, seen_violations=seen))  # type: ignore[arg-type]
    assert [r.label for r in again] == [r.label for r in first]  # still failures
    assert len(_probe_events(p)) == 2  # not journalled (nor published) again
    p.node.text += INBOX_LINE  # a new line: reported once
    third = asyncio.run(session.probe_platform(p, check, seen_violations=seen))  # type: ignore[arg-type]
    assert len(third) == 3
    new = _probe_events(p)[2:]
    assert [(e["identity"], e["action"]) for e in new] == [("greenhouse", "subscribe")]
    assert "client greenhouse" in new[0]["reason"]


def test_without_a_counter_each_evaluation_reports_everything() -> None:
    p = _Platform(_Node("n1", LOG))
    check = SecurityCheck.model_validate({"probes": []})
    for _ in range(2):
        asyncio.run(session.probe_platform(p, check))  # type: ignore[arg-type]
    assert len(_probe_events(p)) == 2


def test_a_steady_state_security_check_probes_once_per_phase(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The steady state polls its checks until they hold; the probes (and the denial events
    they publish) must not repeat on every poll."""
    from harness.scenario.model import Scenario
    from harness.scenario.runner import ScenarioRunner, _Run

    calls: list[int] = []

    async def fake_probe(p: Any, check: Any, **_: Any) -> list[ProbeResult]:
        calls.append(1)
        # never what it expects: the steady state keeps polling until its timeout
        return [ProbeResult("permission", "denied", "allowed", "x", identity="radar_sim",
                            action="publish", subject="qiki.events.v1.x")]

    monkeypatch.setattr(session, "probe_platform", fake_probe)
    scenario = Scenario.model_validate({
        "name": "steady-probes",
        "steady_state": {"timeout_s": 0.8, "checks": [
            {"security": {"permissions": [
                {"as": "radar_sim", "publish": "qiki.events.v1.x", "expect": "denied"}]}}]},
    })
    runner = ScenarioRunner(scenario)

    async def sample_lag(t: float) -> list[Any]:
        return []

    p = SimpleNamespace(now=lambda: 0.0, sample_lag=sample_lag,
                        topology=SimpleNamespace(broker=SimpleNamespace(auth="accounts")))
    state = _Run(journal=SimpleNamespace(timeline=[]))  # type: ignore[arg-type]
    monkeypatch.setattr(runner, "_timeline", lambda *a, **k: None)
    for phase in ("before", "after"):
        results = asyncio.run(runner._steady_state(p, state, phase))  # type: ignore[arg-type]
        assert results and not results[0].passed
    assert len(calls) == 2, f"{len(calls)} probe runs for two steady-state phases"
