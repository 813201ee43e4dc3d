"""Data contracts end to end: the CLI runs a scenario whose contract check validates every
tapped message's data against the QIKI contracts; data that breaks one fails the run with the
JSON pointer in the journal, and the same scenario with valid data passes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

Qiki = Callable[..., subprocess.CompletedProcess[str]]

# The load step sends qiki.sensor.v1.IoStatus events padded in `detail`; the contract allows
# 512 characters there, so message_bytes 2000 is data that breaks it (a real producer bug:
# a field longer than the contract says), and 256 is data that keeps it.
SCENARIO = """\
name: contract-data-{name}
topology:
  broker: {{backend: process, nodes: 1}}
  services:
    registrar: {{}}
    lagmon: {{enabled: false}}
    radar_sim: {{rate_hz: 20}}
method:
  - load: {{at_s: 0, duration_s: 1, rate_per_s: 50, message_bytes: {size}}}
checks:
  - contract: {{min_messages: 20, require_declared: true}}
drain_timeout_s: 15
"""


def run(qiki: Qiki, tmp_path: Path, name: str, size: int) -> tuple[int, dict[str, object], str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SCENARIO.format(name=name, size=size))
    reports = tmp_path / f"reports-{name}"
    res = qiki("run", str(path), "--backend", "process", "--report-dir", str(reports))
    [run_dir] = [p for p in reports.iterdir() if p.is_dir()]
    journal = json.loads((run_dir / "journal.json").read_text())
    [check] = [c for c in journal["checks"] if c["kind"] == "contract"]
    return res.returncode, check, res.stdout + res.stderr


def test_valid_data_passes_with_every_seen_type_declared(qiki: Qiki, tmp_path: Path) -> None:
    code, check, out = run(qiki, tmp_path, "valid", 256)
    assert code == 0, (out, check)
    observed = check["observed"]
    assert observed["data_checked"] == observed["messages"] >= 20
    assert observed["data_invalid"] == 0 and "undeclared" not in observed
    # the registrar's lifecycle and the simulator's frames were among them
    assert "qiki.registrar.v1.boot_ok" not in observed["unseen"]
    assert "qiki.radar.v1.Frame" not in observed["unseen"]


def test_data_violation_fails_the_run_with_the_pointer_in_the_journal(
    qiki: Qiki, tmp_path: Path
) -> None:
    code, check, out = run(qiki, tmp_path, "broken", 2000)
    assert code == 1, (out, check)
    assert not check["passed"]
    assert check["observed"]["by_keyword"] == {"maxLength": check["observed"]["data_invalid"]}
    assert check["observed"]["data_invalid"] >= 40  # the load's events, not the platform's
    detail = check["details"][0]
    assert detail.startswith(
        "qiki.events.v1.sensor: type qiki.sensor.v1.IoStatus: data /detail: [maxLength]"
    ), detail
    assert "longer than 512 characters" in detail and '(value "xxxx' in detail
