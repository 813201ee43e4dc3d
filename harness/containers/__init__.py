"""Docker support of the harness: engine detection, offline images, cleanup by label.

The container broker itself is :class:`harness.broker.container.ContainerBroker`; container
faults live in :mod:`harness.containers.faults`, the reference services in containers in
:mod:`harness.containers.services`. Importing this package does not import docker.
"""

from __future__ import annotations

from harness.containers.backend import choose_backend, doctor_report
from harness.containers.engine import (
    LABEL_NAME,
    LABEL_ROLE,
    LABEL_ROOT,
    LABEL_RUN,
    ROOT_SELECTOR,
    CleanupReport,
    DockerUnavailable,
    cleanup,
    docker_available,
    docker_client,
    list_labelled,
    new_run_id,
    run_labels,
    run_selector,
)
from harness.containers.images import (
    DEFAULT_NATS_IMAGE,
    DEFAULT_SERVICES_IMAGE,
    ImageInfo,
    ensure_nats_image,
    ensure_services_image,
)

__all__ = [
    "DEFAULT_NATS_IMAGE",
    "DEFAULT_SERVICES_IMAGE",
    "LABEL_NAME",
    "LABEL_ROLE",
    "LABEL_ROOT",
    "LABEL_RUN",
    "ROOT_SELECTOR",
    "CleanupReport",
    "DockerUnavailable",
    "ImageInfo",
    "choose_backend",
    "cleanup",
    "docker_available",
    "docker_client",
    "doctor_report",
    "ensure_nats_image",
    "ensure_services_image",
    "list_labelled",
    "new_run_id",
    "run_labels",
    "run_selector",
]
