"""Docker engine access: a fast ping, the harness labels and cleanup by label.

Every container and network the harness creates carries ``qiki-harness=1`` plus a per-run
label ``qiki-harness.run=<run id>``. The testcontainers reaper (ryuk) cannot be pulled on an
offline machine, so the harness cleans up after itself by these labels: at the end of a run
(its own run id only, so concurrent runs on one engine do not hurt each other) and on
``qiki-harness down`` (everything labelled ``qiki-harness=1``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from harness.errors import SetupError

if TYPE_CHECKING:
    import docker

#: Label every harness container and network carries (value "1").
LABEL_ROOT = "qiki-harness"
#: Label naming the run (a broker or a test session) that created the resource.
LABEL_RUN = "qiki-harness.run"
#: Label naming the role of a container ("nats", "service").
LABEL_ROLE = "qiki-harness.role"
#: Label naming the node or service inside its run ("n1", "registrar").
LABEL_NAME = "qiki-harness.name"
#: Label naming the test session / CLI invocation (env QIKI_HARNESS_SESSION) that created it.
LABEL_SESSION = "qiki-harness.session"
#: Environment variable whose value every new resource carries as LABEL_SESSION.
SESSION_ENV = "QIKI_HARNESS_SESSION"
#: Selector matching everything the harness ever created (``qiki-harness down``).
ROOT_SELECTOR = f"{LABEL_ROOT}=1"

#: Seconds a ping may take before the engine counts as absent (machine is shared and slow).
PING_TIMEOUT_S = 3.0


class DockerUnavailable(SetupError):
    """No Docker engine answered; ``.reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"no Docker engine: {reason}")
        self.reason = reason


def new_run_id() -> str:
    """A short unique id for one run's containers and network (fits in container names)."""
    return uuid.uuid4().hex[:10]


def run_labels(run_id: str, **extra: str) -> dict[str, str]:
    """The labels of a resource created by run ``run_id`` (plus ``extra`` label=value pairs).

    When env QIKI_HARNESS_SESSION is set, the resource also carries it as
    ``qiki-harness.session``, so a test session can remove everything it created at its end
    (:func:`session_selector`) without touching concurrent sessions.
    """
    labels = {LABEL_ROOT: "1", LABEL_RUN: run_id}
    session = os.environ.get(SESSION_ENV)
    if session:
        labels[LABEL_SESSION] = session
    labels.update(extra)
    return labels


def run_resource_name(run_id: str, name: str | None = None) -> str:
    """Docker name of run ``run_id``'s network (``qiki-<run id>``) or container ``name``."""
    return f"qiki-{run_id}" if name is None else f"qiki-{run_id}-{name}"


def container_log_text(container: Any) -> str:
    """A container's log (stdout and stderr, across restarts); '' for None.

    A container that is gone yields a line saying so instead of an error, so a report that
    quotes the log does not fail.
    """
    if container is None:
        return ""
    try:
        return cast(bytes, container.logs(stdout=True, stderr=True)).decode("utf-8", "replace")
    except Exception as exc:
        return f"(log unavailable: {exc})"


def run_selector(run_id: str) -> str:
    """The label selector matching one run's resources."""
    return f"{LABEL_RUN}={run_id}"


def session_selector(session: str) -> str:
    """The label selector matching one session's resources."""
    return f"{LABEL_SESSION}={session}"


def _local_socket_reason() -> str | None:
    """Why the default local socket cannot work, or None if it might (no DOCKER_HOST set)."""
    if os.environ.get("DOCKER_HOST"):
        return None
    sock = Path("/var/run/docker.sock")
    if not sock.exists():
        return (
            f"DOCKER_HOST is unset and {sock} does not exist "
            "(start one with: dockerd --storage-driver vfs)"
        )
    return None


def docker_client(timeout_s: float = 60.0) -> docker.DockerClient:
    """A Docker client from the environment (DOCKER_HOST or the local socket).

    Raises DockerUnavailable (fast, no network wait) when there is no socket to talk to.
    """
    import docker  # deferred: nothing heavy at import time

    reason = _local_socket_reason()
    if reason:
        raise DockerUnavailable(reason)
    try:
        return docker.from_env(timeout=max(1, round(timeout_s)))
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(f"cannot create a client: {exc}") from exc


def docker_available(timeout_s: float = PING_TIMEOUT_S) -> tuple[bool, str]:
    """Whether a Docker engine answers a ping within ``timeout_s``; and a one-line reason.

    The reason names the engine version when it answers, the failure when it does not.
    """
    try:
        client = docker_client(timeout_s)
    except DockerUnavailable as exc:
        return False, exc.reason
    try:
        client.ping()
        version = client.version().get("Version", "?")
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return True, f"Docker engine {version} answered at {host}"
    except Exception as exc:  # any transport error means "not usable"
        return False, f"Docker engine did not answer a ping within {timeout_s:g} s: {exc}"
    finally:
        client.close()


@dataclass
class CleanupReport:
    """What a cleanup removed (names), and what it could not remove (name -> error)."""

    selector: str
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when nothing was found to remove."""
        return not (self.containers or self.networks or self.errors)


def list_labelled(client: Any, selector: str = ROOT_SELECTOR) -> tuple[list[str], list[str]]:
    """Names of the containers (any state) and networks matching the label ``selector``."""
    containers = client.containers.list(all=True, filters={"label": selector})
    networks = client.networks.list(filters={"label": selector})
    return [c.name for c in containers], [n.name for n in networks]


def cleanup(selector: str = ROOT_SELECTOR, *, client: Any = None) -> CleanupReport:
    """Remove every container (forced, with anonymous volumes) then network matching ``selector``.

    ``selector`` is a docker label filter: ``key=value`` or ``key``. It must name a harness
    label, so a typo can never remove someone else's containers. Containers go first
    because a network with endpoints cannot be removed. Errors are collected, not raised,
    so one stuck resource does not keep the others alive; ``qiki-harness down`` prints them.
    """
    key = selector.split("=", 1)[0]
    if not key.startswith(LABEL_ROOT):
        raise ValueError(
            f"cleanup selector {selector!r} does not name a harness label "
            f"(expected {LABEL_ROOT!r} or {LABEL_RUN!r}=<run id>)"
        )
    return _remove_matching(selector, None, client)


def cleanup_session_prefix(prefix: str, *, client: Any = None) -> CleanupReport:
    """Remove every container then network whose session label starts with ``prefix``.

    The controller of a pytest-xdist session sweeps its workers' labels (``<session>-gw0``,
    ``-gw1``... and those of workers started to replace crashed ones) once they are all
    done: a worker that crashed never ran its own clean-up. A label filter cannot match a
    prefix, so the values are compared here."""
    if not prefix:
        raise ValueError("cleanup_session_prefix needs a non-empty prefix")
    return _remove_matching(
        LABEL_SESSION, lambda labels: labels.get(LABEL_SESSION, "").startswith(prefix), client)


def _remove_matching(selector: str, keep: Callable[[dict[str, str]], bool] | None,
                     client: Any) -> CleanupReport:
    """Containers (forced, with anonymous volumes) then networks matching the label
    ``selector`` (and, with ``keep``, whose labels pass it); errors collected, not raised."""
    report = CleanupReport(selector=selector)
    own_client = client is None
    if own_client:
        try:
            client = docker_client()
        except DockerUnavailable:
            return report  # no engine: nothing can be left behind on it
    try:
        for container in client.containers.list(all=True, filters={"label": selector}):
            if keep is not None and not keep(container.labels or {}):
                continue
            try:
                container.remove(force=True, v=True)
                report.containers.append(container.name)
            except Exception as exc:
                if _is_not_found(exc):
                    continue  # removed concurrently: the goal is met
                report.errors[f"container {container.name}"] = str(exc)
        for network in client.networks.list(filters={"label": selector}):
            if keep is not None and not keep((network.attrs or {}).get("Labels") or {}):
                continue
            try:
                network.remove()
                report.networks.append(network.name)
            except Exception as exc:
                if _is_not_found(exc):
                    continue
                report.errors[f"network {network.name}"] = str(exc)
    finally:
        if own_client:
            client.close()
    return report


def _is_not_found(exc: BaseException) -> bool:
    """True for docker's NotFound (or any error carrying HTTP 404)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return type(exc).__name__ == "NotFound" or status == 404
