"""User services in the scenario model, the reference catalog and placeholders (no NATS)."""

from __future__ import annotations

import pytest

from harness.scenario.loader import ScenarioError, parse_scenario
from harness.scenario.model import ServiceTopology, Topology
from harness.services.catalog import REFERENCE_SERVICES, ArgContext, reference_service
from harness.services.placeholders import PLACEHOLDERS, expand, placeholder_problems

USER = """\
name: u
topology:
  services:
    registrar: {batch: 500}
    greenhouse:
      command: [python, -m, greenhouse, "--state={run_dir}/gh"]
      env: {GH_NATS_URL: "{nats_url}", GH_PORT: 8080, GH_HTTP: "{http_port}"}
      ready: {http: /healthz, port_env: GH_HTTP}
      proxied: true
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text)
    return err.value.problems


def test_user_service_next_to_a_reference_one() -> None:
    s = parse_scenario(USER)
    gh = s.topology.services["greenhouse"]
    assert gh.command == ["python", "-m", "greenhouse", "--state={run_dir}/gh"]
    assert gh.env["GH_PORT"] == "8080"  # YAML ints become environment strings
    assert gh.ready is not None and gh.ready.env_vars() == ["GH_HTTP"]
    assert not gh.container and gh.ready_timeout_s == 20
    assert s.topology.services["registrar"].batch == 500


def test_default_services_come_from_the_catalog() -> None:
    services = Topology().services
    assert set(services) == set(REFERENCE_SERVICES) == {"registrar", "lagmon", "radar_sim"}
    assert services["radar_sim"].rate_hz == 20


def test_reference_argv_from_their_knobs() -> None:
    ctx = ArgContext(db="/x.db", consumer_streams={"registrar-events": "QIKI_EVENTS_V1"})
    reg, lag, radar = (reference_service(n) for n in ("registrar", "lagmon", "radar_sim"))
    assert reg and lag and radar and reference_service("greenhouse") is None
    assert reg.args(ServiceTopology(batch=7), ctx) == ["--db", "/x.db", "--batch", "7"]
    assert lag.args(ServiceTopology(interval_s=0.5, thresholds={"registrar-events": 9,
                                                                  "other": 3}), ctx) == [
        "--interval-s", "0.5", "--threshold", "QIKI_EVENTS_V1:registrar-events=9",
        "--threshold", "other=3"]
    assert radar.args(ServiceTopology(rate_hz=5), ctx) == ["--rate-hz", "5.0"]
    assert reg.module == "services.registrar"


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("greenhouse: {env: {A: b}}", "needs command (a host process) or build/image"),
        ("greenhouse: {command: [x], rate_hz: 3}", "rate_hz apply to reference services only"),
        ("registrar: {command: [x]}", "registrar is a reference service; command apply to "
         "user services only"),
        ("radar_sim: {batch: 3}", "batch do not apply to radar_sim (its knobs: rate_hz)"),
        ("Green: {command: [x]}", "services.Green: a service name is lower-case"),
        ("gh: {build: ., image: x}", "build and image exclude each other"),
        ("gh: {image: x, proxied: true}", "proxied needs a host process"),
        ("gh: {command: [x], ready: {log: a, after_s: 1}}", "ready is exactly one of"),
        ("gh: {command: [x], ready: {http: /h}}", "http and port_env go together"),
        ("gh: {command: [x], ready: {tcp_env: P}}", "ready reads the port from env P, which "
         "env does not set"),
    ],
)
def test_bad_service_definitions(service: str, expected: str) -> None:
    probs = problems_of(f"name: u\ntopology:\n  services:\n    {service}\n")
    assert any(expected in p for p in probs), probs


def test_unknown_placeholders_name_service_key_and_placeholder() -> None:
    text = USER.replace('"{nats_url}"', '"{nats_uri}"').replace("{run_dir}/gh", "{rundir}")
    probs = problems_of(text)
    assert len(probs) == 1, probs
    p = probs[0]
    assert p.startswith("topology.services.greenhouse (line 6)"), p
    assert "command[3]: unknown placeholder {rundir}" in p
    assert "env.GH_NATS_URL: unknown placeholder {nats_uri}" in p
    assert p.count("placeholders are {nats_url}, {nats_host}") == 1


def test_placeholders() -> None:
    assert placeholder_problems("{run_dir}/x {{literal}}") == []
    assert "not a valid template" in placeholder_problems("{run_dir")[0]
    assert "unknown placeholder {}" in placeholder_problems("{}")[0]
    assert "unknown placeholder {run_dir.x}" in placeholder_problems("{run_dir.x}")[0]
    values = {k: k.upper() for k in PLACEHOLDERS}
    assert expand("{nats_url} {{x}} {service}", values) == "NATS_URL {x} SERVICE"


def test_targets_are_checked_against_the_topology() -> None:
    text = USER + """\
method:
  - fault: {at_s: 0, action: kill, target: "service:greenhouse"}
  - fault: {at_s: 0, action: latency, latency_ms: 5, duration_s: 1, target: "link:greenhouse"}
  - fault: {at_s: 0, action: kill, target: "service:lagmon"}
  - fault: {at_s: 0, action: blackhole, duration_s: 1, target: "link:registrar"}
rollbacks:
  - restart: "service:nope"
"""
    probs = problems_of(text)
    joined = "\n".join(probs)
    assert "method[0]" not in joined and "method[1]" not in joined  # user targets are fine
    assert ("method[2].fault.target: 'service:lagmon': service lagmon is not declared; "
            "services: greenhouse, registrar") in joined
    assert ("method[3].fault.target: 'link:registrar' has no fault proxy (set "
            "topology.services.registrar.proxied: true); links: greenhouse") in joined
    assert "rollbacks[0].restart: 'service:nope'" in joined


def test_disabled_service_is_not_a_target() -> None:
    text = USER.replace("proxied: true", "enabled: false") + (
        'method:\n  - fault: {at_s: 0, action: kill, target: "service:greenhouse"}\n')
    assert any("service greenhouse is disabled (enabled: false); services: registrar" in p
               for p in problems_of(text))


def test_a_host_process_user_service_may_be_proxied_with_services_in_containers() -> None:
    text = USER.replace("topology:\n", "topology:\n  broker: {backend: container}\n"
                        "  services_in: container\n")
    assert parse_scenario(text).topology.services["greenhouse"].proxied
    bad = text.replace("registrar: {batch: 500}", "registrar: {batch: 500, proxied: true}")
    assert any("proxied: true on registrar" in p for p in problems_of(bad))
