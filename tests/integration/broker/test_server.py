"""NatsServer (process backend, one node) against the real nats-server binary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import StorageType, StreamConfig

from harness._process import _proc_state
from harness.broker import BrokerError, BrokerStartError, NatsServer, find_nats_server, open_broker
from harness.broker.process import HEALTHZ_JS


def alive(pid: int | None) -> bool:
    state = _proc_state(pid) if pid is not None else None
    return state is not None and state not in "ZX"


async def add_stream(url: str, name: str = "T", storage: StorageType = StorageType.FILE) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name=name, subjects=[f"{name}.>"], storage=storage)
        )
    finally:
        await nc.close()


async def publish(url: str, subject: str, payload: bytes) -> int:
    nc = await nats.connect(url)
    try:
        ack = await nc.jetstream().publish(subject, payload, timeout=5)
        return ack.seq
    finally:
        await nc.close()


async def stream_messages(url: str, name: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(name)
        return info.state.messages
    finally:
        await nc.close()


async def test_start_publish_stop(server: NatsServer) -> None:
    assert server.client_url.startswith("nats://127.0.0.1:")
    assert server.monitor_url.startswith("http://127.0.0.1:")
    assert server.nodes == [server.node] and server.client_urls == [server.client_url]
    assert server.backend == "process"
    assert server.version == find_nats_server_version()
    assert await server.node.healthy(HEALTHZ_JS)
    await add_stream(server.client_url)
    assert await publish(server.client_url, "T.a", b"x") == 1
    assert "Server is ready" in server.node.log_text()
    desc = server.describe()
    assert desc["backend"] == "process" and desc["nodes"][0]["pid"] == server.node.pid


def find_nats_server_version() -> str:
    import subprocess

    out = subprocess.run(
        [str(find_nats_server()), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().rsplit("v", 1)[-1]


async def test_nats_settings_connects(server: NatsServer) -> None:
    from services.common.settings import connect

    settings = server.nats_settings(name="t")
    assert settings.servers == [server.client_url]
    nc = await connect(settings)
    try:
        assert nc.is_connected
    finally:
        await nc.close()


async def test_restart_keeps_ports_and_file_store(server: NatsServer) -> None:
    node = server.node
    ports = (node.client_port, node.monitor_port)
    await add_stream(server.client_url)
    await publish(server.client_url, "T.before", b"kept")
    first = node.pid
    await node.restart()
    assert node.pid != first and not alive(first)
    assert (node.client_port, node.monitor_port) == ports and node.restarts == 1
    assert await stream_messages(server.client_url, "T") == 1
    # Also after a crash: kill, then restart from the same store.
    await publish(server.client_url, "T.more", b"x")
    await node.kill()
    assert not node.running and node.exit_code == -9
    with pytest.raises(BrokerError, match="not running"):
        await node.kill()
    await node.restart()
    assert node.restarts == 2
    assert await stream_messages(server.client_url, "T") >= 1


async def first_line(port: int, timeout_s: float) -> bytes:
    """The server's greeting (INFO ...) on a fresh client connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(reader.readline(), timeout_s)
    finally:
        writer.close()


async def test_pause_freezes_and_resume_thaws(server: NatsServer) -> None:
    node = server.node
    assert (await first_line(node.client_port, 2)).startswith(b"INFO ")
    await node.pause()
    assert node.paused and node.running
    assert not await node.healthy(timeout_s=0.3)
    # The kernel still accepts the TCP connection, but a frozen server says nothing.
    with pytest.raises(TimeoutError):
        await first_line(node.client_port, 0.3)
    await node.resume()
    assert not node.paused
    assert (await first_line(node.client_port, 2)).startswith(b"INFO ")
    assert await node.healthy()


async def test_terminate_is_graceful(server: NatsServer) -> None:
    await server.node.terminate()
    assert not server.node.running
    assert server.node.exit_code in (0, 1, -15)
    await server.node.restart()
    assert await server.node.healthy()


async def test_sync_always_and_extra_config_reach_the_server() -> None:
    async with NatsServer(sync_always=True, extra_config={"max_payload": 65536}) as srv:
        jsz = await srv.node.monitor("/jsz")
        varz = await srv.node.monitor("/varz")
    assert jsz["config"].get("sync_always") is True
    assert varz["max_payload"] == 65536


async def test_default_sync_is_lazy(server: NatsServer) -> None:
    jsz = await server.node.monitor("/jsz")
    assert not jsz["config"].get("sync_always", False)


async def test_given_store_dir_is_kept_and_reused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with NatsServer(store_dir=store) as srv:
        await add_stream(srv.client_url)
        await publish(srv.client_url, "T.x", b"1")
        workdir = srv.workdir
    assert workdir is not None and not workdir.exists()
    assert any(store.rglob("*")), "caller's store dir must be kept"
    async with NatsServer(store_dir=store) as srv:
        assert await stream_messages(srv.client_url, "T") == 1


async def test_no_process_or_dir_survives_a_failing_body() -> None:
    srv = NatsServer()
    with pytest.raises(RuntimeError, match="test body failed"):
        async with srv:
            pid, workdir = srv.node.pid, srv.workdir
            assert alive(pid) and workdir is not None and workdir.exists()
            raise RuntimeError("test body failed")
    assert not alive(pid)
    assert workdir is not None and not workdir.exists()


async def test_failed_start_cleans_up_and_explains() -> None:
    srv = NatsServer(extra_config={"jetstream": {"no_such_option_xyz": True}, "bogus_key": 1})
    with pytest.raises(BrokerStartError) as info:
        async with srv:
            pytest.fail("must not start")
    text = str(info.value)
    assert "exited with code" in text and "Hint:" in text
    # nats-server's own complaint names the fields.
    assert 'unknown field "bogus_key"' in text and "no_such_option_xyz" in text
    assert srv.workdir is None
    assert all(not alive(n.pid) for n in srv.nodes)


async def test_nats_server_bin_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "wrapper-ran"
    wrapper = tmp_path / "nats-server-wrapper"
    wrapper.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec "{find_nats_server()}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("NATS_SERVER_BIN", str(wrapper))
    async with NatsServer() as srv:
        assert await srv.node.healthy()
    assert marker.exists()


async def test_missing_binary_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_SERVER_BIN", str(tmp_path / "absent"))
    srv = NatsServer()
    with pytest.raises(BrokerStartError, match="NATS_SERVER_BIN"):
        async with srv:
            pass
    assert srv.workdir is None


async def test_log_dir_keeps_the_server_log(tmp_path: Path) -> None:
    async with open_broker("process", log_dir=tmp_path) as broker:
        assert broker.nodes[0].name == "n1"
    log = (tmp_path / "n1.log").read_text()
    assert "Server is ready" in log and "Server Exiting" in log


async def test_two_servers_do_not_collide() -> None:
    async with NatsServer() as a, NatsServer() as b:
        assert (
            len({a.node.client_port, a.node.monitor_port, b.node.client_port, b.node.monitor_port})
            == 4
        )
        await asyncio.gather(add_stream(a.client_url), add_stream(b.client_url))


async def test_without_jetstream() -> None:
    async with NatsServer(jetstream=False) as srv:
        varz = await srv.node.monitor("/varz")
        assert not varz.get("jetstream", {}).get("config")


@contextlib.contextmanager
def squatted_port() -> Iterator[int]:
    """A 127.0.0.1 port held by a listening socket (another process, as far as NATS knows)."""
    squatter = socket.socket()
    try:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield squatter.getsockname()[1]
    finally:
        squatter.close()


async def test_server_binds_its_own_ports_so_no_picked_port_can_be_raced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 13: client and monitoring ports are the server's choice, read back from its
    ports file; a port picked in advance (here: every pick is already taken) is never used."""
    from harness.broker import process

    with squatted_port() as taken:
        monkeypatch.setattr(process, "free_ports", lambda count: [taken] * count)
        async with NatsServer() as srv:
            node = srv.node
            assert taken not in (node.client_port, node.monitor_port)
            assert node.client_port and node.monitor_port
            assert "address already in use" not in node.log_text()
            assert await node.healthy()
            nc = await nats.connect(srv.client_url)
            await nc.close()
            # A restart comes back on the same ports (clients and peers find it again).
            ports = (node.client_port, node.monitor_port)
            await node.restart()
            assert (node.client_port, node.monitor_port) == ports
            assert await node.healthy()


def test_interpreter_exit_reaps_a_forgotten_server(tmp_path: Path) -> None:
    """The atexit safety nets: a broker never closed still leaves no process and no dir."""
    import subprocess
    import sys
    import time

    script = (
        "import asyncio\n"
        "from harness.broker import NatsServer\n"
        "async def main():\n"
        "    srv = NatsServer()\n"
        "    await srv.start()\n"
        "    print(srv.node.pid, srv.workdir, flush=True)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    pid_text, workdir = out.stdout.split()
    pid = int(pid_text)
    for _ in range(100):  # the kill is delivered at exit; the reaping parent is gone
        if not alive(pid):
            break
        time.sleep(0.02)
    assert not alive(pid)
    assert not Path(workdir).exists()


async def test_ports_are_read_from_a_ports_file_dir_given_in_extra_config(
    tmp_path: Path,
) -> None:
    async with NatsServer(extra_config={"ports_file_dir": str(tmp_path)}) as srv:
        node = srv.node
        assert node.ports_file is not None and node.ports_file.parent == tmp_path
        ports = json.loads(node.ports_file.read_text())
        assert ports["nats"] == [srv.client_url]
        assert ports["monitoring"] == [srv.monitor_url]
