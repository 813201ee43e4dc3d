"""Shared contracts of the QIKI reference platform: CloudEvents over NATS, settings, codes.

Import the public names from here or from the submodules. Importing this package does not
import nats or pydantic-heavy modules beyond what the names below need.
"""

from services.common.cloudevents import (
    CloudEvent,
    CloudEventError,
    ContractViolation,
    Rule,
    check_message,
    decode_header_value,
    detect_mode,
    encode_header_value,
    from_message,
    new_event,
    publish_event,
    to_binary,
    to_message,
    to_structured,
)
from services.common.codes import RegistrarCode, rejection_code_for
from services.common.settings import NatsSettings, connect

__all__ = [
    "CloudEvent",
    "CloudEventError",
    "ContractViolation",
    "NatsSettings",
    "RegistrarCode",
    "Rule",
    "check_message",
    "connect",
    "decode_header_value",
    "detect_mode",
    "encode_header_value",
    "from_message",
    "new_event",
    "publish_event",
    "rejection_code_for",
    "to_binary",
    "to_message",
    "to_structured",
]
