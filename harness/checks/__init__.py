"""Checks: pure functions from observations to results."""

from harness.checks.codes import check_registrar_codes
from harness.checks.contract import check_contract
from harness.checks.deadletter import check_dead_letters
from harness.checks.delivery import DeliveryAccount, account_delivery, check_delivery
from harness.checks.events import check_events
from harness.checks.lag import check_lag_recovery, check_max_lag, recovery_time_s
from harness.checks.observations import (
    DeliveryLog,
    FaultRecord,
    LagSample,
    Observations,
    RegistrarRecord,
    TappedMessage,
)
from harness.checks.result import CheckResult

__all__ = [
    "CheckResult",
    "DeliveryAccount",
    "DeliveryLog",
    "FaultRecord",
    "LagSample",
    "Observations",
    "RegistrarRecord",
    "TappedMessage",
    "account_delivery",
    "check_contract",
    "check_dead_letters",
    "check_delivery",
    "check_events",
    "check_lag_recovery",
    "check_max_lag",
    "check_registrar_codes",
    "recovery_time_s",
]
