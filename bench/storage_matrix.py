"""Storage faults x fsync policy x replicas, on one or more nats-server binaries:
``python -m bench.storage_matrix [--server 2.12.1=/path/to/nats-server] [--runs N]``.

Runs the shipped storage scenarios of issue 11 §4 (and their ``sync_always`` variants,
written to a temp dir) through the CLI, once per server binary (``NATS_SERVER_BIN``, which
the harness honours), and tabulates what each journal measured: acked, lost (acked but
never stored by the registrar), divergent (sequences at which the replicas, read alone
from their own stores, disagree: the ``replicas`` check), and recovered: the writes of
the load that runs after the fault (``after-fault`` in the scenarios) were all acked (yes),
some (partial) or none (no). This is the README's table; every run's report stays under
``--report-dir``. The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

#: (row label, scenario path relative to scenarios/, fault, fsync, replicas, text edit)
ROWS: list[tuple[str, str, str, str, str, tuple[str, str] | None]] = [
    ("power-loss 1 node", "expected-failures/power-loss-lazy-fsync.yaml", "power-loss",
     "lazy", "R1", None),
    ("power-loss 1 node", "power-loss-sync-always.yaml", "power-loss", "always", "R1", None),
    ("power-loss n2", "power-loss-r3-minority.yaml", "power-loss", "lazy", "R3", None),
    ("power-loss stream leader", "power-loss-r3-stream-leader.yaml", "power-loss", "lazy",
     "R3", None),
    ("power-loss all nodes", "expected-failures/power-loss-r3-all.yaml", "power-loss", "lazy",
     "R3", None),
    ("power-loss all nodes", "expected-failures/power-loss-r3-all.yaml", "power-loss",
     "always", "R3", ("store: fuse}", "store: fuse, sync_always: true}")),
    ("corrupt bitflip n2", "expected-failures/corrupt-r3-bitflip.yaml", "corrupt", "lazy",
     "R3", None),
    ("corrupt bitflip n2", "expected-failures/corrupt-r3-bitflip.yaml", "corrupt", "always",
     "R3", ("nodes: 3}", "nodes: 3, sync_always: true}")),
    ("corrupt truncate n2", "corrupt-r3-truncate.yaml", "corrupt", "lazy", "R3", None),
    ("disk-full 1 node", "expected-failures/disk-full-no-recovery.yaml", "disk-full", "lazy",
     "R1", None),
    ("slow-disk 1 node", "slow-disk-sync-always.yaml", "slow-disk", "always", "R1", None),
]


def _scenario_file(rel: str, edit: tuple[str, str] | None, tmp: Path) -> Path:
    src = SCENARIOS / rel
    if edit is None:
        return src
    text = src.read_text()
    if edit[0] not in text:
        raise SystemExit(f"{src}: cannot make the variant, {edit[0]!r} not found")
    dst = tmp / f"variant-{src.stem}-{abs(hash(edit)) % 10_000}.yaml"
    # keep the spec reference working: the default spec is the packaged QIKI one
    dst.write_text(text.replace(edit[0], edit[1]))
    return dst


def _figures(journal: dict[str, Any]) -> dict[str, Any]:
    d = journal.get("delivery") or {}
    r = journal.get("replicas") or {}
    loads = journal.get("load") or []
    recovered = None
    if len(loads) >= 2:
        acked, tried = loads[-1].get("acked", 0), loads[-1].get("attempted", 0)
        recovered = "yes" if tried and acked == tried else ("no" if not acked else "partial")
    lost_per_node = r.get("lost") or {}
    return {
        "verdict": journal.get("verdict"),
        "version": journal.get("nats_server_version"),
        "acked": d.get("acked"),
        "lost": d.get("lost"),
        "divergent": r.get("divergent") if r else None,
        "lost_on_a_replica": max(lost_per_node.values()) if lost_per_node else None,
        "recovered": recovered,
        "after_fault": (f"{loads[-1].get('acked')}/{loads[-1].get('attempted')}"
                        if len(loads) >= 2 else None),
        "error": journal.get("error"),
    }


def run_one(path: Path, binary: str | None, report_dir: Path) -> dict[str, Any]:
    """One CLI run; the figures from its journal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIKI_")}
    if binary:
        env["NATS_SERVER_BIN"] = binary
    exe = Path(sys.executable).parent / "qiki-harness"
    before = set(report_dir.iterdir()) if report_dir.exists() else set()
    subprocess.run([str(exe), "run", str(path), "--report-dir", str(report_dir), "-q"],
                   env=env, capture_output=True, text=True, timeout=400, check=False)
    new = sorted(set(report_dir.iterdir()) - before)
    if not new:
        return {"verdict": "error", "error": "no run directory"}
    return _figures(json.loads((new[-1] / "journal.json").read_text()))


def main(servers: dict[str, str | None], runs: int, only: str | None,
         report_dir: Path) -> list[dict[str, Any]]:
    """Every row on every server, ``runs`` times each; one dict per run."""
    out = []
    report_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qiki-bench-matrix-") as tmp_:
        tmp = Path(tmp_)
        for label, rel, fault, fsync, reps, edit in ROWS:
            if only and only not in label:
                continue
            path = _scenario_file(rel, edit, tmp)
            for server, binary in servers.items():
                for i in range(runs):
                    fig = run_one(path, binary, report_dir)
                    row = {"row": label, "fault": fault, "fsync": fsync, "replicas": reps,
                           "server": server, "run": i + 1, **fig}
                    print(f"{label:26} {fsync:6} {reps:3} {server:7} "
                          f"acked={fig.get('acked')} lost={fig.get('lost')} "
                          f"divergent={fig.get('divergent')} "
                          f"replica_lost={fig.get('lost_on_a_replica')} "
                          f"recovered={fig.get('recovered')} ({fig.get('after_fault')}) "
                          f"{fig.get('verdict')}",
                          flush=True)
                    out.append(row)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", action="append", default=[],
                    help="LABEL=PATH of a nats-server binary (repeatable); default: the "
                         "bundled one, labelled 'shipped'")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", help="run the rows whose label contains this text")
    ap.add_argument("--report-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "qiki-storage-matrix",
                    help="where every run's report is kept")
    args = ap.parse_args()
    servers: dict[str, str | None] = {}
    for spec in args.server:
        label, _, path = spec.partition("=")
        servers[label] = path or None
    results = main(servers or {"shipped": None}, args.runs, args.only, args.report_dir)
    print("RESULT " + json.dumps({"runs": results}))
