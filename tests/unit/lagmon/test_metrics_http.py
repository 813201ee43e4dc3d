"""Metrics exposition (parsed back with prometheus-client's parser) and the tiny HTTP server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from services.common.http import HttpServer, Response
from services.lagmon.metrics import LagMetrics
from services.lagmon.poller import ConsumerLag, LagSnapshot
from services.lagmon.thresholds import (
    LagReading,
    Thresholds,
    ThresholdSpec,
    ThresholdTracker,
)


def _lag(stream: str, consumer: str, pending: int, ack_pending: int) -> ConsumerLag:
    return ConsumerLag.of(
        stream,
        consumer,
        num_pending=pending,
        num_ack_pending=ack_pending,
        num_redelivered=1,
        oldest_unacked_age_s=2.5,
        age_exact=True,
    )


def test_exposition_parses_and_carries_every_series() -> None:
    odd = 'we"ird\\name'  # label escaping must keep the text parseable
    snap = LagSnapshot(
        taken_at=datetime.now(UTC),
        duration_s=0.01,
        consumers={("S", "a"): _lag("S", "a", 3, 4), ("S", odd): _lag("S", odd, 0, 0)},
    )
    tracker = ThresholdTracker(Thresholds([ThresholdSpec("a", 5, "S")]))
    tracker.commit(tracker.evaluate([LagReading("S", "a", 7, 3, 4, 1)])[0])
    metrics = LagMetrics(lambda: snap, tracker)
    metrics.poll_duration.observe(0.01)
    text = metrics.render().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    lag = {s.labels["consumer"]: s.value for s in families["qiki_jetstream_consumer_lag"].samples}
    assert lag == {"a": 7.0, odd: 0.0}
    age = families["qiki_jetstream_consumer_oldest_unacked_age_seconds"].samples
    assert {s.value for s in age} == {2.5}
    threshold = families["qiki_jetstream_consumer_lag_threshold"].samples
    assert [(s.labels, s.value) for s in threshold] == [({"consumer": "a", "stream": "S"}, 5.0)]
    over = families["qiki_jetstream_consumer_over_threshold"].samples
    assert [s.value for s in over] == [1.0]
    assert "qiki_lagmon_poll_duration_seconds" in families


def test_exposition_before_first_poll_is_valid_and_empty() -> None:
    metrics = LagMetrics(lambda: None, ThresholdTracker(Thresholds()))
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert families["qiki_jetstream_consumer_lag"].samples == []


async def _get(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def test_http_routes_errors_and_broken_handler() -> None:
    def boom() -> Response:
        raise RuntimeError("bug")

    async def hello() -> Response:
        return Response(200, b"hi\n")

    async with HttpServer({"/hello": hello, "/boom": boom}) as http:
        assert http.url.startswith("http://127.0.0.1:") and http.port > 0
        ok = await _get(http.port, b"GET /hello?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nhi\n")
        head = await _get(http.port, b"HEAD /hello HTTP/1.1\r\n\r\n")
        assert b"Content-Length: 3" in head and head.endswith(b"\r\n\r\n")
        assert (await _get(http.port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await _get(http.port, b"POST /hello HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await _get(http.port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await _get(http.port, b"GET /boom HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 500")
        # Still serving after the broken handler.
        again = await _get(http.port, b"GET /hello HTTP/1.1\r\n\r\n")
        assert again.startswith(b"HTTP/1.1 200")


def test_renderer_reuses_text_but_follows_consumers_thresholds_and_values() -> None:
    """The kept templates and thresholds are dropped when what they were made from changes."""
    consumers = {("S", "a"): _lag("S", "a", 3, 4)}
    snap = LagSnapshot(taken_at=datetime.now(UTC), duration_s=0.01, consumers=consumers)
    thresholds = Thresholds([ThresholdSpec("a", 5, "S")])
    tracker = ThresholdTracker(thresholds)
    metrics = LagMetrics(lambda: snap, tracker)

    def samples(name: str) -> dict[str, float]:
        text = metrics.render().decode()
        (family,) = [f for f in text_string_to_metric_families(text) if f.name == name]
        return {s.labels["consumer"]: s.value for s in family.samples}

    assert samples("qiki_jetstream_consumer_lag") == {"a": 7.0}
    assert samples("qiki_jetstream_consumer_lag_threshold") == {"a": 5.0}
    thresholds.set(ThresholdSpec("a", 9, "S"))  # configuration changed between scrapes
    assert samples("qiki_jetstream_consumer_lag_threshold") == {"a": 9.0}
    tracker.restore([("S", "a")])
    assert samples("qiki_jetstream_consumer_over_threshold") == {"a": 1.0}
    consumers[("S", "a")] = _lag("S", "a", 1, 0)  # a new poll: new numbers
    consumers[("S", "b")] = _lag("S", "b", 2, 0)  # and a new consumer
    assert samples("qiki_jetstream_consumer_lag") == {"a": 1.0, "b": 2.0}
    assert samples("qiki_jetstream_consumer_lag_threshold") == {"a": 9.0}
    del consumers[("S", "a")]
    assert samples("qiki_jetstream_consumer_lag") == {"b": 2.0}
    assert samples("qiki_jetstream_consumer_lag_threshold") == {}


def test_renderer_output_does_not_depend_on_the_order_pages_landed_in() -> None:
    lags = [_lag("S", f"c{i}", i, 0) for i in range(5)]
    tracker = ThresholdTracker(Thresholds(default=2))
    snaps = [
        LagSnapshot(datetime.now(UTC), 0.01, {(c.stream, c.consumer): c for c in order})
        for order in (lags, lags[::-1])
    ]
    current = snaps[0]
    metrics = LagMetrics(lambda: current, tracker)
    first = metrics.render().split(b"qiki_lagmon_")[0]
    current = snaps[1]
    assert metrics.render().split(b"qiki_lagmon_")[0] == first
