"""Registrar code table: the original values, ranges, rejection codes."""

from __future__ import annotations

import pytest

from services.common.cloudevents import Rule
from services.common.codes import RegistrarCode, rejection_code_for

ORIGINAL = {
    100: "BOOT_START", 101: "BOOT_OK", 102: "BOOT_FAILED", 110: "INIT_START", 111: "INIT_OK",
    112: "INIT_FAILED", 200: "SENSOR_IO_START", 201: "SENSOR_IO_OK", 202: "SENSOR_IO_FAILED",
    210: "RADAR_FRAME_RECEIVED", 211: "RADAR_TRACK_GENERATED", 300: "ACTUATOR_START",
    301: "ACTUATOR_OK", 302: "ACTUATOR_FAILED", 400: "COMM_START", 401: "COMM_OK",
    402: "COMM_FAILED", 410: "NATS_CONNECTED", 411: "NATS_DISCONNECTED", 500: "NAV_START",
    501: "NAV_OK", 502: "NAV_FAILED", 600: "POWER_START", 601: "POWER_OK", 602: "POWER_LOW",
    603: "POWER_CRITICAL", 700: "HEALTH_CHECK_START", 701: "HEALTH_CHECK_OK",
    702: "HEALTH_CHECK_FAILED", 800: "SECURITY_START", 801: "SECURITY_OK",
    802: "SECURITY_VIOLATION", 900: "CRITICAL_ERROR", 901: "SYSTEM_HALT",
    910: "RECOVERY_START", 911: "RECOVERY_OK",
}  # fmt: skip


def test_original_table_is_complete_and_unchanged() -> None:
    for value, name in ORIGINAL.items():
        assert RegistrarCode(value).name == name
        assert RegistrarCode[name] == value


#: Added by this project outside the 92x rejections: the registrar's own store (issue 11).
STORE_CODES = {930: "STORAGE_FAILED", 931: "STORAGE_OK"}


def test_added_codes_are_rejections_in_the_9xx_range() -> None:
    added = [c for c in RegistrarCode if c.value not in ORIGINAL and c.value not in STORE_CODES]
    assert added, "rejection codes are defined"
    for code in added:
        assert code.range == "critical/error"
        assert code.name.startswith("REJECTED_")
        assert code.is_rejection
    assert not RegistrarCode.RECOVERY_OK.is_rejection


def test_store_codes_are_9xx_and_not_rejections() -> None:
    for value, name in STORE_CODES.items():
        code = RegistrarCode(value)
        assert code.name == name and code.range == "critical/error" and not code.is_rejection


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (100, "boot"), (112, "boot"), (210, "sensor/io"), (302, "actuator"), (410, "comms"),
        (502, "navigation"), (603, "power"), (702, "health"), (802, "security"),
        (911, "critical/error"), (999, "critical/error"),
    ],
)  # fmt: skip
def test_range_of(code: int, name: str) -> None:
    assert RegistrarCode.range_of(code) == name


@pytest.mark.parametrize("bad", [0, 99, 1000, -210, True])
def test_range_of_rejects_codes_outside_the_table(bad: int) -> None:
    with pytest.raises(ValueError, match=r"100\.\.999"):
        RegistrarCode.range_of(bad)


def test_every_contract_rule_has_a_rejection_code() -> None:
    assert rejection_code_for(Rule.NOT_CLOUDEVENT) == RegistrarCode.REJECTED_NOT_CLOUDEVENT == 920
    assert rejection_code_for("specversion") == 921
    assert rejection_code_for("missing-attribute") == 922
    assert rejection_code_for("bad-data") == 923
    assert rejection_code_for("oversized") == 924
    assert rejection_code_for("header-encoding") == 925
    assert rejection_code_for("legacy-underscore-headers") == 926
    for rule in Rule:
        assert rejection_code_for(rule).is_rejection
    assert rejection_code_for(Rule.INVALID_TIME) == RegistrarCode.REJECTED_INVALID_ATTRIBUTE
