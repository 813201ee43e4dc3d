"""The reference services (registrar, lagmon, radar_sim) in containers next to a ContainerBroker.

``async with ServiceContainer("services.registrar", broker=broker) as svc:`` runs
``python -m services.registrar --nats-url nats://n1:4222,... --http-port 8080`` from the
offline-built services image (:func:`ensure_services_image`) on the broker's network, and is
ready once the service prints its ``READY`` line. The HTTP port is published on 127.0.0.1;
for it to answer from the host the service must listen on all interfaces inside the
container, which the harness asks for with env ``QIKI_HTTP_HOST=0.0.0.0`` (the services'
default stays 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from harness._resource import cancel_and_wait
from harness.broker._config import HOST, free_ports
from harness.broker.base import StartClose
from harness.containers.engine import (
    LABEL_NAME,
    LABEL_ROLE,
    container_log_text,
    run_labels,
    run_resource_name,
)
from harness.containers.images import ensure_services_image
from harness.errors import SetupError

if TYPE_CHECKING:
    from harness.broker.container import ContainerBroker

__all__ = ["ServiceContainer"]

#: HTTP port of a service inside its container.
SERVICE_HTTP_PORT = 8080

#: How long one Docker call of a service container may take (env ``QIKI_DOCKER_TIMEOUT_S``).
#: A stalled engine (seen under load) then becomes a set-up error naming the call and the
#: container instead of a run that hangs until something else gives up.
DOCKER_TIMEOUT_S = 30.0


def default_docker_timeout_s() -> float:
    """``QIKI_DOCKER_TIMEOUT_S`` if set to a positive number, else :data:`DOCKER_TIMEOUT_S`."""
    raw = os.environ.get("QIKI_DOCKER_TIMEOUT_S", "")
    try:
        value = float(raw)
    except ValueError:
        return DOCKER_TIMEOUT_S
    return value if value > 0 else DOCKER_TIMEOUT_S


def _is_engine_timeout(exc: BaseException) -> bool:
    """docker-py's socket timeout (requests' ReadTimeout/ConnectionError wrapping one),
    possibly as the cause of a docker-py exception."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:  # docker-py wraps some (DockerException from ReadTimeout)
        if isinstance(seen, requests.exceptions.Timeout | TimeoutError) or (
                isinstance(seen, requests.exceptions.ConnectionError)
                and "timed out" in str(seen)):
            return True
        seen = seen.__cause__
    return False


class ServiceContainer(StartClose):
    """One reference service in a container; an async context manager.

    ``module``: ``services.registrar`` etc. ``args``: extra command-line arguments.
    ``name``: container-name suffix and network alias (default: the module's last part).
    Faults: ``kill``, ``pause``/``resume``, ``restart`` (same container and published port).

    A user service gives its own ``image`` (used as is), ``command`` (None: the image's),
    ``ports`` (published on 127.0.0.1 under the same number), ``volumes`` (host path ->
    (container path, mode)), ``working_dir`` and a ``ready`` probe, awaited with the length
    of the log before this (re)start, in place of the READY line.
    """

    def __init__(
        self,
        module: str,
        *,
        broker: ContainerBroker,
        args: Sequence[str] = (),
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        image: str | None = None,
        ready_line: str = "READY ",
        ready_timeout_s: float = 30.0,
        command: Sequence[str] | None = None,
        ports: Sequence[int] = (),
        volumes: Mapping[str, tuple[str, str]] | None = None,
        working_dir: str | None = None,
        ready: Callable[[int], Awaitable[None]] | None = None,
        docker_timeout_s: float | None = None,
    ) -> None:
        if not module or not module.replace(".", "").replace("_", "").isalnum():
            raise ValueError(f"module must be a dotted module name, got {module!r}")
        if ready_timeout_s <= 0:
            raise ValueError(f"ready_timeout_s must be > 0, got {ready_timeout_s!r}")
        self.module = module
        self.name = name or module.rsplit(".", 1)[-1]
        self._broker = broker
        self._args = list(args)
        self._env = dict(env or {})
        self._image_arg = image
        self.ready_line = ready_line
        self.ready_timeout_s = ready_timeout_s
        self.http_port = 0
        self.image: str | None = None
        self._tc: Any = None
        self._container: Any = None
        self.restarts = 0
        self._command = list(command) if command is not None else None
        #: a user service: its image is used as is, its ports and probe are its own
        self._user = ready is not None or command is not None or bool(ports)
        self._ports = list(ports)
        self._volumes = dict(volumes or {})
        self._working_dir = working_dir
        self._ready = ready
        #: the log as last read (kept for the run directory once the container is gone)
        self.last_log = ""
        #: the bound on each Docker call (the client's socket timeout and an explicit wait)
        self.docker_timeout_s = docker_timeout_s or default_docker_timeout_s()

    @property
    def container_name(self) -> str:
        """Docker container name (``qiki-<run id>-<name>``)."""
        return run_resource_name(self._broker.run_id, self.name)

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT``: the service's published HTTP port."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def command(self) -> list[str]:
        """The command run in the container (None: the image's own)."""
        if self._user:
            return self._command  # type: ignore[return-value]
        return [
            "python",
            "-m",
            self.module,
            "--nats-url",
            ",".join(self._broker.internal_client_urls),
            "--http-port",
            str(SERVICE_HTTP_PORT),
            *self._args,
        ]

    async def _docker(self, what: str, fn: Callable[..., Any], *args: Any,
                      extra_s: float = 0.0, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a thread, bounded: a Docker engine that does not answer
        within the timeout (+ ``extra_s``, the time the call itself may legitimately wait)
        is a SetupError naming ``what`` and the container, never a hang."""
        limit = self.docker_timeout_s + extra_s
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), limit)
        except Exception as exc:
            if not isinstance(exc, asyncio.TimeoutError) and not _is_engine_timeout(exc):
                raise
            raise SetupError(
                f"Docker engine did not answer {what} for container {self.container_name} "
                f"(service {self.name}) within {limit:g} s: the engine is stalled or "
                "overloaded.\nHint: check `docker info`; QIKI_DOCKER_TIMEOUT_S sets the bound "
                f"(now {self.docker_timeout_s:g} s per call)."
            ) from None

    def _resolve_image_sync(self) -> None:
        if self._user and self._image_arg:
            self.image = self._image_arg
        else:
            self.image = ensure_services_image(self._image_arg).tag

    def _start_sync(self) -> None:
        from testcontainers.core.container import DockerContainer

        assert self.image is not None
        extra: dict[str, Any] = {}
        if self._working_dir:
            extra["working_dir"] = self._working_dir
        env = {"QIKI_HTTP_HOST": "0.0.0.0", **self._env}
        tc = DockerContainer(
            self.image,
            # Every request of this container's client gives up after the timeout (docker-py
            # adds a call's own wait, e.g. stop's grace period, on top).
            docker_client_kw={"timeout": max(1, round(self.docker_timeout_s))},
            command=cast(Any, self.command),  # a list is accepted at runtime
            env=env,
            name=self.container_name,
            network=self._broker._network,
            network_aliases=[self.name],
            volumes=[(host, dst, mode) for host, (dst, mode) in self._volumes.items()],
            labels=run_labels(
                self._broker.run_id, **{LABEL_ROLE: "service", LABEL_NAME: self.name}
            ),
            **extra,
        )
        if self._user:
            for port in self._ports:
                tc.ports[f"{port}/tcp"] = cast(Any, (HOST, port))
            self.http_port = self._ports[0] if self._ports else 0
        else:
            self.http_port = free_ports(1)[0]
            tc.ports[f"{SERVICE_HTTP_PORT}/tcp"] = cast(Any, (HOST, self.http_port))
        self._tc = tc
        tc.start()
        self._container = tc.get_wrapped_container()

    async def _wait_ready(self, offset: int = 0, before: int = 0) -> None:
        """Until the service is ready (its probe, or a new READY line); fail fast if the
        container exits, with the last log lines."""
        deadline = time.monotonic() + self.ready_timeout_s
        probe = asyncio.ensure_future(self._ready(offset)) if self._ready is not None else None
        delay = 0.02
        try:
            while True:
                text = await self._docker("logs", self.log_text)
                self.last_log = text or self.last_log
                if probe is not None and probe.done():
                    probe.result()  # a probe that failed says why
                    return
                if probe is None and text.count(self.ready_line) > before:
                    return
                await self._docker("inspect (reload)", self._container.reload)
                status = self._container.status
                # paused: a pause fault that overlaps a restart; it is resumed at its heal
                alive = ("running", "created", "paused")
                if status not in alive or time.monotonic() >= deadline:
                    # The log above was read before this inspect: a service that printed its
                    # error and exited in between would be quoted without it. Read it again.
                    text = await self._docker("logs", self.log_text) or text
                    self.last_log = text or self.last_log
                    tail = "\n".join(f"    {ln}" for ln in text[offset:].splitlines()[-15:])
                    what = "its ready probe did not pass" if probe is not None else (
                        f"no {self.ready_line.strip()!r} line")
                    why = (f"it exited ({status})" if status not in alive
                           else f"{what} within {self.ready_timeout_s:g} s")
                    raise SetupError(
                        f"service {self.name} (container {self.container_name}, command "
                        f"{' '.join(self.command or ['(image default)'])}) did not start: "
                        f"{why}.\n  last log lines:\n{tail or '    (no output)'}"
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.2)
        finally:
            if probe is not None and not probe.done():
                await cancel_and_wait(probe, suppress_errors=True)

    async def start(self) -> None:
        """Build/reuse the image, start the container, wait for the READY line."""
        if self._broker._network is None:
            raise SetupError("ServiceContainer needs a started ContainerBroker (its network)")
        try:
            await asyncio.to_thread(self._resolve_image_sync)
            # create + start (+ network connect): a few calls, each bounded by the client
            await self._docker("create/start", self._start_sync, extra_s=self.docker_timeout_s)
            await self._wait_ready()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Remove the container (idempotent). The broker's close also removes it by label."""
        tc, self._tc, self._container = self._tc, None, None
        if tc is not None:
            # A stalled engine must not hang the teardown either; the broker's close removes
            # what is left by label.
            with contextlib.suppress(Exception):
                await self._docker("remove", tc.stop)

    def _require(self) -> Any:
        if self._container is None:
            raise SetupError(f"service container {self.name} is not started")
        return self._container

    async def kill(self) -> None:
        """SIGKILL the service and wait for the exit."""
        c = self._require()
        await self._docker("kill", c.kill)
        await self._docker("wait", c.wait, timeout=30, extra_s=30)

    async def terminate(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (graceful drain), SIGKILL after ``timeout_s``."""
        c = self._require()
        grace = max(0, round(timeout_s))
        await self._docker("stop", c.stop, timeout=grace, extra_s=grace)

    async def pause(self) -> None:
        """docker pause."""
        await self._docker("pause", self._require().pause)

    async def resume(self) -> None:
        """docker unpause."""
        await self._docker("unpause", self._require().unpause)

    async def restart(self, timeout_s: float = 10.0) -> None:
        """Stop if running and start the same container again; wait for a new READY line."""
        c = self._require()
        await self._docker("inspect (reload)", c.reload)
        if c.status == "paused":
            await self.resume()
        text = await self._docker("logs", self.log_text)
        before, offset = text.count(self.ready_line), len(text)
        grace = max(0, round(timeout_s))
        await self._docker("stop", c.stop, timeout=grace, extra_s=grace)
        await self._docker("start", c.start)
        await self._wait_ready(offset, before)
        self.restarts += 1

    def log_text(self) -> str:
        """The container's log (stdout and stderr) across restarts."""
        if self._container is None:
            return self.last_log
        return container_log_text(self._container)
