"""Event type -> registrar code.

The registrar assigns each valid event one :class:`~services.common.codes.RegistrarCode`.
The rules, first match wins:

1. Exact types (:data:`EXACT_TYPES`):

   ===========================================  =====================================
   type                                         code
   ===========================================  =====================================
   ``qiki.registrar.v1.boot_start``             100 BOOT_START
   ``qiki.registrar.v1.boot_ok``                101 BOOT_OK
   ``qiki.registrar.v1.boot_failed``            102 BOOT_FAILED
   ``qiki.registrar.v1.nats_connected``         410 NATS_CONNECTED
   ``qiki.registrar.v1.nats_disconnected``      411 NATS_DISCONNECTED
   ``qiki.registrar.v1.recovery_start``         910 RECOVERY_START
   ``qiki.registrar.v1.recovery_ok``            911 RECOVERY_OK
   ``qiki.lagmon.v1.ThresholdCrossed``          702 HEALTH_CHECK_FAILED (lag above)
   ``qiki.lagmon.v1.ThresholdCleared``          701 HEALTH_CHECK_OK (lag back under)
   ``qiki.radar.v1.Frame`` (+ LR/SR variants)   210 RADAR_FRAME_RECEIVED
   ``qiki.radar.v1.Track`` / ``TrackSet``       211 RADAR_TRACK_GENERATED
   ===========================================  =====================================

2. Radar: any type or NATS subject under ``qiki.radar.`` is 211 if it mentions ``track``,
   else 210 (the original LR/SR frame types vary in spelling).

3. Domain + outcome. The domain is the second token of a ``qiki.<domain>.*`` type (or, for
   other types, the fourth token of the NATS subject ``qiki.events.v1.<domain>``):
   boot/init 1xx, sensor/io 2xx, actuator/propulsion/thruster 3xx, comm(s)/nats 4xx,
   nav(igation) 5xx, power/energy 6xx, health/lagmon 7xx, security 8xx. The outcome is read
   from the type's last token, else from the event data's ``level``/``status``/``state``/
   ``outcome`` field: start -> x00 (INIT x10), ok/ready/done/cleared/recovered -> x01,
   failed/error/fault/crossed -> x02; power also has low -> 602 and critical -> 603.
   A known domain with no recognisable outcome is stored as the range's OK code and the
   record's reason says "unclassified".

4. Anything else is stored as 900 CRITICAL_ERROR with reason "unclassified event type".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common.codes import RegistrarCode as C

__all__ = ["EXACT_TYPES", "LIFECYCLE_TYPES", "Classification", "CodeMapper"]

#: The registrar's own lifecycle event types, by code.
LIFECYCLE_TYPES: dict[C, str] = {
    C.BOOT_START: "qiki.registrar.v1.boot_start",
    C.BOOT_OK: "qiki.registrar.v1.boot_ok",
    C.BOOT_FAILED: "qiki.registrar.v1.boot_failed",
    C.NATS_CONNECTED: "qiki.registrar.v1.nats_connected",
    C.NATS_DISCONNECTED: "qiki.registrar.v1.nats_disconnected",
    C.RECOVERY_START: "qiki.registrar.v1.recovery_start",
    C.RECOVERY_OK: "qiki.registrar.v1.recovery_ok",
}

EXACT_TYPES: dict[str, C] = {
    **{t: c for c, t in LIFECYCLE_TYPES.items()},
    # What services.lagmon publishes (services/lagmon/events.py); the snake_case spellings
    # below are kept for other publishers of the same contract.
    "qiki.lagmon.v1.ThresholdCrossed": C.HEALTH_CHECK_FAILED,
    "qiki.lagmon.v1.ThresholdCleared": C.HEALTH_CHECK_OK,
    "qiki.lagmon.v1.threshold_crossed": C.HEALTH_CHECK_FAILED,
    "qiki.lagmon.v1.threshold_cleared": C.HEALTH_CHECK_OK,
    "qiki.lagmon.v1.threshold_recovered": C.HEALTH_CHECK_OK,
    "qiki.radar.v1.Frame": C.RADAR_FRAME_RECEIVED,
    "qiki.radar.v1.FrameLR": C.RADAR_FRAME_RECEIVED,
    "qiki.radar.v1.FrameSR": C.RADAR_FRAME_RECEIVED,
    "qiki.radar.v1.Track": C.RADAR_TRACK_GENERATED,
    "qiki.radar.v1.TrackSet": C.RADAR_TRACK_GENERATED,
}

# Hundreds digit by domain word.
_DOMAINS: dict[str, int] = {
    "boot": 1, "init": 1, "sensor": 2, "sensors": 2, "io": 2, "radar": 2,
    "actuator": 3, "actuators": 3, "propulsion": 3, "thruster": 3,
    "comm": 4, "comms": 4, "nats": 4, "antenna": 4, "nav": 5, "navigation": 5,
    "power": 6, "energy": 6, "health": 7, "lagmon": 7, "security": 8,
}  # fmt: skip

_START = {"start", "started", "starting", "begin", "begun"}
_OK = {"ok", "success", "succeeded", "ready", "done", "completed", "cleared", "recovered",
       "nominal", "normal", "up", "healthy"}  # fmt: skip
_FAILED = {"failed", "failure", "fail", "error", "fault", "crossed", "down", "unhealthy",
           "violation"}  # fmt: skip
_LOW = {"low", "warning", "warn"}
_CRITICAL = {"critical", "crit", "empty"}
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Classification:
    """The code for an event and, when the rule was a fallback, why."""

    code: int
    reason: str | None = None


def _json_or_none(data: bytes, content_type: str | None) -> Any:
    if not data or (content_type is not None and "json" not in content_type.lower()):
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def _outcome(words: list[str], hundreds: int) -> int | None:
    """Offset (or full code for power levels) from outcome words, None if no word matches."""
    for w in reversed(words):
        if hundreds == 6 and w in _CRITICAL:
            return int(C.POWER_CRITICAL)
        if hundreds == 6 and w in _LOW:
            return int(C.POWER_LOW)
        if w in _START:
            return hundreds * 100 + (10 if "init" in words else 0)
        if w in _OK:
            return hundreds * 100 + (11 if "init" in words else 1)
        if w in _FAILED:
            return hundreds * 100 + (12 if "init" in words else 2)
    return None


class CodeMapper:
    """Assigns codes; caches the per-(type, subject) decision so the hot path is a dict lookup.

    Only events whose code depends on their data (a known domain whose type names no outcome,
    e.g. ``qiki.power.v1.status`` with ``{"level": "low"}``) look at the data.
    """

    _MAX_CACHE = 4096

    def __init__(self) -> None:
        # value: final Classification, or int hundreds digit meaning "look at the data".
        self._cache: dict[tuple[str, str], Classification | int] = {}

    def classify(
        self, type_: str, nats_subject: str, data: bytes = b"", content_type: str | None = None
    ) -> Classification:
        """The code for an event of ``type_`` that arrived on ``nats_subject``.

        ``data`` (raw bytes) is decoded as JSON only when the code depends on it.
        """
        key = (type_, nats_subject)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._classify_static(type_, nats_subject)
            if len(self._cache) >= self._MAX_CACHE:
                self._cache.clear()
            self._cache[key] = hit
        if isinstance(hit, Classification):
            return hit
        return self._classify_data(hit, type_, _json_or_none(data, content_type))

    @staticmethod
    def _classify_static(type_: str, nats_subject: str) -> Classification | int:
        exact = EXACT_TYPES.get(type_)
        if exact is not None:
            return Classification(int(exact))
        low = type_.lower()
        if low.startswith("qiki.radar.") or nats_subject.startswith("qiki.radar."):
            track = "track" in low or nats_subject.startswith("qiki.radar.v1.tracks")
            return Classification(
                int(C.RADAR_TRACK_GENERATED if track else C.RADAR_FRAME_RECEIVED)
            )
        tokens = low.split(".")
        domain = tokens[1] if tokens[0] == "qiki" and len(tokens) > 1 else None
        hundreds = _DOMAINS.get(domain) if domain else None
        if hundreds is None:
            sub = nats_subject.split(".")
            if len(sub) > 3 and sub[0] == "qiki" and sub[1] == "events":
                hundreds = _DOMAINS.get(sub[3])
        if hundreds is None:
            return Classification(int(C.CRITICAL_ERROR), f"unclassified event type {type_!r}")
        words = _WORD.findall(tokens[-1]) if len(tokens) > 1 else []
        if domain == "init" or "init" in words:
            words = ["init", *words]
        code = _outcome(words, hundreds)
        if code is not None:
            return Classification(code)
        return hundreds

    @staticmethod
    def _classify_data(hundreds: int, type_: str, data: Any) -> Classification:
        if isinstance(data, Mapping):
            for field in ("level", "status", "state", "outcome"):
                value = data.get(field)
                if isinstance(value, str):
                    code = _outcome(_WORD.findall(value.lower()), hundreds)
                    if code is not None:
                        return Classification(code)
        return Classification(
            hundreds * 100 + 1,
            f"unclassified outcome of {type_!r}: stored as the {C.range_of(hundreds * 100)} "
            "range's OK code",
        )
