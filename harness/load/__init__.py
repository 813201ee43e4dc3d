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
from harness.load.locust_run import (
    DEFAULT_LOCUSTFILE,
    LocustOutcome,
    LocustProcessError,
    locust_argv,
    read_locust_csv,
    read_locust_rows,
    run_locust,
)
from harness.load.rates import Burst, Constant, MaxRate, Ramp, Rate, Steps, parse_rate

__all__ = [
    "DEFAULT_LOCUSTFILE",
    "Burst",
    "Constant",
    "GateResult",
    "Injector",
    "LoadGates",
    "LoadResult",
    "LocustGates",
    "LocustOutcome",
    "LocustProcessError",
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
    "locust_argv",
    "parse_rate",
    "percentile",
    "read_locust_csv",
    "read_locust_rows",
    "run_load",
    "run_locust",
]
