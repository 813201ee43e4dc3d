"""Connection probes against real servers configured here: each refuses what it must, and a
server that lets the probed client in is caught (issue 10 §3)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import trustme

from harness.broker import NatsServer
from harness.security.probes import applicable_probes, probe_connection


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("qiki-client")
    out = {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key",
           "ccert": d / "client.pem", "ckey": d / "client.key"}
    ca.cert_pem.write_to_path(str(out["ca"]))
    server.cert_chain_pems[0].write_to_path(str(out["cert"]))
    server.private_key_pem.write_to_path(str(out["key"]))
    client.cert_chain_pems[0].write_to_path(str(out["ccert"]))
    client.private_key_pem.write_to_path(str(out["ckey"]))
    return out


def _tls_block(f: dict[str, Path], verify: bool) -> dict[str, object]:
    return {"cert_file": str(f["cert"]), "key_file": str(f["key"]), "ca_file": str(f["ca"]),
            "verify": verify, "timeout": 2}


async def test_token_server_refuses_anonymous_and_a_wrong_token(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    async with NatsServer(extra_config={"authorization": {"token": token}}) as srv:
        good = srv.nats_settings(name="probe").with_overrides(token=token)
        assert applicable_probes("token", tls=False, verify_client=False) == [
            "anonymous", "wrong_credentials"]
        anon = await probe_connection("anonymous", good)
        assert (anon.observed, anon.passed) == ("refused", True), anon
        assert "authorization" in anon.reason.lower()
        wrong = await probe_connection("wrong_credentials", good)
        assert (wrong.observed, wrong.passed) == ("refused", True), wrong
        for r in (anon, wrong):
            assert token not in repr(r.to_dict())
        # Not a TLS server: plaintext is spoken there, and the probe says so.
        plain = await probe_connection("plain_tcp", good)
        assert (plain.observed, plain.passed) == ("accepted", False), plain
        assert "tls_required=False" in plain.reason


async def test_a_server_that_lets_anonymous_in_is_caught(tmp_path: Path) -> None:
    pw = secrets.token_urlsafe(18)
    conf = {"authorization": {"users": [{"user": "app", "password": pw}]},
            "no_auth_user": "app"}
    async with NatsServer(extra_config=conf) as srv:
        good = srv.nats_settings(name="probe").with_overrides(user="app", password=pw)
        anon = await probe_connection("anonymous", good)
        assert (anon.observed, anon.passed) == ("accepted", False), anon
        wrong = await probe_connection("wrong_credentials", good)
        assert (wrong.observed, wrong.passed) == ("refused", True), wrong
        assert pw not in repr(wrong.to_dict())


async def test_control_failure_is_an_error_not_a_pass(tmp_path: Path) -> None:
    async with NatsServer(extra_config={"authorization": {"token": "right-one-xyz"}}) as srv:
        # The run's own settings do not get in: a refusal of the probe would prove nothing.
        bad = srv.nats_settings(name="probe").with_overrides(token="not-the-token-xyz")
        r = await probe_connection("anonymous", bad)
        assert r.observed == "error" and not r.passed
        assert "not-the-token" not in r.reason


async def test_mtls_server_refuses_plaintext_and_a_client_without_certificate(
        tmp_path: Path, tls_files: dict[str, Path]) -> None:
    pw = secrets.token_urlsafe(18)
    conf = {"tls": _tls_block(tls_files, verify=True),
            "authorization": {"users": [{"user": "app", "password": pw}]}}
    async with NatsServer(extra_config=conf) as srv:
        good = srv.nats_settings(name="probe").with_overrides(
            user="app", password=pw, tls_ca_file=tls_files["ca"],
            tls_cert_file=tls_files["ccert"], tls_key_file=tls_files["ckey"])
        assert applicable_probes("user", tls=True, verify_client=True) == [
            "anonymous", "wrong_credentials", "plain_tcp", "no_client_cert"]
        results = {p: await probe_connection(p, good) for p in (
            "anonymous", "wrong_credentials", "plain_tcp", "no_client_cert")}
        for name, r in results.items():
            assert (r.observed, r.passed) == ("refused", True), (name, r)
        assert "tls_required=True" in results["plain_tcp"].reason


async def test_tls_without_client_verification_is_caught(
        tmp_path: Path, tls_files: dict[str, Path]) -> None:
    conf = {"tls": _tls_block(tls_files, verify=False)}
    async with NatsServer(extra_config=conf) as srv:
        good = srv.nats_settings(name="probe").with_overrides(
            tls_ca_file=tls_files["ca"], tls_cert_file=tls_files["ccert"],
            tls_key_file=tls_files["ckey"])
        r = await probe_connection("no_client_cert", good)
        assert (r.observed, r.passed) == ("accepted", False), r
        plain = await probe_connection("plain_tcp", good)
        assert (plain.observed, plain.passed) == ("refused", True), plain
