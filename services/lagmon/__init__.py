"""JetStream consumer lag monitor (``python -m services.lagmon``).

Public surface: :class:`LagMonitor` (service), :class:`LagPoller` / :class:`ConsumerLag` /
:class:`LagSnapshot` (one poll), :class:`Thresholds` / :class:`ThresholdSpec` (thresholds) and
the event type names in :mod:`services.lagmon.events`.
"""

from services.lagmon.events import SOURCE, THRESHOLD_CLEARED, THRESHOLD_CROSSED
from services.lagmon.poller import ConsumerLag, LagPoller, LagPollError, LagSnapshot
from services.lagmon.thresholds import Thresholds, ThresholdSpec, ThresholdSpecError

__all__ = [
    "SOURCE",
    "THRESHOLD_CLEARED",
    "THRESHOLD_CROSSED",
    "ConsumerLag",
    "LagPollError",
    "LagPoller",
    "LagSnapshot",
    "ThresholdSpec",
    "ThresholdSpecError",
    "Thresholds",
]
