"""The shared entry-point pieces: exit codes, common flags, NATS settings (no NATS needed)."""

from __future__ import annotations

import argparse

import pytest

from services.common.runner import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_common_arguments,
    check_http_port,
    nats_settings,
    run_main,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="svc")
    add_common_arguments(p)
    p.add_argument("--outcome", default="ok")
    return p


async def _amain(args: argparse.Namespace) -> int:
    check_http_port(args.http_port)
    if args.outcome == "no-broker":
        raise ConnectionError("no NATS at nats://127.0.0.1:1 within 2 s")
    return EXIT_OK


def test_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("svc", _parser(), _amain, ["--http-port", "0"]) == EXIT_OK
    assert run_main("svc", _parser(), _amain, ["--http-port", "70000"]) == EXIT_USAGE
    assert "svc: error: --http-port 70000: expected 0..65535" in capsys.readouterr().err
    assert run_main("svc", _parser(), _amain, ["--outcome", "no-broker"]) == EXIT_FAILED
    assert "svc: no NATS at" in capsys.readouterr().err


def test_nats_settings_url_and_default_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QIKI_NATS_NAME", raising=False)
    monkeypatch.setenv("QIKI_NATS_URL", "nats://127.0.0.1:4999")
    s = nats_settings(None, name="qiki-x")
    assert s.servers == ["nats://127.0.0.1:4999"] and s.name == "qiki-x"
    s = nats_settings(" nats://127.0.0.1:1, nats://127.0.0.1:2 ,", name="qiki-x")
    assert s.servers == ["nats://127.0.0.1:1", "nats://127.0.0.1:2"]
    monkeypatch.setenv("QIKI_NATS_NAME", "mine")
    assert nats_settings(None, name="qiki-x").name == "mine"
    with pytest.raises(UsageError):
        nats_settings("http://127.0.0.1:1", name="qiki-x")
