"""nats-server config rendering and port selection."""

from __future__ import annotations

import pytest

from harness.broker._config import deep_merge, free_ports, render_config


def test_render_nested_config() -> None:
    text = render_config(
        {
            "server_name": "n1",
            "listen": "127.0.0.1:4222",
            "debug": False,
            "max_payload": 1048576,
            "jetstream": {"store_dir": '/tmp/a "b"', "sync_interval": "always"},
            "cluster": {"routes": ["nats-route://127.0.0.1:1", "nats-route://127.0.0.1:2"]},
            "skipped": None,
        }
    )
    assert 'server_name: "n1"\n' in text
    assert "debug: false\n" in text
    assert "max_payload: 1048576\n" in text
    assert 'store_dir: "/tmp/a \\"b\\""' in text
    assert 'sync_interval: "always"' in text
    assert 'routes: ["nats-route://127.0.0.1:1", "nats-route://127.0.0.1:2"]' in text
    assert "skipped" not in text


def test_render_rejects_unsupported_values_naming_the_key() -> None:
    with pytest.raises(TypeError, match=r"jetstream\.store_dir: unsupported value"):
        render_config({"jetstream": {"store_dir": object()}})


def test_deep_merge_merges_nested_and_replaces_scalars() -> None:
    base = {"jetstream": {"store_dir": "/a", "max_mem": 1}, "listen": "x"}
    merged = deep_merge(base, {"jetstream": {"max_mem": 2}, "listen": "y"})
    assert merged == {"jetstream": {"store_dir": "/a", "max_mem": 2}, "listen": "y"}
    assert base["jetstream"] == {"store_dir": "/a", "max_mem": 1}  # input untouched


def test_free_ports_are_distinct_and_nonzero() -> None:
    ports = free_ports(6)
    assert len(set(ports)) == 6 and all(p > 0 for p in ports)
