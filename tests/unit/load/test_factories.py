"""Payload factories and LoadResult arithmetic (no server)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from harness.load.injector import LoadResult, bytes_factory, cloudevent_factory
from services.common.cloudevents import check_message, from_message


def test_cloudevent_factory_builds_valid_unique_events() -> None:
    make = cloudevent_factory(event_type="qiki.test.v1.Load", source="urn:test", size=300)
    msgs = [make(i) for i in range(50)]
    assert len({m.id for m in msgs}) == 50
    for seq, m in enumerate(msgs):
        assert m.headers is not None
        assert check_message(m.headers, m.payload) == []
        ev = from_message(m.headers, m.payload)
        assert ev.id == m.id == m.headers["Nats-Msg-Id"]
        assert ev.type == "qiki.test.v1.Load" and ev.source == "urn:test"
        assert ev.json()["seq"] == seq
        assert 250 <= len(m.payload) <= 320


def test_cloudevent_factory_custom_data() -> None:
    make = cloudevent_factory(data=lambda n: {"frame_id": n})
    m = make(7)
    assert m.headers is not None
    assert from_message(m.headers, m.payload).json() == {"frame_id": 7}


def test_bytes_factory_sizes_and_ids() -> None:
    make = bytes_factory(256, run_id="r1")
    m = make(3)
    assert m.id == "r1-3" and len(m.payload) == 256
    assert m.headers == {"Nats-Msg-Id": "r1-3"}
    with pytest.raises(ValueError, match="size must be >= 0"):
        bytes_factory(-1)


def _result(**kw: object) -> LoadResult:
    now = datetime.now(UTC)
    base: dict[str, object] = dict(subject="s", rate="r", window=1, started_at=now, ended_at=now,
                                   planned_s=2.0, send_elapsed_s=1.9, target_rate_per_s=100.0)
    base.update(kw)
    return LoadResult(**base)  # type: ignore[arg-type]


def test_rates_use_the_plan_or_the_longer_actual_send_span() -> None:
    on_time = _result(acked=[str(i) for i in range(200)], attempted=[str(i) for i in range(200)])
    assert on_time.achieved_rate_per_s == pytest.approx(100.0)
    assert on_time.rate_ratio == pytest.approx(1.0)
    behind = _result(acked=[str(i) for i in range(200)], send_elapsed_s=4.0)
    assert behind.rate_ratio == pytest.approx(0.5)  # fell behind: took twice the plan


def test_maxrate_rate_runs_to_the_last_ack() -> None:
    r = _result(acked=["a"] * 100, planned_s=0.0, send_elapsed_s=0.5, unbounded=True,
                t0=10.0, last_ack=11.0, target_rate_per_s=float("inf"))
    assert r.achieved_rate_per_s == pytest.approx(100.0)
    assert r.rate_ratio is None
    assert r.summary()["target_rate_per_s"] is None


def test_summary_counts_failure_reasons() -> None:
    r = _result(attempted=["a", "b", "c"], acked=["a"], latencies_ms=[1.5],
                failed={"b": "ack timeout", "c": "ack timeout"})
    s = r.summary()
    assert s["failure_reasons"] == {"ack timeout": 2}
    assert s["error_ratio"] == pytest.approx(2 / 3)
    assert s["p50_ms"] == 1.5
    assert r.delivery_sets() == ({"a", "b", "c"}, {"a"}, {"b", "c"})


def test_importing_harness_load_does_not_import_locust_or_gevent() -> None:
    code = ("import sys, harness.load, harness.load.locust_run; "
            "bad = [m for m in ('locust', 'gevent') if m in sys.modules]; "
            "print(bad); raise SystemExit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
