"""The registrar's data check against the spec's contracts, on real nats-py Msg objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.common.botspec import load_runtime_config
from services.common.cloudevents import new_event, to_binary, to_structured
from services.common.codes import RegistrarCode as C
from services.common.contract_ref import ContractRef
from services.common.contracts import ContractError
from services.registrar.service import Registrar, RegistrarOptions

from .test_build import _msg

TYPE = "qiki.sensor.v1.IoStatus"


def _status(**over: Any) -> dict[str, Any]:
    return {"sensor_id": "s1", "status": "ok", "timestamp": "2026-01-01T00:00:00Z",
            "frames_sent": 1, **over}


def _registrar(tmp_path: Path, contracts: bool | None = None, config: Any = None) -> Registrar:
    return Registrar(RegistrarOptions(db_path=tmp_path / "r.db",
                                      config=config or load_runtime_config(),
                                      contracts=contracts))


def test_every_declared_type_is_checked_and_the_reason_names_what_broke(
        tmp_path: Path) -> None:
    reg = _registrar(tmp_path)
    assert TYPE in reg.contracts and "qiki.sensor.v1.io_ok" not in reg.contracts
    good = new_event(TYPE, "urn:x", _status())
    bad = new_event(TYPE, "urn:x", _status(status="melted", frames_sent=-1))
    free = new_event("qiki.sensor.v1.io_ok", "urn:x", {"any": "thing"})
    structured_bad = new_event(TYPE, "urn:x", _status(sensor_id=""))
    rows, rejects = reg._build([_msg(*to_binary(good), 1), _msg(*to_binary(bad), 2),
                                _msg(*to_binary(free), 3), _msg(*to_structured(structured_bad), 4)])
    assert [r.code for r in rejects] == [C.REJECTED_BAD_DATA] * 2
    reason = rejects[0].reason
    assert reason.startswith(f"bad-data: data breaks the contract of {TYPE}: ")
    assert "/status: [enum]" in reason and '"melted"' in reason
    assert "/frames_sent: [minimum]" in reason and "(value -1)" in reason
    assert "/sensor_id: [minLength]" in rejects[1].reason
    assert {r[2]: r[0] for r in rows if r[0] < 900} == {good.id: C.SENSOR_IO_OK,
                                                      free.id: C.SENSOR_IO_OK}


@pytest.mark.parametrize(("payload", "keyword"), [
    (b"{not json", "json"),
    (b"", "json"),
    (b'{"sensor_id": "s", "status": "ok", "timestamp": "2026-01-01T00:00:00Z", '
     b'"frames_sent": NaN}', "json"),
    # orjson refuses integers over 64 bits; the contract's own parser gives the verdict.
    (b'{"sensor_id": "s", "status": "ok", "timestamp": "2026-01-01T00:00:00Z", '
     b'"frames_sent": 123456789012345678901234567890}', None),
    (b'{"sensor_id": "s", "status": "ok", "timestamp": "yesterday", "frames_sent": 1}',
     "format"),
])
def test_raw_payloads_of_a_contracted_type(tmp_path: Path, payload: bytes,
                                           keyword: str | None) -> None:
    reg = _registrar(tmp_path)
    headers, _ = to_binary(new_event(TYPE, "urn:x", _status()))
    rows, rejects = reg._build([_msg(headers, payload, 1)])
    if keyword is None:
        assert rejects == [] and rows[0][0] == C.SENSOR_IO_OK
    else:
        assert [r.code for r in rejects] == [C.REJECTED_BAD_DATA]
        assert f"[{keyword}]" in rejects[0].reason


def test_switched_off_by_option_or_spec_key(tmp_path: Path) -> None:
    bad = new_event(TYPE, "urn:x", _status(frames_sent=-1))
    assert _registrar(tmp_path, contracts=False).contracts == {}
    cfg = load_runtime_config()
    reg_cfg = cfg.registrar.model_copy(update={"validate_data": False})
    off = cfg.model_copy(update={"services": {**cfg.services, "registrar": reg_cfg}})
    for reg in (_registrar(tmp_path, contracts=False), _registrar(tmp_path, config=off)):
        rows, rejects = reg._build([_msg(*to_binary(bad), 1)])
        assert rejects == [] and rows[0][0] == C.SENSOR_IO_OK
    # The option wins over the spec key.
    assert TYPE in _registrar(tmp_path, contracts=True, config=off).contracts


def test_spec_key_is_read_from_the_runtime_section(tmp_path: Path) -> None:
    from services.common.botspec import default_botspec_path, generate, load_botspec

    spec = load_botspec(default_botspec_path())
    assert generate(spec).registrar.validate_data is True
    rt = spec.runtime.model_copy(update={"registrar": spec.runtime.registrar.model_copy(
        update={"validate_data": False})})
    assert generate(spec.model_copy(update={"runtime": rt})).registrar.validate_data is False


def test_a_contract_that_does_not_compile_fails_at_construction(tmp_path: Path) -> None:
    cfg = load_runtime_config()
    broken = cfg.model_copy(update={"contracts": {
        **cfg.contracts, TYPE: ContractRef("json_schema", str(tmp_path / "missing.json"))}})
    with pytest.raises(ContractError, match=r"missing\.json"):
        _registrar(tmp_path, config=broken)
