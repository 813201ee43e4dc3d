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
from operator import attrgetter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from services.lagmon.poller import LagSnapshot
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
_FLOAT_ATTRS = frozenset({"oldest_unacked_age_s"})
_THRESHOLD = ("qiki_jetstream_consumer_lag_threshold", "Configured lag threshold of the consumer")
_OVER = (
    "qiki_jetstream_consumer_over_threshold",
    "1 while the consumer's lag is over its threshold",
)


def _label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


class SnapshotRenderer:
    """Renders the per-consumer gauges of snapshots; keeps the text that does not change.

    Between two polls the set of consumers rarely changes, only their numbers.  So the text
    of each family is kept as one bytes ``%``-format template (every line's name and escaped
    labels with a conversion for the value), rebuilt only when the consumers (or which of
    them have a threshold) change, and the thresholds of the last consumers are kept until
    the consumers or the configured thresholds change; a render is then one C-level
    ``template % values`` per family, already encoded.  At 10,000 consumers formatting every
    line in Python took 70 ms; this takes a fraction (bench.lagmon_poll, issue 13).  The
    templates cost about the size of one exposition in memory (~570 bytes per consumer).
    """

    def __init__(self) -> None:
        self._keys: list[tuple[str, str]] = []
        self._keyset: frozenset[tuple[str, str]] = frozenset()
        self._with_threshold: list[bool] = []
        self._templates: list[bytes] = []
        self._limits: list[int | None] = []
        self._limits_of: dict[str, int] | None = None
        self._rebuild([], [])

    def _rebuild(self, keys: list[tuple[str, str]], with_threshold: list[bool]) -> None:
        labels = [
            f'{{consumer="{_label(c)}",stream="{_label(s)}"}} '.replace("%", "%%")
            for s, c in keys
        ]
        limited = [t for t, has in zip(labels, with_threshold, strict=True) if has]
        templates = []
        for name, help_text, attr in _FAMILIES:
            head = f"# HELP {name} {help_text}\n# TYPE {name} gauge\n".replace("%", "%%")
            # Integers as float text like float(n)!r gave ("12.0"), the age as its repr.
            spec = "%r" if attr in _FLOAT_ATTRS else "%d.0"
            text = head + "".join([f"{name}{t}{spec}\n" for t in labels])
            templates.append(text.encode())
        for name, help_text in (_THRESHOLD, _OVER):
            head = f"# HELP {name} {help_text}\n# TYPE {name} gauge\n".replace("%", "%%")
            templates.append((head + "".join([f"{name}{t}%d.0\n" for t in limited])).encode())
        self._keys, self._with_threshold, self._templates = keys, with_threshold, templates
        self._keyset = frozenset(keys)

    def render(self, snap: LagSnapshot | None, tracker: ThresholdTracker) -> bytes:
        """Exposition (UTF-8) of the per-consumer gauges of ``snap`` (empty families if None)."""
        consumers = snap.consumers if snap is not None else {}
        if consumers.keys() == self._keyset:
            # The same consumers, maybe in another order (pages land in any order): keep the
            # order the templates were made in.
            keys = self._keys
            rows = list(map(consumers.__getitem__, keys))
        else:
            keys = list(consumers)
            rows = list(consumers.values())
        configured = tracker.thresholds.as_dict()
        if keys == self._keys and configured == self._limits_of:
            limits = self._limits
        else:
            for_consumer = tracker.thresholds.for_consumer
            limits = [for_consumer(s, c) for s, c in keys]
            with_threshold = [v is not None for v in limits]
            if keys != self._keys or with_threshold != self._with_threshold:
                self._rebuild(keys, with_threshold)
            self._limits, self._limits_of = limits, configured
        out = [
            template % tuple(map(attrgetter(attr), rows))
            for template, (_, _, attr) in zip(self._templates, _FAMILIES, strict=False)
        ]
        over = tracker.over
        out.append(self._templates[-2] % tuple([v for v in limits if v is not None]))
        out.append(
            self._templates[-1]
            % tuple(
                [
                    1 if k in over else 0
                    for k, v in zip(keys, limits, strict=True)
                    if v is not None
                ]
            )
        )
        return b"".join(out)


def render_snapshot(snap: LagSnapshot | None, tracker: ThresholdTracker) -> str:
    """Text exposition of the per-consumer gauges of ``snap``.

    Written by hand rather than through prometheus-client collectors: at 2,000 consumers the
    client's generic path took longer than the poll itself (bench.lagmon_poll).  Same format:
    ``name{consumer="...",stream="..."} value``, labels in sorted order, values as float
    text (``12.0``).  One-off: a service keeps a :class:`SnapshotRenderer`, which reuses the
    text between scrapes.
    """
    return SnapshotRenderer().render(snap, tracker).decode()


class LagMetrics:
    """The lag monitor's registry and its instruments."""

    def __init__(
        self, snapshot: Callable[[], LagSnapshot | None], tracker: ThresholdTracker
    ) -> None:
        self._snapshot = snapshot
        self._tracker = tracker
        self._renderer = SnapshotRenderer()
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
        own = self._renderer.render(self._snapshot(), self._tracker)
        return own + generate_latest(self.registry)
