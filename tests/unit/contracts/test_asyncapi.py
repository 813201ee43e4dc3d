"""AsyncAPI 3.0 contracts: messages by name, channel addresses, local $refs, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.contracts import (
    ContractError,
    ContractRegistry,
    compile_contract,
    load_asyncapi_payload,
    parse_contract_ref,
)

DOC = """\
asyncapi: 3.0.0
info: {title: Greenhouse, version: 1.0.0}
channels:
  readings:
    address: acme.climate.v1.readings
    messages:
      Reading: {$ref: '#/components/messages/Reading'}
  alarms:
    address: acme.climate.v1.alarms
    messages:
      alarm: {$ref: '#/components/messages/AlarmMessage'}
operations:
  sendReading:
    action: send
    channel: {$ref: '#/channels/readings'}
components:
  messages:
    Reading:
      payload: {$ref: '#/components/schemas/Reading'}
    AlarmMessage:
      name: Alarm
      payload:
        schemaFormat: application/schema+json;version=draft-07
        schema:
          type: object
          required: [severity]
          properties:
            severity: {type: string, enum: [low, high]}
  schemas:
    Celsius: {type: number, minimum: -50, maximum: 80}
    Reading:
      type: object
      required: [sensor, celsius]
      additionalProperties: false
      properties:
        sensor: {type: string, minLength: 1}
        celsius: {$ref: '#/components/schemas/Celsius'}
"""


def write(tmp_path: Path, text: str = DOC, name: str = "asyncapi.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_message_payload_with_nested_local_refs(tmp_path: Path) -> None:
    write(tmp_path)
    ref = parse_contract_ref({"asyncapi": "asyncapi.yaml", "message": "Reading"}, tmp_path)
    reg = ContractRegistry.from_refs({"acme.climate.v1.Reading": ref})
    assert reg.validate("acme.climate.v1.Reading", {"sensor": "a", "celsius": 20}) == []
    [v] = reg.validate("acme.climate.v1.Reading", {"sensor": "a", "celsius": 99})
    assert (v.pointer, v.keyword, v.value) == ("/celsius", "maximum", "99")
    assert reg.contract("acme.climate.v1.Reading").addresses == ("acme.climate.v1.readings",)


def test_message_found_by_its_name_and_multi_format_schema(tmp_path: Path) -> None:
    path = write(tmp_path)
    schema, addresses = load_asyncapi_payload(path, "Alarm")
    assert addresses == ("acme.climate.v1.alarms",)
    assert schema["required"] == ["severity"]
    reg = ContractRegistry.from_refs(
        {"acme.climate.v1.Alarm": parse_contract_ref(
            {"asyncapi": str(path), "message": "Alarm"}, tmp_path)}
    )
    [v] = reg.validate("acme.climate.v1.Alarm", {"severity": "meh"})
    assert (v.pointer, v.keyword) == ("/severity", "enum")


def test_channel_message_key_without_components(tmp_path: Path) -> None:
    path = write(tmp_path, """\
asyncapi: 3.0.1
info: {title: t, version: '1'}
channels:
  ticks:
    address: acme.tick
    messages:
      Tick:
        payload: {type: integer, minimum: 0}
""")
    contract = compile_contract(parse_contract_ref({"asyncapi": str(path), "message": "Tick"},
                                                   tmp_path))
    assert contract.addresses == ("acme.tick",)
    assert contract.validate(3) == []
    assert [v.keyword for v in contract.validate(-1)] == ["minimum"]


@pytest.mark.parametrize(
    ("text", "message", "expected"),
    [
        (DOC.replace("asyncapi: 3.0.0", "asyncapi: 2.6.0"), "Reading",
         r"'asyncapi: 2\.6\.0': expected an AsyncAPI 3\.x document"),
        (DOC, "Nope", r"no message 'Nope'; the document has: AlarmMessage, Reading"),
        (DOC.replace("    address: acme.climate.v1.readings\n", ""), "Reading",
         r"channel 'readings' carries message 'Reading' but has no 'address'"),
        (DOC.replace("#/components/schemas/Celsius", "#/components/schemas/Kelvin"), "Reading",
         r"\$ref '#/components/schemas/Kelvin' points at nothing"),
        (DOC.replace("#/components/schemas/Celsius", "common.yaml#/Celsius"), "Reading",
         r"only local references"),
        (DOC.replace("      payload: {$ref: '#/components/schemas/Reading'}\n", ""), "Reading",
         r"message 'Reading' has no 'payload'"),
        ("asyncapi: 3.0.0\ninfo: [\n", "Reading", r"invalid YAML at line \d+"),
    ],
)
def test_broken_documents_name_the_file_and_the_problem(
    tmp_path: Path, text: str, message: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ContractError, match=expected) as info:
        compile_contract(parse_contract_ref({"asyncapi": str(path), "message": message},
                                            tmp_path))
    assert str(path) in str(info.value)


def test_invalid_payload_schema_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, DOC.replace("type: number, minimum: -50", "type: number, minimum: low"))
    with pytest.raises(ContractError,
                       match=r"message 'Reading': the schema does not compile: \"low\""):
        compile_contract(parse_contract_ref({"asyncapi": str(path), "message": "Reading"},
                                            tmp_path))
