"""Radar simulator (``python -m services.radar_sim``): frames, sensor and power CloudEvents.

Public surface: :class:`services.radar_sim.service.RadarSimulator`, the payload models
(:class:`RadarFrame`, :class:`Detection`, :class:`SensorIoStatus`, :class:`EnergyStatus`),
:class:`Scene` and the type names in :mod:`services.radar_sim.events`.
"""

from services.radar_sim.models import Detection, EnergyStatus, RadarFrame, SensorIoStatus
from services.radar_sim.simulation import Scene, split_by_band

__all__ = [
    "Detection",
    "EnergyStatus",
    "RadarFrame",
    "Scene",
    "SensorIoStatus",
    "split_by_band",
]
