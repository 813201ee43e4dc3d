"""The QIKI reference platform's data contracts: the shipped files and their pydantic sources.

``scenarios/contracts/qiki.yaml`` lists each shipped JSON Schema file, the model it is generated
from and the CloudEvent types it describes. ``python -m harness.contracts.qiki --write``
regenerates the files from the models; ``--check`` (exit 1 on drift) is what the tests run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from services.common.contract_ref import ContractRef
from services.common.contracts import (
    ContractError,
    ContractIndexEntry,
    _import_model,
    contract_index_refs,
    read_contract_index,
    schema_from_model,
)

__all__ = ["QIKI_CONTRACTS_DIR", "QIKI_INDEX", "qiki_contract_refs", "qiki_contracts", "render"]

#: ``scenarios/contracts`` of the repository this module lives in.
QIKI_CONTRACTS_DIR: Path = Path(__file__).resolve().parents[2] / "scenarios" / "contracts"
#: The index naming each shipped file, its types and its model.
QIKI_INDEX = "qiki.yaml"


def qiki_contracts(directory: Path | None = None) -> list[ContractIndexEntry]:
    """The entries of ``qiki.yaml`` (``ContractError`` naming the file if it is broken)."""
    return read_contract_index((directory or QIKI_CONTRACTS_DIR) / QIKI_INDEX)


def qiki_contract_refs(directory: Path | None = None) -> dict[str, ContractRef]:
    """CloudEvent type -> its shipped JSON Schema file, for every QIKI type."""
    return contract_index_refs((directory or QIKI_CONTRACTS_DIR) / QIKI_INDEX)


def render(contract: ContractIndexEntry) -> str:
    """The file text a contract's model generates (what ``--write`` writes)."""
    if not contract.model:
        raise ContractError(f"{contract.path}: the index names no model to generate it from")
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
        if not c.model:
            continue  # a hand-written contract: nothing to generate it from
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
