"""NatsSettings: environment parsing, connect kwargs, and secrets never shown."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.settings import NatsSettings, connect, mask_url

TOKEN = "s3cr3t-token-value"
PASSWORD = "hunter2-password"


def test_defaults() -> None:
    s = NatsSettings()
    assert s.servers == ["nats://127.0.0.1:4222"]
    kw = s.connect_kwargs()
    assert kw["servers"] == ["nats://127.0.0.1:4222"]
    assert kw["ping_interval"] == 2.0
    assert kw["max_outstanding_pings"] == 2
    assert kw["reconnect_time_wait"] == 0.25
    assert kw["max_reconnect_attempts"] == -1
    assert kw["connect_timeout"] == 2.0
    assert not {"token", "user", "password", "user_credentials"} & kw.keys()
    assert s.auth_kind == "none"


def test_from_env_reads_every_variable(tmp_path: Path) -> None:
    creds = tmp_path / "user.creds"
    env = {
        "QIKI_NATS_URL": "nats://127.0.0.1:4222, nats://127.0.0.1:4223,",
        "QIKI_NATS_TOKEN": TOKEN,
        "QIKI_NATS_USER": "alice",
        "QIKI_NATS_PASSWORD": PASSWORD,
        "QIKI_NATS_CREDS": str(creds),
        "QIKI_NATS_PING_INTERVAL_S": "0.5",
        "QIKI_NATS_NAME": "registrar",
    }
    s = NatsSettings.from_env(environ=env)
    assert s.servers == ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
    assert s.user == "alice" and s.name == "registrar"
    assert s.creds_file == creds
    assert s.ping_interval_s == 0.5
    kw = s.connect_kwargs()
    assert kw["token"] == TOKEN
    assert kw["password"] == PASSWORD
    assert kw["user"] == "alice"
    assert kw["user_credentials"] == str(creds)
    assert kw["name"] == "registrar"


def test_from_env_uses_os_environ_and_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_URL", "nats://127.0.0.1:5000")
    monkeypatch.setenv("MY_TOKEN", "")  # empty means unset
    s = NatsSettings.from_env(prefix="MY_", ping_interval_s=1.0)
    assert s.servers == ["nats://127.0.0.1:5000"]
    assert s.token is None
    assert s.ping_interval_s == 1.0


def test_from_env_bad_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="QIKI_NATS_PING_INTERVAL_S='soon'"):
        NatsSettings.from_env(environ={"QIKI_NATS_PING_INTERVAL_S": "soon"})


@pytest.mark.parametrize("servers", [["localhost:4222"], ["http://127.0.0.1:4222"], [" "]])
def test_bad_server_urls_are_rejected(servers: list[str]) -> None:
    with pytest.raises(ValidationError, match="servers"):
        NatsSettings(servers=servers)


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(ValidationError, match="pasword"):
        NatsSettings(pasword="x")  # type: ignore[call-arg]


def test_validation_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ValidationError) as info:
        NatsSettings(token=12345678)  # type: ignore[arg-type]
    assert "12345678" not in str(info.value)


def test_secrets_never_show_in_repr_str_or_describe() -> None:
    s = NatsSettings(
        servers=[f"nats://bob:{PASSWORD}@127.0.0.1:4222", f"nats://{TOKEN}@127.0.0.1:4223"],
        token=TOKEN,
        user="alice",
        password=PASSWORD,
    )
    for text in (repr(s), str(s), str(s.describe()), s.model_dump_json()):
        assert TOKEN not in text
        assert PASSWORD not in text
    assert "alice" in repr(s)
    assert s.describe()["auth"] == "token"
    assert s.describe()["servers"] == [
        "nats://bob:**********@127.0.0.1:4222",
        "nats://**********@127.0.0.1:4223",
    ]


def test_bad_url_error_masks_the_password() -> None:
    with pytest.raises(ValidationError) as info:
        NatsSettings(servers=[f"http://bob:{PASSWORD}@127.0.0.1:4222"])
    assert PASSWORD not in str(info.value)
    assert "http://bob:**********@127.0.0.1:4222" in str(info.value)


def test_mask_url() -> None:
    assert mask_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert mask_url("nats://u:p@h:1") == "nats://u:**********@h:1"
    assert mask_url("nats://tok@h:1") == "nats://**********@h:1"
    assert mask_url("no-scheme") == "no-scheme"


def test_with_overrides_validates() -> None:
    s = NatsSettings().with_overrides(name="lagmon")
    assert s.name == "lagmon"
    with pytest.raises(ValidationError):
        NatsSettings().with_overrides(ping_interval_s=0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connect_gives_up_after_the_first_connect_timeout() -> None:
    # Nothing listens on the port: with max_reconnect_attempts=-1 nats-py would retry forever.
    s = NatsSettings(
        servers=[f"nats://127.0.0.1:{_closed_port()}"],
        password=PASSWORD,
        user="u",
        reconnect_time_wait_s=0.05,
        connect_timeout_s=0.2,
    )
    with pytest.raises(ConnectionError) as info:
        await asyncio.wait_for(connect(s, first_connect_timeout_s=0.5), 10)
    assert "cannot connect to NATS at nats://127.0.0.1:" in str(info.value)
    assert PASSWORD not in str(info.value)


async def test_connect_with_bounded_attempts_fails_without_a_timeout() -> None:
    s = NatsSettings(
        servers=[f"nats://127.0.0.1:{_closed_port()}"],
        max_reconnect_attempts=1,
        reconnect_time_wait_s=0.01,
    )
    with pytest.raises(ConnectionError, match="QIKI_NATS_"):
        await asyncio.wait_for(connect(s, first_connect_timeout_s=None), 10)
