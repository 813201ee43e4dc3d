"""A Docker engine that accepts connections and never answers (as one stalled under load):
every call of a service container ends in a SetupError naming the call and the container,
not a hang. The engine is a real Unix socket that reads requests and says nothing."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.containers.services import ServiceContainer, default_docker_timeout_s
from harness.errors import SetupError

#: A guard against the bug itself (a hang), far above the 1 s bound under test: not a timing.
HANG_GUARD_S = 60


@pytest.fixture
def stalled_engine(tmp_path: Path) -> Iterator[str]:
    """``unix://...`` of an engine that accepts, reads and never replies."""
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)  # read nothing back, answer nothing, keep it open

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def _service(url: str) -> ServiceContainer:
    import docker

    broker: Any = SimpleNamespace(run_id="stall1", internal_client_urls=["nats://n1:4222"],
                                  _network=object())
    svc = ServiceContainer("user.gh", broker=broker, name="gh", image="gh:dev",
                           command=["python", "-m", "gh"], ready_timeout_s=600,
                           docker_timeout_s=1)
    client = docker.DockerClient(base_url=url, timeout=1, version="1.43")  # no version probe
    svc._container = client.containers.prepare_model({"Id": "0" * 64, "Name": "/qiki-stall1-gh"})
    return svc


@pytest.mark.parametrize(
    ("call", "what"),
    [
        ("kill", "kill"),
        ("terminate", "stop"),
        ("pause", "pause"),
        ("resume", "unpause"),
        ("restart", "inspect (reload)"),
        # its ready_timeout_s is 600 s: the bound ends it, at the log read or the inspect
        ("_wait_ready", "logs|inspect (reload)"),
    ],
)
async def test_a_stalled_engine_is_a_setup_error_naming_call_and_container(
    stalled_engine: str, call: str, what: str
) -> None:
    svc = _service(stalled_engine)
    # the stop's grace is added to the bound (10 s by default): 1 s proves the same
    kwargs = {"timeout_s": 1} if call == "terminate" else {}
    with pytest.raises(SetupError) as info:
        await asyncio.wait_for(getattr(svc, call)(**kwargs), HANG_GUARD_S)
    message = str(info.value)
    assert any(f"Docker engine did not answer {w} for container qiki-stall1-gh" in message
               for w in what.split("|")), message
    assert "(service gh)" in message and "QIKI_DOCKER_TIMEOUT_S" in message


async def test_close_on_a_stalled_engine_returns(stalled_engine: str) -> None:
    svc = _service(stalled_engine)
    svc._tc = SimpleNamespace(stop=svc._container.remove)  # what testcontainers' stop calls
    await asyncio.wait_for(svc.close(), HANG_GUARD_S)
    assert svc._tc is None


def test_the_bound_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QIKI_DOCKER_TIMEOUT_S", "7.5")
    assert default_docker_timeout_s() == 7.5
    for bad in ("", "zero", "-1"):
        monkeypatch.setenv("QIKI_DOCKER_TIMEOUT_S", bad)
        assert default_docker_timeout_s() == 30.0


async def test_start_on_a_stalled_engine_names_create_start(
    stalled_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # testcontainers makes its own client from DOCKER_HOST, with our timeout.
    monkeypatch.setenv("DOCKER_HOST", stalled_engine)
    svc = _service(stalled_engine)
    svc._container = None
    with pytest.raises(SetupError) as info:
        await asyncio.wait_for(svc.start(), HANG_GUARD_S)
    assert "Docker engine did not answer create/start for container qiki-stall1-gh" in str(
        info.value)
