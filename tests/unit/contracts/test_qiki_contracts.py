"""The shipped QIKI contracts stay in sync with the pydantic models the services build data
with: the files are what the models generate, real samples pass both, broken ones fail both."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.contracts import ContractRef, ContractRegistry
from harness.contracts.qiki import (
    QIKI_CONTRACTS_DIR,
    main,
    qiki_contract_refs,
    qiki_contracts,
    render,
)
from services.lagmon.events import ALL_TYPES as LAGMON_TYPES
from services.lagmon.thresholds import LagReading, Transition
from services.radar_sim.events import ALL_TYPES as RADAR_TYPES
from services.radar_sim.simulation import Scene, split_by_band
from services.registrar.codemap import CodeMapper

LIFECYCLE_TYPES = CodeMapper().lifecycle_types()
FRAME = "qiki.radar.v1.Frame"


@pytest.fixture(scope="module")
def shipped() -> ContractRegistry:
    """The JSON Schema files as shipped."""
    return ContractRegistry.from_refs(qiki_contract_refs())


@pytest.fixture(scope="module")
def models() -> ContractRegistry:
    """The same types validated by the pydantic models directly."""
    return ContractRegistry.from_refs({
        t: ContractRef("pydantic", c.model) for c in qiki_contracts() for t in c.types
    })


def test_every_type_the_services_publish_has_a_contract() -> None:
    published = {*RADAR_TYPES, *LAGMON_TYPES, *LIFECYCLE_TYPES.values()}
    assert published <= set(qiki_contract_refs()), published - set(qiki_contract_refs())


@pytest.mark.parametrize("contract", qiki_contracts(), ids=lambda c: c.path.name)
def test_shipped_file_is_what_its_model_generates(contract: Any) -> None:
    assert contract.path.read_text(encoding="utf-8") == render(contract), (
        f"{contract.path.name} drifted from {contract.model}: run "
        "python -m harness.contracts.qiki --write and commit the result"
    )


def test_check_mode_catches_a_drift_and_write_repairs_it(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "contracts"
    shutil.copytree(QIKI_CONTRACTS_DIR, work)
    assert main(["--check", "--dir", str(work)]) == 0
    frame = work / "radar-frame.schema.json"
    schema = json.loads(frame.read_text())
    schema["properties"]["frame_id"]["minimum"] = 1  # a hand edit the model does not say
    frame.write_text(json.dumps(schema, indent=2) + "\n")
    assert main(["--check", "--dir", str(work)]) == 1
    assert "out of date: " in capsys.readouterr().out
    assert main(["--write", "--dir", str(work)]) == 0
    assert main(["--check", "--dir", str(work)]) == 0


def _samples() -> list[tuple[str, Any]]:
    """Data as the services build it (their own code paths, not hand-written copies)."""
    scene = Scene()
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    out: list[tuple[str, Any]] = []
    for _ in range(20):
        frame = scene.next_frame(0.1, now=now)
        out.append((FRAME, frame))
        for band, part in split_by_band(frame).items():
            out.append((f"qiki.radar.v1.Frame{band}", part))
    out.append(("qiki.sensor.v1.IoStatus", scene.sensor_status(now=now)))
    out.append(("qiki.power.v1.EnergyStatus", scene.energy_status(1.0, now=now)))
    reading = LagReading("QIKI_EVENTS_V1", "registrar-events", 1500, 1400, 100, 3)
    for kind in LAGMON_TYPES:
        out.append((kind, Transition(kind, reading, 1000).data()))  # type: ignore[arg-type]
    return out


def _json(value: Any) -> bytes:
    if hasattr(value, "model_dump_json"):
        return value.model_dump_json().encode()
    return json.dumps(value).encode()


@pytest.mark.parametrize(("type_", "sample"), _samples(), ids=lambda v: str(v)[:30])
def test_real_samples_pass_the_files_and_the_models(
    shipped: ContractRegistry, models: ContractRegistry, type_: str, sample: Any
) -> None:
    raw = _json(sample)
    assert shipped.validate_json(type_, raw) == []
    assert models.validate_json(type_, raw) == []


def _frame() -> dict[str, Any]:
    scene = Scene()
    while True:
        frame = json.loads(scene.next_frame(0.1).model_dump_json())
        if frame["detections"]:
            return frame


def _set(path: list[Any], value: Any) -> Any:
    def mutate(d: dict[str, Any]) -> dict[str, Any]:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return d
    return mutate


def _drop(key: str) -> Any:
    def mutate(d: dict[str, Any]) -> dict[str, Any]:
        del d[key]
        return d
    return mutate


# (mutation of a valid frame, JSON pointer, keyword): both forms must reject it, there.
BROKEN = [
    (_set(["frame_id"], -1), "/frame_id", "minimum"),
    (_set(["frame_id"], "5"), "/frame_id", "type"),
    (_set(["sensor_id"], ""), "/sensor_id", "minLength"),
    (_set(["sensor_id"], "s" * 129), "/sensor_id", "maxLength"),
    (_set(["timestamp"], "2026-11-27T12:00:00"), "/timestamp", "format"),
    (_set(["detections", 0, "bearing_deg"], 360.0), "/detections/0/bearing_deg",
     "exclusiveMaximum"),
    (_set(["detections", 0, "elev_deg"], -91), "/detections/0/elev_deg", "minimum"),
    (_set(["detections", 0, "range_band"], "MR"), "/detections/0/range_band", "enum"),
    (_set(["extra"], 1), "", "additionalProperties"),
    (_drop("sensor_id"), "", "required"),
]


@pytest.mark.parametrize(("mutate", "pointer", "keyword"), BROKEN,
                         ids=[f"{p or '/'}-{k}" for _, p, k in BROKEN])
def test_broken_frames_fail_the_files_and_the_models_alike(
    shipped: ContractRegistry, models: ContractRegistry, mutate: Any, pointer: str, keyword: str
) -> None:
    raw = json.dumps(mutate(_frame())).encode()
    for reg in (shipped, models):
        found = reg.validate_json(FRAME, raw)
        assert [(v.pointer, v.keyword) for v in found] == [(pointer, keyword)], found
