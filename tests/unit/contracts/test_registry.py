"""The contract registry: JSON Schema, pydantic and AsyncAPI forms, violation format, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from harness.contracts import (
    ContractError,
    ContractRef,
    ContractRegistry,
    compile_contract,
    json_pointer,
    parse_contract_ref,
)
from services.common.contracts import MAX_VALUE_CHARS, MAX_VIOLATIONS

READING = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sensor", "celsius", "at"],
    "properties": {
        "sensor": {"type": "string", "minLength": 1},
        "celsius": {"type": "number", "minimum": -50, "maximum": 80},
        "at": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}},
    },
}
GOOD = {"sensor": "gh-1", "celsius": 21.5, "at": "2026-11-27T10:00:00Z"}


class Reading(BaseModel):
    """A pydantic twin of READING."""

    model_config = ConfigDict(extra="forbid")

    sensor: str = Field(min_length=1)
    celsius: float = Field(ge=-50, le=80)
    count: int = 0


def schema_file(tmp_path: Path, schema: object, name: str = "reading.schema.json") -> ContractRef:
    path = tmp_path / name
    path.write_text(json.dumps(schema) if name.endswith(".json") else str(schema))
    return ContractRef("json_schema", str(path))


def registry(ref: ContractRef, type_: str = "acme.climate.v1.Reading") -> ContractRegistry:
    return ContractRegistry.from_refs({type_: ref})


# ------------------------------------------------------------------ JSON Schema


def test_valid_data_has_no_violations(tmp_path: Path) -> None:
    reg = registry(schema_file(tmp_path, READING))
    assert reg.validate("acme.climate.v1.Reading", GOOD) == []
    assert reg.validate_json("acme.climate.v1.Reading", json.dumps(GOOD).encode()) == []
    assert reg.declared == frozenset({"acme.climate.v1.Reading"})
    assert "acme.climate.v1.Reading" in reg


def test_violation_names_pointer_keyword_value_and_message(tmp_path: Path) -> None:
    reg = registry(schema_file(tmp_path, READING))
    bad = {**GOOD, "celsius": 99, "tags": ["ok", "much-too-long"]}
    found = reg.validate("acme.climate.v1.Reading", bad)
    by_pointer = {v.pointer: v for v in found}
    assert by_pointer["/celsius"].keyword == "maximum"
    assert by_pointer["/celsius"].value == "99"
    assert "99" in by_pointer["/celsius"].message
    assert by_pointer["/tags/1"].keyword == "maxLength"
    assert by_pointer["/tags/1"].value == '"much-too-long"'
    assert str(by_pointer["/celsius"]).startswith("/celsius: [maximum]")
    assert by_pointer["/celsius"].to_dict()["keyword"] == "maximum"


def test_missing_and_extra_properties_point_at_the_object(tmp_path: Path) -> None:
    reg = registry(schema_file(tmp_path, READING))
    found = reg.validate("acme.climate.v1.Reading", {"sensor": "x", "at": GOOD["at"], "x": 1})
    assert {(v.pointer, v.keyword) for v in found} == {
        ("", "required"), ("", "additionalProperties")
    }
    assert any("celsius" in v.message for v in found)


def test_formats_are_asserted(tmp_path: Path) -> None:
    reg = registry(schema_file(tmp_path, READING))
    found = reg.validate("acme.climate.v1.Reading", {**GOOD, "at": "2026-11-27T10:00:00"})
    assert [(v.pointer, v.keyword) for v in found] == [("/at", "format")]


def test_optional_field_reports_the_real_reason_not_any_of(tmp_path: Path) -> None:
    schema = {"properties": {"detail": {"anyOf": [{"type": "string", "maxLength": 3},
                                                  {"type": "null"}]}}}
    reg = registry(schema_file(tmp_path, schema))
    [v] = reg.validate("acme.climate.v1.Reading", {"detail": "abcdef"})
    assert (v.pointer, v.keyword) == ("/detail", "maxLength")
    [w] = reg.validate("acme.climate.v1.Reading", {"detail": 5})
    assert w.keyword == "anyOf"  # wrong type for every branch: no branch is more relevant


def test_values_and_messages_are_truncated(tmp_path: Path) -> None:
    reg = registry(schema_file(tmp_path, {"properties": {"s": {"maxLength": 2}}}))
    [v] = reg.validate("acme.climate.v1.Reading", {"s": "y" * 5000})
    assert v.value is not None and len(v.value) <= MAX_VALUE_CHARS + 3
    assert v.value.endswith("...")
    assert len(v.message) < 400 and "longer than 2 characters" in v.message


def test_violations_are_bounded_per_message(tmp_path: Path) -> None:
    reg = registry(schema_file(tmp_path, {"items": {"type": "integer"}}))
    found = reg.validate("acme.climate.v1.Reading", ["x"] * 500)
    assert len(found) == MAX_VIOLATIONS


def test_data_that_is_not_json_is_a_json_violation(tmp_path: Path) -> None:
    reg = registry(schema_file(tmp_path, READING))
    for raw in (b"{not json", b"\xff\xfe", b"NaN", b'{"celsius": Infinity}', b""):
        [v] = reg.validate_json("acme.climate.v1.Reading", raw)
        assert (v.pointer, v.keyword) == ("", "json"), raw
        assert v.message.startswith("data is not JSON")


def test_json_pointer_escapes() -> None:
    assert json_pointer(["a/b", "c~d", 0]) == "/a~1b/c~0d/0"
    assert json_pointer([]) == ""


def test_yaml_schema_file_and_relative_file_refs(tmp_path: Path) -> None:
    (tmp_path / "celsius.json").write_text(json.dumps({"type": "number", "maximum": 80}))
    (tmp_path / "reading.yaml").write_text(
        "type: object\nproperties:\n  celsius: {$ref: celsius.json}\n"
    )
    reg = registry(parse_contract_ref("reading.yaml", tmp_path))
    [v] = reg.validate("acme.climate.v1.Reading", {"celsius": 81})
    assert (v.pointer, v.keyword) == ("/celsius", "maximum")


def test_undeclared_type_is_a_key_error_naming_the_declared_ones(tmp_path: Path) -> None:
    reg = registry(schema_file(tmp_path, READING))
    with pytest.raises(KeyError, match=r"acme\.climate\.v1\.Reading"):
        reg.validate("acme.other.v1.Thing", {})


def test_each_contract_is_compiled_once(tmp_path: Path) -> None:
    ref = schema_file(tmp_path, READING)
    reg = ContractRegistry.from_refs({"a.v1.X": ref, "a.v1.Y": ref})
    assert reg.contract("a.v1.X") is reg.contract("a.v1.Y")


# ------------------------------------------------------------------ broken contract files


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.json", '{"type": "object",\n  "properties": }', r"invalid JSON at line 2"),
        ("bad.yaml", "type: object\nproperties: [\n", r"invalid YAML at line \d+"),
        ("list.json", "[1, 2]", r"a JSON Schema is an object .* got list"),
        ("meta.json", '{"properties": {"a": {"minimum": "x"}}}',
         r"not a valid JSON Schema: at /properties/a/minimum"),
        ("type.json", '{"type": "integr"}', r"not a valid JSON Schema: at /type"),
        ("ref.json", '{"$ref": "#/$defs/nope"}', r"does not compile"),
    ],
)
def test_broken_schema_file_names_the_file_and_the_problem(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ContractError, match=expected) as info:
        compile_contract(ContractRef("json_schema", str(path)))
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.schema.json"
    with pytest.raises(ContractError, match="file not found") as info:
        compile_contract(ContractRef("json_schema", str(missing)))
    assert str(missing) in str(info.value)


def test_registry_lists_every_broken_contract_with_its_type(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{")
    refs = {
        "t.v1.A": ContractRef("json_schema", str(tmp_path / "a.json")),
        "t.v1.B": ContractRef("json_schema", str(tmp_path / "b.json")),
        "t.v1.OK": schema_file(tmp_path, READING),
    }
    with pytest.raises(ContractError) as info:
        ContractRegistry.from_refs(refs)
    text = str(info.value)
    assert "2 contract(s) cannot be compiled" in text
    assert "t.v1.A: contract file" in text and "t.v1.B: contract file" in text


# ------------------------------------------------------------------ pydantic


def test_pydantic_contract_validates_strict_json() -> None:
    reg = registry(ContractRef("pydantic", f"{__name__}:Reading"))
    assert reg.validate("acme.climate.v1.Reading", {"sensor": "a", "celsius": 3}) == []
    found = reg.validate_json("acme.climate.v1.Reading",
                              b'{"sensor": "", "celsius": 100, "count": "5", "x": 1}')
    got = {(v.pointer, v.keyword) for v in found}
    assert got == {("/sensor", "minLength"), ("/celsius", "maximum"), ("/count", "type"),
                   ("", "additionalProperties")}


def test_pydantic_missing_field_points_at_the_object() -> None:
    reg = registry(ContractRef("pydantic", f"{__name__}:Reading"))
    [v] = reg.validate("acme.climate.v1.Reading", {"sensor": "a"})
    assert (v.pointer, v.keyword, v.value) == ("", "required", None)
    assert '"celsius"' in v.message


def test_pydantic_not_json_and_bad_targets() -> None:
    reg = registry(ContractRef("pydantic", f"{__name__}:Reading"))
    [v] = reg.validate_json("acme.climate.v1.Reading", b"{oops")
    assert v.keyword == "json"
    with pytest.raises(ContractError, match="cannot import module 'no_such_mod'"):
        compile_contract(ContractRef("pydantic", "no_such_mod:Thing"))
    with pytest.raises(ContractError, match="has no 'Nope'"):
        compile_contract(ContractRef("pydantic", f"{__name__}:Nope"))
    with pytest.raises(ContractError, match="not a class but function"):
        compile_contract(ContractRef("pydantic", f"{__name__}:registry"))


# ------------------------------------------------------------------ contract index


def test_contract_index_maps_types_to_files(tmp_path: Path) -> None:
    from services.common.contracts import contract_index_refs

    (tmp_path / "index.yaml").write_text(
        "contracts:\n  - {file: r.schema.json, types: [a.v1.R, a.v1.S]}\n"
    )
    refs = contract_index_refs(tmp_path / "index.yaml")
    assert refs == {t: ContractRef("json_schema", str(tmp_path / "r.schema.json"))
                    for t in ("a.v1.R", "a.v1.S")}


@pytest.mark.parametrize("text", ["contracts: {}\n", "contracts:\n  - {file: r.json}\n",
                                  "contracts:\n  - {file: r.json, types: []}\n"])
def test_broken_contract_index_is_named(tmp_path: Path, text: str) -> None:
    from services.common.contracts import read_contract_index

    (tmp_path / "index.yaml").write_text(text)
    with pytest.raises(ContractError, match=r"contract index .*index\.yaml"):
        read_contract_index(tmp_path / "index.yaml")
