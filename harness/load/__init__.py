"""Load injection: the fast JetStream injector, rate schedules, load gates.

The Locust side lives in :mod:`harness.load.locust_users`, :mod:`harness.load.bridge` and
the locustfile; it is deliberately *not* imported here, because importing locust (gevent)
monkeypatches the whole process.
"""

from harness.load.gates import GateResult, LoadGates, LocustGates, LocustStats, percentile
from harness.load.injector import (
    Injector,
    LoadResult,
    OutMessage,
    PayloadFactory,
    bytes_factory,
    cloudevent_factory,
    inject,
    run_load,
)
from harness.load.rates import Burst, Constant, MaxRate, Ramp, Rate, Steps

__all__ = [
    "Burst",
    "Constant",
    "GateResult",
    "Injector",
    "LoadGates",
    "LoadResult",
    "LocustGates",
    "LocustStats",
    "MaxRate",
    "OutMessage",
    "PayloadFactory",
    "Ramp",
    "Rate",
    "Steps",
    "bytes_factory",
    "cloudevent_factory",
    "inject",
    "percentile",
    "run_load",
]
