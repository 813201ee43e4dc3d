"""``topology.broker.auth``/``tls`` in the scenario model, and what an external broker says it
tried when it is refused (issue 10). No server needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.broker import BrokerStartError, ExternalBroker
from harness.scenario.model import BrokerTopology
from harness.security.credentials import RunCredentials, default_identities


def test_defaults_are_no_auth_and_plain_tcp() -> None:
    b = BrokerTopology()
    assert b.auth == "none" and not b.tls.enabled and not b.tls.verify_client


@pytest.mark.parametrize("auth", ["none", "token", "user", "nkey", "accounts"])
def test_every_mode_is_accepted(auth: str) -> None:
    b = BrokerTopology.model_validate({"auth": auth, "tls": {"enabled": True,
                                                            "verify_client": True}})
    assert b.auth == auth and b.tls.verify_client


def test_bad_values_name_the_field() -> None:
    with pytest.raises(ValidationError, match="auth"):
        BrokerTopology.model_validate({"auth": "kerberos"})
    with pytest.raises(ValidationError, match=r"verify_client \(mTLS\) needs tls.enabled"):
        BrokerTopology.model_validate({"tls": {"verify_client": True}})
    with pytest.raises(ValidationError, match="external broker's credentials come from"):
        BrokerTopology.model_validate({"backend": "external", "url": "nats://h:4222",
                                       "auth": "token"})


def test_external_tried_names_mode_user_and_files_never_the_password(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "s", "none", default_identities([]), tls=True,
                                 verify_client=True)
    assert creds.tls is not None
    b = ExternalBroker("nats://127.0.0.1:1", user="ops", password="pw-Zz9-secret",
                       tls_ca_file=creds.tls.ca_file, tls_cert_file=creds.tls.client_cert_file,
                       tls_key_file=creds.tls.client_key_file)
    tried = b.tried()
    assert tried.startswith("auth: user/password, user 'ops'")
    assert f"nats-ca {str(creds.tls.ca_file)!r}" in tried
    assert f"nats-cert {str(creds.tls.client_cert_file)!r}" in tried
    assert "pw-Zz9-secret" not in tried + repr(b) + str(b.describe())
    assert b.describe()["tls"] is True
    plain = ExternalBroker("nats://127.0.0.1:1")
    assert "no credentials given" in plain.tried() and "plain TCP" in plain.tried()


def test_external_file_credentials_must_exist(tmp_path: Path) -> None:
    with pytest.raises(BrokerStartError, match=r"--nats-nkey-seed or QIKI_NATS_NKEY_SEED_FILE"):
        ExternalBroker("nats://127.0.0.1:1", nkey_seed_file=tmp_path / "missing.nk")
    (tmp_path / "c.pem").write_text("x")
    with pytest.raises(BrokerStartError, match="needs its key"):
        ExternalBroker("nats://127.0.0.1:1", tls_cert_file=tmp_path / "c.pem")
    with pytest.raises(BrokerStartError, match=r"c\.pem"):
        ExternalBroker("nats://127.0.0.1:1", tls_ca_file=tmp_path / "c.pem")  # not a PEM CA
