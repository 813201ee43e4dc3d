"""Data contracts: the schema registry the ``contract`` check validates event data with.

The implementation lives in :mod:`services.common.contracts` (the reference services may
validate with it and never import the harness); this package re-exports it and adds the
wiring from a platform's runtime configuration to a compiled :class:`ContractRegistry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.common.contract_ref import ContractRef, parse_contract_ref
from services.common.contracts import (
    CompiledContract,
    ContractError,
    ContractRegistry,
    DataViolation,
    compile_contract,
    json_pointer,
    load_asyncapi_payload,
    schema_from_model,
)

__all__ = [
    "CompiledContract",
    "ContractError",
    "ContractRef",
    "ContractRegistry",
    "DataViolation",
    "compile_contract",
    "contract_refs_for",
    "json_pointer",
    "load_asyncapi_payload",
    "parse_contract_ref",
    "registry_for",
    "registry_for_run",
    "schema_from_model",
]


def contract_refs_for(config: Any) -> dict[str, ContractRef]:
    """CloudEvent type -> contract for a platform's runtime configuration.

    A configuration with a ``contracts`` mapping (BotSpec v2: ``RuntimeConfig.contracts``, from
    ``channels[].types[].contract``) is authoritative, even when empty: a user platform without
    contracts validates envelopes only. A configuration without the attribute (BotSpec v1) gets
    the QIKI reference contracts shipped in ``scenarios/contracts``.
    """
    declared = getattr(config, "contracts", None)
    if isinstance(declared, Mapping):
        return dict(declared)
    from harness.contracts.qiki import qiki_contract_refs

    return qiki_contract_refs()


def registry_for(config: Any) -> ContractRegistry:
    """The compiled registry of a platform's contracts (``ContractError`` if one is broken)."""
    return ContractRegistry.from_refs(contract_refs_for(config))


def registry_for_run(config: Any, scenario: Any) -> ContractRegistry | None:
    """The registry a scenario's ``contract`` checks use, or ``None`` when it has none.

    Compiled before anything starts, so a broken contract file is bad input (exit 2) that names
    the file and the problem, not a crash halfway through a run.
    """
    from harness.errors import ConfigError
    from harness.scenario.model import ContractEntry

    entries = [*scenario.checks, *scenario.steady_state.checks]
    if not any(isinstance(e, ContractEntry) for e in entries):
        return None
    try:
        return registry_for(config)
    except ContractError as exc:
        raise ConfigError(str(exc)) from None
