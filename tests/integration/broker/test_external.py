"""ExternalBroker against a real nats-server that requires credentials."""

from __future__ import annotations

import pytest

from harness.broker import Broker, BrokerStartError, ExternalBroker, NatsServer, Node, open_broker

TOKEN = "ext-T0KEN-do-not-log"


async def test_external_with_token_connects_and_hides_it() -> None:
    async with NatsServer(extra_config={"authorization": {"token": TOKEN}}) as srv:
        async with open_broker("external", url=srv.client_url, token=TOKEN) as ext:
            assert isinstance(ext, ExternalBroker) and isinstance(ext, Broker)
            assert ext.version == srv.version
            assert ext.nodes == [] and ext.client_urls == [srv.client_url]
            for text in (repr(ext), str(ext.describe()), repr(ext.nats_settings())):
                assert TOKEN not in text
            assert ext.describe()["auth"] == "token"
            from services.common.settings import connect

            nc = await connect(ext.nats_settings())
            try:
                assert nc.is_connected
            finally:
                await nc.close()

        wrong = ExternalBroker(srv.client_url, token="wrong-" + TOKEN, connect_timeout_s=1)
        with pytest.raises(BrokerStartError) as info:
            async with wrong:
                pytest.fail("must not connect with a wrong token")
        assert TOKEN not in str(info.value) and "Hint:" in str(info.value)


async def test_external_with_user_password() -> None:
    users = {"users": [{"user": "alice", "password": "pw-Secret-1"}]}
    async with NatsServer(extra_config={"authorization": users}) as srv:
        url = srv.client_url
        async with ExternalBroker(url, user="alice", password="pw-Secret-1") as ext:
            assert "pw-Secret-1" not in str(ext.describe())
            assert ext.describe()["user"] == "alice"
        with pytest.raises(BrokerStartError):
            async with ExternalBroker(url, user="alice", password="nope", connect_timeout_s=1):
                pass


async def test_process_broker_and_nodes_satisfy_the_protocols() -> None:
    async with NatsServer() as srv:
        assert isinstance(srv, Broker)
        assert all(isinstance(n, Node) for n in srv.nodes)
        assert srv.describe()["store_dir"] is not None
