"""Prometheus metrics of the lag monitor, on a private registry.

Per-consumer gauges are rendered at scrape time from the last poll's snapshot, so a consumer
that disappears stops being exported instead of keeping its last value forever, and 2,000
consumers cost nothing between scrapes.

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

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from services.lagmon.poller import ConsumerLag, LagSnapshot
from services.lagmon.thresholds import ThresholdTracker

# (name, help, ConsumerLag attribute)
_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("qiki_jetstream_consumer_lag", "Messages not yet acknowledged: num_pending + num_ack_pending",
     "lag"),
    ("qiki_jetstream_consumer_num_pending",
     "Messages in the stream not yet delivered to the consumer", "num_pending"),
    ("qiki_jetstream_consumer_num_ack_pending", "Messages delivered and not yet acknowledged",
     "num_ack_pending"),
    ("qiki_jetstream_consumer_num_redelivered",
     "Messages delivered more than once and not yet acknowledged", "num_redelivered"),
    ("qiki_jetstream_consumer_oldest_unacked_age_seconds",
     "Age of the oldest unacknowledged message (publish time when resolvable, else time since "
     "the ack floor last advanced); 0 when caught up", "oldest_unacked_age_s"),
)
_THRESHOLD = ("qiki_jetstream_consumer_lag_threshold", "Configured lag threshold of the consumer")
_OVER = (
    "qiki_jetstream_consumer_over_threshold",
    "1 while the consumer's lag is over its threshold",
)


def _label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def render_snapshot(snap: LagSnapshot | None, tracker: ThresholdTracker) -> str:
    """Text exposition of the per-consumer gauges of ``snap``.

    Written by hand rather than through prometheus-client collectors: at 2,000 consumers the
    client's generic path took longer than the poll itself (bench.lagmon_poll).  Same format:
    ``name{consumer="...",stream="..."} value``, labels in sorted order.
    """
    rows: list[tuple[str, ConsumerLag, int | None, int | None]] = []
    if snap is not None:
        thresholds = tracker.thresholds
        for (stream, consumer), c in snap.consumers.items():
            labels = f'{{consumer="{_label(consumer)}",stream="{_label(stream)}"}}'
            t = thresholds.for_consumer(stream, consumer)
            over = None if t is None else (1 if tracker.is_over(stream, consumer) else 0)
            rows.append((labels, c, t, over))
    out: list[str] = []
    for name, help_text, attr in _FAMILIES:
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        out.extend(f"{name}{labels} {float(getattr(c, attr))!r}\n" for labels, c, _, _ in rows)
    name, help_text = _THRESHOLD
    out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
    out.extend(f"{name}{labels} {float(t)!r}\n" for labels, _, t, _ in rows if t is not None)
    name, help_text = _OVER
    out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
    out.extend(f"{name}{labels} {float(o)!r}\n" for labels, _, _, o in rows if o is not None)
    return "".join(out)


class LagMetrics:
    """The lag monitor's registry and its instruments."""

    def __init__(
        self, snapshot: Callable[[], LagSnapshot | None], tracker: ThresholdTracker
    ) -> None:
        self._snapshot = snapshot
        self._tracker = tracker
        # Service instruments only; per-consumer gauges are rendered from the snapshot.
        self.registry = CollectorRegistry(auto_describe=False)
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
        own = render_snapshot(self._snapshot(), self._tracker).encode()
        return own + generate_latest(self.registry)
