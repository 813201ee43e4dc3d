"""Secured process brokers (issue 10): every auth mode, TLS, mTLS and a 3-node TLS cluster."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from harness.broker import NatsCluster, NatsServer
from harness.security import Identity, Permissions
from harness.security.credentials import AUTH_MODES, RunCredentials, default_identities
from services.common.settings import NatsSettings, connect
from tests.js_retry import until_answered

pytestmark = pytest.mark.security

IDS = default_identities(["registrar"])


async def refused(**kwargs: object) -> str:
    """Connect once without reconnects; return the error text (fail if it connects)."""
    try:
        nc = await nats.connect(connect_timeout=2, allow_reconnect=False,
                                max_reconnect_attempts=0, **kwargs)  # type: ignore[arg-type]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await nc.close()
    pytest.fail(f"connected with {sorted(kwargs)}")


async def publish_acked(settings: NatsSettings, stream: str, replicas: int = 1) -> int:
    nc: Client = await connect(settings, first_connect_timeout_s=10)
    try:
        js = nc.jetstream(timeout=10)
        await js.add_stream(name=stream, subjects=[f"{stream}.>"], num_replicas=replicas)
        if replicas > 1:
            # The create answers before the new stream's Raft group has a leader; a publish in
            # that gap gets no response on a loaded machine.
            async with asyncio.timeout(30):
                while True:
                    info = await js.stream_info(stream)
                    if info.cluster is not None and info.cluster.leader:
                        break
                    await asyncio.sleep(0.1)
        ack = await until_answered(
            lambda: js.publish(f"{stream}.x", b"hello", headers={"Nats-Msg-Id": "hello"}),
            f"publish to {stream}",
        )
        return ack.seq
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


@pytest.mark.parametrize("mode", [m for m in AUTH_MODES if m != "none"])
async def test_every_auth_mode_admits_its_identities_and_refuses_anonymous(
        tmp_path: Path, mode: str) -> None:
    creds = RunCredentials.issue(tmp_path / "secrets", mode, IDS)  # type: ignore[arg-type]
    async with NatsServer(credentials=creds) as srv:
        assert await publish_acked(srv.nats_settings(), "H") == 1
        # Every identity gets in with its own credentials.
        for ident in IDS:
            nc = await connect(srv.nats_settings(**creds.client_fields(ident.name)),
                               first_connect_timeout_s=10)
            await nc.close()
        text = await refused(servers=[srv.client_url])
        assert "Authorization" in text or "authorization" in text.lower()
        # The config file holds the secrets: owner-only.
        assert oct(srv.node.config_path.stat().st_mode & 0o777) == "0o600"


async def test_accounts_mode_enforces_permissions(tmp_path: Path) -> None:
    ids = [Identity("radar_sim", Permissions(publish=("radar.>",), subscribe=("_INBOX.>",))),
           *default_identities([])]
    creds = RunCredentials.issue(tmp_path / "secrets", "accounts", ids)
    async with NatsServer(credentials=creds) as srv:
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        nc = await connect(srv.nats_settings(**creds.client_fields("radar_sim")),
                           error_cb=on_error, first_connect_timeout_s=10)
        try:
            await nc.publish("qiki.events.v1.x", b"not mine")
            await nc.flush(timeout=5)
            for _ in range(50):
                if errors:
                    break
                await nc.flush(timeout=5)
            assert any("permissions violation" in str(e).lower() for e in errors), errors
        finally:
            await nc.close()
        # The system account's user can reach the server's system subjects (advisories).
        sysnc = await connect(srv.nats_settings(**creds.system_fields()),
                              first_connect_timeout_s=10)
        try:
            reply = await sysnc.request("$SYS.REQ.SERVER.PING", b"", timeout=5)
            assert b"server" in reply.data
        finally:
            await sysnc.close()


async def test_tls_refuses_plain_clients(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "secrets", "token", IDS, tls=True)
    async with NatsServer(credentials=creds) as srv:
        assert srv.nats_settings().tls
        assert await publish_acked(srv.nats_settings(), "T") == 1
        token = creds.client_fields("harness")["token"]
        text = await refused(servers=[srv.client_url], token=token)
        assert "TLS" in text or "tls" in text.lower() or "SSL" in text


async def test_mtls_refuses_a_client_without_certificate(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "secrets", "user", IDS, tls=True,
                                 verify_client=True)
    async with NatsServer(credentials=creds) as srv:
        assert await publish_acked(srv.nats_settings(), "M") == 1
        without_cert = srv.nats_settings().with_overrides(tls_cert_file=None, tls_key_file=None)
        ctx = without_cert.ssl_context()
        fields = creds.client_fields("harness")
        await refused(servers=[srv.client_url], tls=ctx, user=fields["user"],
                      password=fields["password"])


async def test_three_node_cluster_routes_under_tls(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "secrets", "accounts", IDS, tls=True,
                                 verify_client=True)
    async with NatsCluster(3, credentials=creds) as cluster:
        for node in cluster.nodes:
            text = node.config_path.read_text()
            assert "cluster" in text and text.count("verify: true") == 2  # clients and routes
        assert await publish_acked(cluster.nats_settings(), "R", replicas=3) == 1
        # Streams live in the application account: the leader lookup asks /jsz there.
        leader = await cluster.stream_leader("R")
        assert leader.name in {"n1", "n2", "n3"}
        for node in cluster.nodes:
            varz = await node.monitor("/varz")
            assert varz["cluster"]["tls_required"] and varz["cluster"]["tls_verify"]
            assert (await node.monitor("/routez"))["num_routes"] >= 2  # formed over TLS
