"""External brokers with file credentials and mTLS (issue 10), run as a user would.

A nats-server started here (outside the harness) requires TLS with client certificates and
a user/password, or an NKey. ``qiki-harness run --nats-url URL`` reaches it with the password
from ``QIKI_NATS_USER``/``QIKI_NATS_PASSWORD`` and the files from ``--nats-ca``,
``--nats-cert``, ``--nats-key`` (``--nats-nkey-seed``). Wrong or missing credentials exit 2
with a message naming what was tried (mode, user, file paths), never a secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.security import Identity
from harness.security.credentials import RunCredentials
from tests.e2e.conftest import OUTSIDE_BASE, outside_nats_server

pytestmark = pytest.mark.security

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "pw-ext-Rr93kQ0vXy"


def _start(tmp_path: Path, auth_block: str, creds: RunCredentials) -> Iterator[str]:
    assert creds.tls is not None
    tls = (f'tls {{{{ cert_file: "{creds.tls.server_cert_file}", '
           f'key_file: "{creds.tls.server_key_file}", ca_file: "{creds.tls.ca_file}", '
           "verify: true }}\n")
    # the auth block is literal config text: its braces must survive the format() call
    auth = auth_block.replace("{", "{{").replace("}", "}}")
    with outside_nats_server(tmp_path, OUTSIDE_BASE + tls + auth) as url:
        yield url


@pytest.fixture
def material(tmp_path: Path) -> RunCredentials:
    """A CA, server and client certificates and an NKey, made as a user's PKI would be."""
    return RunCredentials.issue(tmp_path / "pki", "nkey", [Identity("harness")], tls=True,
                                verify_client=True)


@pytest.fixture
def mtls_user_server(tmp_path: Path, material: RunCredentials) -> Iterator[str]:
    yield from _start(tmp_path, f'authorization {{ user: "ext", password: "{PASSWORD}" }}\n',
                      material)


@pytest.fixture
def mtls_nkey_server(tmp_path: Path, material: RunCredentials) -> Iterator[str]:
    nkey = material.for_identity("harness").nkey_public
    yield from _start(tmp_path, f'authorization {{ users: [{{ nkey: "{nkey}" }}] }}\n',
                      material)


def _run(url: str, report_dir: Path, env_extra: dict[str, str], *flags: str
         ) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "qiki-harness"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIKI_")}
    env.update(env_extra)
    return subprocess.run(
        [str(exe), "run", str(REPO / "scenarios" / "smoke.yaml"), "--nats-url", url,
         "--report-dir", str(report_dir), "-q", *flags],
        capture_output=True, text=True, timeout=180, env=env, cwd=REPO,
    )


def _tls_flags(m: RunCredentials) -> list[str]:
    assert m.tls is not None
    return ["--nats-ca", str(m.tls.ca_file), "--nats-cert", str(m.tls.client_cert_file),
            "--nats-key", str(m.tls.client_key_file)]


def _journal(report_dir: Path) -> dict[str, object]:
    (run,) = [p for p in report_dir.iterdir() if p.is_dir()]
    return dict(json.loads((run / "journal.json").read_text()))


def test_mtls_and_password_from_flags_and_env(mtls_user_server: str, tmp_path: Path,
                                              material: RunCredentials) -> None:
    reports = tmp_path / "reports"
    res = _run(mtls_user_server, reports,
               {"QIKI_NATS_USER": "ext", "QIKI_NATS_PASSWORD": PASSWORD}, *_tls_flags(material))
    assert res.returncode == 0, res.stdout + res.stderr
    j = _journal(reports)
    assert j["verdict"] == "passed" and j["backend"] == "external"
    broker = j["broker"]
    assert isinstance(broker, dict) and broker["tls"] is True and broker["user"] == "ext"
    assert PASSWORD not in json.dumps(j)


def test_nkey_seed_flag(mtls_nkey_server: str, tmp_path: Path,
                        material: RunCredentials) -> None:
    seed_file = material.for_identity("harness").nkey_seed_file
    reports = tmp_path / "reports"
    res = _run(mtls_nkey_server, reports, {}, "--nats-nkey-seed", str(seed_file),
               *_tls_flags(material))
    assert res.returncode == 0, res.stdout + res.stderr
    j = _journal(reports)
    assert j["verdict"] == "passed"
    assert {r["engine"] for r in j["load"]} == {"nats-py"}  # type: ignore[attr-defined]


def test_wrong_password_names_what_was_tried_never_the_secret(
        mtls_user_server: str, tmp_path: Path, material: RunCredentials) -> None:
    wrong = "wrong-pw-Hh71aa"
    res = _run(mtls_user_server, tmp_path / "reports",
               {"QIKI_NATS_USER": "ext", "QIKI_NATS_PASSWORD": wrong}, *_tls_flags(material))
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "auth: user/password" in out and "user 'ext'" in out, out
    assert material.tls is not None and str(material.tls.client_cert_file) in out
    assert wrong not in out and PASSWORD not in out


def test_missing_client_certificate_is_refused(mtls_user_server: str, tmp_path: Path,
                                               material: RunCredentials) -> None:
    assert material.tls is not None
    res = _run(mtls_user_server, tmp_path / "reports",
               {"QIKI_NATS_USER": "ext", "QIKI_NATS_PASSWORD": PASSWORD},
               "--nats-ca", str(material.tls.ca_file))
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert f"nats-ca {str(material.tls.ca_file)!r}" in out, out
    assert "no client certificate" in out and PASSWORD not in out


def test_a_credential_flag_naming_no_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.creds"
    res = _run("nats://127.0.0.1:1", tmp_path / "reports", {}, "--nats-creds", str(missing))
    assert res.returncode == 2
    assert f"--nats-creds {str(missing)!r}: no such file" in res.stderr
