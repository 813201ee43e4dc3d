"""Secret hygiene: no secret of the run in anything the run wrote or ran (issue 10).

Always on when a run has credentials: every file under the run directory (journal, HTML,
JUnit, CTRF, logs, allure attachments, Locust CSV/HTML...; the ``secrets/`` directory that
holds the credentials is the one exception) and the command line of every process the run
started are searched for every secret value, also in the forms a leak usually takes:
URL-encoded (``%2B``), JSON-escaped, and base64 (standard and URL-safe alphabets, at each of
the three alignments a secret can have inside a longer base64 text). A hit names the file (or
process) and the byte offset and which form matched, never the secret.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus, urlsplit

if TYPE_CHECKING:
    from services.common.settings import NatsSettings

__all__ = [
    "MIN_SECRET_LEN",
    "SecretFinding",
    "command_lines",
    "redact_text",
    "scan_command_lines",
    "scan_files",
    "secret_forms",
    "settings_secrets",
]

#: Shorter values are not scanned: they would match by chance (a user name is not a secret).
MIN_SECRET_LEN = 6
#: Files above this size are scanned in overlapping chunks.
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class SecretFinding:
    """One hit: where, at which byte, in which form. Never the value."""

    where: str
    offset: int
    form: str
    #: which secret (its position in the list given, so two hits can be told apart)
    secret_index: int

    def __str__(self) -> str:
        return f"{self.where}: byte {self.offset}: secret #{self.secret_index + 1} ({self.form})"


def _b64_forms(raw: bytes) -> Iterator[tuple[str, bytes]]:
    # Inside a longer base64 text the secret starts at byte 0, 1 or 2 of a 3-byte group:
    # the characters that encode only the secret's own bits are stable for each alignment.
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + raw)
        start = (shift * 8 + 5) // 6  # first char not touched by the padding bytes
        end_bits = (shift + len(raw)) * 8
        end = end_bits // 6  # chars fully inside the data
        core = enc[start:end]
        if len(core) >= MIN_SECRET_LEN:
            yield f"base64+{shift}", core
            url = core.translate(bytes.maketrans(b"+/", b"-_"))
            if url != core:
                yield f"base64url+{shift}", url


def secret_forms(secret: str) -> list[tuple[str, bytes]]:
    """(form name, bytes to look for) of ``secret``: raw, URL-encoded, JSON-escaped, base64."""
    raw = secret.encode("utf-8")
    forms: dict[bytes, str] = {raw: "raw"}
    for name, text in (("url-encoded", quote(secret, safe="")),
                       ("form-encoded", quote_plus(secret, safe="")),
                       ("json-escaped", json.dumps(secret)[1:-1])):
        forms.setdefault(text.encode("utf-8"), name)
    for name, enc in _b64_forms(raw):
        forms.setdefault(enc, name)
    return [(name, value) for value, name in forms.items()]


def _patterns(secrets: Iterable[str]) -> list[tuple[int, str, bytes]]:
    out = []
    for i, s in enumerate(dict.fromkeys(s for s in secrets if s)):
        if len(s) < MIN_SECRET_LEN:
            continue
        out += [(i, form, value) for form, value in secret_forms(s)]
    return out


def _find_all(data: bytes, value: bytes, base: int) -> Iterator[int]:
    at = data.find(value)
    while at != -1:
        yield base + at
        at = data.find(value, at + 1)


def _scan_bytes(where: str, chunks: Iterable[tuple[int, bytes]],
                patterns: Sequence[tuple[int, str, bytes]]) -> list[SecretFinding]:
    found: dict[tuple[int, int], SecretFinding] = {}
    for base, data in chunks:
        for index, form, value in patterns:
            for offset in _find_all(data, value, base):
                found.setdefault((index, offset), SecretFinding(where, offset, form, index))
    return sorted(found.values(), key=lambda f: (f.offset, f.secret_index))


def _file_chunks(path: Path, overlap: int) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        base = 0
        prev = b""
        while True:
            block = f.read(_CHUNK)
            if not block:
                return
            data = prev + block
            yield base - len(prev), data
            prev = data[-overlap:] if overlap else b""
            base += len(block)


def scan_files(root: Path, secrets: Iterable[str], *,
               exclude: Sequence[Path] = ()) -> list[SecretFinding]:
    """Every hit of every secret in every file under ``root`` (``exclude``: dirs/files to
    skip, e.g. the run's ``secrets/``); paths in findings are relative to ``root``."""
    patterns = _patterns(secrets)
    if not patterns or not root.is_dir():
        return []
    skip = [p.resolve() for p in exclude]
    overlap = max(len(v) for _, _, v in patterns)
    out: list[SecretFinding] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() not in skip)
        for name in sorted(filenames):
            path = here / name
            if path.resolve() in skip or path.is_symlink() or not path.is_file():
                continue
            try:
                out += _scan_bytes(str(path.relative_to(root)), _file_chunks(path, overlap),
                                   patterns)
            except OSError:
                continue  # vanished or unreadable: nothing the run can have leaked there
    return out


def command_lines(root_pid: int | None = None) -> dict[str, list[str]]:
    """``"pid N (name)"`` -> argv of every live descendant of ``root_pid`` (default: this
    process), read from ``/proc`` (empty elsewhere)."""
    root_pid = os.getpid() if root_pid is None else root_pid
    proc = Path("/proc")
    if not proc.is_dir():
        return {}
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out: dict[str, list[str]] = {}
    todo = list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        if argv:
            out[f"pid {pid} ({Path(argv[0]).name})"] = argv
    return out


def scan_command_lines(argvs: Mapping[str, Sequence[str]],
                       secrets: Iterable[str]) -> list[SecretFinding]:
    """Hits in command lines (offset: into the argv joined by spaces)."""
    patterns = _patterns(secrets)
    if not patterns:
        return []
    out: list[SecretFinding] = []
    for where, argv in argvs.items():
        out += _scan_bytes(f"command line of {where}",
                           [(0, " ".join(argv).encode("utf-8", "replace"))], patterns)
    return out


def settings_secrets(settings: NatsSettings) -> tuple[str, ...]:
    """The secret values ``settings`` carries: token, password, a URL's password, and the
    seeds in its nkey seed file and creds file (read now; an unreadable file gives none)."""
    out: list[str] = []
    if settings.token is not None:
        out.append(settings.token.get_secret_value())
    if settings.password is not None:
        out.append(settings.password.get_secret_value())
    for url in settings.servers:
        with_info = urlsplit(url)
        if with_info.password:
            out.append(with_info.password)
        elif with_info.username and not with_info.password:
            out.append(with_info.username)  # nats://TOKEN@host: the user part is the token
    for attr in ("nkey_seed_file", "creds_file"):
        path = getattr(settings, attr, None)
        if path is None:
            continue
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            continue
        # A seed line starts with S (SU... user seed, SA... account seed); a creds file holds
        # one between its NKEY SEED markers.
        out += [ln.strip() for ln in text.splitlines()
                if ln.strip().startswith("S") and len(ln.strip()) >= 50]
    return tuple(dict.fromkeys(s for s in out if s))


REDACTED = "[REDACTED]"


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (raw, JSON-escaped or URL-encoded) replaced by
    ``[REDACTED]``: for what the harness itself writes, e.g. a crashed service's last log
    lines quoted in the journal. (The scan still reports the service's own log.)"""
    for s in sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        for form in dict.fromkeys((s, json.dumps(s)[1:-1], quote(s, safe=""))):
            text = text.replace(form, REDACTED)
    return text
