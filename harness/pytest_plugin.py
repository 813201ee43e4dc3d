"""pytest plugin of qiki-harness (entry point ``pytest11``).

- Registers the markers ``smoke``, ``chaos``, ``load``, ``contract`` (and ``docker``).
- Collects scenario files (``*.yaml`` directly inside a directory named ``scenarios``) as
  test items carrying their markers, so ``pytest -m smoke`` runs the smoke scenarios along
  with smoke-marked tests.
- Fixtures for users' own tests: ``nats_server``, ``nats_client``, ``jetstream``,
  ``qiki_platform``, ``scenario_runner``, ``scenario_journal``, ``contract_checker``. Each
  is a thin ``yield`` around an object that also works without pytest.
- allure-pytest: when it is active, a scenario's timeline becomes steps and its journal and
  HTML report are attached.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from harness.broker.process import NatsServer
    from harness.platform import Platform
    from harness.report.journal import Journal
    from harness.scenario.model import Scenario
    from services.common.cloudevents import ContractViolation

MARKERS: dict[str, str] = {
    "smoke": "fast end-to-end checks that the platform keeps its basic promises",
    "chaos": "fault-injection scenarios (broker kills, pauses, proxies, partitions)",
    "load": "load-injection runs with latency and throughput gates",
    "contract": "CloudEvents / registrar contract checks",
    "docker": "needs a Docker engine (skipped without one unless QIKI_REQUIRE_DOCKER=1)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--qiki-report-dir``, ``--qiki-backend`` and the ``qiki_scenarios`` switch."""
    group = parser.getgroup("qiki-harness")
    group.addoption("--qiki-report-dir", default=None,
                    help="where scenario items write their reports (default reports/pytest)")
    group.addoption("--qiki-backend", default=None,
                    choices=["auto", "process", "container", "external"],
                    help="run collected scenarios on this backend instead of their own")
    parser.addini("qiki_scenarios", type="bool", default=True,
                  help="collect scenarios/*.yaml as test items")


def pytest_configure(config: pytest.Config) -> None:
    """Register the harness markers so ``--strict-markers`` runs accept them."""
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


_docker_gate_result: tuple[str, str] | None = None
_docker_session_env_set = False


def pytest_sessionstart(session: pytest.Session) -> None:
    """Label this session's containers (``qiki-harness.session``) for cleanup at the end:
    the testcontainers reaper cannot be pulled offline, so the plugin cleans up by label."""
    global _docker_session_env_set
    from harness.containers.engine import SESSION_ENV, new_run_id

    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    if SESSION_ENV not in os.environ:
        os.environ[SESSION_ENV] = f"pytest-{new_run_id()}"
        _docker_session_env_set = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove whatever containers and networks this session left, if Docker was used."""
    from harness.containers.engine import SESSION_ENV, cleanup, session_selector

    label = os.environ.get(SESSION_ENV)
    if _docker_gate_result is not None and _docker_gate_result[0] == "run" and label:
        cleanup(session_selector(label))
    if _docker_session_env_set:
        os.environ.pop(SESSION_ENV, None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``docker``-marked tests skip with the reason when no engine answers, and fail when
    ``QIKI_REQUIRE_DOCKER=1`` (CI must not pass by skipping the container backend)."""
    global _docker_gate_result
    if item.get_closest_marker("docker") is None:
        return
    if _docker_gate_result is None:
        from harness.containers.testing import docker_gate

        _docker_gate_result = docker_gate()
    action, reason = _docker_gate_result
    if action == "skip":
        pytest.skip(reason)
    if action == "fail":
        pytest.fail(reason, pytrace=False)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Scenario files become :class:`ScenarioFile` collectors."""
    if (
        file_path.suffix in {".yaml", ".yml"}
        and file_path.parent.name == "scenarios"
        and parent.config.getini("qiki_scenarios")
    ):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """One scenario file -> one test item; a broken file is a collection error that says why."""

    def collect(self) -> Iterator[pytest.Item]:
        """Parse the file (a bad one raises with file, key path and line)."""
        from harness.scenario.loader import ScenarioError, load_scenario

        try:
            scenario = load_scenario(self.path)
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        item = ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)
        for marker in scenario.markers:
            item.add_marker(marker)
        backend = self.config.getoption("--qiki-backend") or scenario.topology.broker.backend
        if backend == "container":
            item.add_marker("docker")
        yield item


class ScenarioFailed(Exception):
    """A scenario's verdict was failed or error; the message lists why."""


class ScenarioItem(pytest.Item):
    """Runs one scenario through :class:`harness.scenario.runner.ScenarioRunner`."""

    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.journal: Journal | None = None

    def runtest(self) -> None:
        """Run and raise :class:`ScenarioFailed` unless every check passed."""
        from harness.scenario.runner import RunOptions, run_scenario

        report_dir = Path(
            self.config.getoption("--qiki-report-dir")
            or os.environ.get("QIKI_REPORT_DIR")
            or self.config.rootpath / "reports" / "pytest"
        )
        opts = RunOptions(backend=self.config.getoption("--qiki-backend"),
                          report_dir=report_dir, progress=False)
        j = run_scenario(self.scenario, options=opts, scenario_file=self.path)
        self.journal = j
        run_dir = report_dir / j.run_id
        self.user_properties.append(("report", str(run_dir / "report.html")))
        _allure_attach(j, run_dir)
        if j.verdict != "passed":
            lines = [f"scenario {j.scenario} {j.verdict} (report: {run_dir / 'report.html'})"]
            lines += [f"  {c.summary()}" for c in j.failed_checks()]
            if j.error:
                lines.append(f"  error: {j.error}")
            raise ScenarioFailed("\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """Show the verdict and failed checks, not a traceback into the runner."""
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where the item comes from, for pytest's report lines."""
        return self.path, 0, f"scenario: {self.name}"


def _allure_attach(j: Journal, run_dir: Path) -> None:
    """Timeline entries as allure steps, journal and HTML attached (when allure is active)."""
    try:
        import allure
    except ImportError:
        return
    for entry in j.timeline:
        with allure.step(f"{entry.kind}: {entry.name} [{entry.started_s:.2f}s]"):
            if entry.detail:
                allure.attach(entry.detail, name="detail",
                              attachment_type=allure.attachment_type.TEXT)
    journal = run_dir / "journal.json"
    html = run_dir / "report.html"
    if journal.exists():
        allure.attach.file(str(journal), name="journal.json",
                           attachment_type=allure.attachment_type.JSON)
    if html.exists():
        allure.attach.file(str(html), name="report.html",
                           attachment_type=allure.attachment_type.HTML)


# --------------------------------------------------------------------------- fixtures

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - fixtures need pytest-asyncio, collection does not
    pytest_asyncio = None  # type: ignore[assignment]

if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
        """A real nats-server with JetStream on free 127.0.0.1 ports, reaped afterwards."""
        from harness.broker import NatsServer

        async with NatsServer(log_dir=tmp_path / "nats-logs") as srv:
            yield srv

    @pytest_asyncio.fixture
    async def nats_client(nats_server: NatsServer) -> AsyncIterator[Client]:
        """A nats-py client connected to ``nats_server``; drained afterwards."""
        from services.common.settings import connect

        nc = await connect(nats_server.nats_settings(name="qiki-test"))
        try:
            yield nc
        finally:
            if not nc.is_closed:
                await nc.close()

    @pytest_asyncio.fixture
    async def jetstream(nats_client: Client) -> JetStreamContext:
        """JetStream context with the platform's layout (streams, durables) provisioned."""
        from services.common.botspec import load_runtime_config, provision

        js = nats_client.jetstream()
        await provision(js, load_runtime_config())
        return js

    @pytest_asyncio.fixture
    async def qiki_platform(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Platform]:
        """The reference platform (registrar, lag monitor, radar simulator) on
        ``nats_server``, as processes; ``.services[name].http_url`` for their endpoints."""
        from harness.platform import Platform
        from harness.scenario.model import Topology

        async with Platform(Topology(), run_dir=tmp_path / "platform",
                            broker=nats_server) as platform:
            yield platform

    @pytest.fixture
    def scenario_runner(tmp_path: Path) -> Callable[..., Journal]:
        """``scenario_runner(path_or_yaml_text, **RunOptions fields) -> Journal``."""
        from harness.scenario.loader import load_scenario, parse_scenario
        from harness.scenario.runner import RunOptions, run_scenario

        def run(source: str | Path, **options: Any) -> Journal:
            is_file = isinstance(source, Path) or (
                "\n" not in str(source) and Path(str(source)).exists()
            )
            scenario = load_scenario(source) if is_file else parse_scenario(str(source))
            options.setdefault("report_dir", tmp_path / "reports")
            options.setdefault("progress", False)
            return run_scenario(scenario, options=RunOptions(**options),
                                scenario_file=Path(source) if is_file else None)

        return run

    @pytest.fixture
    def scenario_journal(
        request: pytest.FixtureRequest, scenario_runner: Callable[..., Journal]
    ) -> Callable[..., Journal]:
        """``scenario_journal(path)`` -> the journal of that scenario file, reusing the run of
        its collected item when it already ran in this session (a scenario is slow: a test
        that only inspects its journal should not run it twice)."""

        def get(path: str | Path) -> Journal:
            wanted = Path(path).resolve()
            for item in request.session.items:
                if (isinstance(item, ScenarioItem) and item.path.resolve() == wanted
                        and item.journal is not None):
                    return item.journal
            return scenario_runner(wanted)

        return get

    @pytest.fixture
    def contract_checker() -> Callable[..., list[ContractViolation]]:
        """``contract_checker(headers, payload, legacy_ok=False) -> [violations]``."""
        from services.common.cloudevents import check_message

        return check_message
