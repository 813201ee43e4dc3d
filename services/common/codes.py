"""Registrar code table of the QIKI platform, plus the registrar's rejection codes.

The numeric values of the original platform are kept as they were (checks and dashboards
compare them). The hundreds digit is the range: 1xx boot, 2xx sensor/IO, 3xx actuator,
4xx comms, 5xx navigation, 6xx power, 7xx health, 8xx security, 9xx critical/error.

Codes 920-929 are added by this project inside the 9xx (critical/error) range: the registrar
stores one of them, with the reason, for every message it had to reject (and dead-letter)
instead of storing it as an event. :func:`rejection_code_for` maps a CloudEvents contract
rule id (see ``services.common.cloudevents.Rule``) to its code. Codes 930/931 (also added)
say the registrar's own store refused writes and took them again (issue 11).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["RANGES", "RegistrarCode", "rejection_code_for"]

#: Range name by hundreds digit.
RANGES: dict[int, str] = {
    1: "boot",
    2: "sensor/io",
    3: "actuator",
    4: "comms",
    5: "navigation",
    6: "power",
    7: "health",
    8: "security",
    9: "critical/error",
}


class RegistrarCode(IntEnum):
    """Registrar event codes; the hundreds digit is the range (see :data:`RANGES`)."""

    # 1xx boot
    BOOT_START = 100
    BOOT_OK = 101
    BOOT_FAILED = 102
    INIT_START = 110
    INIT_OK = 111
    INIT_FAILED = 112
    # 2xx sensor/IO
    SENSOR_IO_START = 200
    SENSOR_IO_OK = 201
    SENSOR_IO_FAILED = 202
    RADAR_FRAME_RECEIVED = 210
    RADAR_TRACK_GENERATED = 211
    # 3xx actuator
    ACTUATOR_START = 300
    ACTUATOR_OK = 301
    ACTUATOR_FAILED = 302
    # 4xx comms
    COMM_START = 400
    COMM_OK = 401
    COMM_FAILED = 402
    NATS_CONNECTED = 410
    NATS_DISCONNECTED = 411
    # 5xx navigation
    NAV_START = 500
    NAV_OK = 501
    NAV_FAILED = 502
    # 6xx power
    POWER_START = 600
    POWER_OK = 601
    POWER_LOW = 602
    POWER_CRITICAL = 603
    # 7xx health
    HEALTH_CHECK_START = 700
    HEALTH_CHECK_OK = 701
    HEALTH_CHECK_FAILED = 702
    # 8xx security
    SECURITY_START = 800
    SECURITY_OK = 801
    SECURITY_VIOLATION = 802
    # 9xx critical/error
    CRITICAL_ERROR = 900
    SYSTEM_HALT = 901
    RECOVERY_START = 910
    RECOVERY_OK = 911
    # 93x: the registrar's own store (issue 11: disk-full on a service's data dir)
    #: The store refused a write (disk full, I/O error): batches stay unacked (redelivered).
    STORAGE_FAILED = 930
    #: The store takes writes again; ``seconds`` it refused them.
    STORAGE_OK = 931
    # 92x: a message the registrar rejected (stored with the reason, dead-lettered, acked).
    #: No CloudEvent at all: no ``ce-`` headers, or a structured payload that is not a JSON object.
    REJECTED_NOT_CLOUDEVENT = 920
    #: ``specversion`` is present but is not ``"1.0"``.
    REJECTED_SPECVERSION = 921
    #: A required attribute (id, source, specversion, type) is absent or empty.
    REJECTED_MISSING_ATTRIBUTE = 922
    #: The data cannot be decoded as its ``datacontenttype`` says (bad JSON, bad base64, ...).
    REJECTED_BAD_DATA = 923
    #: The payload is larger than the registrar's configured maximum.
    REJECTED_OVERSIZED = 924
    #: A ``ce-`` header value is not valid percent-encoded UTF-8 (NATS binding 3.1.3.2).
    REJECTED_HEADER_ENCODING = 925
    #: Underscore headers (``ce_id``) as the original QIKI platform wrote them.
    REJECTED_LEGACY_HEADERS = 926
    #: Any other attribute-level contract violation: bad time, URI, media type, extension name.
    REJECTED_INVALID_ATTRIBUTE = 927

    @property
    def range(self) -> str:
        """Range name of this code, e.g. ``"boot"``."""
        return RegistrarCode.range_of(self)

    @staticmethod
    def range_of(code: int) -> str:
        """Range name of a code in 100..999: ``"boot"``, ``"sensor/io"``, ... ``"critical/error"``.

        Raises ``ValueError`` for a code outside 100..999.
        """
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 999:
            raise ValueError(f"registrar code {code!r} is outside 100..999; expected e.g. 210")
        return RANGES[int(code) // 100]

    @property
    def is_rejection(self) -> bool:
        """True for the 92x codes the registrar stores for messages it rejected."""
        return 920 <= self.value <= 929


# Rule ids of services.common.cloudevents.Rule (as strings so this module stays import-free).
_REJECTION_BY_RULE: dict[str, RegistrarCode] = {
    "not-cloudevent": RegistrarCode.REJECTED_NOT_CLOUDEVENT,
    "specversion": RegistrarCode.REJECTED_SPECVERSION,
    "missing-attribute": RegistrarCode.REJECTED_MISSING_ATTRIBUTE,
    "bad-data": RegistrarCode.REJECTED_BAD_DATA,
    "oversized": RegistrarCode.REJECTED_OVERSIZED,
    "header-encoding": RegistrarCode.REJECTED_HEADER_ENCODING,
    "legacy-underscore-headers": RegistrarCode.REJECTED_LEGACY_HEADERS,
}


def rejection_code_for(rule: str) -> RegistrarCode:
    """The 92x code the registrar stores for a message rejected under contract ``rule``.

    Rules without a dedicated code (invalid time, URI, media type, extension name, ...) map to
    :attr:`RegistrarCode.REJECTED_INVALID_ATTRIBUTE`.
    """
    return _REJECTION_BY_RULE.get(str(rule), RegistrarCode.REJECTED_INVALID_ATTRIBUTE)
