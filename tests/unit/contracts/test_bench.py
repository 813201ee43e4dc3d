"""``python -m bench.contract`` runs end to end on a tiny budget and reports every measure (no
timing is asserted: the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_bench_reports_every_measure() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bench.contract", "--targets", "2", "--frames", "5",
         "--rounds", "1", "--seconds", "0.01"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode in (0, 1), res.stderr
    out = res.stdout.splitlines()
    result = json.loads(out[-1].removeprefix("RESULT "))
    assert result["detections_per_frame"] == 2
    assert set(result["per_s"]) == {
        "jsonschema (baseline)", "fastjsonschema", "jsonschema_rs", "ours: validate(data)",
        "ours: validate_json(payload)", "ours: pydantic form, validate_json"}
    assert all(v > 0 for v in result["per_s"].values())
    assert result["goals"] == {"ours_per_s>=50000": result["ours_per_s"] >= 50_000}
    assert res.returncode == (0 if result["goals"]["ours_per_s>=50000"] else 1)
    assert out[0].startswith("contract bench: qiki.radar.v1.Frame")
