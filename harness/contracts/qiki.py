"""The QIKI reference platform's data contracts: the shipped files and their pydantic sources.

``scenarios/contracts/qiki.yaml`` lists each shipped JSON Schema file, the model it is generated
from and the CloudEvent types it describes. ``python -m harness.contracts.qiki --write``
regenerates the files from the models; ``--check`` (exit 1 on drift) is what the tests run.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.common.contract_ref import ContractRef
from services.common.contracts import ContractError, _import_model, schema_from_model

__all__ = ["QIKI_CONTRACTS_DIR", "QikiContract", "qiki_contract_refs", "qiki_contracts", "render"]

#: ``scenarios/contracts`` of the repository this module lives in.
QIKI_CONTRACTS_DIR: Path = Path(__file__).resolve().parents[2] / "scenarios" / "contracts"
_INDEX = "qiki.yaml"


@dataclass(frozen=True)
class QikiContract:
    """One shipped contract file, the model it is generated from, the types it describes."""

    path: Path
    model: str
    types: tuple[str, ...]


def qiki_contracts(directory: Path | None = None) -> list[QikiContract]:
    """The entries of ``qiki.yaml`` (``ContractError`` naming the file if it is broken)."""
    base = directory or QIKI_CONTRACTS_DIR
    index = base / _INDEX
    try:
        doc = yaml.safe_load(index.read_text(encoding="utf-8"))
        entries = doc["contracts"]
        return [
            QikiContract(base / str(e["file"]), str(e["model"]), tuple(map(str, e["types"])))
            for e in entries
        ]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ContractError(f"{index}: cannot read the QIKI contract index: {exc!r}") from None


def qiki_contract_refs(directory: Path | None = None) -> dict[str, ContractRef]:
    """CloudEvent type -> its shipped JSON Schema file, for every QIKI type."""
    return {
        t: ContractRef("json_schema", str(c.path))
        for c in qiki_contracts(directory)
        for t in c.types
    }


def render(contract: QikiContract) -> str:
    """The file text a contract's model generates (what ``--write`` writes)."""
    comment = (
        f"Generated from {contract.model} by python -m harness.contracts.qiki --write; "
        "edit the model, not this file."
    )
    schema = schema_from_model(_import_model(contract.model), comment=comment)
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``--write`` regenerates the files; ``--check`` lists the drifted ones and exits 1."""
    ap = argparse.ArgumentParser(prog="python -m harness.contracts.qiki", description=__doc__)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the files")
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    ap.add_argument("--dir", type=Path, default=None, help="contracts directory")
    args = ap.parse_args(argv)
    drifted: list[Any] = []
    for c in qiki_contracts(args.dir):
        text = render(c)
        current = c.path.read_text(encoding="utf-8") if c.path.exists() else None
        if current == text:
            continue
        if args.write:
            c.path.write_text(text, encoding="utf-8")
            print(f"wrote {c.path}")
        else:
            drifted.append(c.path)
            print(f"out of date: {c.path} (regenerate from {c.model} with --write)")
    return 1 if drifted else 0


if __name__ == "__main__":
    sys.exit(main())
