"""The client's reply prefix travels as QIKI_NATS_INBOX_PREFIX / NatsSettings.inbox_prefix
to nats-py's ``inbox_prefix`` (issue 10: per-identity inboxes under least privilege)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.load._wire import PubAckMux, WireClient
from services.common.settings import NatsSettings


def test_inbox_prefix_from_env_reaches_connect_kwargs() -> None:
    s = NatsSettings.from_env(environ={"QIKI_NATS_INBOX_PREFIX": "_INBOX.registrar"})
    assert s.inbox_prefix == "_INBOX.registrar"
    assert s.connect_kwargs()["inbox_prefix"] == "_INBOX.registrar"
    assert s.describe()["inbox_prefix"] == "_INBOX.registrar"


def test_no_prefix_keeps_nats_py_default() -> None:
    assert "inbox_prefix" not in NatsSettings.from_env(environ={}).connect_kwargs()


@pytest.mark.parametrize("bad", ["", "_INBOX.>", "_INBOX.*", "a..b", "_INBOX.x y", ".x"])
def test_a_prefix_that_is_no_subject_prefix_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="inbox_prefix"):
        NatsSettings(inbox_prefix=bad)


def test_the_locust_fast_publisher_uses_the_prefix() -> None:
    mux = PubAckMux(WireClient(["nats://127.0.0.1:4222"]), inbox_prefix="_INBOX.load")
    assert mux._inbox.startswith("_INBOX.load.")
    assert PubAckMux(WireClient(["nats://127.0.0.1:4222"]))._inbox.startswith("_INBOX.")


def test_an_external_broker_keeps_the_operators_inbox_prefix(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.broker.factory import open_broker

    monkeypatch.setenv("QIKI_NATS_INBOX_PREFIX", "_INBOX_ops.qiki")
    broker = open_broker("external", url="nats://127.0.0.1:14222", verify=False)
    assert broker.nats_settings().inbox_prefix == "_INBOX_ops.qiki"
    assert broker.nats_settings(name="x").connect_kwargs()["inbox_prefix"] == "_INBOX_ops.qiki"
