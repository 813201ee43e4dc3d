"""Offline image builds against a real Docker engine."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker.container import ContainerBroker
from harness.containers.engine import docker_client, list_labelled, run_labels, run_selector
from harness.containers.images import (
    LABEL_CONTENT_HASH,
    LOCAL_NATS_REPO,
    ensure_nats_image,
    ensure_services_image,
)
from harness.containers.services import ServiceContainer

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture
def fake_binary(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A stand-in 'nats-server' (shell script) with a version no real image has."""
    version = f"0.0.1-t{uuid.uuid4().hex[:8]}"
    script = tmp_path / "nats-server"
    script.write_text(f"#!/bin/sh\necho 'nats-server: v{version}'\n")
    script.chmod(0o755)
    yield script, version
    client = docker_client()
    try:
        for image in client.images.list(name=LOCAL_NATS_REPO):
            if f"{LOCAL_NATS_REPO}:{version}" in image.tags:
                client.images.remove(image.id, force=True)
    finally:
        client.close()


def test_nats_image_built_offline_cached_and_rebuilt_on_new_binary(
    fake_binary: tuple[Path, str],
) -> None:
    script, version = fake_binary
    absent = f"qiki/absent-{uuid.uuid4().hex[:8]}:1"
    first = ensure_nats_image(absent, binary=script)
    assert first.tag == f"{LOCAL_NATS_REPO}:{version}" and first.source == "built"
    again = ensure_nats_image(absent, binary=script)
    assert (again.tag, again.source) == (first.tag, "cached")

    script.write_text(script.read_text() + "# changed\n")
    rebuilt = ensure_nats_image(absent, binary=script)
    assert rebuilt.source == "built" and rebuilt.content_hash != first.content_hash
    client = docker_client()
    try:
        image = client.images.get(rebuilt.tag)
        assert image.labels[LABEL_CONTENT_HASH] == rebuilt.content_hash
    finally:
        client.close()


def test_present_image_is_used_as_is() -> None:
    built = ensure_nats_image(f"qiki/absent-{uuid.uuid4().hex[:8]}:1")
    assert built.source in ("built", "cached")
    assert ensure_nats_image(built.tag).source == "present"


def test_services_image_runs_the_services_python() -> None:
    info = ensure_services_image()
    assert ensure_services_image().source == "cached"
    client = docker_client()
    run_id = uuid.uuid4().hex[:10]
    try:
        out = client.containers.run(
            info.tag,
            [
                "python",
                "-c",
                "import nats, pydantic, yaml, prometheus_client, uvloop, services; "
                "import services.common.settings; print('imports ok')",
            ],
            labels=run_labels(run_id),
            remove=True,
            stdout=True,
            stderr=True,
        )
        assert b"imports ok" in out
        assert list_labelled(client, run_selector(run_id)) == ([], [])
    finally:
        client.close()


async def test_service_container_runs_next_to_the_broker() -> None:
    async with ContainerBroker() as broker:
        async with ServiceContainer("services.lagmon", broker=broker) as svc:
            assert "READY" in svc.log_text()
            assert svc.http_url.startswith("http://127.0.0.1:")
            await svc.restart()
            assert svc.restarts == 1
        run_id = broker.run_id
    client = docker_client()
    try:
        assert list_labelled(client, run_selector(run_id)) == ([], [])
    finally:
        client.close()


def test_down_images_removes_superseded_builds_and_keeps_the_newest_and_those_in_use(
    tmp_path: Path,
) -> None:
    """Three builds of one user service (content-tagged, as ``build:`` makes them); the
    oldest is superseded and unused, the middle one has a container. ``qiki-harness down
    --images KIND`` removes the oldest only; the other kinds are left alone."""
    import subprocess
    import sys

    kind = f"user-prune{uuid.uuid4().hex[:8]}"
    run = f"prune-{uuid.uuid4().hex[:8]}"
    client = docker_client()
    tags = []
    container = None
    try:
        for i in range(3):
            ctx = tmp_path / f"v{i}"
            ctx.mkdir()
            (ctx / "payload").write_text(f"build {i}\n")
            (ctx / "Dockerfile").write_text(
                f"FROM scratch\nCOPY payload /payload\n"
                f'LABEL qiki-harness.image="{kind}" {LABEL_CONTENT_HASH}="{i}"\n')
            tag = f"qiki/{kind}:v{i}"
            client.images.build(path=str(ctx), tag=tag, rm=True, pull=False)
            tags.append(tag)
        # in use: a container (of no harness run, so `down --run` leaves it) holds build 1
        container = client.containers.create(tags[1], command=["/payload"])
        others_before = {i.id for i in client.images.list(filters={"label": "qiki-harness.image"})
                         if i.labels.get("qiki-harness.image") != kind}
        res = subprocess.run(
            [str(Path(sys.executable).parent / "qiki-harness"), "down", "--run", run,
             "--images", kind], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "removed 1 superseded image(s), kept the newest 1; 1 still in use" in res.stdout
        assert f"removed {tags[0]}" in res.stdout
        left = {t for i in client.images.list(name=f"qiki/{kind}") for t in i.tags}
        assert left == {tags[1], tags[2]}
        others_after = {i.id for i in client.images.list(filters={"label": "qiki-harness.image"})
                        if i.labels.get("qiki-harness.image") != kind}
        assert others_before <= others_after  # no other kind was touched
    finally:
        if container is not None:
            container.remove(force=True)
        for tag in tags:
            with contextlib.suppress(Exception):
                client.images.remove(tag, force=True)
        client.close()
