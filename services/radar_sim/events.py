"""CloudEvent type names, sources and subjects the radar simulator publishes.

These names are the contract with the registrar (issue 2, section 4), which maps them to codes:

- ``qiki.radar.v1.Frame``: a :class:`~services.radar_sim.models.RadarFrame` with every band
  -> 210 RADAR_FRAME_RECEIVED
- ``qiki.radar.v1.FrameLR`` / ``qiki.radar.v1.FrameSR``: the same model holding only the
  ``range_band`` "LR" / "SR" detections (the original platform's variants) -> 210
- ``qiki.sensor.v1.IoStatus``: :class:`~services.radar_sim.models.SensorIoStatus`,
  ``data.status`` ok -> 201 SENSOR_IO_OK, degraded / failed -> 202 SENSOR_IO_FAILED
- ``qiki.power.v1.EnergyStatus``: :class:`~services.radar_sim.models.EnergyStatus`,
  ``data.level`` ok -> 601 POWER_OK, low -> 602 POWER_LOW, critical -> 603 POWER_CRITICAL

Subjects come from the runtime configuration (``RuntimeConfig.subjects``); the defaults below
are only used when a configuration does not name them.
"""

from __future__ import annotations

from typing import Final

#: One frame with detections of every range band, on ``qiki.radar.v1.frames``.
FRAME_TYPE: Final = "qiki.radar.v1.Frame"
#: Long-range-band frame of the original platform, on ``qiki.radar.v1.frames.lr``.
FRAME_LR_TYPE: Final = "qiki.radar.v1.FrameLR"
#: Short-range-band frame of the original platform, on ``qiki.radar.v1.frames.sr``.
FRAME_SR_TYPE: Final = "qiki.radar.v1.FrameSR"
#: Sensor I/O status (``data.status``: ok -> 201 SENSOR_IO_OK, degraded/failed -> 202).
SENSOR_IO_STATUS_TYPE: Final = "qiki.sensor.v1.IoStatus"
#: Energy status (``data.level``: ok -> 601, low -> 602, critical -> 603).
POWER_ENERGY_STATUS_TYPE: Final = "qiki.power.v1.EnergyStatus"

#: Source of radar frames (the original platform's q-sim-service).
RADAR_SOURCE: Final = "urn:qiki:q-sim-service:radar"
#: Source of sensor I/O status events.
SENSOR_SOURCE: Final = "urn:qiki:q-sim-service:sensors"
#: Source of energy status events.
POWER_SOURCE: Final = "urn:qiki:q-sim-service:power"

# Subjects come from the BotSpec's channels (RuntimeConfig.subjects), never from here.

ALL_TYPES: Final = (
    FRAME_TYPE,
    FRAME_LR_TYPE,
    FRAME_SR_TYPE,
    SENSOR_IO_STATUS_TYPE,
    POWER_ENERGY_STATUS_TYPE,
)
