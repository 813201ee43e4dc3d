"""The reference services (registrar, lagmon, radar_sim) as service definitions.

Each one says how the harness starts it (its module, its command-line options built from its
knobs in the scenario), which knobs it takes and their defaults. The platform looks a name up
here; a name that is not in the catalog is a user service, started from its own ``command``,
``build`` or ``image``. Nothing else in the harness names a reference service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.scenario.model import ServiceTopology

__all__ = ["REFERENCE_SERVICES", "ArgContext", "ReferenceService", "reference_service"]

#: Every knob a reference service may take in the scenario (user services take none).
KNOBS = ("rate_hz", "interval_s", "thresholds", "batch")


@dataclass(frozen=True)
class ArgContext:
    """What building a reference service's options may need besides its knobs."""

    #: where the registrar keeps its store (a host path, or a path inside its container)
    db: str
    #: consumer durable -> its stream, from the spec's layout
    consumer_streams: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceService:
    """One reference service: ``python -m MODULE --http-port P [options from its knobs]``.

    Ready once it prints ``READY http://127.0.0.1:PORT`` (first start) or answers
    ``/healthz`` on that port (restarts).
    """

    name: str
    module: str
    #: knobs (fields of ServiceTopology) this service reads
    knobs: frozenset[str]
    args: Callable[[ServiceTopology, ArgContext], list[str]]
    #: knob defaults when the scenario does not name the service at all
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: it keeps the audit store the checks read (``GET /records``)
    keeps_records: bool = False

    @property
    def hint(self) -> str:
        """What to tell a user whose start of this service failed."""
        return f"run `python -m {self.module} --help`; the log above says why it stopped"


def _registrar_args(spec: ServiceTopology, ctx: ArgContext) -> list[str]:
    argv = ["--db", ctx.db]
    if spec.batch:
        argv += ["--batch", str(spec.batch)]
    return argv


def _lagmon_args(spec: ServiceTopology, ctx: ArgContext) -> list[str]:
    argv: list[str] = []
    if spec.interval_s:
        argv += ["--interval-s", str(spec.interval_s)]
    for consumer, limit in spec.thresholds.items():
        # STREAM:CONSUMER is unambiguous; a durable name alone may exist on several streams.
        stream = ctx.consumer_streams.get(consumer)
        key = f"{stream}:{consumer}" if stream else consumer
        argv += ["--threshold", f"{key}={limit}"]
    return argv


def _radar_args(spec: ServiceTopology, ctx: ArgContext) -> list[str]:
    return ["--rate-hz", str(spec.rate_hz)] if spec.rate_hz else []


REFERENCE_SERVICES: dict[str, ReferenceService] = {
    d.name: d
    for d in (
        ReferenceService("registrar", "services.registrar", frozenset({"batch"}),
                         _registrar_args, keeps_records=True),
        ReferenceService("lagmon", "services.lagmon", frozenset({"interval_s", "thresholds"}),
                         _lagmon_args),
        ReferenceService("radar_sim", "services.radar_sim", frozenset({"rate_hz"}), _radar_args,
                         defaults={"rate_hz": 20}),
    )
}


def reference_service(name: str) -> ReferenceService | None:
    """The reference definition called ``name``, or None (a user service)."""
    return REFERENCE_SERVICES.get(name)
