"""Services of a platform as objects: how each one starts, gets ready, is signalled.

:class:`ServiceLauncher` starts one service of the topology: a reference service from its
catalog definition (:mod:`harness.services.catalog`), or a user service from its
``command`` (host process) or ``build``/``image`` (container). Every service comes back as
a :class:`ServiceProcess`, so the fault engine, the runner and the journal treat them alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness._process import ManagedProcess
from harness.errors import SetupError
from harness.faults.proxy import FaultProxy
from harness.services.catalog import ArgContext, ReferenceService, reference_service
from harness.services.placeholders import expand, expand_command
from harness.services.probes import log_pattern, wait_ready

if TYPE_CHECKING:
    from harness.containers.services import ServiceContainer
    from harness.platform import Platform
    from harness.scenario.model import ServiceTopology

__all__ = ["ContainerServiceProc", "ServiceLauncher", "ServiceProcess", "ServiceRunner"]

#: The first line a reference service prints once it serves: ``READY http://127.0.0.1:PORT``.
READY_RE = re.compile(r"^READY (http://127\.0\.0\.1:\d+)")


class ServiceRunner(Protocol):
    """What runs a service: a :class:`ManagedProcess` or a :class:`ContainerServiceProc`."""

    @property
    def pid(self) -> int | None: ...
    @property
    def running(self) -> bool: ...
    @property
    def restarts(self) -> int: ...
    async def kill(self) -> None: ...
    async def terminate(self) -> None: ...
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def restart(self) -> None: ...
    def log_text(self) -> str: ...


class ContainerServiceProc:
    """A :class:`ServiceContainer` seen through the process-like interface the runner, the
    fault engine and the journal use (``pid``, ``running``, ``restarts``, signals)."""

    def __init__(self, container: ServiceContainer, log_path: Path) -> None:
        self.container = container
        self.log_path = log_path
        self._pid: int | None = None
        self._running = False

    @property
    def pid(self) -> int | None:
        """The service's pid on the host (the container's init process) while it runs."""
        return self._pid if self._running else None

    @property
    def running(self) -> bool:
        """True while the container runs (paused counts), as of the last operation on it."""
        return self._running

    @property
    def restarts(self) -> int:
        """How often the container was restarted."""
        return self.container.restarts

    def _refresh_sync(self) -> None:
        c = self.container._container
        if c is None:
            self._running, self._pid = False, None
            return
        c.reload()
        state = c.attrs.get("State", {})
        self._running = bool(state.get("Running"))
        self._pid = int(state.get("Pid") or 0) or None

    async def refresh(self) -> None:
        """Re-read the container's state from the engine."""
        await asyncio.to_thread(self._refresh_sync)

    async def start(self) -> None:
        """Start the container and wait until the service is ready."""
        try:
            await self.container.start()
        finally:
            # Also when the start failed: logs/NAME.log then says why.
            self._save_log()
        await self.refresh()

    async def kill(self) -> None:
        """SIGKILL (docker kill)."""
        await self.container.kill()
        await self.refresh()

    async def terminate(self) -> None:
        """SIGTERM and wait (docker stop)."""
        await self.container.terminate()
        await self.refresh()

    async def pause(self) -> None:
        """docker pause (the cgroup freezes, like SIGSTOP)."""
        await self.container.pause()

    async def resume(self) -> None:
        """docker unpause."""
        await self.container.resume()

    async def restart(self) -> None:
        """Same container, same published ports; waits until ready again."""
        await self.container.restart()
        await self.refresh()

    def log_text(self) -> str:
        """The container's log across restarts."""
        return self.container.log_text()

    def _save_log(self) -> None:
        text = self.container.last_log
        if text:
            with contextlib.suppress(OSError):
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self.log_path.write_text(text, encoding="utf-8")

    async def close(self) -> None:
        """Keep the log in the run directory (as a process's is), then remove the container."""
        with contextlib.suppress(Exception):
            self.container.last_log = self.log_text() or self.container.last_log
        self._save_log()
        self._running, self._pid = False, None
        await self.container.close()


@dataclass
class ServiceProcess:
    """A running service (child process or container), with its HTTP endpoint and link."""

    name: str
    proc: ServiceRunner
    #: the service's HTTP base URL (reference services; a user service's ``{http_port}``)
    http_url: str | None
    proxy: FaultProxy | None = None

    @property
    def running(self) -> bool:
        """True while the process lives (paused counts)."""
        return self.proc.running

    async def kill(self) -> None:
        """SIGKILL."""
        await self.proc.kill()

    async def terminate(self) -> None:
        """SIGTERM and wait."""
        await self.proc.terminate()

    async def pause(self) -> None:
        """SIGSTOP."""
        await self.proc.pause()

    async def resume(self) -> None:
        """SIGCONT."""
        await self.proc.resume()

    async def restart(self) -> None:
        """Stop if running, start again (same ports), wait until ready."""
        await self.proc.restart()


async def _healthz(url: str) -> None:
    """Ready probe: poll ``url`` until it answers 2xx (the service bound its consumers)."""
    from harness.services.probes import _http

    await _http(url)


_USERINFO = re.compile(r"://[^/@]*@")


def _host_port(url: str) -> tuple[str, str]:
    rest = url.partition("://")[2] or url
    rest = rest.rpartition("@")[2]  # never a credential in a placeholder
    host, _, port = rest.rstrip("/").rpartition(":")
    return (host or rest), (port or "4222")


class ServiceLauncher:
    """Starts the services of ``platform``'s topology, one at a time, each registered on the
    platform's exit stack before it starts (a sibling's failure still stops it)."""

    def __init__(self, platform: Platform, *, scenario_dir: Path) -> None:
        self.platform = platform
        self.scenario_dir = scenario_dir.resolve()
        self._http_ports: dict[str, int] = {}

    def log_path(self, name: str) -> Path:
        """Where a service's output goes: ``logs/NAME.log`` in the run directory."""
        return self.platform.run_dir / "logs" / f"{name}.log"

    async def start(self, name: str) -> ServiceProcess:
        """Start service ``name`` and wait until it is ready (SetupError with its log if not)."""
        spec = self.platform.topology.services[name]
        ref = reference_service(name)
        if ref is not None:
            if self.platform.topology.services_in == "container":
                return await self._reference_container(ref, spec)
            return await self._reference_process(ref, spec)
        if spec.container:
            return await self._user_container(name, spec)
        return await self._user_process(name, spec)

    # ------------------------------------------------------------- placeholders

    def http_port(self, name: str) -> int:
        """The free port ``{http_port}`` stands for, chosen once per service."""
        if name not in self._http_ports:
            from harness.broker._config import free_ports

            self._http_ports[name] = free_ports(1)[0]
        return self._http_ports[name]

    def values(self, name: str, servers: list[str]) -> dict[str, str]:
        """What each placeholder stands for, for service ``name`` reaching NATS at ``servers``.

        URLs lose any ``user:password@`` part: placeholders may end up on argv, and
        credentials reach a service through its environment only.
        """
        servers = [_USERINFO.sub("://", s) for s in servers]
        host, port = _host_port(servers[0])
        return {
            "nats_url": ",".join(servers),
            "nats_host": host,
            "nats_port": port,
            "run_dir": str(self.platform.run_dir.resolve()),
            "service": name,
            "spec": str(Path(self.platform.botspec).resolve()),
            "scenario_dir": str(self.scenario_dir),
            "http_port": str(self.http_port(name)),
            "python": sys.executable,
        }

    # ------------------------------------------------------------- reference services

    def _arg_context(self, db: str) -> ArgContext:
        streams = {c.durable: c.stream for c in self.platform.config.consumers}
        return ArgContext(db=db, consumer_streams=streams)

    async def _reference_process(self, ref: ReferenceService, spec: ServiceTopology
                                 ) -> ServiceProcess:
        p, name = self.platform, ref.name
        proxy: FaultProxy | None = None
        settings = p.settings(name, name=f"qiki-{name}")
        if spec.proxied:
            proxy = await p._proxy_for(name)
            settings = p.settings(name, name=f"qiki-{name}", servers=[proxy.url])
        # Port 0: the service binds a free port itself and says which on its READY line; a
        # port picked here could be taken by another process before the service binds it.
        argv = [sys.executable, "-m", ref.module, "--http-port", "0"]
        data_dir = await p.service_store_dir(name) if spec.store == "fuse" else p.run_dir
        argv += ref.args(spec, self._arg_context(str(data_dir / "registrar.db")))
        bound: list[str] = []

        async def ready(proc: ManagedProcess) -> None:
            if not bound:
                line = await proc.wait_for_log(READY_RE)
                url = READY_RE.search(line).group(1)  # type: ignore[union-attr]
                bound.append(url)
                # Restarts keep the port, so the URL handed out stays valid.
                proc.argv[proc.argv.index("--http-port") + 1] = url.rpartition(":")[2]
            else:
                await _healthz(bound[0] + "/healthz")

        proc = ManagedProcess(
            argv,
            name=name,
            env=p.service_env(settings),
            ready=ready,
            ready_timeout_s=spec.ready_timeout_s,
            log_path=self.log_path(name),
            hint=ref.hint,
        )
        # Registered before the start, so a sibling's failure still stops this one.
        p._stack.push_async_callback(proc.close)
        await proc.start()
        p.event("service.started", service=name, pid=proc.pid)
        return ServiceProcess(name=name, proc=proc, http_url=bound[0], proxy=proxy)

    def _container_broker(self, name: str) -> object:
        from harness.broker.container import ContainerBroker

        broker = self.platform.broker
        if not isinstance(broker, ContainerBroker):
            raise SetupError(
                f"service {name} runs in a container, which needs the container backend, not "
                f"{self.platform.backend!r}. Hint: --backend container (a Docker engine must "
                "answer), or give the service a command to run it as a host process"
            )
        return broker

    async def _reference_container(self, ref: ReferenceService, spec: ServiceTopology
                                   ) -> ServiceProcess:
        """The service in a container on the broker's network (``services_in: container``).

        It reaches the nodes by their network aliases; its HTTP port is published on
        127.0.0.1, so ``http_url`` works from here as a process's does. The registrar's store
        lives in the container (the checks read it through ``/records``).
        """
        from harness.containers.services import ServiceContainer

        p, name = self.platform, ref.name
        broker = self._container_broker(name)
        env = {
            "QIKI_NATS_PING_INTERVAL_S": str(p.topology.ping_interval_s),
            "QIKI_NATS_NAME": f"qiki-{name}",
        }
        volumes: dict[str, tuple[str, str]] = {}
        if p.credentials is not None:
            # Its own credentials and TLS files (issue 10): in the environment, never argv;
            # the files through a read-only mount of the run's secrets dir at the same path.
            creds_env = p.service_env(p.settings(name, name=f"qiki-{name}"))
            env.update({k: v for k, v in creds_env.items()
                        if k.startswith("QIKI_NATS_") and k not in ("QIKI_NATS_URL",
                                                                    "QIKI_NATS_PING_INTERVAL_S")})
            secrets_dir = str(p.credentials.secrets_dir)
            volumes[secrets_dir] = (secrets_dir, "ro")
        if p.topology.spec:
            # The scenario's own spec (the image holds QIKI's): mounted read-only at the same
            # absolute path, with the scenario's directory, where its contracts usually live.
            # (Both paths are absolute already: the platform resolved the spec.)
            spec_file = Path(p.botspec)
            env["QIKI_BOTSPEC"] = str(spec_file)
            for d in {str(spec_file.parent), str(self.scenario_dir)}:
                volumes[d] = (d, "ro")
        container = ServiceContainer(
            ref.module,
            broker=broker,  # type: ignore[arg-type]
            args=ref.args(spec, self._arg_context("/data/registrar.db")),
            env=env,
            volumes=volumes or None,
            image=p._services_image,
        )
        return await self._start_container(name, container, http_url=None)

    async def _start_container(self, name: str, container: ServiceContainer,
                               http_url: str | None) -> ServiceProcess:
        p = self.platform
        proc = ContainerServiceProc(container, self.log_path(name))
        # Registered before the start, so a sibling's failure still removes this one.
        p._stack.push_async_callback(proc.close)
        await proc.start()
        p.event("service.started", service=name, pid=proc.pid,
                container=container.container_name)
        return ServiceProcess(name=name, proc=proc, http_url=http_url or container.http_url)

    # ------------------------------------------------------------- user services

    async def _user_process(self, name: str, spec: ServiceTopology) -> ServiceProcess:
        p = self.platform
        proxy: FaultProxy | None = None
        settings = p.settings(name, name=name)
        if spec.proxied:
            proxy = await p._proxy_for(name)
            settings = p.settings(name, name=name, servers=[proxy.url])
        values = self.values(name, list(settings.servers))
        assert spec.command is not None
        # A bare python/python3 first word becomes the harness's interpreter (see BARE_PYTHON).
        argv = expand_command(spec.command, values)
        # Credentials reach the service through QIKI_NATS_* in its environment, never argv.
        env = p.service_env(settings)
        env.update({k: expand(v, values) for k, v in spec.env.items()})
        cwd = self.scenario_dir / expand(spec.cwd, values) if spec.cwd else self.scenario_dir
        probe = spec.ready

        async def ready(proc: ManagedProcess) -> None:
            assert probe is not None
            mark = proc.spawn_mark

            async def log(text: str) -> None:
                await proc.wait_for_log(log_pattern(text), since=mark)

            await wait_ready(probe, env=env, log=log, nc=p.nc)

        proc = ManagedProcess(
            argv,
            name=name,
            env=env,
            cwd=cwd,
            ready=ready if probe is not None else None,
            ready_timeout_s=spec.ready_timeout_s,
            log_path=self.log_path(name),
            hint=f"the whole output is in logs/{name}.log of the run directory; check "
            f"topology.services.{name}.command and its ready probe",
        )
        p._stack.push_async_callback(proc.close)
        await proc.start()
        # The command as run (placeholders expanded, python resolved): the journal says which
        # interpreter a service got. Never a credential: those travel in the environment.
        p.event("service.started", service=name, pid=proc.pid, command=argv)
        http_url = f"http://127.0.0.1:{self._http_ports[name]}" if name in self._http_ports \
            else None
        return ServiceProcess(name=name, proc=proc, http_url=http_url, proxy=proxy)

    async def _user_container(self, name: str, spec: ServiceTopology) -> ServiceProcess:
        from harness.containers.services import ServiceContainer
        from harness.containers.user_images import ensure_user_image

        p = self.platform
        broker = self._container_broker(name)
        servers = list(broker.internal_client_urls)  # type: ignore[attr-defined]
        values = self.values(name, servers)
        # Inside the image the host's interpreter path means nothing: the image's own python.
        values["python"] = "python3"
        image = await asyncio.to_thread(ensure_user_image, name, spec, self.scenario_dir)
        settings = p.settings(name, name=name)
        env = {k: v for k, v in p.service_env(settings).items() if k.startswith("QIKI_NATS_")}
        env["QIKI_NATS_URL"] = values["nats_url"]
        env["QIKI_BOTSPEC"] = values["spec"]
        env["PYTHONUNBUFFERED"] = "1"
        env.update({k: expand(v, values) for k, v in spec.env.items()})
        # The same absolute paths inside as outside, so {run_dir}, {spec} and {scenario_dir}
        # mean one thing in both modes.
        run_dir = values["run_dir"]
        volumes = {run_dir: (run_dir, "rw"), values["scenario_dir"]: (values["scenario_dir"], "ro")}
        spec_dir = str(Path(values["spec"]).parent)
        if not spec_dir.startswith(values["scenario_dir"]):
            volumes[spec_dir] = (spec_dir, "ro")
        ports = {self.http_port(name)}
        if spec.ready is not None:
            ports |= {int(env[v]) for v in spec.ready.env_vars() if env.get(v, "").isdigit()}
        probe = spec.ready
        container: ServiceContainer

        async def ready(offset: int) -> None:
            assert probe is not None

            async def log(text: str) -> None:
                # Docker's log is append-only across restarts: look past the offset only.
                while True:
                    if text in (await asyncio.to_thread(container.log_text))[offset:]:
                        return
                    await asyncio.sleep(0.1)

            await wait_ready(probe, env=env, log=log, nc=p.nc)

        container = ServiceContainer(
            f"user.{name}",
            broker=broker,  # type: ignore[arg-type]
            name=name,
            env=env,
            image=image,
            command=[expand(a, values) for a in spec.command] if spec.command else None,
            ports=sorted(ports),
            volumes=volumes,
            working_dir=expand(spec.cwd, values) if spec.cwd else None,
            ready=ready if probe is not None else None,
            ready_timeout_s=spec.ready_timeout_s,
        )
        return await self._start_container(
            name, container, http_url=f"http://127.0.0.1:{self.http_port(name)}"
        )
