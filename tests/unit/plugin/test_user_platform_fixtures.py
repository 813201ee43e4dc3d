"""The plugin's fixtures serve a user's platform (their spec, their services) and work in
async tests, driven through pytester the way a user's project would use them (real NATS)."""

from __future__ import annotations

from pathlib import Path

import pytest

ASYNC_INI = "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"

#: The greenhouse user project of the events e2e (tests/e2e/events_data): its spec and its
#: service written with plain nats-py (raises one alarm when it starts). One copy of each,
#: shared by the e2e and these plugin tests.
GREENHOUSE = Path(__file__).resolve().parents[2] / "e2e" / "events_data"
GREENHOUSE_SPEC = (GREENHOUSE / "specs" / "greenhouse.yaml").read_text()
GREENHOUSE_SERVICE = (GREENHOUSE / "greenhouse.py").read_text()

# Publishes one custom event; the events check expects it (min is filled in per test).
EVENT_SCENARIO = """\
name: async-{name}
topology:
  services:
    {{registrar: {{enabled: false}}, lagmon: {{enabled: false}}, radar_sim: {{enabled: false}}}}
method:
  - publish: {{name: ping, subject: qiki.events.v1.sensor, type: acme.test.v1.Ping,
              source: "urn:test", data: {{n: 7}}}}
checks:
  - events: {{type: acme.test.v1.Ping, where: {{n: 7}}, min: {min}, after: ping, within_s: 5}}
drain_timeout_s: 0
"""


def test_scenario_runner_in_async_tests(pytester: pytest.Pytester) -> None:
    """``await scenario_runner.arun(...)`` and the plain call both work inside a running loop
    (the call used to raise "asyncio.run() cannot be called from a running event loop"); the
    events check can fail there too."""
    pytester.makeini(ASYNC_INI)
    pytester.makepyfile(
        test_async=f"""
        PASS = {EVENT_SCENARIO.format(name="pass", min=1)!r}
        FAIL = {EVENT_SCENARIO.format(name="fail", min=2)!r}

        async def test_awaitable(scenario_runner):
            j = await scenario_runner.arun(PASS)
            assert j.verdict == "passed", [c.summary() for c in j.checks]
            assert j.checks[0].observed["matched"] == 1

        async def test_plain_call_inside_a_running_loop(scenario_runner):
            j = scenario_runner(PASS)
            assert j.verdict == "passed", (j.error, [c.summary() for c in j.checks])

        async def test_failing_twin(scenario_runner):
            j = await scenario_runner.arun(FAIL)
            assert j.verdict == "failed" and j.exit_code == 1
            assert "expected at least 2" in j.checks[0].details[0]

        def test_sync_test_still_works(scenario_runner):
            assert scenario_runner(PASS).verdict == "passed"
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_factory_brings_up_a_user_platform_on_its_own_spec(pytester: pytest.Pytester) -> None:
    """Their spec's layout, their service (started, ready on its log line), the tap on
    their subjects; nothing of QIKI's runs unless asked."""
    pytester.makeini(ASYNC_INI)
    (pytester.path / "specs").mkdir()
    (pytester.path / "specs" / "greenhouse.yaml").write_text(GREENHOUSE_SPEC)
    (pytester.path / "gh.py").write_text(GREENHOUSE_SERVICE)
    pytester.makepyfile(
        test_factory="""
        import asyncio, sys

        import pytest

        from harness.checks.events import check_events
        from harness.errors import ConfigError

        GH = {"command": [sys.executable, "gh.py"], "env": {"GH_NATS_URL": "{nats_url}"},
              "ready": {"log": "listening on"}}

        async def test_user_platform(qiki_platform_factory):
            async with qiki_platform_factory(spec="specs/greenhouse.yaml",
                                             services={"greenhouse": GH}) as p:
                assert sorted(p.services) == ["greenhouse"]
                info = await p.js.stream_info("ACME_CLIMATE")
                assert info.config.subjects == ["acme.climate.v1.>"]
                await p.js.consumer_info("ACME_CLIMATE", "climate-reader")
                for _ in range(100):
                    if p.tap.messages:
                        break
                    await asyncio.sleep(0.05)
                r = check_events(p.tap.messages, subject="acme.climate.v1.>",
                                 type="acme.climate.v1.Alarm", where={"severity": "high"})
                assert r.passed, r.details
                log = p.run_dir / "logs" / "greenhouse.log"
            assert "listening on" in log.read_text()

        async def test_on_the_shared_server(qiki_platform_factory, nats_server, nats_client):
            async with qiki_platform_factory(spec="specs/greenhouse.yaml", services={},
                                             broker=nats_server) as p:
                assert p.services == {} and p.broker is nats_server
                js = nats_client.jetstream()
                ack = await js.publish("acme.climate.v1.readings", b"{}")
                assert ack.stream == "ACME_CLIMATE"
            # a broker given to the factory outlives it
            assert (await js.publish("acme.climate.v1.readings", b"{}")).seq == 2

        async def test_bad_services_are_config_errors(qiki_platform_factory):
            with pytest.raises(ConfigError, match=r"topology.services.greenhouse"):
                qiki_platform_factory(services={"greenhouse": {"comand": ["x"]}})
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_jetstream_follows_the_spec_of_the_marker_or_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini(ASYNC_INI + "qiki_spec = specs/greenhouse.yaml\n")
    (pytester.path / "specs").mkdir()
    (pytester.path / "specs" / "greenhouse.yaml").write_text(GREENHOUSE_SPEC)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "other.yaml").write_text(
        GREENHOUSE_SPEC.replace("ACME_CLIMATE", "OTHER_CLIMATE"))
    (pytester.path / "tests" / "test_js.py").write_text(
        """
import pytest

async def test_ini_spec(jetstream, qiki_spec):
    assert qiki_spec.name == "greenhouse.yaml"
    ack = await jetstream.publish("acme.climate.v1.readings", b"{}")
    assert ack.stream == "ACME_CLIMATE"
    names = [s.config.name for s in await jetstream.streams_info()]
    assert "QIKI_EVENTS_V1" not in names

@pytest.mark.qiki_spec("other.yaml")
async def test_marker_spec(jetstream):
    ack = await jetstream.publish("acme.climate.v1.readings", b"{}")
    assert ack.stream == "OTHER_CLIMATE"

@pytest.mark.qiki_spec("missing.yaml")
async def test_missing_spec(jetstream):
    pass
"""
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*the qiki_spec marker names *missing.yaml, which is not a file*"])
