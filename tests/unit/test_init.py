"""``qiki-harness init``: what it writes, what it refuses (no NATS needed here; the e2e tier
runs ``pytest -m smoke`` in the written project)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.errors import ConfigError
from harness.init import InitError, init_project, starter_files

EXPECTED = {
    "pytest.ini",
    "specs/platform.yaml",
    "contracts/pong.schema.json",
    "scenarios/smoke.yaml",
    "scenarios/chaos.yaml",
    "pong/__init__.py",
    "pong/__main__.py",
    "tests/test_pong.py",
}


def test_the_starter_has_a_spec_contract_scenario_service_and_pytest_config() -> None:
    files = {str(f.path): f.text for f in starter_files()}
    assert set(files) == EXPECTED
    spec = yaml.safe_load(files["specs/platform.yaml"])
    assert spec["version"] == "2.0" and spec["kind"] == "BotSpec"
    scenario = yaml.safe_load(files["scenarios/smoke.yaml"])
    assert "smoke" in scenario["markers"]
    assert scenario["topology"]["spec"] == "../specs/platform.yaml"
    # the contract the spec names is one of the files written
    contracts = [t["contract"] for c in spec["channels"] for t in c["types"] if "contract" in t]
    assert contracts == ["../contracts/pong.schema.json"]
    compile(files["pong/__main__.py"], "pong/__main__.py", "exec")


def test_init_writes_every_file_and_prints_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new" / "project"
    assert main(["init", str(target)]) == 0
    written = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert written == EXPECTED
    out = capsys.readouterr().out
    assert f"wrote 8 file(s) in {target}" in out
    assert "pytest -m smoke" in out and f"cd {target}" in out


def test_init_refuses_to_overwrite_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "scenarios").mkdir()
    mine = tmp_path / "scenarios" / "smoke.yaml"
    mine.write_text("mine")
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite 1 existing file(s)" in err and str(mine) in err
    assert mine.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["scenarios", "smoke.yaml"]


def test_init_into_a_file_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(InitError, match="is not a directory") as exc:
        init_project(f)
    assert isinstance(exc.value, ConfigError)
