"""Prometheus metrics of the lag monitor, on a private registry.

Per-consumer gauges are rendered at scrape time from the last poll's snapshot (a custom
collector), so a consumer that disappears stops being exported instead of keeping its last
value forever, and 2,000 consumers cost nothing between scrapes.

=================================================  =======  ==================================
name                                               type     labels
=================================================  =======  ==================================
``qiki_jetstream_consumer_lag``                    gauge    stream, consumer (original name)
``qiki_jetstream_consumer_num_pending``            gauge    stream, consumer
``qiki_jetstream_consumer_num_ack_pending``        gauge    stream, consumer
``qiki_jetstream_consumer_num_redelivered``        gauge    stream, consumer
``qiki_jetstream_consumer_oldest_unacked_age_seconds`` gauge stream, consumer
``qiki_jetstream_consumer_lag_threshold``          gauge    stream, consumer (if configured)
``qiki_jetstream_consumer_over_threshold``         gauge    stream, consumer (0/1)
``qiki_lagmon_poll_duration_seconds``              histo.
``qiki_lagmon_polls_total``                        counter
``qiki_lagmon_poll_errors_total``                  counter  stream ("" = the whole poll)
``qiki_lagmon_threshold_events_total``             counter  type
``qiki_lagmon_event_publish_errors_total``         counter
``qiki_lagmon_consumers_missing``                  gauge    (watched but not found / no leader)
``qiki_lagmon_last_poll_timestamp_seconds``        gauge
=================================================  =======  ==================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.lagmon.poller import LagSnapshot
from services.lagmon.thresholds import ThresholdTracker

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _SnapshotCollector(Collector):
    def __init__(
        self, snapshot: Callable[[], LagSnapshot | None], tracker: ThresholdTracker
    ) -> None:
        self._snapshot = snapshot
        self._tracker = tracker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["stream", "consumer"]
        fams = {
            "lag": GaugeMetricFamily(
                "qiki_jetstream_consumer_lag",
                "Messages not yet acknowledged: num_pending + num_ack_pending",
                labels=labels,
            ),
            "pending": GaugeMetricFamily(
                "qiki_jetstream_consumer_num_pending",
                "Messages in the stream not yet delivered to the consumer",
                labels=labels,
            ),
            "ack_pending": GaugeMetricFamily(
                "qiki_jetstream_consumer_num_ack_pending",
                "Messages delivered and not yet acknowledged",
                labels=labels,
            ),
            "redelivered": GaugeMetricFamily(
                "qiki_jetstream_consumer_num_redelivered",
                "Messages delivered more than once and not yet acknowledged",
                labels=labels,
            ),
            "age": GaugeMetricFamily(
                "qiki_jetstream_consumer_oldest_unacked_age_seconds",
                "Age of the oldest unacknowledged message (publish time when resolvable, "
                "else time since the ack floor last advanced); 0 when caught up",
                labels=labels,
            ),
            "threshold": GaugeMetricFamily(
                "qiki_jetstream_consumer_lag_threshold",
                "Configured lag threshold of the consumer",
                labels=labels,
            ),
            "over": GaugeMetricFamily(
                "qiki_jetstream_consumer_over_threshold",
                "1 while the consumer's lag is over its threshold",
                labels=labels,
            ),
        }
        snap = self._snapshot()
        if snap is not None:
            thresholds = self._tracker.thresholds
            for (stream, consumer), c in snap.consumers.items():
                lv = [stream, consumer]
                fams["lag"].add_metric(lv, c.lag)
                fams["pending"].add_metric(lv, c.num_pending)
                fams["ack_pending"].add_metric(lv, c.num_ack_pending)
                fams["redelivered"].add_metric(lv, c.num_redelivered)
                fams["age"].add_metric(lv, c.oldest_unacked_age_s)
                t = thresholds.for_consumer(stream, consumer)
                if t is not None:
                    fams["threshold"].add_metric(lv, t)
                    fams["over"].add_metric(lv, 1 if self._tracker.is_over(stream, consumer) else 0)
        yield from fams.values()


class LagMetrics:
    """The lag monitor's registry and its instruments."""

    def __init__(
        self, snapshot: Callable[[], LagSnapshot | None], tracker: ThresholdTracker
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SnapshotCollector(snapshot, tracker))
        self.poll_duration = Histogram(
            "qiki_lagmon_poll_duration_seconds",
            "Duration of one lag poll (every stream page and age lookup)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.polls = Counter(
            "qiki_lagmon_polls_total", "Lag polls completed", registry=self.registry
        )
        self.poll_errors = Counter(
            "qiki_lagmon_poll_errors_total",
            "Failed polls (stream='' for the whole poll, else the stream that failed)",
            ["stream"],
            registry=self.registry,
        )
        self.threshold_events = Counter(
            "qiki_lagmon_threshold_events_total",
            "Threshold events published (PubAck received)",
            ["type"],
            registry=self.registry,
        )
        self.publish_errors = Counter(
            "qiki_lagmon_event_publish_errors_total",
            "Threshold events that could not be published (retried next poll)",
            registry=self.registry,
        )
        self.missing = Gauge(
            "qiki_lagmon_consumers_missing",
            "Watched consumers not found, or listed by the server without a leader",
            registry=self.registry,
        )
        self.last_poll = Gauge(
            "qiki_lagmon_last_poll_timestamp_seconds",
            "Unix time of the last completed poll",
            registry=self.registry,
        )

    def render(self) -> bytes:
        """Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
