"""The contract reference forms a spec may use, and the errors for the others."""

from pathlib import Path

import pytest

from services.common.contract_ref import ContractRef, parse_contract_ref


def test_string_is_a_json_schema_path_relative_to_the_naming_file(tmp_path: Path) -> None:
    ref = parse_contract_ref("../contracts/frame.schema.json", tmp_path / "specs")
    assert ref == ContractRef("json_schema", str(tmp_path / "contracts/frame.schema.json"))


def test_pydantic_and_asyncapi_forms(tmp_path: Path) -> None:
    assert parse_contract_ref({"pydantic": "pkg.mod:Model"}, tmp_path) == ContractRef(
        "pydantic", "pkg.mod:Model"
    )
    ref = parse_contract_ref({"asyncapi": "api.yaml", "message": "Reading"}, tmp_path)
    assert (ref.kind, ref.target, ref.message) == (
        "asyncapi", str(tmp_path / "api.yaml"), "Reading",
    )
    assert str(ref).endswith("api.yaml#Reading")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("frame.txt", "not a schema file"),
        ({"pydantic": "no_colon"}, "package.module:Class"),
        ({"asyncapi": "a.yaml"}, "unknown form"),
        ({"asyncapi": "a.yaml", "message": ""}, "message name"),
        (42, "expected a schema path"),
    ],
)
def test_bad_forms_name_the_value_and_what_is_expected(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_contract_ref(value, "/")


@pytest.mark.parametrize(
    "ref",
    [
        ContractRef("json_schema", "/c/frame.schema.json"),
        ContractRef("pydantic", "pkg.mod:Model"),
        ContractRef("asyncapi", "/c/api.yaml", "Reading"),
    ],
)
def test_str_round_trips(ref: ContractRef) -> None:
    assert ContractRef.from_str(str(ref)) == ref
