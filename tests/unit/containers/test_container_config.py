"""ContainerBroker arguments and generated nats-server config (no engine needed)."""

from __future__ import annotations

import pytest

from harness.broker._config import render_config
from harness.broker.container import ContainerBroker, ContainerNode, create_broker


def test_cluster_config_routes_by_alias_and_hides_container_addresses() -> None:
    broker = ContainerBroker(3, sync_always=True, run_id="abc")
    cfg = broker.node_config(ContainerNode(broker, "n2", 1, 2))
    assert cfg["server_name"] == "n2"
    assert cfg["listen"] == "0.0.0.0:4222" and cfg["http"] == "0.0.0.0:8222"
    assert cfg["jetstream"] == {"store_dir": "/data/jetstream", "sync_interval": "always"}
    assert cfg["cluster"]["routes"] == ["nats-route://n1:6222", "nats-route://n3:6222"]
    # clients must never be told a 172.x container address
    assert cfg["cluster"]["no_advertise"] is True
    assert "no_advertise: true" in render_config(cfg)


def test_single_node_has_no_cluster_block_and_extra_config_merges() -> None:
    broker = ContainerBroker(extra_config={"jetstream": {"max_file_store": 1 << 20}, "debug": True})
    cfg = broker.node_config(ContainerNode(broker, "n1", 1, 2))
    assert "cluster" not in cfg
    assert cfg["jetstream"] == {"store_dir": "/data/jetstream", "max_file_store": 1 << 20}
    assert cfg["debug"] is True


def test_names_and_urls_before_start() -> None:
    broker = ContainerBroker(3, run_id="r1")
    assert broker.network_name == "qiki-r1"
    node = ContainerNode(broker, "n1", 4000, 8000)
    assert node.container_name == "qiki-r1-n1"
    assert node.client_url == "nats://127.0.0.1:4000"
    assert node.monitor_url == "http://127.0.0.1:8000"
    assert node.internal_client_url == "nats://n1:4222"
    assert not node.running and node.log_text() == ""
    with pytest.raises(Exception, match="not been started"):
        _ = broker.version


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_bad_size_rejected(size: object) -> None:
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        ContainerBroker(size)  # type: ignore[arg-type]


def test_factory_validates_like_open_broker() -> None:
    with pytest.raises(ValueError, match="url= is for 'external'"):
        create_broker(url="nats://127.0.0.1:4222")
    with pytest.raises(ValueError, match="nodes must be an int"):
        create_broker(nodes=0)
    assert create_broker(nodes=3).size == 3
    with pytest.raises(TypeError, match="extra_config must be a mapping"):
        ContainerBroker(extra_config=["debug"])  # type: ignore[arg-type]
