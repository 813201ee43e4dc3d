"""The pytest plugin, driven through pytester: markers, scenario items, docker gate, fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

QUIET_SCENARIO = """\
name: {name}
markers: [{marker}]
topology:
  services:
    registrar: {{enabled: false}}
    lagmon: {{enabled: false}}
    radar_sim: {{enabled: false}}
method:
  - publish: {{at_s: 0, count: {count}}}
checks:
  - lag: {{max: 0}}
drain_timeout_s: 0
"""


@pytest.fixture(autouse=True)
def _quiet_ini(pytester: pytest.Pytester) -> None:
    # The projects pytester makes have no ini of ours; pytest-asyncio warns unless the scope is set.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def write_scenario(pytester: pytest.Pytester, name: str, marker: str, count: int = 1) -> None:
    d = pytester.path / "scenarios"
    d.mkdir(exist_ok=True)
    (d / f"{name}.yaml").write_text(QUIET_SCENARIO.format(name=name, marker=marker, count=count))


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    for marker in ("smoke", "chaos", "load", "contract", "docker"):
        result.stdout.fnmatch_lines([f"@pytest.mark.{marker}:*"])


def test_scenarios_collected_with_their_markers(pytester: pytest.Pytester) -> None:
    write_scenario(pytester, "quick", "smoke")
    write_scenario(pytester, "storm", "chaos")
    (pytester.path / "scenarios" / "specs").mkdir()
    (pytester.path / "scenarios" / "specs" / "BotSpec.yaml").write_text("not: a scenario\n")
    result = pytester.runpytest("--collect-only", "-q", "-m", "smoke")
    result.stdout.fnmatch_lines(["scenarios/quick.yaml::quick", "*1/2 tests collected*"])
    assert "storm" not in result.stdout.str() and "BotSpec" not in result.stdout.str()


def test_broken_scenario_is_a_collection_error_naming_the_line(pytester: pytest.Pytester) -> None:
    d = pytester.path / "scenarios"
    d.mkdir()
    (d / "bad.yaml").write_text("name: bad\nmarkers: [smoke]\nchecks:\n  - lag: {maxx: 1}\n")
    result = pytester.runpytest("-q")
    out = result.stdout.str()
    assert "bad.yaml: invalid scenario" in out
    assert "checks[0].lag.maxx (line 4): unknown key" in out
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_scenario_item_passes_and_fails_on_real_nats(pytester: pytest.Pytester) -> None:
    # No registrar consumes: 0 published keeps lag at 0 (pass); 3 published is lag 3 (fail).
    write_scenario(pytester, "idle", "smoke", count=1)
    (pytester.path / "scenarios" / "idle.yaml").write_text(
        QUIET_SCENARIO.format(name="idle", marker="smoke", count=1).replace(
            "  - publish: {at_s: 0, count: 1}\n", "  - wait: {at_s: 0, duration_s: 0.3}\n"))
    write_scenario(pytester, "backlog", "smoke", count=3)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider",
                                           "--qiki-report-dir", str(pytester.path / "r"))
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*scenario backlog failed (report: *report.html)*",
        "*FAIL lag.max*lag 3 > 0*",
    ])
    assert len(list((pytester.path / "r").glob("*-idle-*/journal.json"))) == 1


def test_docker_gate_skips_or_fails(pytester: pytest.Pytester,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.docker
        def test_needs_docker():
            pass
        """
    )
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("QIKI_REQUIRE_DOCKER", raising=False)
    skipped = pytester.runpytest_subprocess("-q", "-rs")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*no Docker engine*QIKI_REQUIRE_DOCKER=1*"])
    monkeypatch.setenv("QIKI_REQUIRE_DOCKER", "1")
    failed = pytester.runpytest_subprocess("-q")
    failed.assert_outcomes(errors=1)
    failed.stdout.fnmatch_lines(["*QIKI_REQUIRE_DOCKER=1 but no Docker engine answered*"])


def test_fixtures_give_a_provisioned_jetstream(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        """
        from services.common.cloudevents import new_event, publish_event

        async def test_publish(jetstream, contract_checker, nats_server):
            ev = new_event("qiki.sensor.v1.IoStatus", "urn:test", {"status": "ok"})
            ack = await publish_event(jetstream, "qiki.events.v1.sensor", ev)
            assert ack.stream == "QIKI_EVENTS_V1"
            info = await jetstream.consumer_info("QIKI_EVENTS_V1", "registrar-events")
            assert info.num_pending == 1
            assert contract_checker({"ce-id": "x"}, b"") != []
            assert nats_server.version.count(".") == 2
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_report_dir_as_two_arguments_never_moves_the_rootdir_silently(tmp_path: Path) -> None:
    """``--qiki-report-dir PATH``: pytest looks for its rootdir before our plugin loads and
    takes PATH for a test path; outside the project that drops the project's ini file."""
    import subprocess
    import sys

    project, out = tmp_path / "proj", tmp_path / "out"
    (project / "tests").mkdir(parents=True)
    out.mkdir()
    (project / "pyproject.toml").write_text('[tool.pytest.ini_options]\nmarkers = ["mine"]\n')
    (project / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")

    def pytest_in_project(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                               "--co", *args], cwd=project, capture_output=True, text=True,
                              timeout=120)

    split = pytest_in_project("--qiki-report-dir", str(out))
    assert split.returncode == 4, split.stdout + split.stderr
    assert f"Write --qiki-report-dir={out} instead" in split.stderr
    joined = pytest_in_project(f"--qiki-report-dir={out}")
    assert joined.returncode == 0 and f"rootdir: {project}" in joined.stdout, joined.stdout
    # Inside the project the two-argument form finds the same rootdir: nothing to refuse.
    inside = pytest_in_project("--qiki-report-dir", "tests")
    assert inside.returncode == 0, inside.stdout + inside.stderr


COVERING_TEST = """\
import pytest

@pytest.mark.covers_scenario("../scenarios/storm.yaml")
def test_storm_and_more():
    pass

def test_other():
    pass
"""


def test_a_covered_scenario_runs_once_through_its_covering_test(
        pytester: pytest.Pytester) -> None:
    """``covers_scenario``: the scenario item is deselected while its covering test is
    selected (the test takes its markers, so ``-m`` picks the test); alone, the item runs."""
    write_scenario(pytester, "storm", "chaos")
    write_scenario(pytester, "quick", "smoke")
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_cover.py").write_text(COVERING_TEST)

    def collected(*args: str) -> list[str]:
        result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider", *args)
        return [line for line in result.stdout.lines if "::" in line]

    everything = collected("scenarios", "tests")
    assert "scenarios/storm.yaml::storm" not in everything
    assert {"scenarios/quick.yaml::quick", "tests/test_cover.py::test_storm_and_more",
            "tests/test_cover.py::test_other"} <= set(everything)
    # the test carries the scenario's marker: -m chaos still runs the storm, once
    assert collected("-m", "chaos", "scenarios", "tests") == [
        "tests/test_cover.py::test_storm_and_more"]
    # the covering test not selected (-k, or not collected): the item runs
    assert "scenarios/storm.yaml::storm" in collected("-k", "not and_more", "scenarios", "tests")
    assert collected("scenarios") == ["scenarios/quick.yaml::quick",
                                      "scenarios/storm.yaml::storm"]
    # items run another way (--qiki-backend): nothing is deselected
    assert "scenarios/storm.yaml::storm" in collected("--qiki-backend", "process",
                                                      "scenarios", "tests")
