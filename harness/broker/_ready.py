"""Cluster readiness shared by the process and container backends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any


async def wait_placement(client_urls: Sequence[str], replicas: int,
                         connect_kwargs: dict[str, Any] | None = None) -> None:
    """Wait until every node answers JetStream API requests and an R``replicas`` stream fits.

    Right after the meta leader election, (1) a request sent to a non-leader can be dropped
    while route interest propagates (the client sees a timeout), and (2) the leader may not
    know its peers' capacity yet ("no suitable peers for placement", err_code 10005). So:
    ``$JS.API.INFO`` through each node (answered by the meta leader, no side effects), then
    a probe R``replicas`` memory stream created and deleted. Callers bound the wait with a
    timeout; they need no retry loop of their own. ``connect_kwargs``: credentials and TLS
    for ``nats.connect`` (a secured broker); its ``servers`` are replaced by each node's URL.
    """
    import nats
    from nats.js.api import StorageType, StreamConfig

    auth = {k: v for k, v in (connect_kwargs or {}).items()
            if k in ("token", "user", "password", "user_credentials", "nkeys_seed", "tls")}
    clients = [
        await nats.connect(servers=[url], connect_timeout=2, allow_reconnect=False,
                           name="qiki-ready", **auth)
        for url in client_urls
    ]
    try:

        async def api_answers(nc: Any) -> None:
            delay = 0.005
            while True:
                try:
                    await nc.request("$JS.API.INFO", b"", timeout=0.2)
                    return
                except (nats.errors.Error, TimeoutError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 1.5, 0.05)

        await asyncio.gather(*(api_answers(nc) for nc in clients))
        name = "QIKI_HARNESS_READY_PROBE"
        config = StreamConfig(
            name=name,
            subjects=["_qiki_harness.ready_probe"],
            num_replicas=replicas,
            storage=StorageType.MEMORY,
        )
        # A retried create of the same config is idempotent.
        js = clients[0].jetstream(timeout=1.0)
        delay = 0.01
        while True:
            try:
                await js.add_stream(config)
                break
            except (nats.errors.Error, TimeoutError):
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.1)
        await clients[0].jetstream(timeout=5.0).delete_stream(name)
    finally:
        for nc in clients:
            with contextlib.suppress(Exception):
                await nc.close()
