"""Per-run credentials, TLS material and the auth config rendered from identities (issue 10)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from harness.security import ALLOW_ALL, Identity, Permissions
from harness.security.credentials import (
    APP_ACCOUNT,
    AUTH_MODES,
    SYSTEM_ACCOUNT,
    RunCredentials,
    check_private,
    default_identities,
    render_auth,
    tls_config,
)
from services.common.settings import NatsSettings

IDS = default_identities(["registrar", "radar_sim"])


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_secrets_dir_is_owner_only(tmp_path: Path, mode: str) -> None:
    creds = RunCredentials.issue(tmp_path / "secrets", mode, IDS, tls=True,  # type: ignore[arg-type]
                                 verify_client=True)
    assert mode_of(creds.secrets_dir) == 0o700
    files = list(creds.secrets_dir.iterdir())
    assert files, "TLS material at least"
    assert all(mode_of(f) == 0o600 for f in files), {f.name: oct(mode_of(f)) for f in files}
    assert check_private(creds.secrets_dir) == []


def test_check_private_names_a_loose_file(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "s", "token", IDS)
    (creds.secrets_dir / "token").chmod(0o644)
    assert check_private(creds.secrets_dir) == [f"{creds.secrets_dir / 'token'}: mode 644, "
                                                "expected 600"]


def test_token_mode_one_token_for_everyone(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "s", "token", IDS)
    tokens = {creds.client_fields(i.name)["token"] for i in IDS}
    assert len(tokens) == 1
    (token,) = tokens
    assert len(token) >= 24
    text = creds.auth_config()
    assert "authorization" in text and token in text
    assert creds.secret_values() == [token]


def test_user_mode_one_user_per_identity_unrestricted(tmp_path: Path) -> None:
    ids = [*IDS[:2], Identity("registrar", Permissions(publish=("a",)))]
    creds = RunCredentials.issue(tmp_path / "s", "user", ids)
    text = creds.auth_config()
    for i in ids:
        fields = creds.client_fields(i.name)
        assert fields["user"] == i.name
        assert fields["password"] in text
    # Outside `accounts` permissions are not rendered (every identity ALLOW_ALL).
    assert "permissions" not in text
    assert len(set(creds.secret_values())) == len(ids)


def test_nkey_mode_seed_files_and_public_keys(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "s", "nkey", IDS)
    text = creds.auth_config()
    for i in IDS:
        cred = creds.for_identity(i.name)
        assert cred.nkey_public is not None and cred.nkey_public.startswith("U")
        assert cred.nkey_public in text
        assert cred.nkey_seed_file is not None
        seed = cred.nkey_seed_file.read_text().strip()
        assert seed.startswith("SU") and seed not in text  # the server gets public keys only
        assert seed in creds.secret_values()


def test_accounts_mode_renders_permissions_and_system_account(tmp_path: Path) -> None:
    ids = [Identity("registrar", Permissions(publish=("qiki.events.v1.>",), subscribe=())),
           Identity("harness", ALLOW_ALL), Identity("load", Permissions(subscribe=("_INBOX.>",)))]
    creds = RunCredentials.issue(tmp_path / "s", "accounts", ids)
    text = creds.auth_config()
    assert f"{APP_ACCOUNT}: {{" in text and f"{SYSTEM_ACCOUNT}: {{" in text
    assert f'system_account: "{SYSTEM_ACCOUNT}"' in text
    assert '"qiki.events.v1.>"' in text
    # An empty allow list would mean "anything": nothing allowed renders as deny >.
    assert 'deny: [">"]' in text
    assert creds.account == APP_ACCOUNT
    assert creds.system_fields()["user"] == "qiki-sys"
    # The harness is unrestricted: its user entry carries no permissions block.
    harness_entry = text.split('user: "harness"')[1].split("}")[0]
    assert "permissions" not in harness_entry


def test_render_auth_takes_any_identity_list(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "s", "user", IDS)
    assert render_auth(IDS, "none", creds) == ""
    with pytest.raises(ValueError, match=r"no credentials for identities \['stranger'\]"):
        render_auth([Identity("stranger")], "user", creds)
    with pytest.raises(ValueError, match="system credential"):
        render_auth(IDS, "accounts", creds.credentials)


def test_issue_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown"):
        RunCredentials.issue(tmp_path / "s", "kerberos", IDS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs tls"):
        RunCredentials.issue(tmp_path / "s", "none", IDS, verify_client=True)
    with pytest.raises(ValueError, match="'harness'"):
        RunCredentials.issue(tmp_path / "s", "token", [Identity("registrar")])


def test_describe_and_repr_hold_no_secret(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "s", "accounts", IDS, tls=True)
    shown = repr(creds.describe()) + repr(creds.credentials)
    for secret in creds.secret_values():
        assert secret not in shown


def test_tls_material_and_config(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "s", "none", IDS, tls=True, verify_client=True,
                                 hostnames=["n1"])
    assert creds.tls is not None
    fields = creds.client_fields("registrar")
    assert set(fields) == {"tls_ca_file", "tls_cert_file", "tls_key_file"}
    conf = tls_config(creds.tls, cluster=True)
    assert conf["tls"]["verify"] is True
    assert conf["cluster"]["tls"]["verify"] is True
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(creds.tls.server_cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "n1" in san.get_values_for_type(x509.DNSName)
    # Clients and the fault proxy in front of them dial 127.0.0.1: it must be an IP SAN.
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # A private key copied anywhere is caught by the scan: its first base64 line is a secret.
    key_line = creds.tls.client_key_file.read_text().splitlines()[1]
    assert key_line in creds.secret_values()
    # Without mTLS a client only needs the CA.
    plain = RunCredentials.issue(tmp_path / "t", "none", IDS, tls=True)
    assert set(plain.client_fields("harness")) == {"tls_ca_file"}


def test_settings_from_env_reads_file_credentials(tmp_path: Path) -> None:
    creds = RunCredentials.issue(tmp_path / "s", "nkey", IDS, tls=True, verify_client=True)
    assert creds.tls is not None
    seed = creds.for_identity("harness").nkey_seed_file
    env = {"QIKI_NATS_NKEY_SEED_FILE": str(seed), "QIKI_NATS_CA": str(creds.tls.ca_file),
           "QIKI_NATS_CERT": str(creds.tls.client_cert_file),
           "QIKI_NATS_KEY": str(creds.tls.client_key_file)}
    s = NatsSettings.from_env(environ=env)
    assert s.auth_kind == "nkey" and s.tls
    kw = s.connect_kwargs()
    assert kw["nkeys_seed"] == str(seed)
    assert kw["tls"].verify_mode.name == "CERT_REQUIRED"
    assert s.describe()["tls_cert_file"] == str(creds.tls.client_cert_file)


def test_settings_tls_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        NatsSettings(tls_cert_file=tmp_path / "c.pem")
    bad = NatsSettings(tls_ca_file=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match=r"missing\.pem"):
        bad.connect_kwargs()
