"""One lag poll: every consumer of a set of streams, from paged ``CONSUMER.LIST`` requests.

Why not ``consumer_info`` per consumer: N consumers cost N round trips and N server-side info
builds (measured in issue 2: 200 x ``consumer_info`` 40 ms against 3 ms for one
``$JS.API.CONSUMER.LIST``).  ``CONSUMER.LIST.<stream>`` answers up to ``limit`` (256) full
consumer infos per page; this module asks for page one together with the pages the last
poll saw, then for any further pages ``total`` announces, all concurrently, and takes each page
as it arrives (its work overlaps the server building the next ones).  A page is decoded by
msgspec straight into :class:`ConsumerLag` values, reading only the fields a poll needs
(nats-py's ``ConsumerInfo.from_response`` converts every config field, which dominated at
2,000 consumers; ``json.loads`` then a copy per consumer dominated at 10,000, issue 13).

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from nats.aio.client import Client

AgeMode = Literal["exact", "approx"]

#: Server page size of CONSUMER.LIST (nats-server's JSApiListLimit).
_PAGE_LIMIT = 256
#: Entries of the message-time cache of the exact age mode.
_TIME_CACHE_SIZE = 8192


class LagPollError(RuntimeError):
    """The JetStream API refused a list request (unknown stream, no JetStream, ...)."""


# Typed views of the JSON nats-server sends, holding only the fields a poll reads. msgspec
# decodes a 256-consumer CONSUMER.LIST page straight into these, skipping every other field
# without building it: 0.4 ms a page against 2.2 ms for json.loads, and no second pass
# copying dicts into per-consumer objects (issue 13: at 10,000 consumers that copy cost more
# than the decoding). gc=False: a poll allocates thousands and they hold no reference
# cycles, so the cyclic collector need not track them.


class AckFloor(msgspec.Struct, gc=False):
    """``ack_floor`` of a consumer info."""

    stream_seq: int = 0
    last_active: str | None = None


class Delivered(msgspec.Struct, gc=False):
    """``delivered`` of a consumer info."""

    stream_seq: int = 0


class ConsumerFilter(msgspec.Struct, gc=False):
    """The filter fields of a consumer's ``config``."""

    filter_subject: str | None = None
    filter_subjects: list[str] | None = None


class ClusterInfo(msgspec.Struct, gc=False):
    """``cluster`` of a consumer info (absent on a standalone server)."""

    leader: str | None = None


class ConsumerLag(
    msgspec.Struct,
    gc=False,
    # Names of the consumer info JSON; the two computed fields get keys the server never
    # sends, so decoding cannot set them.
    rename={
        "stream": "stream_name",
        "consumer": "name",
        "oldest_unacked_age_s": "qiki:oldest_unacked_age_s",
        "age_exact": "qiki:age_exact",
    },
):
    """Lag of one durable consumer at one poll, decoded straight from its consumer info.

    The fields are the info's own (``num_pending``, ``ack_floor`` ...) plus
    ``oldest_unacked_age_s`` and ``age_exact``, which the poll sets; the flat views the
    metrics and ``/lag`` use (``lag``, ``ack_floor_stream_seq``, ``leader``,
    ``leaderless``, ``filter_subject`` ...) are properties.  Build one by hand with
    :meth:`of`.
    """

    stream: str = ""
    consumer: str = ""
    num_pending: int = 0
    num_ack_pending: int = 0
    num_redelivered: int = 0
    num_waiting: int = 0
    ack_floor: AckFloor | None = None
    delivered: Delivered | None = None
    config: ConsumerFilter | None = None
    cluster: ClusterInfo | None = None
    created: str | None = None
    oldest_unacked_age_s: float = 0.0
    age_exact: bool = False

    @classmethod
    def of(
        cls,
        stream: str,
        consumer: str,
        *,
        num_pending: int = 0,
        num_ack_pending: int = 0,
        num_redelivered: int = 0,
        num_waiting: int = 0,
        ack_floor_stream_seq: int = 0,
        delivered_stream_seq: int = 0,
        oldest_unacked_age_s: float = 0.0,
        age_exact: bool = False,
        leader: str | None = None,
        leaderless: bool = False,
        filter_subject: str | None = None,
    ) -> ConsumerLag:
        """A reading from flat values (tests, other sources than ``CONSUMER.LIST``)."""
        return cls(
            stream=stream,
            consumer=consumer,
            num_pending=num_pending,
            num_ack_pending=num_ack_pending,
            num_redelivered=num_redelivered,
            num_waiting=num_waiting,
            ack_floor=AckFloor(ack_floor_stream_seq),
            delivered=Delivered(delivered_stream_seq),
            config=ConsumerFilter(filter_subject) if filter_subject else None,
            cluster=ClusterInfo(leader) if leader or leaderless else None,
            oldest_unacked_age_s=oldest_unacked_age_s,
            age_exact=age_exact,
        )

    @property
    def lag(self) -> int:
        """Messages not yet acknowledged: not delivered yet plus delivered and unacked."""
        return self.num_pending + self.num_ack_pending

    @property
    def ack_floor_stream_seq(self) -> int:
        """Stream sequence of the ack floor (every message up to it is acknowledged)."""
        return self.ack_floor.stream_seq if self.ack_floor is not None else 0

    @property
    def delivered_stream_seq(self) -> int:
        """Stream sequence of the last delivered message."""
        return self.delivered.stream_seq if self.delivered is not None else 0

    @property
    def leader(self) -> str | None:
        """The consumer leader's server name (None on a standalone server or leaderless)."""
        return self.cluster.leader if self.cluster is not None else None

    @property
    def leaderless(self) -> bool:
        """In a cluster and no leader: the numbers are a stale replica's."""
        return self.cluster is not None and not self.cluster.leader

    @property
    def filter_subject(self) -> str | None:
        """The one subject the consumer filters on, None for the whole stream or several.

        With several filters the oldest unacked message may be on any of them: its lookup
        is on any subject (older or equal, so the age never under-reports).
        """
        config = self.config
        if config is None:
            return None
        if config.filter_subject:
            return config.filter_subject
        filters = config.filter_subjects
        return filters[0] if filters and len(filters) == 1 else None

    @property
    def since_raw(self) -> str | None:
        """Server time the approximate age counts from: the ack floor's last move, else the
        consumer's creation (None while the consumer has no lag)."""
        if self.num_pending + self.num_ack_pending <= 0:
            return None
        last = self.ack_floor.last_active if self.ack_floor is not None else None
        return last if last and not last.startswith("0001-") else self.created

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (for ``/lag``)."""
        return {
            "stream": self.stream,
            "consumer": self.consumer,
            "num_pending": self.num_pending,
            "num_ack_pending": self.num_ack_pending,
            "num_redelivered": self.num_redelivered,
            "num_waiting": self.num_waiting,
            "ack_floor_stream_seq": self.ack_floor_stream_seq,
            "delivered_stream_seq": self.delivered_stream_seq,
            "oldest_unacked_age_s": self.oldest_unacked_age_s,
            "age_exact": self.age_exact,
            "leader": self.leader,
            "leaderless": self.leaderless,
            "filter_subject": self.filter_subject,
            "lag": self.lag,
        }


class _ApiError(msgspec.Struct, gc=False):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _ListPage(msgspec.Struct, gc=False):
    total: int = 0
    limit: int = 0
    consumers: list[ConsumerLag] | None = None
    missing: list[str] | None = None
    error: _ApiError | None = None


_decode_page = msgspec.json.Decoder(_ListPage).decode


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


TimeKey = tuple[str, int, str]
"""(stream, first sequence, filter subject or ">"): where a consumer's oldest unacked
message is looked up."""


def _set_age(
    lag: ConsumerLag,
    now: datetime,
    approx: bool,
    times: dict[TimeKey, datetime] | None,
    ages: dict[TimeKey, float] | None,
) -> bool:
    """Set the age of a lagging consumer; False when it needs an exact lookup.

    Approximate mode: the time since :attr:`ConsumerLag.since_raw`.  Exact mode: the age of
    the publish time already in ``times`` (the message-time cache), memoised per key in
    ``ages`` so consumers at the same floor share one computation; not cached: left 0 for
    the caller to look up.
    """
    if approx:
        lag.oldest_unacked_age_s = _approx_age_s(lag.since_raw, now)
        return True
    if times is None:
        return False
    floor = lag.ack_floor
    key = (lag.stream, (floor.stream_seq if floor is not None else 0) + 1,
           lag.filter_subject or ">")
    when = times.get(key)
    if when is None:
        return False
    known = ages.get(key) if ages is not None else None
    if known is None:
        known = max(0.0, (now - when).total_seconds())
        if ages is not None:
            ages[key] = known
    lag.oldest_unacked_age_s = known
    lag.age_exact = True
    return True


def _consumer_from_info(
    info: ConsumerLag | dict[str, Any],
    now: datetime,
    *,
    approx: bool = True,
    times: dict[TimeKey, datetime] | None = None,
    ages: dict[TimeKey, float] | None = None,
    stream: str | None = None,
) -> tuple[ConsumerLag, str | None]:
    """One consumer info (decoded, or its JSON as a dict) as a reading with its age set.

    Returns the reading and the raw time its approximate age counts from.  ``stream``
    names the stream when the info does not (older servers omit ``stream_name``).
    ``approx=False`` leaves the age 0 (the caller resolves it exactly) unless the publish
    time is already in ``times``; see :func:`_set_age`.
    """
    lag = info if isinstance(info, ConsumerLag) else msgspec.convert(info, ConsumerLag)
    if not lag.stream and stream:
        lag.stream = stream
    since = lag.since_raw
    if lag.lag > 0:
        _set_age(lag, now, approx, times, ages)
    return lag, since


class _PollState:
    """What one poll accumulates while its pages arrive (pages are taken as they land)."""

    __slots__ = ("ages", "approx", "consumers", "errors", "lagging", "missing", "times")

    def __init__(self, approx: bool, times: dict[TimeKey, datetime] | None) -> None:
        self.approx = approx
        # Exact mode: ages whose message time is cached are set while taking a page (no
        # second pass); only the others are looked up in _resolve_ages.
        self.times = times
        self.ages: dict[TimeKey, float] = {}
        self.consumers: dict[tuple[str, str], ConsumerLag] = {}
        self.lagging: dict[tuple[str, str], ConsumerLag] = {}
        self.missing: list[tuple[str, str]] = []
        self.errors: dict[str, str] = {}


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
        self._time_cache: OrderedDict[TimeKey, datetime] = OrderedDict()
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

    async def _page(
        self, subject: str, offset: int, on_page: Callable[[_ListPage], None] | None
    ) -> _ListPage:
        """One CONSUMER.LIST page, decoded; ``on_page`` takes it as soon as it lands."""
        msg = await self._nc.request(subject, b'{"offset":%d}' % offset, timeout=self._timeout_s)
        try:
            page = _decode_page(msg.data)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise LagPollError(f"{subject}: unexpected answer: {exc}") from None
        err = page.error
        if err is not None:
            raise LagPollError(
                f"{subject}: JetStream error {err.code}/{err.err_code}: {err.description}"
            )
        if on_page is not None:
            on_page(page)
        return page

    async def _list_pages(
        self, stream: str, on_page: Callable[[_ListPage], None] | None = None
    ) -> list[_ListPage]:
        """Every CONSUMER.LIST page of one stream, requested pipelined.

        The pages the previous poll saw are requested together with page one (no round trip
        waiting for ``total`` first); pages beyond them, if the stream gained consumers, are
        requested once page one tells how many there are. ``on_page`` sees each page as it
        arrives, so the work on a page overlaps the server building the next ones.
        """
        subject = f"{self._prefix}.CONSUMER.LIST.{stream}"
        known = self._known_total.get(stream, 0)
        guess = range(_PAGE_LIMIT, known, _PAGE_LIMIT)
        first = asyncio.ensure_future(self._page(subject, 0, on_page))
        rest = [asyncio.ensure_future(self._page(subject, o, on_page)) for o in guess]
        try:
            page1 = await first
            total = page1.total
            limit = page1.limit or _PAGE_LIMIT
            got = len(page1.consumers or ())
            if got != limit or limit != _PAGE_LIMIT:
                # Another page size (or a short first page): the guessed offsets may not line
                # up with the pages the server cuts; page on from what page one returned
                # (pages already asked for are harmless: entries are deduplicated).
                guess = range(0)
            start = guess[-1] + limit if guess else got
            offsets = range(start, total, limit) if got else range(0)
            rest += [asyncio.ensure_future(self._page(subject, o, on_page)) for o in offsets]
            pages = [page1, *await asyncio.gather(*rest)]
        except BaseException:
            # One page failed: the others are not waited for (nor left running).
            for f in rest:
                f.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            raise
        self._known_total[stream] = total
        return pages

    async def list_consumers(self, stream: str) -> tuple[list[ConsumerLag], list[str]]:
        """Consumers of one stream as listed (ages not set), and the names listed as missing."""
        infos: list[ConsumerLag] = []
        missing: list[str] = []
        for page in await self._list_pages(stream):
            infos.extend(page.consumers or ())
            missing.extend(page.missing or ())
        return infos, missing

    def _take_page(self, stream: str, page: _ListPage, state: _PollState) -> None:
        """Keep the wanted consumers of one page in ``state`` and set the ages it can.

        The hot loop of a poll (once per consumer): the common case, a lagging consumer
        whose floor's message time is known, is inlined rather than a call per consumer.
        """
        now = datetime.now(UTC)
        consumers, lagging = state.consumers, state.lagging
        approx, times, ages = state.approx, state.times, state.ages
        picked = self.consumers if stream not in self.all_of else None
        for c in page.consumers or ():
            if not c.stream:
                c.stream = stream
            key = (stream, c.consumer)
            if picked is not None and key not in picked:
                continue
            consumers[key] = c  # dedupe: overlapping pages keep the last view
            if c.num_pending + c.num_ack_pending <= 0:
                lagging.pop(key, None)  # a later page's view of it: caught up
                continue
            if not approx:
                floor, config = c.ack_floor, c.config
                age = ages.get(
                    (
                        stream,
                        floor.stream_seq + 1 if floor is not None else 1,
                        ">" if config is None else (c.filter_subject or ">"),
                    )
                )
                if age is not None:
                    c.oldest_unacked_age_s = age
                    c.age_exact = True
                    lagging.pop(key, None)
                    continue
            if _set_age(c, now, approx, times, ages):
                lagging.pop(key, None)
            else:
                lagging[key] = c
        if page.missing:
            state.missing.extend(
                (stream, name) for name in page.missing if self.wanted(stream, name)
            )

    async def _poll_stream(self, stream: str, state: _PollState) -> None:
        try:
            await self._list_pages(stream, lambda page: self._take_page(stream, page, state))
        except Exception as exc:
            state.errors[stream] = f"{type(exc).__name__}: {exc}"
            # Partial pages of a failed stream are not a view of it: drop them.
            for key in [k for k in state.consumers if k[0] == stream]:
                del state.consumers[key]
                state.lagging.pop(key, None)
            state.missing[:] = [m for m in state.missing if m[0] != stream]

    async def poll(self) -> LagSnapshot:
        """One poll of every stream; a stream that fails is reported, not fatal."""
        started = time.perf_counter()
        approx = self.age_mode == "approx"
        state = _PollState(approx, None if approx else self._time_cache)
        await asyncio.gather(*(self._poll_stream(s, state) for s in self.streams))
        now = datetime.now(UTC)
        if state.lagging:
            await self._resolve_ages(state.lagging, now)
        return LagSnapshot(
            taken_at=now,
            duration_s=time.perf_counter() - started,
            consumers=state.consumers,
            missing=sorted(set(state.missing)),
            stream_errors=state.errors,
        )

    async def _resolve_ages(
        self, lagging: dict[tuple[str, str], ConsumerLag], now: datetime
    ) -> None:
        # Consumers at the same floor on the same filter share one lookup.
        lookups: dict[TimeKey, list[ConsumerLag]] = {}
        for c in lagging.values():
            lookups.setdefault(
                (c.stream, c.ack_floor_stream_seq + 1, c.filter_subject or ">"), []
            ).append(c)
        found = await asyncio.gather(
            *(self._message_time(s, seq, subj) for s, seq, subj in lookups), return_exceptions=True
        )
        for group, when in zip(lookups.values(), found, strict=True):
            for c in group:
                if isinstance(when, datetime):
                    c.oldest_unacked_age_s = max(0.0, (now - when).total_seconds())
                    c.age_exact = True
                else:  # gone or failed: fall back to the approximation
                    c.oldest_unacked_age_s = _approx_age_s(c.since_raw, now)

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

