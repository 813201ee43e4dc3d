"""Faults: the TCP fault proxy and its toxics (process and cluster faults come next).

    from harness.faults import FaultProxy, Latency, Blackhole

    async with FaultProxy("127.0.0.1", 4222, name="link") as proxy:
        async with proxy.applied(Blackhole(), direction="both"):
            ...

Nothing here starts at import time.
"""

from harness.faults.proxy import (
    FaultError,
    FaultProxy,
    ProxyStats,
    ToxicEntry,
    ToxicNotFound,
    ToxicWindow,
    apply_for,
)
from harness.faults.toxics import (
    DIRECTIONS,
    Bandwidth,
    Blackhole,
    Direction,
    Down,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Toxic,
)

__all__ = [
    "DIRECTIONS",
    "Bandwidth",
    "Blackhole",
    "Direction",
    "Down",
    "FaultError",
    "FaultProxy",
    "Latency",
    "LimitData",
    "ProxyStats",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Toxic",
    "ToxicEntry",
    "ToxicNotFound",
    "ToxicWindow",
    "apply_for",
]
