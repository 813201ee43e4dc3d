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
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

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


class ServiceContainer(StartClose):
    """One reference service in a container; an async context manager.

    ``module``: ``services.registrar`` etc. ``args``: extra command-line arguments.
    ``name``: container-name suffix and network alias (default: the module's last part).
    Faults: ``kill``, ``pause``/``resume``, ``restart`` (same container and published port).
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
        """The command run in the container."""
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

    def _start_sync(self) -> None:
        from testcontainers.core.container import DockerContainer

        self.image = ensure_services_image(self._image_arg).tag
        self.http_port = free_ports(1)[0]
        env = {"QIKI_HTTP_HOST": "0.0.0.0", **self._env}
        tc = DockerContainer(
            self.image,
            command=cast(Any, self.command),  # a list is accepted at runtime
            env=env,
            name=self.container_name,
            network=self._broker._network,
            network_aliases=[self.name],
            labels=run_labels(
                self._broker.run_id, **{LABEL_ROLE: "service", LABEL_NAME: self.name}
            ),
        )
        tc.ports[f"{SERVICE_HTTP_PORT}/tcp"] = cast(Any, (HOST, self.http_port))
        self._tc = tc
        tc.start()
        self._container = tc.get_wrapped_container()

    async def _wait_ready(self) -> None:
        """Until the READY line appears in the log; fail fast if the container exits."""
        deadline = time.monotonic() + self.ready_timeout_s
        delay = 0.02
        while True:
            text = self.log_text()
            if self.ready_line in text:
                return
            await asyncio.to_thread(self._container.reload)
            status = self._container.status
            if status not in ("running", "created") or time.monotonic() >= deadline:
                tail = "\n".join(text.splitlines()[-15:])
                raise SetupError(
                    f"service container {self.container_name} ({' '.join(self.command)}) not "
                    f"ready: status {status!r}, no {self.ready_line.strip()!r} line within "
                    f"{self.ready_timeout_s:g} s. Last log lines:\n{tail or '(none)'}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    async def start(self) -> None:
        """Build/reuse the image, start the container, wait for the READY line."""
        if self._broker._network is None:
            raise SetupError("ServiceContainer needs a started ContainerBroker (its network)")
        try:
            await asyncio.to_thread(self._start_sync)
            await self._wait_ready()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Remove the container (idempotent). The broker's close also removes it by label."""
        tc, self._tc, self._container = self._tc, None, None
        if tc is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(tc.stop)

    def _require(self) -> Any:
        if self._container is None:
            raise SetupError(f"service container {self.name} is not started")
        return self._container

    async def kill(self) -> None:
        """SIGKILL the service and wait for the exit."""
        c = self._require()
        await asyncio.to_thread(lambda: (c.kill(), c.wait(timeout=30)))

    async def terminate(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (graceful drain), SIGKILL after ``timeout_s``."""
        c = self._require()
        await asyncio.to_thread(c.stop, timeout=max(0, round(timeout_s)))

    async def pause(self) -> None:
        """docker pause."""
        await asyncio.to_thread(self._require().pause)

    async def resume(self) -> None:
        """docker unpause."""
        await asyncio.to_thread(self._require().unpause)

    async def restart(self, timeout_s: float = 10.0) -> None:
        """Stop if running and start the same container again; wait for a new READY line."""
        c = self._require()
        await asyncio.to_thread(c.reload)
        if c.status == "paused":
            await self.resume()
        before = self.log_text().count(self.ready_line)
        await asyncio.to_thread(c.stop, timeout=max(0, round(timeout_s)))
        await asyncio.to_thread(c.start)
        deadline = time.monotonic() + self.ready_timeout_s
        while self.log_text().count(self.ready_line) <= before:
            if time.monotonic() >= deadline:
                raise SetupError(f"service container {self.name} not ready after restart")
            await asyncio.sleep(0.05)
        self.restarts += 1

    def log_text(self) -> str:
        """The container's log (stdout and stderr) across restarts."""
        return container_log_text(self._container)
