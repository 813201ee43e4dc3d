"""A user's own platform, tested the way its team would: the installed ``qiki-harness`` CLI
and ``pytest`` run from the project's directory, outside this repository's test setup.

- ``examples/greenhouse``: smoke passes, the broken-contract expected failure exits 1 with
  the JSON pointer in the journal, the chaos scenario (kill and link latency on the user
  service) loses nothing, ``pytest -m smoke`` passes there;
- ``qiki-harness init`` in a temp dir, then ``pytest -m smoke`` there passes; init refuses to
  overwrite;
- a project written here from scratch (spec, contract, service, scenario) passes; its
  broken-contract twin fails with the pointer; a service that crashes at start and an
  unknown fault target are set-up errors (exit 2).

A user may run these without activating the environment that has qiki-harness installed
(``.venv/bin/qiki-harness run ...``): ``user_env`` leaves this interpreter's directory OFF
PATH, so a scenario's ``command: [python, ...]`` works only because a bare ``python`` runs
under the harness's own interpreter (``{python}``), not whatever ``python`` PATH finds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GREENHOUSE = REPO / "examples" / "greenhouse"
BIN = Path(sys.executable).parent


def user_env(**extra: str) -> dict[str, str]:
    """An environment NOT activated: its bin is not on PATH (a ``python`` found there would
    lack qiki-harness and the project's packages); no QIKI_ settings of ours leak in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("QIKI_", "PYTEST_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(d for d in env.get("PATH", "").split(os.pathsep)
                                  if d and Path(d).resolve() != BIN.resolve())
    env.update(extra)
    return env


def sh(*argv: str, cwd: Path, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    """Run a console script of the environment (``qiki-harness``, ``pytest``) in ``cwd``."""
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=cwd, env=user_env(),
                          capture_output=True, text=True, timeout=timeout_s)


def journal_of(report_dir: Path) -> tuple[dict[str, Any], Path]:
    """The journal of the one run in ``report_dir``."""
    runs = [p for p in report_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return json.loads((runs[0] / "journal.json").read_text()), runs[0]


def check(journal: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Every check result of that kind."""
    return [c for c in journal["checks"] if c.get("kind", c["name"].split(".")[0]) == kind]


# --------------------------------------------------------------------------- the greenhouse


def test_greenhouse_smoke_runs_from_its_own_directory(tmp_path: Path) -> None:
    res = sh("qiki-harness", "run", "scenarios/smoke.yaml", "--report-dir", str(tmp_path), "-q",
             cwd=GREENHOUSE)
    assert res.returncode == 0, res.stdout + res.stderr
    journal, run = journal_of(tmp_path)
    assert journal["verdict"] == "passed"
    log = (run / "logs" / "greenhouse.log").read_text()
    assert "listening on acme.climate.v1.commands.>" in log
    # `command: [python, -m, greenhouse]` ran under the harness's interpreter, and says so.
    (started,) = [e for e in journal["events"]
                  if e["kind"] == "service.started" and e["service"] == "greenhouse"]
    assert started["command"] == [sys.executable, "-m", "greenhouse"]
    (contract,) = check(journal, "contract")
    assert contract["passed"], contract
    assert len(check(journal, "events")) == 3


def test_greenhouse_broken_contract_fails_with_the_json_pointer(tmp_path: Path) -> None:
    res = sh("qiki-harness", "run", "scenarios/expected-failures/broken-contract.yaml",
             "--report-dir", str(tmp_path), "-q", cwd=GREENHOUSE)
    assert res.returncode == 1, res.stdout + res.stderr
    journal, run = journal_of(tmp_path)
    assert journal["verdict"] == "failed"
    (contract,) = check(journal, "contract")
    assert not contract["passed"]
    text = (run / "journal.json").read_text()
    assert "/temperature_c" in text and "acme.climate.v1.Reading" in text


def test_validate_loads_the_spec_and_contracts_a_scenario_runs_with(tmp_path: Path) -> None:
    """``validate`` finds before any run what ``run`` would refuse at start-up: a contract
    file that does not compile (it said ok), and a broken ``$QIKI_BOTSPEC`` a scenario
    without ``topology.spec`` falls back to."""
    project = tmp_path / "greenhouse"
    shutil.copytree(GREENHOUSE, project)
    ok = sh("qiki-harness", "validate", "scenarios/smoke.yaml", cwd=project)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"spec {project / 'specs' / 'greenhouse.yaml'}" in ok.stdout
    (project / "contracts" / "set-target.schema.json").write_text('{"type": "objekt"}')
    bad = sh("qiki-harness", "validate", "scenarios/smoke.yaml", cwd=project)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "set-target.schema.json: not a valid JSON Schema" in bad.stderr
    assert "acme.climate.v1.SetTarget" in bad.stderr and "ok " not in bad.stdout

    broken_spec = tmp_path / "broken.yaml"
    broken_spec.write_text("version: 1\nstreams: [oops\n")
    shipped_smoke = REPO / "scenarios" / "smoke.yaml"
    res = subprocess.run([str(BIN / "qiki-harness"), "validate", str(shipped_smoke)],
                         cwd=tmp_path, env=user_env(QIKI_BOTSPEC=str(broken_spec)),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"{broken_spec}:3" in res.stderr and "YAML syntax error" in res.stderr


def test_greenhouse_chaos_kill_and_latency_lose_nothing(tmp_path: Path) -> None:
    res = sh("qiki-harness", "run", "scenarios/chaos.yaml", "--report-dir", str(tmp_path), "-q",
             cwd=GREENHOUSE)
    assert res.returncode == 0, res.stdout + res.stderr
    journal, run = journal_of(tmp_path)
    (delivery,) = check(journal, "delivery")
    acct = delivery["observed"]
    assert acct["acked"] >= 500 and acct["lost"] == 0, acct
    targets = [f["target"] for f in journal["faults"]]
    assert targets == ["service:greenhouse", "link:greenhouse"]
    log = (run / "logs" / "greenhouse.log").read_text()
    assert log.count("listening on") >= 2, "the kill restarted the service"
    assert "restarted-after-crash" in (run / "journal.json").read_text() or \
        "the previous run ended without a clean shutdown" in log


@pytest.mark.docker
def test_greenhouse_in_a_container_killed_and_restarted_loses_nothing(tmp_path: Path) -> None:
    """``build: ../greenhouse``: its Dockerfile built offline on the harness's Python base."""
    res = sh("qiki-harness", "run", "scenarios/chaos-container.yaml", "--report-dir",
             str(tmp_path), "-q", cwd=GREENHOUSE, timeout_s=600)
    assert res.returncode == 0, res.stdout + res.stderr
    journal, run = journal_of(tmp_path)
    assert journal["backend"] == "container"
    (delivery,) = check(journal, "delivery")
    assert delivery["observed"]["acked"] >= 500 and delivery["observed"]["lost"] == 0
    summary = next(e for e in journal["events"] if e["kind"] == "evidence.summary")
    assert summary["service_restarts"]["greenhouse"] == 2  # the kill's heal, then the restart
    assert (run / "logs" / "greenhouse.log").read_text().count("listening on") == 3


def test_greenhouse_pytest_smoke_passes_in_its_directory(tmp_path: Path) -> None:
    # "--opt=value": a separate path argument would make pytest take it for the rootdir
    res = sh("pytest", "-m", "smoke", "-p", "no:cacheprovider", f"--qiki-report-dir={tmp_path}",
             cwd=GREENHOUSE)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    # the scenario item and the service's own smoke test both ran
    assert "2 passed" in res.stdout, res.stdout[-2000:]


# --------------------------------------------------------------------------- init


def test_init_then_pytest_smoke_and_chaos_pass_outside_the_repo(tmp_path: Path) -> None:
    project = tmp_path / "my-platform"
    res = sh("qiki-harness", "init", str(project), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "pytest -m smoke" in res.stdout
    res = sh("pytest", "-m", "smoke", "-p", "no:cacheprovider", cwd=project)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "2 passed" in res.stdout, res.stdout[-2000:]
    journal, _ = journal_of(project / "reports" / "pytest")
    assert journal["verdict"] == "passed"
    # and its chaos scenario: pong killed and slowed under load, every ping answered
    res = sh("qiki-harness", "run", "scenarios/chaos.yaml", "--report-dir",
             str(tmp_path / "chaos"), "-q", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    journal, _ = journal_of(tmp_path / "chaos")
    (delivery,) = check(journal, "delivery")
    assert delivery["observed"]["acked"] >= 150 and delivery["observed"]["lost"] == 0


def test_init_refuses_to_overwrite_existing_files(tmp_path: Path) -> None:
    assert sh("qiki-harness", "init", cwd=tmp_path).returncode == 0
    (tmp_path / "specs" / "platform.yaml").write_text("# mine\n")
    res = sh("qiki-harness", "init", cwd=tmp_path)
    assert res.returncode == 2
    assert "refusing to overwrite 8 existing file(s)" in res.stderr
    assert "specs/platform.yaml" in res.stderr
    assert (tmp_path / "specs" / "platform.yaml").read_text() == "# mine\n"


def test_an_installed_wheel_carries_the_init_templates(tmp_path: Path) -> None:
    """``init`` and the run report read package data: a wheel built from this tree must hold
    every template (pyproject's package-data), or an installed qiki-harness could not write
    a project or a report."""
    # From a clean copy: an editable install's egg-info (SOURCES.txt) or a stale build/
    # would put the files in the wheel whatever pyproject says.
    tree = tmp_path / "src"
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "reports", "__pycache__", ".*_cache",
        "examples"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                          str(tmp_path), str(tree)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = tmp_path.glob("qiki_harness-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        packaged = {n for n in zf.namelist() if n.startswith("harness/templates/init/")}
    source = {str(p.relative_to(REPO)) for p in (REPO / "harness" / "templates" / "init").rglob(
        "*.tmpl")}
    assert len(source) == 8 and packaged == source
    # the run report's Jinja2 templates too (issue 12): without them no run writes a report
    with zipfile.ZipFile(wheel) as zf:
        report = {n for n in zf.namelist() if n.startswith("harness/report/templates/")}
    shipped = {str(p.relative_to(REPO))
               for p in (REPO / "harness" / "report" / "templates").glob("*.j2")}
    assert shipped and report == shipped


# --------------------------------------------------------------------------- from scratch

SPEC = """\
version: "2.0"
kind: BotSpec
metadata: {id: SHOP-01, name: A shop, description: "orders in, acceptances out"}
streams:
  - {name: SHOP_ORDERS_V1, subjects: ["shop.v1.orders.>"], storage: file, replicas: 1,
     retention: limits, duplicate_window_s: 120}
  - {name: SHOP_RECEIPTS_V1, subjects: [shop.v1.receipts], storage: file, replicas: 1,
     retention: limits, duplicate_window_s: 120}
consumers:
  - {durable: shop-orders, stream: SHOP_ORDERS_V1, filter_subjects: [], ack_policy: explicit,
     ack_wait_s: 2, max_deliver: 5, max_ack_pending: 1000}
channels:
  - name: Orders
    subjects: [shop.v1.orders.placed]
    types: [{type: shop.v1.OrderPlaced}]
  - name: Receipts
    subjects: [shop.v1.receipts]
    types:
      - {type: shop.v1.OrderAccepted, contract: ../contracts/order-accepted.schema.json}
"""

CONTRACT = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["order_id", "total"],
    "properties": {"order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0}},
}

# A user's service in plain nats-py: answers each order with an acceptance of the same id.
# SHOP_BROKEN=1 is the regression the contract check must catch (the total as a string).
SERVICE = '''\
import asyncio, json, os, sys

import nats
from nats.js.api import ConsumerConfig


async def main():
    if os.environ.get("SHOP_CRASH") == "1":
        print("shop: cannot open the price list /nonexistent/prices.csv", flush=True)
        sys.exit(3)
    nc = await nats.connect(os.environ["SHOP_NATS_URL"], max_reconnect_attempts=-1)
    js = nc.jetstream()
    sub = await js.pull_subscribe("shop.v1.orders.>", durable="shop-orders",
                                  stream="SHOP_ORDERS_V1", config=ConsumerConfig(ack_wait=2))
    print("shop: listening on shop.v1.orders.>", flush=True)
    total = "12.50" if os.environ.get("SHOP_BROKEN") == "1" else 12.5
    while True:
        try:
            msgs = await sub.fetch(100, timeout=1)
        except nats.errors.TimeoutError:
            continue
        for msg in msgs:
            ce_id = msg.headers["ce-id"]
            headers = {"ce-specversion": "1.0", "ce-id": ce_id, "ce-source": "urn:shop",
                       "ce-type": "shop.v1.OrderAccepted", "Nats-Msg-Id": ce_id,
                       "ce-datacontenttype": "application/json"}
            data = json.dumps({"order_id": ce_id, "total": total}).encode()
            await js.publish("shop.v1.receipts", data, headers=headers)
            await msg.ack()


asyncio.run(main())
'''

SCENARIO = """\
name: shop-smoke
markers: [smoke]
topology:
  spec: ../specs/shop.yaml
  services:
    shop:
      command: [python, shop.py]
      cwd: ..
      env: {{SHOP_NATS_URL: "{{nats_url}}"{env}}}
      ready: {{log: "listening on"}}
method:
  - load: {{at_s: 0, duration_s: 2, rate_per_s: 100, subject: shop.v1.orders.placed}}
  # what the killed instance held comes back after the ack wait: wait for the durable
  - wait: {{at_s: 2, until_lag_below: 1, timeout_s: 20}}
  - fault: {{at_s: 0.5, action: kill, target: "{target}", duration_s: 0.5}}
checks:
  - delivery: {{subject: shop.v1.receipts, max_lost: 0, max_duplicated: 100}}
  - contract: {{min_messages: 50}}
"""


def shop(tmp_path: Path, *, env: str = "", target: str = "service:shop") -> Path:
    """The shop project in ``tmp_path/shop``; returns its scenario file."""
    root = tmp_path / "shop"
    for d in ("specs", "contracts", "scenarios"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "specs" / "shop.yaml").write_text(SPEC)
    (root / "contracts" / "order-accepted.schema.json").write_text(json.dumps(CONTRACT))
    (root / "shop.py").write_text(SERVICE)
    scenario = root / "scenarios" / "smoke.yaml"
    scenario.write_text(SCENARIO.format(env=env, target=target))
    return scenario


def run_shop(tmp_path: Path, **kw: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    scenario = shop(tmp_path, **kw)
    reports = tmp_path / "reports"
    reports.mkdir(exist_ok=True)
    res = sh("qiki-harness", "run", "scenarios/smoke.yaml", "--report-dir", str(reports), "-q",
             cwd=scenario.parents[1])
    return res, reports


def test_a_project_written_from_scratch_passes(tmp_path: Path) -> None:
    res, reports = run_shop(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    journal, _ = journal_of(reports)
    (delivery,) = check(journal, "delivery")
    assert delivery["observed"]["acked"] >= 150 and delivery["observed"]["lost"] == 0


def test_its_broken_contract_twin_fails_with_the_pointer(tmp_path: Path) -> None:
    res, reports = run_shop(tmp_path, env=', SHOP_BROKEN: "1"')
    assert res.returncode == 1, res.stdout + res.stderr
    journal, run = journal_of(reports)
    (contract,) = check(journal, "contract")
    assert not contract["passed"]
    text = (run / "journal.json").read_text()
    assert "/total" in text and "shop.v1.OrderAccepted" in text
    (delivery,) = check(journal, "delivery")
    assert delivery["passed"], "only the contract broke"


def test_a_service_that_crashes_at_start_exits_2_quoting_its_log(tmp_path: Path) -> None:
    res, _ = run_shop(tmp_path, env=', SHOP_CRASH: "1"')
    assert res.returncode == 2, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "cannot open the price list /nonexistent/prices.csv" in out


def test_an_unknown_fault_target_exits_2_naming_the_declared_services(tmp_path: Path) -> None:
    res, reports = run_shop(tmp_path, target="service:shopp")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "shopp" in res.stderr and "shop" in res.stderr.replace("shopp", "")
    assert not any(reports.iterdir()), "rejected before anything started"


def test_the_example_is_not_part_of_the_harness_package() -> None:
    """The greenhouse is a user's project: it never imports the harness or the reference
    services (it must run where only nats-py is installed)."""
    for path in (GREENHOUSE / "greenhouse").glob("*.py"):
        text = path.read_text()
        assert "import harness" not in text and "from harness" not in text, path
        assert "from services" not in text and "import services" not in text, path
    assert shutil.which("python", path=str(BIN)), "the environment has a python"

