"""The secret scan finds a secret in any usual form and never says what it was."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from harness.security.scan import (
    command_lines,
    scan_command_lines,
    scan_files,
    secret_forms,
    settings_secrets,
)
from services.common.settings import NatsSettings

SECRET = "s3cr+t/Pa55word=="


@pytest.mark.parametrize("prefix", [b"", b"a", b"ab", b"abc"])
@pytest.mark.parametrize("alphabet", ["std", "url"])
def test_base64_inside_a_longer_text_is_found_at_any_alignment(
        tmp_path: Path, prefix: bytes, alphabet: str) -> None:
    blob = prefix + b'{"user":"x","password":"' + SECRET.encode() + b'"} trailing'
    enc = base64.b64encode(blob) if alphabet == "std" else base64.urlsafe_b64encode(blob)
    (tmp_path / "attachment.txt").write_bytes(b"header\n" + enc + b"\n")
    hits = scan_files(tmp_path, [SECRET])
    assert hits and hits[0].form.startswith("base64"), hits


def test_raw_url_and_json_forms_with_offsets(tmp_path: Path) -> None:
    log = (b"0123456789" + SECRET.encode() + b"\n"
           + quote(SECRET, safe="").encode() + b"\n"
           + json.dumps({"p": SECRET.replace("/", "\\/")}).encode())
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "registrar.log").write_bytes(log)
    hits = scan_files(tmp_path, [SECRET])
    assert [(h.where, h.offset, h.form) for h in hits][:2] == [
        ("logs/registrar.log", 10, "raw"),
        ("logs/registrar.log", 10 + len(SECRET) + 1, "url-encoded")]
    assert all(SECRET not in str(h) and SECRET not in repr(h) for h in hits)


def test_clean_files_secrets_dir_and_short_values(tmp_path: Path) -> None:
    (tmp_path / "journal.json").write_text('{"verdict": "passed"}')
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "passwords.json").write_text(SECRET)
    assert scan_files(tmp_path, [SECRET, "abc"], exclude=[tmp_path / "secrets"]) == []
    assert len(scan_files(tmp_path, [SECRET])) == 1  # without the exclusion it is found


def test_a_secret_across_the_chunk_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    import harness.security.scan as scan

    monkeypatch.setattr(scan, "_CHUNK", 16)
    (tmp_path / "big.log").write_bytes(b"x" * 10 + SECRET.encode() + b"y" * 40)
    [hit] = [h for h in scan_files(tmp_path, [SECRET]) if h.form == "raw"]
    assert hit.offset == 10


def test_command_lines_of_children(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                              "--token", SECRET])
    try:
        argvs = command_lines()
        hits = scan_command_lines(argvs, [SECRET])
        assert [h.where for h in hits] == [f"command line of pid {child.pid} "
                                           f"({Path(sys.executable).name})"]
    finally:
        child.kill()
        child.wait()


def test_settings_secrets(tmp_path: Path) -> None:
    seed = "SU" + "A" * 56
    (tmp_path / "u.nk").write_text(seed + "\n")
    s = NatsSettings(servers=["nats://u:urlpass1@127.0.0.1:4222"], token=None,
                     password="pw-123456", nkey_seed_file=tmp_path / "u.nk")
    assert set(settings_secrets(s)) == {"pw-123456", "urlpass1", seed}
    assert ("raw", SECRET.encode()) in secret_forms(SECRET)


def test_redact_text_every_written_form() -> None:
    from harness.security.scan import redact_text

    text = json.dumps({"error": f"token {SECRET} in {quote(SECRET, safe='')}"})
    clean = redact_text(text, [SECRET, "abc"])
    assert SECRET not in clean and quote(SECRET, safe="") not in clean
    assert json.loads(clean)["error"] == "token [REDACTED] in [REDACTED]"
