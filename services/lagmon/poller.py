"""One lag poll: every consumer of a set of streams, from paged ``CONSUMER.LIST`` requests.

Why not ``consumer_info`` per consumer: N consumers cost N round trips and N server-side info
builds (measured in issue 2: 200 x ``consumer_info`` 40 ms against 3 ms for one
``$JS.API.CONSUMER.LIST``).  ``CONSUMER.LIST.<stream>`` answers up to ``limit`` (256) full
consumer infos per page; this module asks for page one, reads ``total``, then asks for the
other pages concurrently and parses only the fields it needs from the raw JSON (nats-py's
``ConsumerInfo.from_response`` converts every config field, which dominates at 2,000 consumers).

Clusters: the JetStream API answers ``CONSUMER.LIST`` from the meta leader, which gathers each
consumer's info from that consumer's *leader* (the replica that tracks deliveries and acks);
each entry's ``cluster.leader`` names it.  A consumer whose leader is unknown (election in
progress, quorum lost) is listed in the response's ``missing`` array or comes without a
leader: it is reported with ``leader=None`` and ``leaderless=True`` and its numbers are not
used for threshold decisions (they would be a stale replica's view).  Entries are
deduplicated by ``(stream, consumer)``: pages fetched while consumers are created or
deleted can overlap.

Age of the oldest unacknowledged message: consumer info carries no message timestamps, only
``ack_floor.last_active`` (when the ack floor last moved) and ``delivered.last_active``.
``age_mode="approx"`` reports, while lag > 0, the time since the ack floor last advanced (the
consumer's creation when it never acked): how long the consumer has made no progress past its
oldest message.  It over-estimates after an idle period (a message published 1 s ago to a
consumer whose floor last moved an hour ago shows an hour).  ``age_mode="exact"`` (the default)
reads the publish time of that message: one ``STREAM.MSG.GET`` (next message at or after
``ack_floor.stream_seq + 1`` on the consumer's filter) per *lagging* consumer, shared between
consumers at the same floor, concurrently, and cached (a message's publish time never changes,
so a consumer stuck at the same floor costs one lookup in total); it falls back to the
approximation when the message is gone (limits, max age) or the lookup fails.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from nats.aio.client import Client

AgeMode = Literal["exact", "approx"]

#: Server page size of CONSUMER.LIST (nats-server's JSApiListLimit).
_PAGE_LIMIT = 256
#: Entries of the message-time cache of the exact age mode.
_TIME_CACHE_SIZE = 8192


class LagPollError(RuntimeError):
    """The JetStream API refused a list request (unknown stream, no JetStream, ...)."""


class ConsumerLag(NamedTuple):
    """Lag of one durable consumer at one poll.

    A NamedTuple rather than a frozen dataclass: a poll builds thousands of them and a frozen
    dataclass's ``__init__`` costs several times more (bench.lagmon_poll).
    """

    stream: str
    consumer: str
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    num_waiting: int
    ack_floor_stream_seq: int
    delivered_stream_seq: int
    oldest_unacked_age_s: float
    age_exact: bool
    leader: str | None
    leaderless: bool
    filter_subject: str | None = None

    @property
    def lag(self) -> int:
        """Messages not yet acknowledged: not delivered yet plus delivered and unacked."""
        return self.num_pending + self.num_ack_pending

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (for ``/lag``)."""
        out = self._asdict()
        out["lag"] = self.lag
        return out


@dataclass(frozen=True)
class LagSnapshot:
    """Everything one poll saw."""

    taken_at: datetime
    duration_s: float
    consumers: dict[tuple[str, str], ConsumerLag]
    #: (stream, consumer) the server listed as missing (no leader answered in time).
    missing: list[tuple[str, str]] = field(default_factory=list)
    #: stream -> error text for streams that could not be listed this poll.
    stream_errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (for ``/lag``)."""
        return {
            "taken_at": self.taken_at.isoformat(),
            "duration_s": self.duration_s,
            "consumers": [c.as_dict() for c in self.consumers.values()],
            "missing": [{"stream": s, "consumer": c} for s, c in self.missing],
            "stream_errors": dict(self.stream_errors),
        }


def parse_go_time(value: str | None) -> datetime | None:
    """Parse Go's RFC 3339 with nanoseconds (``2026-01-02T03:04:05.123456789Z``) to UTC."""
    if not value or value.startswith("0001-01-01"):
        return None  # Go's zero time: never happened
    try:
        # Python 3.11 reads "Z" and truncates extra fraction digits itself: the fast path.
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        pass
    main, _, rest = value.partition(".")
    if rest:
        # Keep at most microseconds (Python's resolution); the zone follows the digits.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, zone = rest[:digits], rest[digits:]
        value = f"{main}.{frac[:6].ljust(6, '0')}{zone}"
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    return datetime.fromisoformat(value).astimezone(UTC)


def _approx_age_s(since_raw: str | None, now: datetime) -> float:
    since = parse_go_time(since_raw)
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


def _consumer_from_info(
    info: dict[str, Any],
    now: datetime,
    *,
    approx: bool = True,
    times: dict[tuple[str, int, str], datetime] | None = None,
    ages: dict[tuple[str, int, str], float] | None = None,
) -> tuple[ConsumerLag, str | None]:
    """Build a ConsumerLag and return the raw time its approximate age counts from.

    ``approx=False`` leaves the age 0 (the caller resolves it exactly) unless the publish
    time of the consumer's oldest unacked message is already in ``times`` (the exact mode's
    cache, keyed ``(stream, ack floor + 1, filter or ">")``): then the age is exact at once
    (``age_exact=True``) and ``ages`` memoises it per key for this poll, so consumers at
    the same floor share one computation and no second pass rebuilds them.
    """
    get = info.get
    ack_floor = get("ack_floor") or {}
    num_pending = int(get("num_pending") or 0)
    num_ack_pending = int(get("num_ack_pending") or 0)
    floor_seq = int(ack_floor.get("stream_seq") or 0)
    stream = str(get("stream_name", ""))
    config = get("config") or {}
    filter_subject = config.get("filter_subject")
    if not filter_subject:
        filters = config.get("filter_subjects")
        # With several filters the oldest unacked message may be on any of them: look up the
        # next message on any subject (older or equal, so the age never under-reports).
        filter_subject = filters[0] if filters and len(filters) == 1 else None
    if not isinstance(filter_subject, str):
        filter_subject = None
    since_raw: str | None = None
    age = 0.0
    exact = False
    if num_pending + num_ack_pending > 0:
        last = ack_floor.get("last_active")
        since_raw = last if last and not last.startswith("0001-") else get("created")
        if approx:
            age = _approx_age_s(since_raw, now)
        elif times is not None:
            key = (stream, floor_seq + 1, filter_subject or ">")
            when = times.get(key)
            if when is not None:
                known = ages.get(key) if ages is not None else None
                if known is None:
                    known = max(0.0, (now - when).total_seconds())
                    if ages is not None:
                        ages[key] = known
                age = known
                exact = True
    cluster = get("cluster")
    leader = cluster.get("leader") if cluster else None
    delivered = get("delivered") or {}
    # Positional tuple construction: a NamedTuple's keyword __new__ costs several times more
    # and a 2,000-consumer poll builds 2,000 of these (bench.lagmon_poll). Field order of
    # ConsumerLag.
    lag = _new_tuple(
        ConsumerLag,
        (
            stream,
            str(get("name", "")),
            num_pending,
            num_ack_pending,
            int(get("num_redelivered") or 0),
            int(get("num_waiting") or 0),
            floor_seq,
            int(delivered.get("stream_seq") or 0),
            age,
            exact,
            # A standalone server has no cluster block: it is the leader of everything.
            leader,
            cluster is not None and not leader,
            filter_subject,
        ),
    )
    return lag, since_raw


_new_tuple = tuple.__new__


class LagPoller:
    """Polls consumer lag over a NATS connection.

    Args:
        nc: a connected client.
        streams: streams to list.
        consumers: if given, only these ``(stream, consumer)`` are kept (others are ignored);
            None keeps every consumer of the listed streams.
        all_of: streams whose every consumer is kept even when ``consumers`` is given.
        api_prefix: JetStream API prefix (``$JS.API``, or a domain's ``$JS.<domain>.API``).
        timeout_s: per request.
        age_mode: ``"exact"`` or ``"approx"`` (module docstring).
    """

    def __init__(
        self,
        nc: Client,
        streams: Sequence[str],
        *,
        consumers: Iterable[tuple[str, str]] | None = None,
        all_of: Iterable[str] = (),
        api_prefix: str = "$JS.API",
        timeout_s: float = 2.0,
        age_mode: AgeMode = "exact",
    ) -> None:
        if age_mode not in ("exact", "approx"):
            raise ValueError(f"age_mode must be 'exact' or 'approx', got {age_mode!r}")
        self._nc = nc
        self.all_of = frozenset(all_of)
        self.streams = list(dict.fromkeys([*streams, *sorted(self.all_of)]))
        self.consumers = None if consumers is None else frozenset(consumers)
        self._prefix = api_prefix.rstrip(".")
        self._timeout_s = timeout_s
        self.age_mode: AgeMode = age_mode
        # (stream, first seq, filter) -> publish time of the next matching message. A message's
        # time never changes and no message can appear below an existing sequence, so a stuck
        # consumer costs no lookup after the first poll. Bounded; cleared when full.
        self._time_cache: OrderedDict[tuple[str, int, str], datetime] = OrderedDict()
        # stream -> consumer total of the last listing (pages to request up front).
        self._known_total: dict[str, int] = {}

    def wanted(self, stream: str, consumer: str) -> bool:
        """Whether this poller reports the consumer."""
        return (
            self.consumers is None or stream in self.all_of or (stream, consumer) in self.consumers
        )

    async def _request(self, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
        msg = await self._nc.request(subject, json.dumps(payload).encode(), timeout=self._timeout_s)
        resp: dict[str, Any] = json.loads(msg.data)
        err = resp.get("error")
        if err:
            raise LagPollError(
                f"{subject}: JetStream error {err.get('code')}/{err.get('err_code')}: "
                f"{err.get('description')}"
            )
        return resp

    async def list_consumers(self, stream: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Raw consumer infos of one stream, every page, and the names listed as missing.

        The pages the previous poll saw are requested together with page one (no round trip
        waiting for ``total`` first); pages beyond them, if the stream gained consumers, are
        requested once page one tells how many there are.
        """
        subject = f"{self._prefix}.CONSUMER.LIST.{stream}"
        known = self._known_total.get(stream, 0)
        guess = range(_PAGE_LIMIT, known, _PAGE_LIMIT)
        first, *pages = await asyncio.gather(
            self._request(subject, {"offset": 0}),
            *(self._request(subject, {"offset": o}) for o in guess),
        )
        total = int(first.get("total") or 0)
        limit = int(first.get("limit") or _PAGE_LIMIT) or _PAGE_LIMIT
        got = len(first.get("consumers") or [])
        if got != limit or limit != _PAGE_LIMIT:
            # Another page size (or a short first page): the guessed offsets may not line up
            # with the pages the server cuts; page on from what page one returned instead.
            pages, guess = [], range(0)
        infos: list[dict[str, Any]] = list(first.get("consumers") or [])
        missing: list[str] = list(first.get("missing") or [])
        start = guess[-1] + limit if guess else got
        offsets = range(start, total, limit) if got else range(0)
        if offsets:
            pages += await asyncio.gather(
                *(self._request(subject, {"offset": o}) for o in offsets)
            )
        for page in pages:
            infos.extend(page.get("consumers") or [])
            missing.extend(page.get("missing") or [])
        self._known_total[stream] = total
        return infos, missing

    async def poll(self) -> LagSnapshot:
        """One poll of every stream; a stream that fails is reported, not fatal."""
        started = time.perf_counter()
        results = await asyncio.gather(
            *(self.list_consumers(s) for s in self.streams), return_exceptions=True
        )
        now = datetime.now(UTC)
        consumers: dict[tuple[str, str], ConsumerLag] = {}
        missing: list[tuple[str, str]] = []
        errors: dict[str, str] = {}
        lagging: dict[tuple[str, str], str | None] = {}
        approx = self.age_mode == "approx"
        # Exact mode: ages whose message time is cached are set while building (no second
        # pass); only the others are looked up in _resolve_ages.
        times = None if approx else self._time_cache
        ages: dict[tuple[str, int, str], float] = {}
        for stream, result in zip(self.streams, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                errors[stream] = f"{type(result).__name__}: {result}"
                continue
            infos, missing_names = result
            for info in infos:
                if "stream_name" not in info:
                    info["stream_name"] = stream
                if not self.wanted(stream, info.get("name", "")):
                    continue
                lag, since_raw = _consumer_from_info(
                    info, now, approx=approx, times=times, ages=ages
                )
                key = (lag.stream, lag.consumer)
                consumers[key] = lag  # dedupe: overlapping pages keep the last view
                if lag.age_exact:
                    lagging.pop(key, None)  # a later page's view already resolved
                elif lag.num_pending + lag.num_ack_pending > 0:
                    lagging[key] = since_raw
            missing.extend(
                (stream, name)
                for name in missing_names
                if self.wanted(stream, name)
            )
        if lagging and not approx:
            await self._resolve_ages(consumers, lagging, now)
        return LagSnapshot(
            taken_at=now,
            duration_s=time.perf_counter() - started,
            consumers=consumers,
            missing=sorted(set(missing)),
            stream_errors=errors,
        )

    async def _resolve_ages(
        self,
        consumers: dict[tuple[str, str], ConsumerLag],
        lagging: dict[tuple[str, str], str | None],
        now: datetime,
    ) -> None:
        # Consumers at the same floor on the same filter share one lookup.
        lookups: dict[tuple[str, int, str], list[tuple[str, str]]] = {}
        for key in lagging:
            c = consumers[key]
            lookups.setdefault(
                (c.stream, c.ack_floor_stream_seq + 1, c.filter_subject or ">"), []
            ).append(key)
        found = await asyncio.gather(
            *(self._message_time(s, seq, subj) for s, seq, subj in lookups), return_exceptions=True
        )
        for group, when in zip(lookups.values(), found, strict=True):
            for key in group:
                c = consumers[key]
                if isinstance(when, datetime):
                    age = max(0.0, (now - when).total_seconds())
                    consumers[key] = c._replace(oldest_unacked_age_s=age, age_exact=True)
                else:  # gone or failed: fall back to the approximation
                    age = _approx_age_s(lagging[key], now)
                    consumers[key] = c._replace(oldest_unacked_age_s=age)

    async def _message_time(self, stream: str, seq: int, subject: str) -> datetime | None:
        key = (stream, seq, subject)
        cached = self._time_cache.get(key)
        if cached is not None:
            return cached
        found = await self._fetch_message_time(stream, seq, subject)
        if found is not None:
            if len(self._time_cache) >= _TIME_CACHE_SIZE:
                self._time_cache.popitem(last=False)
            self._time_cache[key] = found
        return found

    async def _fetch_message_time(self, stream: str, seq: int, subject: str) -> datetime | None:
        resp = await self._request(
            f"{self._prefix}.STREAM.MSG.GET.{stream}", {"seq": seq, "next_by_subj": subject}
        )
        message = resp.get("message") or {}
        return parse_go_time(message.get("time"))
