"""Fixtures for registrar integration tests: a real nats-server, the platform provisioned
(with a short ack wait, so redelivery after a crash happens within the test), and the
registrar as a real ``python -m services.registrar`` process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from harness._process import ManagedProcess
from harness.broker import NatsServer
from services.common.botspec import RuntimeConfig, load_runtime_config, provision

REPO = Path(__file__).resolve().parents[3]
ACK_WAIT_S = 1.5


def short_ack_config() -> RuntimeConfig:
    """The default runtime config with a short ack wait and many deliveries allowed."""
    cfg = load_runtime_config()
    consumers = [
        c.model_copy(update={"ack_wait_s": ACK_WAIT_S, "max_deliver": -1}) for c in cfg.consumers
    ]
    return cfg.model_copy(update={"consumers": consumers})


class RegistrarProcess:
    """``python -m services.registrar`` under a :class:`ManagedProcess`; knows its URL."""

    def __init__(self, nats_url: str, db: Path, *, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.db = db
        self.url = ""
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = ManagedProcess(
            [sys.executable, "-m", "services.registrar", "--nats-url", nats_url, "--db",
             str(db), "--http-port", "0", "--provision", "never", "--expires", "2",
             *(extra_args or [])],
            name="registrar",
            env=self._env,
            cwd=REPO,
            ready=self._ready,
            ready_timeout_s=20.0,
        )

    async def _ready(self, proc: ManagedProcess) -> None:
        line = await proc.wait_for_log(r"^READY http://")
        self.url = line.split()[1]

    def get(self, path: str) -> Any:
        """GET ``path`` (blocking; call via asyncio.to_thread) and decode JSON or text."""
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            body = resp.read()
            if resp.headers.get_content_type() == "application/json":
                return json.loads(body)
            return body.decode()

    async def aget(self, path: str) -> Any:
        """Async :meth:`get`."""
        return await asyncio.to_thread(self.get, path)


@pytest.fixture
def server(nats_server: NatsServer) -> NatsServer:
    """The plugin's ``nats_server``, under this area's name."""
    return nats_server


@pytest.fixture
def config() -> RuntimeConfig:
    return short_ack_config()


@pytest.fixture
async def js_conn(server: NatsServer, config: RuntimeConfig) -> AsyncIterator[Any]:
    """A client connection with the platform provisioned; yields (nc, js)."""
    nc = await nats.connect(server.client_url)
    js = nc.jetstream()
    await provision(js, config)
    try:
        yield nc, js
    finally:
        await nc.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "registrar.db"
