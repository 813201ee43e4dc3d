"""The crossing state a restarted lag monitor reads back from its own published events.

The monitor announces each crossing once (:mod:`services.lagmon.thresholds`); the events are
stored by JetStream (the health subject is in the events stream), so the stream *is* the
record of what was announced.  On start the monitor reads the last ``ThresholdCrossed`` /
``ThresholdCleared`` per ``(stream, consumer)`` back from it: a consumer whose last event is a
crossing is still over, so a restart announces no second crossing, and its clear comes once
the lag falls back (issue 13).  No state file to keep next to the process (a container or a
host move keeps the answer), and nothing to configure.

How: a pull consumer named :data:`RESTORE_CONSUMER` on the health subject, ``headers_only``
(the type and the CloudEvent subject ``"<stream>/<consumer>"`` are headers in binary mode:
no payload is sent), no acks, read to the end in batches, then deleted.  Events of other
sources on the subject are ignored.  Cost: one message header per event the stream still
holds (the stream's ``max_age`` bounds it).

Why a fixed name and not a random ephemeral one: under least privilege (issue 10) the monitor
may create, read and delete exactly this consumer; a random name would need
``CONSUMER.DELETE.<stream>.*``, which would let it delete the registrar's durables too.
"""

from __future__ import annotations

import contextlib
import logging

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import NotFoundError

from services.lagmon.events import ALL_TYPES, SOURCE, THRESHOLD_CROSSED
from services.lagmon.thresholds import Key

log = logging.getLogger(__name__)

#: Name of the read-back consumer (harness.security.permissions grants exactly this name).
RESTORE_CONSUMER = "qiki-lagmon-restore"

#: Messages fetched per pull request while reading the events back.
_BATCH = 1000


async def read_over_threshold(
    nc: Client, subject: str, *, source: str = SOURCE, timeout_s: float = 2.0
) -> set[Key]:
    """Consumers whose last threshold event stored on ``subject`` is a ``ThresholdCrossed``.

    An empty set when no stream stores ``subject`` (nothing was announced durably).  Raises
    the NATS/JetStream error when the stream exists but cannot be read (the caller retries).
    """
    js = nc.jetstream(timeout=timeout_s)
    try:
        stream = await js.find_stream_name_by_subject(subject)
    except NotFoundError:
        return set()
    # A previous monitor killed mid-read may have left it behind (until inactive_threshold),
    # positioned part-way: start from a fresh one.
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(stream, RESTORE_CONSUMER)
    await js.add_consumer(
        stream,
        api.ConsumerConfig(
            name=RESTORE_CONSUMER,
            filter_subject=subject,
            ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.ALL,
            headers_only=True,
            mem_storage=True,
            # Left behind if this process dies mid-read: the server removes it.
            inactive_threshold=max(5.0, 4 * timeout_s),
        ),
    )
    sub = await js.pull_subscribe_bind(consumer=RESTORE_CONSUMER, stream=stream)
    last: dict[Key, str] = {}
    name: str | None = RESTORE_CONSUMER
    try:
        info = await sub.consumer_info()
        remaining = info.num_pending or 0
        while remaining > 0:
            try:
                msgs = await sub.fetch(min(_BATCH, remaining), timeout=timeout_s)
            except NatsTimeoutError:
                break  # nothing more arrived: the events were trimmed meanwhile
            for msg in msgs:
                remaining = msg.metadata.num_pending
                headers = msg.headers or {}
                kind = headers.get("ce-type")
                if kind not in ALL_TYPES or headers.get("ce-source") != source:
                    continue
                stream_name, sep, consumer = (headers.get("ce-subject") or "").partition("/")
                if sep and stream_name and consumer:
                    last[(stream_name, consumer)] = kind
            if not msgs:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if name is not None:
            with contextlib.suppress(Exception):
                await js.delete_consumer(stream, name)
    over = {key for key, kind in last.items() if kind == THRESHOLD_CROSSED}
    log.debug("read back %d threshold events' state: %d consumers over", len(last), len(over))
    return over
