"""What a real registrar publishes about itself keeps the shipped lifecycle contracts
(``scenarios/contracts/registrar-*.schema.json``), across a broker restart too."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from harness.broker import NatsServer
from harness.contracts import ContractRegistry
from harness.contracts.qiki import qiki_contract_refs
from services.common.codes import RegistrarCode as C
from services.registrar.codemap import CodeMapper
from services.registrar.store import RegistrarStore

from .conftest import RegistrarProcess

LIFECYCLE_TYPES = CodeMapper().lifecycle_types()

pytestmark = pytest.mark.timeout(120)


def lifecycle(db: Path) -> list[Any]:
    if not db.exists():
        return []
    with RegistrarStore(db, readonly=True) as st:
        return [r for r in st.query(limit=None) if r.type in LIFECYCLE_TYPES.values()]


async def wait_code(db: Path, code: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(r.code == code for r in await asyncio.to_thread(lifecycle, db)):
        assert time.monotonic() < deadline, f"no {code} in {await asyncio.to_thread(lifecycle, db)}"
        await asyncio.sleep(0.1)


async def test_lifecycle_data_keeps_its_contracts(
    server: NatsServer, js_conn: tuple[Any, Any], db_path: Path
) -> None:
    registry = ContractRegistry.from_refs(qiki_contract_refs())
    reg = RegistrarProcess(server.client_url, db_path)
    async with reg.proc:
        await wait_code(db_path, C.BOOT_OK)
        await server.nodes[0].restart()
        await wait_code(db_path, C.RECOVERY_OK)
    records = lifecycle(db_path)
    seen = {r.type for r in records}
    # Every lifecycle step but boot_failed and the store's (disk-full: see
    # scenarios/disk-full-registrar.yaml, whose contract check covers them) happened.
    assert seen == set(LIFECYCLE_TYPES.values()) - {
        LIFECYCLE_TYPES[c] for c in (C.BOOT_FAILED, C.STORAGE_FAILED, C.STORAGE_OK)}
    for r in records:
        assert r.data is not None and not r.truncated
        assert registry.validate_json(str(r.type), r.data) == [], (r.type, r.data)
