"""Our clients against secured brokers (issue 10): the injector's engines, Locust users (their
credentials from QIKI_NATS_*) and the fault proxy in front of a TLS connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js.api import StreamConfig

from harness.broker import NatsServer
from harness.faults.proxy import FaultProxy
from harness.faults.toxics import Latency, ResetPeer
from harness.load import Constant, inject
from harness.load.gates import LocustGates
from harness.load.injector import run_load
from harness.load.locust_run import locust_argv, read_locust_csv, run_locust
from harness.security.credentials import RunCredentials, default_identities
from services.common.settings import connect

pytestmark = pytest.mark.security

IDS = default_identities([])


@contextlib.asynccontextmanager
async def secured(tmp_path: Path, mode: str, *, tls: bool, mtls: bool = False
                  ) -> AsyncIterator[NatsServer]:
    creds = RunCredentials.issue(tmp_path / "secrets", mode, IDS, tls=tls,  # type: ignore[arg-type]
                                 verify_client=mtls)
    async with NatsServer(credentials=creds) as srv:
        nc = await connect(srv.nats_settings(), first_connect_timeout_s=10)
        try:
            js = nc.jetstream(timeout=10)
            for name, subject in (("QIKI_RADAR_V1", "qiki.radar.v1.>"),
                                  ("QIKI_EVENTS_V1", "qiki.events.v1.>"),
                                  ("LOAD", "load.>")):
                await js.add_stream(StreamConfig(name=name, subjects=[subject]))
        finally:
            await nc.close()
        yield srv


@pytest.mark.parametrize(("mode", "tls", "engine"), [
    ("user", True, "wire"),       # the wire engine upgrades to TLS itself
    ("token", False, "wire"),
    ("nkey", True, "nats-py"),    # a nonce to sign: falls back, and says so
])
async def test_injector_engine_under_each_mode(tmp_path: Path, mode: str, tls: bool,
                                               engine: str) -> None:
    async with secured(tmp_path, mode, tls=tls, mtls=tls) as srv:
        kwargs = srv.nats_settings().connect_kwargs()
        servers = kwargs.pop("servers")
        res = await run_load(servers, "load.x", rate=Constant(500), count=300,
                             connect_kwargs=kwargs)
        assert res.engine == engine
        assert len(res.delivery_sets()[1]) == 300, res.summary()


@pytest.mark.parametrize(("mode", "tls", "fast"), [
    ("user", True, "1"), ("user", True, "0"),
    # streams in the application account: the users' identity must land there
    ("accounts", False, "1"),
], ids=["mtls-fast-publish", "mtls-nats-py", "accounts-fast-publish"])
async def test_locust_users_take_credentials_from_env(tmp_path: Path, mode: str, tls: bool,
                                                      fast: str) -> None:
    async with secured(tmp_path, mode, tls=tls, mtls=tls) as srv:
        s = srv.nats_settings()
        assert s.password is not None
        env = {"QIKI_NATS_USER": str(s.user),
               "QIKI_NATS_PASSWORD": s.password.get_secret_value(),
               "QIKI_LOCUST_FAST_PUBLISH": fast}
        if tls:
            assert s.tls_ca_file and s.tls_cert_file and s.tls_key_file
            env.update({"QIKI_NATS_CA": str(s.tls_ca_file), "QIKI_NATS_CERT": str(s.tls_cert_file),
                        "QIKI_NATS_KEY": str(s.tls_key_file)})
        argv = locust_argv(host=srv.client_url, users=4, run_time_s=3,
                           csv_prefix=tmp_path / "l", gates=LocustGates(max_fail_ratio=0.0))
        out = await run_locust(argv, timeout_s=90, env=env)
        assert out.returncode == 0, out.output[-3000:]
        stats = read_locust_csv(tmp_path / "l")
        assert stats.requests > 0 and stats.failures == 0
        assert s.password.get_secret_value() not in out.output
        # the warm-up connect uses the same credentials (without them it failed the TLS
        # handshake and held the run 30 s)
        assert "warm-up connect" not in out.output, out.output[-3000:]
        # what Locust acked is in the streams the platform's identity sees (its account)
        nc = await connect(s, first_connect_timeout_s=10)
        try:
            js = nc.jetstream(timeout=10)
            stored = sum([(await js.stream_info(n)).state.messages
                          for n in ("QIKI_RADAR_V1", "QIKI_EVENTS_V1")])
        finally:
            await nc.close()
        assert stored >= stats.requests - stats.failures > 0


async def test_fault_proxy_in_front_of_mtls(tmp_path: Path) -> None:
    """A TCP proxy passes the TLS handshake through (the certificate names 127.0.0.1, which
    the client dials); latency shows in the round trip, and a reset makes the client
    reconnect through the proxy, still under TLS."""
    async with secured(tmp_path, "user", tls=True, mtls=True) as srv:
        async with FaultProxy("127.0.0.1", srv.node.client_port, name="link:test") as proxy:
            events: list[str] = []

            async def on_reconnect() -> None:
                events.append("reconnected")

            nc = await connect(srv.nats_settings(servers=[proxy.url], ping_interval_s=0.5),
                               reconnected_cb=on_reconnect, dont_randomize=True,
                               first_connect_timeout_s=10)
            try:
                assert nc.connected_url is not None and nc.connected_url.port == proxy.port
                js = nc.jetstream(timeout=10)
                await js.publish("load.before", b"x")
                async with proxy.applied(Latency(200), direction="downstream"):
                    t0 = asyncio.get_running_loop().time()
                    await js.publish("load.slow", b"x")
                    slow_s = asyncio.get_running_loop().time() - t0
                # Latency is a lower bound the proxy adds: this is not a timing assertion
                # on the machine's speed.
                assert slow_s >= 0.19, slow_s
                name = await proxy.add(ResetPeer(), direction="downstream")
                for _ in range(100):
                    if not nc.is_connected:
                        break
                    with contextlib.suppress(Exception):
                        await nc.flush(timeout=1)
                    await asyncio.sleep(0.02)
                await proxy.remove(name)
                for _ in range(200):
                    if events:
                        break
                    await asyncio.sleep(0.05)
                assert events == ["reconnected"]
                assert (await js.publish("load.after", b"x")).seq == 3
            finally:
                await nc.close()
            stats = proxy.stats
            assert stats.connections_accepted >= 2 and stats.connections_reset >= 1, stats


async def test_inject_on_a_tls_client_uses_wire_tls(tmp_path: Path) -> None:
    async with secured(tmp_path, "token", tls=True) as srv:
        nc = await connect(srv.nats_settings(), first_connect_timeout_s=10)
        try:
            res = await inject(nc, "load.y", rate=Constant(1000), count=500)
        finally:
            await nc.close()
        assert res.engine == "wire" and len(res.delivery_sets()[1]) == 500
