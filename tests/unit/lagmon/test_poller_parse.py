"""Parsing of JetStream consumer info (no server: the JSON shapes nats-server 2.x sends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.lagmon.poller import _consumer_from_info, parse_go_time

NOW = datetime(2026, 1, 2, 3, 4, 10, tzinfo=UTC)


def info(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "stream_name": "S",
        "name": "c1",
        "created": "2026-01-02T03:00:00.000000001Z",
        "config": {"durable_name": "c1", "ack_policy": "explicit"},
        "delivered": {"consumer_seq": 5, "stream_seq": 5, "last_active": "2026-01-02T03:04:05Z"},
        "ack_floor": {"consumer_seq": 3, "stream_seq": 3, "last_active": "2026-01-02T03:04:00Z"},
        "num_ack_pending": 2,
        "num_redelivered": 1,
        "num_waiting": 0,
        "num_pending": 10,
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05.123456789Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05.5+01:00", datetime(2026, 1, 2, 2, 4, 5, 500000, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        (None, None),
        ("", None),
    ],
)
def test_parse_go_time(text: str | None, expected: datetime | None) -> None:
    assert parse_go_time(text) == expected


def test_lag_is_pending_plus_ack_pending_and_age_from_ack_floor() -> None:
    lag, since = _consumer_from_info(info(), NOW)
    assert (lag.num_pending, lag.num_ack_pending, lag.lag) == (10, 2, 12)
    assert lag.num_redelivered == 1
    assert lag.ack_floor_stream_seq == 3 and lag.delivered_stream_seq == 5
    assert since == "2026-01-02T03:04:00Z"
    assert lag.oldest_unacked_age_s == pytest.approx(10.0)
    assert not lag.age_exact
    # Standalone server: no cluster block, the server is the leader.
    assert lag.leader is None and not lag.leaderless


def test_age_falls_back_to_creation_when_never_acked() -> None:
    never = {"consumer_seq": 0, "stream_seq": 0, "last_active": "0001-01-01T00:00:00Z"}
    lag, _ = _consumer_from_info(info(ack_floor=never), NOW)
    assert lag.oldest_unacked_age_s == pytest.approx(
        (NOW - datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC)).total_seconds(), abs=1e-3
    )


def test_caught_up_consumer_has_zero_age() -> None:
    lag, since = _consumer_from_info(info(num_pending=0, num_ack_pending=0), NOW)
    assert _consumer_from_info(info(), NOW, approx=False)[0].oldest_unacked_age_s == 0.0
    assert lag.lag == 0 and lag.oldest_unacked_age_s == 0.0 and since is None


def test_age_is_never_negative_with_clock_skew() -> None:
    future = (NOW + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    lag, _ = _consumer_from_info(info(ack_floor={"stream_seq": 1, "last_active": future}), NOW)
    assert lag.oldest_unacked_age_s == 0.0


def test_cluster_leader_and_leaderless() -> None:
    led, _ = _consumer_from_info(info(cluster={"name": "c", "leader": "n2"}), NOW)
    assert led.leader == "n2" and not led.leaderless
    lost, _ = _consumer_from_info(info(cluster={"name": "c"}), NOW)
    assert lost.leader is None and lost.leaderless


def test_filter_subject_variants() -> None:
    one, _ = _consumer_from_info(info(config={"filter_subject": "a.b"}), NOW)
    single, _ = _consumer_from_info(info(config={"filter_subjects": ["x.>"]}), NOW)
    many, _ = _consumer_from_info(info(config={"filter_subjects": ["x.>", "y"]}), NOW)
    none, _ = _consumer_from_info(info(config={}), NOW)
    got = (one.filter_subject, single.filter_subject, many.filter_subject, none.filter_subject)
    assert got == ("a.b", "x.>", None, None)


def test_missing_counters_default_to_zero() -> None:
    lag, _ = _consumer_from_info({"stream_name": "S", "name": "c"}, NOW)
    assert lag.lag == 0 and lag.num_redelivered == 0
    assert lag.as_dict()["lag"] == 0


def test_a_list_page_decodes_into_readings_and_overlapping_pages_dedupe() -> None:
    """A CONSUMER.LIST page as nats-server sends it (extra fields ignored), taken twice."""
    import json

    from services.lagmon.poller import LagPoller, _decode_page, _PollState

    page = {
        "type": "io.nats.jetstream.api.v1.consumer_list_response",
        "total": 3, "offset": 0, "limit": 256,
        "consumers": [
            info(name="a", ts="2026-01-02T03:04:09Z", unknown={"x": [1, 2]}),
            info(name="b", num_pending=0, num_ack_pending=0, cluster={"leader": "n1"}),
            info(name="skip"),
        ],
        "missing": ["c", "other"],
    }
    decoded = _decode_page(json.dumps(page).encode())
    poller = LagPoller(None, ["S"], consumers=[("S", "a"), ("S", "b"), ("S", "c")])  # type: ignore[arg-type]
    state = _PollState(approx=True, times=None)
    poller._take_page("S", decoded, state)
    poller._take_page("S", _decode_page(json.dumps(page).encode()), state)  # an overlap
    assert sorted(state.consumers) == [("S", "a"), ("S", "b")]
    a, b = state.consumers[("S", "a")], state.consumers[("S", "b")]
    assert (a.lag, a.num_redelivered, a.ack_floor_stream_seq) == (12, 1, 3)
    assert a.oldest_unacked_age_s > 0 and not a.age_exact and a.leader is None
    assert (b.lag, b.oldest_unacked_age_s, b.leader, b.leaderless) == (0, 0.0, "n1", False)
    assert state.missing == [("S", "c"), ("S", "c")]  # deduplicated by the snapshot
    assert state.lagging == {}  # approximate ages need no lookup


def test_an_error_page_decodes_with_its_error() -> None:
    from services.lagmon.poller import _decode_page

    err = _decode_page(
        b'{"type":"x","error":{"code":404,"err_code":10059,"description":"stream not found"}}'
    ).error
    assert err is not None and (err.code, err.err_code, err.description) == (
        404, 10059, "stream not found"
    )
