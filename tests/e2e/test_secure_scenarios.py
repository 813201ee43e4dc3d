"""Secured brokers end to end (issue 10): the shipped ``secure-*`` scenarios and every auth mode.

Each run must pass with every client authenticated (services, tap, lag sampler, load), keep
its secrets in ``<run_dir>/secrets/`` (0700, files 0600) and write them nowhere else. The
container tests need Docker (``docker`` marker).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.report.journal import Journal

pytestmark = pytest.mark.security

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
Runner = Callable[..., Journal]


def _passed(j: Journal) -> None:
    failed = "; ".join(c.summary() for c in j.failed_checks())
    assert j.verdict == "passed", f"{j.scenario}: {j.verdict}: {j.error or failed}"
    d = j.delivery
    assert d is not None and d.lost == 0 and d.duplicated == 0 and d.acked > 100, d


def _security(j: Journal) -> dict[str, Any]:
    sec = j.broker.get("security")
    assert sec, f"the journal's broker has no security section: {j.broker}"
    return dict(sec)


def _secrets_kept_private(j: Journal) -> None:
    """The run's own scan (which holds every secret value) found none outside ``secrets/``,
    the directory was 0700 with 0600 files, and it is gone once the run ended."""
    secrets_dir = Path(_security(j)["secrets_dir"])
    [scan] = [c for c in j.checks if c.kind == "secret_scan"]
    assert scan.passed, scan.details
    observed = scan.observed
    assert isinstance(observed, dict)
    assert observed["secrets"] >= 1 and observed["files"] > 3, observed
    assert observed["secrets_dir_private"] is True, observed
    assert not secrets_dir.exists(), "the run's credentials outlived it"


def _engines(j: Journal) -> set[str]:
    return {r["engine"] for r in j.load}


def _variant(name: str, old: str, new: str, *, rename: str) -> str:
    text = (SCENARIOS / f"{name}.yaml").read_text()
    assert old in text, f"{name}.yaml changed: update this test's edit"
    return text.replace(f"name: {name}\n", f"name: {rename}\n", 1).replace(old, new, 1)


SMOKE_BROKER = "  broker: {backend: process, nodes: 1, auth: token}\n"
REPO = SCENARIOS.parent

# A user service that connects with whatever QIKI_NATS_* hold (credentials and TLS files) and
# says so: user services get them exactly as the reference services do.
USER_SERVICE = (
    "import asyncio\n"
    "from services.common.settings import NatsSettings, connect\n"
    "async def main():\n"
    "    s = NatsSettings.from_env()\n"
    "    nc = await connect(s)\n"
    "    print('authprobe connected', s.auth_kind, 'tls' if s.tls else 'plain', flush=True)\n"
    "    await asyncio.sleep(3600)\n"
    "asyncio.run(main())\n"
)


def _with_user_service(text: str) -> str:
    import yaml

    data = yaml.safe_load(text)
    data["topology"]["services"]["authprobe"] = {
        "command": ["python", "-c", USER_SERVICE], "env": {"PYTHONPATH": str(REPO)},
        "ready": {"log": "authprobe connected"}, "ready_timeout_s": 30}
    return str(yaml.safe_dump(data))


@pytest.mark.covers_scenario(SCENARIOS / "secure-smoke.yaml")
def test_secure_smoke_token_as_the_qiki_deployment(scenario_journal: Runner) -> None:
    j = scenario_journal(SCENARIOS / "secure-smoke.yaml")
    _passed(j)
    sec = _security(j)
    assert sec["auth"] == "token" and sec["tls"] is False
    assert set(sec["identities"]) >= {"harness", "load", "registrar", "lagmon", "radar_sim"}
    assert _engines(j) == {"wire"}  # the fast injector presents the token itself
    _secrets_kept_private(j)


@pytest.mark.covers_scenario(SCENARIOS / "secure-mtls-chaos.yaml")
def test_secure_mtls_chaos_exact_delivery_through_kill_and_latency(
        scenario_journal: Runner) -> None:
    j = scenario_journal(SCENARIOS / "secure-mtls-chaos.yaml")
    _passed(j)
    sec = _security(j)
    assert sec["tls"] and sec["verify_client"] and sec["auth"] == "user"
    assert [(f.action, f.target) for f in j.faults] == [("kill", "broker"),
                                                         ("latency", "link:registrar")]
    assert all(f.removed_s is not None for f in j.faults)
    # The wire engine speaks TLS (with the client certificate) and survived the kill.
    assert _engines(j) == {"wire"}
    _secrets_kept_private(j)


@pytest.mark.parametrize(("auth", "tls", "engine"), [
    ("user", "{enabled: true}", "wire"),
    # NKeys need a nonce signed: the load falls back to nats-py and the journal says so.
    ("nkey", "{enabled: false}", "nats-py"),
    ("accounts", "{enabled: true, verify_client: true}", "wire"),
])
def test_smoke_under_every_mode(scenario_runner: Runner, tmp_path: Path, auth: str, tls: str,
                                engine: str) -> None:
    text = _variant("secure-smoke", SMOKE_BROKER,
                    f"  broker: {{backend: process, nodes: 1, auth: {auth}, tls: {tls}}}\n",
                    rename=f"secure-smoke-{auth}")
    if auth != "accounts":  # under accounts a service must be declared in the spec
        text = _with_user_service(text)
    j = scenario_runner(text, report_dir=tmp_path)
    _passed(j)
    assert _security(j)["auth"] == auth
    if auth != "accounts":
        log = (Path(_security(j)["secrets_dir"]).parent / "logs" / "authprobe.log").read_text()
        kind = {"user": "user/password", "nkey": "nkey"}[auth]
        assert f"authprobe connected {kind} {'tls' if 'true' in tls else 'plain'}" in log
    assert _engines(j) == {engine}
    if auth == "accounts":
        assert _security(j)["system_account"] == "SYS"
    # every identity had its own credentials (for nkey: its own seed file, 0600: the secret
    # scan checked the modes before the directory was deleted with the run)
    assert set(_security(j)["identities"]) >= {"harness", "load", "registrar"}
    _secrets_kept_private(j)


def test_three_node_tls_cluster(scenario_runner: Runner, tmp_path: Path) -> None:
    text = _variant(
        "secure-smoke", SMOKE_BROKER,
        "  broker: {backend: process, nodes: 3, auth: token, "
        "tls: {enabled: true, verify_client: true}}\n",
        rename="secure-smoke-r3-mtls")
    j = scenario_runner(text, report_dir=tmp_path)
    _passed(j)
    assert len(j.broker["nodes"]) == 3 and _security(j)["verify_client"]
    _secrets_kept_private(j)


@pytest.mark.docker
def test_secure_smoke_on_containers(scenario_runner: Runner, tmp_path: Path) -> None:
    j = scenario_runner(SCENARIOS / "secure-smoke.yaml", backend="container",
                        report_dir=tmp_path)
    _passed(j)
    assert j.backend == "container" and _security(j)["auth"] == "token"
    _secrets_kept_private(j)


@pytest.mark.docker
def test_mtls_everything_in_containers(scenario_runner: Runner, tmp_path: Path) -> None:
    """Broker and services in containers under mTLS + accounts: the services dial the nodes
    by network alias (a DNS SAN of the run's certificate) with their own credentials."""
    text = _variant(
        "secure-smoke", SMOKE_BROKER,
        "  broker: {backend: container, nodes: 1, auth: accounts, "
        "tls: {enabled: true, verify_client: true}}\n  services_in: container\n",
        rename="secure-smoke-in-containers")
    j = scenario_runner(text, backend="container", report_dir=tmp_path)
    _passed(j)
    assert _security(j)["verify_client"]
    _secrets_kept_private(j)


@pytest.mark.docker
def test_three_node_mtls_cluster_on_containers(scenario_runner: Runner, tmp_path: Path) -> None:
    """Routes between containers under TLS: each node verifies its peers' certificates by
    their network aliases (DNS SANs n1..n3 of the run's server certificate)."""
    text = _variant(
        "secure-smoke", SMOKE_BROKER,
        "  broker: {backend: container, nodes: 3, auth: user, "
        "tls: {enabled: true, verify_client: true}}\n",
        rename="secure-smoke-r3-containers")
    j = scenario_runner(text, backend="container", report_dir=tmp_path)
    _passed(j)
    assert len(j.broker["nodes"]) == 3 and _security(j)["verify_client"]
    _secrets_kept_private(j)


def test_partition_through_route_proxies_under_tls(scenario_runner: Runner,
                                                   tmp_path: Path) -> None:
    """The route proxies of a partition are TCP proxies in front of TLS routes: the routes
    verify each other through them (IP SAN 127.0.0.1), break under the fault and re-form."""
    text = _variant("chaos-partition-minority", "  broker: {backend: process, nodes: 3}\n",
                    "  broker: {backend: process, nodes: 3, auth: token, "
                    "tls: {enabled: true, verify_client: true}}\n",
                    rename="chaos-partition-minority-mtls")
    j = scenario_runner(text, report_dir=tmp_path)
    _passed(j)
    assert [f.action for f in j.faults] == ["partition"] and _security(j)["verify_client"]


def test_accounts_with_an_undeclared_service_is_a_setup_error(scenario_runner: Runner,
                                                               tmp_path: Path) -> None:
    text = _with_user_service(_variant(
        "secure-smoke", SMOKE_BROKER, "  broker: {backend: process, nodes: 1, auth: accounts}\n",
        rename="secure-smoke-undeclared"))
    j = scenario_runner(text, report_dir=tmp_path)
    assert j.verdict == "error" and j.exit_code == 2
    assert j.error is not None and "authprobe" in j.error and "Traceback" not in j.error
    # the error names the spec file the components: entry goes into
    assert "(spec: " in j.error and "BotSpec.yaml" in j.error, j.error
