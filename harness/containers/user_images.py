"""Images of user services: ``build: DIR`` (a Dockerfile, built offline) or ``image: TAG``.

No registry is reachable, so a Dockerfile can only start ``FROM scratch`` or from an image
already on the engine. The harness offers one with Python and the reference services'
distributions (nats-py, pydantic, PyYAML...): the services image, passed to every build as the
build argument ``QIKI_PYTHON_BASE``, so ``ARG QIKI_PYTHON_BASE`` / ``FROM
${QIKI_PYTHON_BASE}`` gives a user service an interpreter without a pull. A build is
reused while the directory's content (and that base) is unchanged: the tag carries the
content hash.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.containers.engine import LABEL_ROOT, docker_client
from harness.containers.images import LABEL_CONTENT_HASH, build_lock, ensure_services_image
from harness.errors import SetupError

if TYPE_CHECKING:
    from harness.scenario.model import ServiceTopology

__all__ = ["BASE_BUILD_ARG", "ensure_user_image", "user_image_tag"]

#: Build argument naming the offline Python base image.
BASE_BUILD_ARG = "QIKI_PYTHON_BASE"


def user_image_tag(name: str, digest: str) -> str:
    """The tag a ``build:`` service's image gets: its name and content hash, so two runs
    building different contents under one service name never replace each other's image."""
    return f"qiki/user-{name}:{digest[:16]}"


def _dir_digest(root: Path, base: str) -> str:
    h = hashlib.sha256(base.encode())
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            path = Path(dirpath) / fn
            h.update(str(path.relative_to(root)).encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()


def _tail(log: Any) -> str:
    lines: list[str] = []
    for chunk in log or []:
        if isinstance(chunk, dict) and chunk.get("stream"):
            lines.extend(str(chunk["stream"]).splitlines())
        elif isinstance(chunk, dict) and chunk.get("error"):
            lines.append(str(chunk["error"]))
    return "\n".join(f"    {ln}" for ln in lines[-15:])


def ensure_user_image(name: str, spec: ServiceTopology, scenario_dir: Path) -> str:
    """The image tag to run user service ``name`` from: built from ``spec.build`` (relative
    to ``scenario_dir``) unless an image from the same content exists, or ``spec.image``
    checked to be present locally. Raises SetupError saying what is missing."""
    import docker

    client = docker_client()
    try:
        if spec.image is not None:
            try:
                client.images.get(spec.image)
            except docker.errors.ImageNotFound:
                raise SetupError(
                    f"service {name}: image {spec.image!r} is not on the Docker engine and no "
                    "registry is consulted. Hint: build it first (docker build -t "
                    f"{spec.image} DIR) or give topology.services.{name}.build: DIR"
                ) from None
            return spec.image
        assert spec.build is not None
        root = (scenario_dir / spec.build).resolve()
        if not (root / "Dockerfile").is_file():
            raise SetupError(f"service {name}: build: {spec.build} needs a Dockerfile in {root}")
        base = ensure_services_image().tag
        digest = _dir_digest(root, base + str(client.images.get(base).id))
        tag = user_image_tag(name, digest)
        with build_lock(tag):
            return _build(client, name, root, tag, digest, base)
    finally:
        client.close()


def _build(client: Any, name: str, root: Path, tag: str, digest: str, base: str) -> str:
    """Reuse ``tag`` built from ``digest`` or build it (the caller holds its lock)."""
    import docker

    try:
        if client.images.get(tag).labels.get(LABEL_CONTENT_HASH) == digest:
            return tag
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.build(
            path=str(root), tag=tag, rm=True, forcerm=True, pull=False,
            buildargs={BASE_BUILD_ARG: base},
            labels={LABEL_CONTENT_HASH: digest, f"{LABEL_ROOT}.image": f"user-{name}"},
        )
    except docker.errors.BuildError as exc:
        raise SetupError(
            f"service {name}: building {root} failed: {exc.msg}\n  last build lines:\n"
            f"{_tail(exc.build_log)}\nHint: no registry is reachable; start FROM scratch, "
            f"from a local image, or ARG {BASE_BUILD_ARG} / FROM ${{{BASE_BUILD_ARG}}} "
            "(Python with nats-py)"
        ) from None
    except docker.errors.APIError as exc:
        raise SetupError(f"service {name}: building {root} failed: {exc}") from None
    return tag
