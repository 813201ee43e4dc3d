"""open_broker dispatch and ExternalBroker secret handling (no server needed)."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest

from harness.broker import (
    BrokerError,
    BrokerStartError,
    ExternalBroker,
    NatsCluster,
    NatsServer,
    backends,
    factory,
    open_broker,
)

TOKEN = "tok-S3CRET-value"
PASSWORD = "pw-S3CRET-value"


def test_open_broker_dispatches_process_backend() -> None:
    assert isinstance(open_broker("process"), NatsServer)
    cluster = open_broker("process", nodes=3)
    assert isinstance(cluster, NatsCluster) and cluster.size == 3
    assert isinstance(open_broker("external", url="nats://127.0.0.1:4222"), ExternalBroker)
    assert {"process", "external", "container"} <= set(backends())


def test_open_broker_misuse_is_value_error() -> None:
    with pytest.raises(ValueError, match="unknown broker backend 'kafka'"):
        open_broker("kafka")
    with pytest.raises(ValueError, match="url= is for 'external'"):
        open_broker("process", url="nats://127.0.0.1:4222")
    with pytest.raises(ValueError, match="needs url="):
        open_broker("external")
    with pytest.raises(ValueError, match="nodes must be an int >= 1, got 0"):
        open_broker("process", nodes=0)


def test_lazy_backend_absent_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same path a build without harness/broker/container.py takes for "container".
    monkeypatch.setitem(factory._LAZY, "ghost", "harness.broker._no_such_backend:create_broker")
    with pytest.raises(BrokerError, match="ghost backend not available in this build"):
        open_broker("ghost")


def test_container_backend_is_loaded_lazily_when_present() -> None:
    if importlib.util.find_spec("harness.broker.container") is None:
        with pytest.raises(BrokerError, match="container backend not available in this build"):
            open_broker("container")
    else:
        assert "container" in backends()


def test_external_broker_never_shows_secrets() -> None:
    broker = ExternalBroker(
        "nats://alice:" + PASSWORD + "@127.0.0.1:4222,nats://127.0.0.1:4223",
        user="alice",
        password=PASSWORD,
        verify=False,
    )
    shown = [repr(broker), str(broker), str(broker.describe()), str(broker.client_urls)]
    shown.append(repr(broker.nats_settings()))
    for text in shown:
        assert PASSWORD not in text, text
    assert broker.describe()["auth"] == "user/password"
    assert broker.nodes == []
    kwargs = broker.nats_settings().connect_kwargs()
    assert kwargs["password"] == PASSWORD and kwargs["user"] == "alice"


def test_external_broker_token_goes_to_settings_only() -> None:
    broker = ExternalBroker("nats://127.0.0.1:4222", token=TOKEN, verify=False)
    assert TOKEN not in repr(broker) and TOKEN not in str(broker.describe())
    assert broker.nats_settings().connect_kwargs()["token"] == TOKEN
    assert broker.nats_settings(name="x").name == "x"


def test_external_broker_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either token or user/password"):
        ExternalBroker("nats://127.0.0.1:4222", token="t", user="u")
    with pytest.raises(BrokerStartError, match=r"creds_file .* does not exist"):
        ExternalBroker("nats://127.0.0.1:4222", creds_file=tmp_path / "nope.creds")
    with pytest.raises(ValueError, match="is not a NATS URL"):
        ExternalBroker("http://127.0.0.1:4222")


async def test_unreachable_external_broker_error_has_no_secret() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = ExternalBroker(
        f"nats://bob:{PASSWORD}@127.0.0.1:{port}", token=None, connect_timeout_s=0.5
    )
    with pytest.raises(BrokerStartError) as info:
        async with broker:
            pytest.fail("must not connect")
    text = str(info.value)
    assert PASSWORD not in text
    assert "does not answer" in text and "Hint:" in text
    assert info.value.__cause__ is None


def test_external_credentials_come_from_qiki_nats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # What `QIKI_NATS_TOKEN=... qiki-harness run --nats-url ...` relies on: every client of
    # the run takes its settings from the broker, so the broker must carry the token.
    monkeypatch.setenv("QIKI_NATS_TOKEN", TOKEN)
    broker = open_broker("external", url="nats://127.0.0.1:4222")
    assert isinstance(broker, ExternalBroker)
    assert broker.nats_settings().connect_kwargs()["token"] == TOKEN
    assert broker.describe()["auth"] == "token" and TOKEN not in repr(broker)
    # Explicit credentials win over the environment.
    monkeypatch.setenv("QIKI_NATS_USER", "alice")
    monkeypatch.setenv("QIKI_NATS_PASSWORD", PASSWORD)
    monkeypatch.delenv("QIKI_NATS_TOKEN")
    explicit = open_broker("external", url="nats://127.0.0.1:4222", token="other")
    assert explicit.nats_settings().connect_kwargs()["token"] == "other"  # type: ignore[attr-defined]
    user = open_broker("external", url="nats://127.0.0.1:4222")
    kw = user.nats_settings().connect_kwargs()  # type: ignore[attr-defined]
    assert (kw["user"], kw["password"]) == ("alice", PASSWORD)
