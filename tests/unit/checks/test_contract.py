"""The contract check: envelope and data, require_declared, coverage, the violation format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checks import TappedMessage, check_contract
from harness.contracts import ContractRef, ContractRegistry
from services.common.cloudevents import new_event, to_binary, to_structured

READING = {
    "type": "object",
    "required": ["celsius"],
    "properties": {"celsius": {"type": "number", "maximum": 80}},
}


@pytest.fixture
def registry(tmp_path: Path) -> ContractRegistry:
    path = tmp_path / "reading.schema.json"
    path.write_text(json.dumps(READING))
    ref = ContractRef("json_schema", str(path))
    return ContractRegistry.from_refs({"acme.v1.Reading": ref, "acme.v1.Alarm": ref})


def msg(type_: str, data: Any, *, subject: str = "acme.readings", structured: bool = False
        ) -> TappedMessage:
    ev = new_event(type_, "urn:test", data)
    headers, payload = (to_structured if structured else to_binary)(ev)
    return TappedMessage(subject=subject, headers=headers, payload=payload, received_at=0.0)


def test_valid_data_passes_and_is_counted(registry: ContractRegistry) -> None:
    result = check_contract([msg("acme.v1.Reading", {"celsius": 20})], registry=registry)
    assert result.passed, result.details
    assert result.observed["data_checked"] == 1
    assert result.observed["data_invalid"] == 0


@pytest.mark.parametrize("structured", [False, True])
def test_data_violation_names_subject_type_pointer_keyword_and_value(
    registry: ContractRegistry, structured: bool
) -> None:
    result = check_contract(
        [msg("acme.v1.Reading", {"celsius": 99}, structured=structured)], registry=registry
    )
    assert not result.passed
    assert result.observed["invalid"] == 1
    assert result.observed["by_keyword"] == {"maximum": 1}
    [detail] = result.details
    assert detail.startswith("acme.readings: type acme.v1.Reading: data /celsius: [maximum]")
    assert detail.endswith("(value 99)")


def test_data_that_is_not_json_is_a_violation(registry: ContractRegistry) -> None:
    ev = new_event("acme.v1.Reading", "urn:test", b"\x00binary",
                   datacontenttype="application/octet-stream")
    headers, payload = to_binary(ev)
    result = check_contract([TappedMessage("s", headers, payload, 0.0)], registry=registry)
    assert not result.passed
    assert "data /: [json] data is not JSON" in result.details[0]


def test_envelope_violations_are_still_reported(registry: ContractRegistry) -> None:
    bad = TappedMessage("acme.readings", {"ce_id": "1", "ce_type": "x"}, b"{}", 0.0)
    result = check_contract([bad, msg("acme.v1.Reading", {"celsius": 1})], registry=registry)
    assert not result.passed
    assert result.observed["by_rule"]["legacy-underscore-headers"] == 1
    assert result.observed["data_checked"] == 1


def test_undeclared_types_pass_unless_required(registry: ContractRegistry) -> None:
    msgs = [msg("acme.v1.Other", {"x": 1}), msg("acme.v1.Other", {"x": 2})]
    assert check_contract(msgs, registry=registry).passed
    strict = check_contract(msgs, registry=registry, require_declared=True)
    assert not strict.passed
    assert strict.observed["undeclared"] == {"acme.v1.Other": 2}
    assert strict.details == [
        "acme.readings: type acme.v1.Other: no contract declared for this type (require_declared)"
    ]


def test_without_a_registry_only_envelopes_are_checked() -> None:
    result = check_contract([msg("acme.v1.Reading", {"celsius": 99})])
    assert result.passed
    assert result.observed["declared"] == 0
    assert not check_contract([msg("acme.v1.Reading", {})], require_declared=True).passed


def test_coverage_lists_unseen_types_and_min_coverage_fails(registry: ContractRegistry) -> None:
    msgs = [msg("acme.v1.Reading", {"celsius": 1})]
    result = check_contract(msgs, registry=registry)
    assert result.passed
    assert result.observed["coverage"] == 0.5
    assert result.observed["unseen"] == ["acme.v1.Alarm"]
    full = check_contract(msgs, registry=registry, min_coverage=1.0)
    assert not full.passed
    assert "declared type(s) never seen: acme.v1.Alarm" in full.details[0]
    assert check_contract(msgs, registry=registry, min_coverage=0.5).passed
    quiet = check_contract(msgs, registry=registry, coverage=False)
    assert "unseen" not in quiet.observed


def test_min_messages_and_bad_min_coverage(registry: ContractRegistry) -> None:
    assert not check_contract([], registry=registry).passed
    with pytest.raises(ValueError, match="min_coverage"):
        check_contract([], min_coverage=1.5)


def test_asyncapi_message_on_a_subject_outside_its_channels(tmp_path: Path) -> None:
    (tmp_path / "api.yaml").write_text("""\
asyncapi: 3.0.0
info: {title: t, version: '1'}
channels:
  readings:
    address: acme.{zone}.readings
    messages:
      Reading: {payload: {type: object}}
""")
    ref = ContractRef("asyncapi", str(tmp_path / "api.yaml"), "Reading")
    registry = ContractRegistry.from_refs({"acme.v1.Reading": ref})
    ok = msg("acme.v1.Reading", {}, subject="acme.north.readings")
    assert check_contract([ok], registry=registry).passed
    stray = msg("acme.v1.Reading", {}, subject="acme.north.alarms")
    result = check_contract([stray], registry=registry)
    assert not result.passed
    assert result.observed["by_keyword"] == {"address": 1}
    assert result.details == [
        "acme.north.alarms: type acme.v1.Reading: published on a subject that is not the "
        "address of any channel carrying it (acme.{zone}.readings)"
    ]
