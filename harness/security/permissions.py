"""Least privilege from the spec: each identity's publish/subscribe permissions (issue 10).

Under ``auth: accounts`` every service connects as its own user whose permissions say exactly
what the spec says it does, and the server refuses the rest. What a service does is read from
the spec, never from a list of QIKI names here:

- a reference service (``registrar``, ``lagmon``, ``radar_sim``: the services the spec's
  ``runtime`` section configures) publishes the subjects its runtime roles name
  (:class:`services.common.botspec.ServiceConfig.publishes`: radar frames, tracks..., the
  registrar's events and dead letters, the lag monitor's health events) and pulls from its
  durables;
- a component of the spec (``components.NAME``) whose name is a service's publishes the
  subjects of the channels it ``provides``, subscribes to those it ``consumes`` and pulls from
  its ``durables``.

What each kind of NATS use needs (nats-py 2.x, nats-server 2.10+, no JetStream domain):

- a JetStream publish is a request: publish on the subject, the PubAck comes back on the
  client's inbox; so does every JetStream API answer and every pull delivery. Each identity
  has its own inbox prefix (:func:`inbox_prefix`: ``_INBOX.<identity>``, handed to its
  clients as ``QIKI_NATS_INBOX_PREFIX`` / ``NatsSettings.inbox_prefix``, nats-py's
  ``inbox_prefix``) and may subscribe only below it (:func:`inbox_subjects`): never the
  shared ``_INBOX.>``, where it could read the PubAcks and pull deliveries of others;
- pulling from durable D of stream S: ``$JS.API.CONSUMER.INFO.S.D`` (the services look the
  durable up first), ``$JS.API.CONSUMER.MSG.NEXT.S.D`` (pull requests) and ``$JS.ACK.S.D.>``
  (acks go to the reply subject of each delivered message);
- the registrar provisions the whole layout itself when a durable is missing (a memory
  stream lost in a broker restart, :meth:`RegistrarService._ensure_consumers` calls
  ``provision`` over the spec): ``STREAM.INFO/CREATE/UPDATE`` of the spec's streams and
  ``CONSUMER.INFO/CREATE/DURABLE.CREATE`` of the spec's durables, by name (never ``$JS.API.>``;
  no delete, no purge);
- the lag monitor: ``CONSUMER.LIST.S`` of each stream it watches, ``STREAM.MSG.GET.S`` (the age
  of the oldest unacked message), and, to read its own threshold events back after a restart,
  ``STREAM.NAMES`` plus one named consumer (:data:`services.lagmon.state.RESTORE_CONSUMER`) on
  the stream of its health subject: create, info, next, delete of that name only.

The ``harness`` identity (provisioning, the tap, the lag sampler, probes) is unrestricted; the
``load`` identity publishes only what the load may send (default: the subjects the spec's
streams capture, wildcards included: a load step may name any subject a stream stores) and
reads its PubAcks on its own inbox; never the JetStream API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.errors import ConfigError
from harness.security.identities import ALLOW_ALL, Identity, Permissions

if TYPE_CHECKING:
    from services.common.botspec import BotSpec, RuntimeConfig

__all__ = [
    "HARNESS",
    "INBOX",
    "LOAD",
    "UndeclaredServiceError",
    "identities_for_run",
    "inbox_prefix",
    "inbox_subjects",
    "service_permissions",
]

#: Identity names of the harness's own connections and of the load.
HARNESS = "harness"
LOAD = "load"

#: nats-py's shared default inbox (every client's replies unless it sets a prefix). Granted
#: to no restricted identity: whoever may subscribe to it reads everybody's replies.
INBOX = "_INBOX.>"


def inbox_prefix(identity: str) -> str:
    """The reply prefix of ``identity``'s clients: ``_INBOX.<identity>`` (nats-py then uses
    ``_INBOX.<identity>.<random>``). ``identity`` is a service name (``[a-z][a-z0-9_-]*``),
    ``harness`` or ``load``: one subject token."""
    if not identity or any(c in identity for c in ".*> \t\r\n"):
        raise ValueError(f"identity {identity!r} cannot name an inbox: expected one subject "
                         "token (no dots, wildcards or spaces)")
    return f"_INBOX.{identity}"


def inbox_subjects(identity: str) -> str:
    """What ``identity`` may subscribe to for its replies: ``_INBOX.<identity>.>``."""
    return f"{inbox_prefix(identity)}.>"

_API = "$JS.API"
#: The lag monitor's read-back consumer (kept in step with services/lagmon/state.py).
LAGMON_RESTORE_CONSUMER = "qiki-lagmon-restore"


class UndeclaredServiceError(ConfigError):
    """A service the spec says nothing about: least privilege cannot be derived for it
    (a bad-input error: exit 2)."""


@dataclass
class _Grants:
    #: the identity's own reply subjects (:func:`inbox_subjects`)
    inbox: str
    publish: set[str] = field(default_factory=set)
    subscribe: set[str] = field(default_factory=set)

    def permissions(self) -> Permissions:
        return Permissions(publish=tuple(sorted(self.publish)),
                           subscribe=tuple(sorted(self.subscribe)))


def _pull(grants: _Grants, stream: str, durable: str) -> None:
    """What pulling from durable ``durable`` of ``stream`` needs."""
    grants.publish.update({
        f"{_API}.CONSUMER.INFO.{stream}.{durable}",
        f"{_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    })
    grants.subscribe.add(grants.inbox)


def _provision(grants: _Grants, config: RuntimeConfig) -> None:
    """What ``services.common.botspec.provision(js, config)`` sends, by name."""
    for s in config.streams:
        grants.publish.update({f"{_API}.STREAM.{op}.{s.name}" for op in ("INFO", "CREATE",
                                                                          "UPDATE")})
    for c in config.consumers:
        grants.publish.update({
            f"{_API}.CONSUMER.INFO.{c.stream}.{c.durable}",
            f"{_API}.CONSUMER.CREATE.{c.stream}.{c.durable}",
            # nats-py appends the filter subject when there is exactly one
            f"{_API}.CONSUMER.CREATE.{c.stream}.{c.durable}.>",
            f"{_API}.CONSUMER.DURABLE.CREATE.{c.stream}.{c.durable}",
        })
    grants.subscribe.add(grants.inbox)


def _js_publish(grants: _Grants, subjects: Iterable[str]) -> None:
    found = [s for s in subjects if s]
    if found:
        grants.publish.update(found)
        grants.subscribe.add(grants.inbox)  # the PubAck


def _reference_grants(name: str, config: RuntimeConfig, grants: _Grants) -> None:
    svc = config.services[name]
    _js_publish(grants, svc.publishes)
    for durable in svc.durables:
        _pull(grants, config.consumer(durable).stream, durable)
    if svc.durables:
        # The registrar re-creates a missing durable (and its stream) over the whole spec.
        _provision(grants, config)
    if svc.watch:
        for stream in dict.fromkeys(w.stream for w in svc.watch):
            grants.publish.update({f"{_API}.CONSUMER.LIST.{stream}",
                                   f"{_API}.STREAM.MSG.GET.{stream}"})
        grants.subscribe.add(grants.inbox)
        for subject in svc.publishes:
            stream_cfg = config.stream_for(subject)
            if stream_cfg is None:
                continue
            grants.publish.add(f"{_API}.STREAM.NAMES")
            base = f"{_API}.CONSUMER"
            name_ = f"{stream_cfg.name}.{LAGMON_RESTORE_CONSUMER}"
            grants.publish.update({f"{base}.CREATE.{name_}", f"{base}.CREATE.{name_}.>",
                                   f"{base}.INFO.{name_}", f"{base}.MSG.NEXT.{name_}",
                                   f"{base}.DELETE.{name_}"})


def service_permissions(name: str, config: RuntimeConfig) -> Permissions:
    """The permissions of service ``name`` under ``config`` (a generated runtime config).

    Raises :class:`UndeclaredServiceError` when the spec neither configures a reference
    service of that name nor has a component called so.
    """
    grants = _Grants(inbox_subjects(name))
    known = False
    if name in config.services:
        known = True
        _reference_grants(name, config, grants)
    routes = config.components.get(name)
    if routes is not None:
        known = True
        _js_publish(grants, routes.publishes)
        grants.subscribe.update(routes.consumes)
        for durable in routes.durables:
            _pull(grants, config.consumer(durable).stream, durable)
    if not known:
        components = ", ".join(sorted(config.components)) or "none"
        raise UndeclaredServiceError(
            f"service {name!r}: the spec says nothing about what it publishes or consumes, so "
            f"least privilege (auth: accounts) cannot be derived; add "
            f"'components: {{{name}: {{type: ..., provides: [CHANNEL...], consumes: "
            f"[CHANNEL...], durables: [DURABLE...]}}}}' to the spec (components now: "
            f"{components})")
    return grants.permissions()


def _config(spec: BotSpec | RuntimeConfig) -> RuntimeConfig:
    from services.common.botspec import BotSpec, generate

    return generate(spec) if isinstance(spec, BotSpec) else spec


def identities_for_run(
    spec: BotSpec | RuntimeConfig,
    services: Iterable[str] | Mapping[str, object],
    *,
    load_subjects: Iterable[str] | None = None,
) -> list[Identity]:
    """One identity per service of the run (in the given order), then ``harness`` and ``load``.

    ``spec``: the run's BotSpec or its generated runtime config. ``services``: the names of
    the services that run (a topology's ``services`` mapping works too). ``load_subjects``:
    what the load publishes (default: every subject the spec's streams capture).
    """
    config = _config(spec)
    names = list(services)
    reserved = [n for n in names if n in (HARNESS, LOAD)]
    if reserved:
        raise ConfigError(f"service name(s) {', '.join(reserved)} are reserved for the "
                         "harness's own identities; rename the service")
    out = [Identity(n, service_permissions(n, config)) for n in names]
    load = _Grants(inbox_subjects(LOAD))
    # Default: what the spec's streams capture. A load step may name any subject (not only a
    # channel's), and one no stream captures gets no PubAck anyway; the JetStream API and the
    # inboxes of others stay out of reach.
    subjects = (list(load_subjects) if load_subjects is not None
                else [f for s in config.streams for f in s.subjects])
    load.publish.update(s for s in subjects if s)
    load.subscribe.add(load.inbox)
    out.append(Identity(HARNESS, ALLOW_ALL))
    out.append(Identity(LOAD, load.permissions()))
    return out
