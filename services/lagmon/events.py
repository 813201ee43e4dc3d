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

from typing import Annotated, Final

from pydantic import ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

#: Lag went over the threshold (registrar: 702 HEALTH_CHECK_FAILED, with the lag).
THRESHOLD_CROSSED: Final = "qiki.lagmon.v1.ThresholdCrossed"
#: Lag came back to or under the threshold (registrar: 701 HEALTH_CHECK_OK).
THRESHOLD_CLEARED: Final = "qiki.lagmon.v1.ThresholdCleared"
#: CloudEvent ``source`` of every lag monitor event.
SOURCE: Final = "urn:qiki:lagmon"

ALL_TYPES: Final = (THRESHOLD_CROSSED, THRESHOLD_CLEARED)


_Count = Annotated[int, Field(ge=0)]
_Name = Annotated[str, Field(min_length=1)]


class ThresholdData(TypedDict):
    """The ``data`` of a threshold event (JSON object).

    Also the contract of both types (``scenarios/contracts/lagmon-threshold.schema.json`` is
    generated from it; pydantic validates a TypedDict with these constraints).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    stream: _Name
    consumer: _Name
    lag: _Count
    threshold: _Count
    num_pending: _Count
    num_ack_pending: _Count
    num_redelivered: _Count
