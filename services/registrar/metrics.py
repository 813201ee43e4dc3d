"""Prometheus metrics of the registrar, on a private registry (one per service instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["RegistrarMetrics"]


class RegistrarMetrics:
    """The registrar's counters and histograms; :meth:`exposition` renders ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.stored = Counter(
            "qiki_registrar_stored",
            "Records newly stored (accepted events and own lifecycle events), by code.",
            ["code"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "qiki_registrar_rejected",
            "Messages rejected (stored with a 92x code and dead-lettered), by code.",
            ["code"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "qiki_registrar_duplicates",
            "Messages whose (source, id) was already stored (redeliveries), not stored again.",
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "qiki_registrar_dead_lettered",
            "Raw messages copied to the dead-letter subject.",
            registry=self.registry,
        )
        self.dead_letter_failures = Counter(
            "qiki_registrar_dead_letter_failures",
            "Dead-letter publishes that failed (the message is left unacked for redelivery).",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "qiki_registrar_batch_seconds",
            "Time from a batch being taken to its acks being sent (validate, store, fsync, ack).",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.batch_size = Histogram(
            "qiki_registrar_batch_size",
            "Messages per stored batch.",
            registry=self.registry,
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
        )
        self.connected = Gauge(
            "qiki_registrar_nats_connected",
            "1 while connected to NATS.",
            registry=self.registry,
        )

    def count_stored(self, counts: dict[int, int]) -> None:
        """Add newly stored records ({code: n}); 92x codes go to the rejected counter."""
        for code, n in counts.items():
            if 920 <= code <= 929:
                self.rejected.labels(code=str(code)).inc(n)
            else:
                self.stored.labels(code=str(code)).inc(n)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
