"""CloudEvent types the lag monitor publishes (the contract with the registrar).

Published on ``RuntimeConfig.subjects.health_events`` (``qiki.events.v1.health``), source
:data:`SOURCE`, CloudEvent ``subject`` ``"<stream>/<consumer>"``, data :class:`ThresholdData`:

==================================  =====================================  ==================
type                                when                                   registrar code
==================================  =====================================  ==================
``qiki.lagmon.v1.ThresholdCrossed`` lag went over the consumer's threshold 702 HEALTH_CHECK_FAILED
``qiki.lagmon.v1.ThresholdCleared`` lag came back to or under it           701 HEALTH_CHECK_OK
==================================  =====================================  ==================

One event per crossing, not per poll (see :mod:`services.lagmon.thresholds`).
"""

from __future__ import annotations

from typing import Final, TypedDict

#: Lag went over the threshold (registrar: 702 HEALTH_CHECK_FAILED, with the lag).
THRESHOLD_CROSSED: Final = "qiki.lagmon.v1.ThresholdCrossed"
#: Lag came back to or under the threshold (registrar: 701 HEALTH_CHECK_OK).
THRESHOLD_CLEARED: Final = "qiki.lagmon.v1.ThresholdCleared"
#: CloudEvent ``source`` of every lag monitor event.
SOURCE: Final = "urn:qiki:lagmon"

ALL_TYPES: Final = (THRESHOLD_CROSSED, THRESHOLD_CLEARED)


class ThresholdData(TypedDict):
    """The ``data`` of a threshold event (JSON object)."""

    stream: str
    consumer: str
    lag: int
    threshold: int
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
