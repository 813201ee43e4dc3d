"""Reading each replica of a real R3 stream from its own store (the replicas check's reader).

nats-server 2.15.1 writes the stores; the reader copies each node's stream, rewrites it to
one replica (with a HighwayHash meta.sum the server accepts) and reads it through a
throwaway standalone server.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nats
from nats.js.api import StreamConfig

from harness.broker import NatsCluster
from harness.broker._highwayhash import stream_meta_sum
from harness.broker.replicas import find_stream_dir, read_replicas, read_store
from harness.checks.observations import DeliveryLog
from harness.checks.replicas import account_replicas, check_replicas
from harness.faults.corrupt import block_files, block_records, corrupt_block

STREAM = "REPL"
N = 300


async def _fill(cluster: NatsCluster) -> set[str]:
    nc = await nats.connect(cluster.client_urls[0])
    js = nc.jetstream(timeout=5.0)
    await js.add_stream(StreamConfig(name=STREAM, subjects=["repl.>"], num_replicas=3))
    # The create answers before the new stream's own Raft group has a leader; a publish in
    # that gap gets no response (seen on a loaded machine). Wait for the leader.
    async with asyncio.timeout(30):
        while True:
            with contextlib.suppress(Exception):
                info = await js.stream_info(STREAM)
                if info.cluster is not None and info.cluster.leader:
                    break
            await asyncio.sleep(0.1)
    ids = set()
    for i in range(N):
        mid = f"m-{i}"
        await js.publish("repl.x", b"x" * 200, headers={"Nats-Msg-Id": mid})
        ids.add(mid)
    await nc.close()
    return ids


async def test_every_replica_read_alone_holds_the_same_messages(tmp_path: Path) -> None:
    async with NatsCluster(3) as cluster:
        ids = await _fill(cluster)
        for node in cluster.nodes:
            # our HighwayHash gives the very sum the server wrote for its metafile
            sdir = find_stream_dir(node.store_dir, STREAM)
            assert sdir is not None
            assert stream_meta_sum(STREAM, (sdir / "meta.inf").read_bytes()) == (
                sdir / "meta.sum").read_text()
        contents, converged, live = await read_replicas(list(cluster.nodes), STREAM,
                                                        tmp_path / "work")
    assert converged and set(live) == {"n1", "n2", "n3"}
    assert [c.error for c in contents] == [None, None, None]
    assert all(len(c.messages) == N for c in contents)
    acc = account_replicas(STREAM, contents, DeliveryLog(attempted=ids, acked=ids),
                           converged=converged, live=live)
    assert acc.divergent == 0 and acc.lost == {"n1": 0, "n2": 0, "n3": 0}
    assert check_replicas(acc).passed
    assert not (tmp_path / "work").exists()  # the copies are removed


async def test_a_flipped_bit_shows_as_messages_missing_on_that_replica(tmp_path: Path) -> None:
    async with NatsCluster(3) as cluster:
        ids = await _fill(cluster)
        n2 = cluster.node("n2")
        await n2.stop()
        # The record layout the corrupt fault reads matches the server's own block: every
        # record parses, in order, to the end of the file, each payload where it should be.
        [blk] = block_files(n2.store_dir, STREAM)
        data = blk.read_bytes()
        records = block_records(data)
        assert [r.seq for r in records] == list(range(1, N + 1))
        assert records[-1].fields[-1][2] == len(data)
        assert all(data[slice(*r.payload)] == b"x" * 200 for r in records)
        done = corrupt_block(n2.store_dir, STREAM, "bitflip", seed=0, region="payload")
        assert done["field"] == "payload" and done["byte_before"] == ord("x")
        damaged = await read_store(n2.store_dir, STREAM, "n2", tmp_path / "a")
        healthy = await read_store(cluster.node("n1").store_dir, STREAM, "n1", tmp_path / "b")
    assert done["byte_before"] != done["byte_after"]
    assert healthy.error is None and len(healthy.messages) == N
    assert damaged.error is None
    # the damaged record (and, on 2.15.1, what follows it in the block) is not served
    assert len(damaged.messages) + len(damaged.unreadable) < N or damaged.unreadable
    acc = account_replicas(STREAM, [healthy, damaged], DeliveryLog(attempted=ids, acked=ids))
    assert acc.divergent > 0 and acc.missing["n2"] > 0 and acc.lost["n2"] > 0
    assert not check_replicas(acc).passed
