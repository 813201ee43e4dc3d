"""Backend choice (``auto``) and the ``qiki-harness doctor`` report.

``choose_backend("auto")`` picks ``container`` when a Docker engine answers a ping, else
``process``; the reason string goes into the run's journal. ``doctor_report()`` says what
works on this machine and why, without starting anything.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from typing import Any

from harness.containers.engine import PING_TIMEOUT_S, docker_available, docker_client
from harness.containers.images import (
    DEFAULT_NATS_IMAGE,
    DEFAULT_SERVICES_IMAGE,
    LABEL_CONTENT_HASH,
    LOCAL_NATS_REPO,
    SERVICES_REPO,
    find_nats_binary,
    nats_binary_version,
)

__all__ = ["BACKENDS", "choose_backend", "doctor_report"]

#: Backends a user may request; "auto" resolves to one of the first two.
BACKENDS = ("process", "container", "external", "auto")

Probe = Callable[[], tuple[bool, str]]


def _nats_binary_probe() -> tuple[bool, str]:
    try:
        binary = find_nats_binary()
        return True, f"nats-server {nats_binary_version(binary)} at {binary}"
    except Exception as exc:  # not found, not executable, bad output
        return False, str(exc)


def choose_backend(
    requested: str = "auto",
    *,
    docker_probe: Probe | None = None,
    binary_probe: Probe | None = None,
) -> tuple[str, str]:
    """Resolve ``requested`` to a concrete backend and say why (one line, for the journal).

    ``auto``: ``container`` when a Docker engine answers, else ``process`` (when a
    nats-server binary is found). Explicit choices are returned as they are, with the reason
    "requested"; probing them is the backend's job when it starts. Raises ValueError for an
    unknown name. When nothing works, ``auto`` still answers ``process``, with a reason
    saying both probes failed (starting it then fails with the full detail).
    """
    if requested not in BACKENDS:
        raise ValueError(f"backend {requested!r} is not one of {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested, f"{requested} backend requested"
    ok, why = (docker_probe or docker_available)()
    if ok:
        return "container", f"auto: {why}"
    bin_ok, bin_why = (binary_probe or _nats_binary_probe)()
    if bin_ok:
        return "process", f"auto: no Docker engine ({why}); using {bin_why}"
    return "process", f"auto: no Docker engine ({why}) and no nats-server binary ({bin_why})"


def _images(client: Any) -> list[dict[str, Any]]:
    wanted = {
        os.environ.get("QIKI_NATS_IMAGE") or DEFAULT_NATS_IMAGE,
        os.environ.get("QIKI_SERVICES_IMAGE") or DEFAULT_SERVICES_IMAGE,
    }
    out = []
    for image in client.images.list():
        tags = [t for t in image.tags
                if t in wanted or t.startswith((LOCAL_NATS_REPO + ":", SERVICES_REPO + ":"))]
        if not tags:
            continue
        out.append(
            {
                "tags": tags,
                "id": image.short_id,
                "size_mb": round((image.attrs.get("Size") or 0) / 1e6, 1),
                "content_hash": (image.labels.get(LABEL_CONTENT_HASH) or "")[:12] or None,
            }
        )
    return out


def doctor_report(*, timeout_s: float = PING_TIMEOUT_S) -> dict[str, Any]:
    """What this machine can run: engine, images, nats-server binary, backends and why.

    Never starts a container or server; never raises (a failing probe is reported).
    """
    docker_ok, docker_why = docker_available(timeout_s)
    bin_ok, bin_why = _nats_binary_probe()
    engine: dict[str, Any] = {"available": docker_ok, "detail": docker_why}
    if docker_ok:
        try:
            client = docker_client(timeout_s)
            try:
                version = client.version()
                info = client.info()
                engine.update(
                    version=version.get("Version"),
                    api_version=version.get("ApiVersion"),
                    storage_driver=info.get("Driver"),
                    images=_images(client),
                )
            finally:
                client.close()
        except Exception as exc:
            engine["error"] = str(exc)
    auto, auto_why = choose_backend(
        "auto", docker_probe=lambda: (docker_ok, docker_why), binary_probe=lambda: (bin_ok, bin_why)
    )
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "nats_server": {"available": bin_ok, "detail": bin_why},
        "docker": engine,
        "ryuk_disabled": os.environ.get("TESTCONTAINERS_RYUK_DISABLED", "") == "true",
        "backends": {
            "process": {"works": bin_ok, "why": bin_why},
            "container": {
                "works": docker_ok,
                "why": docker_why
                if not docker_ok
                else f"{docker_why}; images are built offline when missing",
            },
            "external": {"works": True, "why": "needs --nats-url of a running server"},
            "auto": {"resolves_to": auto, "why": auto_why},
        },
    }
